"""Schedules as pure functions of the update number.

- ``ema_decay``: fairseq ``examples/data2vec/models/data2vec_audio.py::get_annealed_rate`` as used in
  ``set_num_updates``: linear from ``ema_decay`` to ``ema_end_decay`` over ``ema_anneal_end_step``
  updates, then constant. Called with the number of updates completed so far.
- ``tri_stage_lr``: fairseq ``fairseq/optim/lr_scheduler/tri_stage_lr_scheduler.py`` (linear warmup
  from ``init_lr_scale * lr``, hold, exponential decay to ``final_lr_scale * lr``), stages from
  ``phase_ratio`` times the total number of updates.
- ``cosine_lr``: linear warmup from 0 to ``lr``, then half-cosine to ``min_lr`` at ``total_steps``
  (fairseq ``cosine`` with ``warmup_init_lr=0`` and one cycle).
"""

from __future__ import annotations

import math


def ema_decay(step: int, start: float, end: float, anneal_end_step: int) -> float:
    """EMA decay used for the teacher update after ``step`` optimizer updates."""
    if start == end or step >= anneal_end_step:
        return end
    pct_remaining = 1 - step / anneal_end_step
    return end - (end - start) * pct_remaining


def tri_stage_lr(
    step: int,
    *,
    lr: float,
    total_steps: int,
    phase_ratio: tuple[float, float, float],
    init_lr_scale: float = 0.01,
    final_lr_scale: float = 0.01,
) -> float:
    warmup = int(total_steps * phase_ratio[0])
    hold = int(total_steps * phase_ratio[1])
    decay = int(total_steps * phase_ratio[2])
    init_lr, final_lr = init_lr_scale * lr, final_lr_scale * lr
    if step < warmup:
        return init_lr + (lr - init_lr) / warmup * step
    if step < warmup + hold:
        return lr
    if step <= warmup + hold + decay:
        decay_factor = -math.log(final_lr_scale) / decay if decay > 0 else 0.0
        return lr * math.exp(-decay_factor * (step - warmup - hold))
    return final_lr


def cosine_lr(step: int, *, lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    if step < warmup_steps:
        return lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def polynomial_lr(step: int, *, lr: float, total_steps: int, warmup_steps: int, end_lr: float = 0.0,
                  power: float = 1.0) -> float:
    """fairseq ``polynomial_decay``: linear warm-up, then (lr - end_lr) * remaining ** power + end_lr
    (power 1 = linear decay, the RoBERTa/GLUE fine-tuning schedule)."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * step / warmup_steps
    if step >= total_steps:
        return end_lr
    remaining = 1 - (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (lr - end_lr) * remaining ** power + end_lr
