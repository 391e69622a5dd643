"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for pretraining: ``train.parallel=fsdp``.

Wrapping (torchtitan's layout): every Transformer block of the student is its own FSDP unit, then the student
itself is the root unit (CNN / embeddings / positional conv / head or decoder). The EMA teacher is sharded the same
way (its blocks, then its root), so each teacher parameter is a DTensor with the same mesh and placement
(``Shard(0)``) as the student parameter it averages, and ``EMATeacher.update`` works on the local shards only:
nothing is gathered for the EMA step.

Precision: with ``train.precision`` resolving to bf16, ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16)``
(bf16 all-gathers, compute and gradient reduce-scatters, fp32 sharded master weights and AdamW state); fp32
otherwise (the CPU/gloo tests run fp32).

The teacher runs forward only under ``no_grad``; FSDP2 keeps a root unit's parameters unsharded after forward
(it expects a backward), so the trainer calls :func:`reshard` on the teacher after each update's forward passes.
v1 text and image teachers call ``embed`` and ``context_encoder`` separately (not ``forward``): ``embed`` is
registered with ``register_fsdp_forward_method`` so it gathers the root's parameters too.

Layerdrop: ranks would drop different blocks and FSDP's per-block all-gathers / reduce-scatters would no longer
pair up across ranks, so ``train.parallel=fsdp`` refuses ``*layerdrop > 0`` (set it to 0). For the same reason a
parameter must get a gradient on every rank or on none (FSDP2 reduce-scatters only the parameters with a gradient):
the pretraining student uses all its parameters on every rank (a micro-batch without masked positions still connects
the loss to every parameter); fine-tuning (frozen encoder, unused ``mask_emb``) stays on DDP. ``torch.compile`` is not
used (neither is it with DDP); FSDP2 works eagerly, per-block hooks do the all-gathers.
"""

from __future__ import annotations

import torch
from torch import nn

from data2vec.errors import Data2VecError
from data2vec.layers.alt import AltBlock
from data2vec.layers.transformer import PostLNBlock
from data2vec.modalities.image.encoder import Block

LAYERDROP_KEYS = ("layerdrop", "prenet_layerdrop")


def block_classes() -> tuple[type, ...]:
    """The Transformer block classes of every encoder (each becomes an FSDP unit)."""
    return (PostLNBlock, AltBlock, Block)


def check_fsdp_config(cfg) -> None:
    drops = [k for k in LAYERDROP_KEYS if float(getattr(cfg.encoder, k, 0.0) or 0.0) > 0]
    if drops:
        raise Data2VecError(
            f"train.parallel=fsdp cannot run with layerdrop ({', '.join(f'encoder.{k}' for k in drops)} > 0): ranks "
            "drop different blocks and FSDP's per-block collectives would not match; set "
            + " ".join(f"--set encoder.{k}=0" for k in drops) + " or use train.parallel=ddp")


def _shard_tree(root: nn.Module, mp) -> list[nn.Module]:
    from torch.distributed.fsdp import fully_shard

    blocks = [m for m in root.modules() if isinstance(m, block_classes())]
    for m in blocks:
        fully_shard(m, mp_policy=mp)
    fully_shard(root, mp_policy=mp)
    return blocks + [root]


def shard_data2vec(model: nn.Module, precision: str) -> list[nn.Module]:
    """``fully_shard`` the student (per block, then root) and, if the task has one, its EMA teacher the same way.
    Returns the teacher's FSDP modules (to :func:`reshard` after its forward passes)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, register_fsdp_forward_method

    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16) if precision == "bf16"
          else MixedPrecisionPolicy())
    _shard_tree(model.trainable, mp)
    teacher = getattr(getattr(model, "teacher", None), "module", None)
    if teacher is None:
        return []
    units = _shard_tree(teacher, mp)
    if hasattr(teacher, "embed"):  # v1 text / image teachers: embed() is called directly, not forward()
        register_fsdp_forward_method(teacher, "embed")
    return units


def reshard(units: list[nn.Module]) -> None:
    for m in units:
        m.reshard()


def set_gradient_sync(module: nn.Module, sync: bool) -> None:
    """Gradient accumulation: reduce-scatter only after the update's last micro-batch (like DDP's ``no_sync``)."""
    module.set_requires_gradient_sync(sync)


def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> float:
    """Clip to the *global* gradient norm over sharded (DTensor) gradients; returns that norm."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params]
    total = torch.nn.utils.get_total_norm(grads, 2.0, False, True)
    if isinstance(total, DTensor):  # partial sums of squares over the shards -> one all-reduce
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total.item()


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (what this rank stores), a plain tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t
