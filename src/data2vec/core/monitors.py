"""Collapse monitors: the variance statistics fairseq logs and guards on.

``compute_var`` is fairseq ``Data2VecAudioModel.compute_var``: the mean over channels of
``sqrt(var + 1e-6)`` over all positions (unbiased variance), all-reduced across ranks when
``torch.distributed`` is initialised. ``CollapseGuard`` applies fairseq's rule (raise after a number of
updates when ``target_var < min_target_var`` or ``pred_var < min_pred_var``) but with a message that
says what to try (SPEC D: lower the learning rate, raise the EMA decay, mask more).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(kw_only=True)
class CollapseConfig:
    min_target_var: float = 0.1  # stop when the target std falls below this ...
    min_pred_var: float = 0.01  # ... or the prediction std falls below this ...
    var_check_after: int = 5000  # ... after this many updates (fairseq: 5000)


class CollapseError(RuntimeError):
    """Raised when the representation collapsed; the last good checkpoint is left in place."""


@torch.no_grad()
def compute_var(y_NC: torch.Tensor) -> torch.Tensor:
    y = y_NC.reshape(-1, y_NC.size(-1)).float()
    if dist.is_available() and dist.is_initialized():
        zc = torch.tensor(float(y.size(0)), device=y.device)
        zs, zss = y.sum(dim=0), (y**2).sum(dim=0)
        for t in (zc, zs, zss):
            dist.all_reduce(t)
        var = zss / (zc - 1) - (zs**2) / (zc * (zc - 1))
        return torch.sqrt(var + 1e-6).mean()
    if y.size(0) < 2:
        return torch.tensor(float("nan"), device=y.device)  # undefined; the loop skips it when averaging
    return torch.sqrt(y.var(dim=0) + 1e-6).mean()


def check_collapse(step: int, target_var: float, pred_var: float, cfg: CollapseConfig) -> None:
    """Raise CollapseError with advice if the run collapsed (only after ``var_check_after`` updates)."""
    if step <= cfg.var_check_after:
        return
    problems = []
    if target_var < cfg.min_target_var:
        problems.append(f"target_var={target_var:.4g} < min_target_var={cfg.min_target_var}")
    if pred_var < cfg.min_pred_var:
        problems.append(f"pred_var={pred_var:.4g} < min_pred_var={cfg.min_pred_var}")
    if problems:
        raise CollapseError(
            f"representation collapse at update {step}: {'; '.join(problems)}. "
            "Training stopped; the last checkpoint written before this point is kept. Try: a lower "
            "learning rate (optim.lr), a larger EMA decay (model.ema.ema_decay / ema_end_decay), or "
            "larger masks (masking.mask_prob / mask_length). To change the thresholds use "
            "model.collapse.min_target_var / min_pred_var / var_check_after."
        )
