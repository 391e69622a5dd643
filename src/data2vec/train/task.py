"""The two things the shared training loop (``data2vec.train.loop.Trainer``) is given.

A **training task** is what gets trained: data2vec pretraining (``data2vec.core.data2vec.Data2Vec``) is one,
each fine-tuning head (``data2vec.modalities.image.finetune``, ``.audio.finetune``, ``.text.finetune``) is
another. The ``Trainer`` owns everything else (DDP/FSDP wrapping, optimizer, precision, gradient clipping,
checkpoint state with every rank's RNG, resume, signals); a task only says how to compute a loss and what to do
after an update.

**Run hooks** are what a run adds around the update loop (``Trainer.fit``): pretraining records skipped files
and checks for collapse, fine-tuning validates and keeps its best checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from torch import nn

from data2vec.core.data2vec import StepLoss

__all__ = ["RunHooks", "StepLoss", "TrainingTask"]


@runtime_checkable
class TrainingTask(Protocol):
    """What ``Trainer`` calls on the model it trains (an ``nn.Module``: its state dict is the checkpoint's).

    Optional attributes the loop reads when present: ``log_keys`` (per-update floats logged as NaN in an update
    where no micro-batch defined them), ``units_name`` (the log name of ``num_units``, default "units") and
    ``has_unused_parameters`` (DDP's ``find_unused_parameters``).
    """

    @property
    def trainable(self) -> nn.Module:
        """The module the optimizer updates and DDP wraps (data2vec: the student; a task head: all of it)."""
        ...

    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        """The loss *summed* over the batch's ``sample_size`` units (masked positions, examples, frames) and
        per-batch floats to log. ``wrapped`` is ``trainable`` as DDP/FSDP wrapped it: call it for the forward."""
        ...

    def after_update(self, step: int) -> dict:
        """Called after each optimizer step (data2vec: the EMA teacher update); returns floats to log."""
        ...

    def num_units(self, batch: dict) -> int:
        """The batch's sample size, known before the forward pass (all-reduced to normalise the gradient)."""
        ...

    def compile_targets(self) -> list[nn.Module]:
        """The modules ``train.compile`` compiles in place."""
        ...


def _nothing(*args) -> None:
    return None


@dataclass
class RunHooks:
    """What one kind of run adds to ``Trainer.fit``; every hook is optional.

    - ``on_batches(micro_batches, epoch)``: before the update (pretraining: note the files the readers skipped);
    - ``on_update(record)``: right after the update, before it is logged; may add entries or raise (pretraining:
      the collapse check);
    - ``validate(step, last)``: after logging, before a checkpoint is written (fine-tuning: validation and the
      best checkpoint); ``last`` is True for the final update;
    - ``before_save()``: before each checkpoint (pretraining: write the skip log);
    - ``checkpoint_extra()``: entries added to every checkpoint (fine-tuning: the best validation score).
    """

    on_batches: Callable[[list, int], None] = _nothing
    on_update: Callable[[dict], None] = _nothing
    validate: Callable[[int, bool], None] = _nothing
    before_save: Callable[[], None] = _nothing
    checkpoint_extra: Callable[[], dict] = field(default=dict)
