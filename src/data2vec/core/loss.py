"""Regression loss of data2vec, mirroring fairseq ``data2vec_audio.py::forward`` / ``data2vec2.py::d2v_loss``.

Element-wise L2 (``loss_beta == 0``) or smooth-L1 with ``beta = loss_beta``, summed over the feature
dimension and over masked positions, times ``loss_scale`` (or ``1/sqrt(C)`` when it is None).
The trainer divides the sum by the number of masked positions in the whole (global) batch, which is
what fairseq's trainer does with ``sample_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(kw_only=True)
class LossConfig:
    loss_beta: float = 0.0  # 0 = L2, > 0 = smooth-L1 with this beta
    loss_scale: float | None = None  # None = 1/sqrt(embedding dim)


def regression_loss_sum(pred_MC: torch.Tensor, target_MC: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Scaled loss summed over the M masked positions and C channels (fp32 scalar)."""
    pred, target = pred_MC.float(), target_MC.float()
    if cfg.loss_beta == 0:
        loss = F.mse_loss(pred, target, reduction="none").sum(dim=-1)
    else:
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=cfg.loss_beta).sum(dim=-1)
    scale = cfg.loss_scale if cfg.loss_scale is not None else 1.0 / math.sqrt(pred.size(-1))
    return loss.sum() * scale
