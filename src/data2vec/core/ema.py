"""EMA teacher: an fp32 copy of (part of) the student, updated once per optimizer step.

Mirrors fairseq ``fairseq/modules/ema_module.py::EMAModule`` with ``ema_fp32=True`` as data2vec uses
it: ``teacher = decay * teacher + (1 - decay) * student`` for every parameter, except that parameters
named in ``copy_keys`` (fairseq ``skip_keys``) and parameters with ``requires_grad=False`` are copied
from the student, and buffers are always copied. The update is skipped when ``decay >= 1``.

The update uses ``torch._foreach_*`` on the averaged tensors (DINOv2 / lightly). The teacher is kept
in eval mode with ``requires_grad=False``; its parameters are fp32 whatever the student's dtype, so
they are the fp32 shadow (fairseq stores them as ``_ema``). Every DDP rank applies the same update
to the same replicated student weights, so teachers stay identical without communication.

Under FSDP (``train.parallel=fsdp``) the teacher is sharded like the student: both hold DTensors with the same
placements, and the update runs on each rank's local shards (``to_local()``), elementwise the same arithmetic
as on whole tensors, without gathering anything.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP), a plain tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


class EMATeacher(nn.Module):
    """Holds the teacher module. ``self.module`` is what the teacher runs."""

    def __init__(self, student: nn.Module, copy_keys: set[str] | frozenset[str] = frozenset()):
        super().__init__()
        self.module = copy.deepcopy(student).float()
        self.module.requires_grad_(False)
        self.module.eval()
        names = {n for n, _ in student.named_parameters()}
        unknown = set(copy_keys) - names
        if unknown:
            raise ValueError(f"EMA copy keys not found in the student: {sorted(unknown)}")
        self.copy_keys = frozenset(copy_keys)

    def train(self, mode: bool = True):
        # The teacher never leaves eval mode: no dropout, no layerdrop (fairseq calls .eval() in forward).
        super().train(mode)
        self.module.eval()
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float) -> None:
        """One EMA step towards ``student`` (the unwrapped module the teacher was built from)."""
        if decay >= 1.0:
            return
        t_params = dict(self.module.named_parameters())
        avg_t, avg_s = [], []
        for name, p in student.named_parameters():
            t, s = _local(t_params[name]), _local(p.detach())
            if name in self.copy_keys or not p.requires_grad:
                t.copy_(s)
            else:
                avg_t.append(t)
                avg_s.append(s.to(t.dtype))
        if avg_t:
            torch._foreach_mul_(avg_t, decay)
            torch._foreach_add_(avg_t, avg_s, alpha=1.0 - decay)
        t_bufs = dict(self.module.named_buffers())
        for name, b in student.named_buffers():
            t_bufs[name].copy_(b)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)
