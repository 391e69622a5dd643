"""Collapse monitors: the variance statistics fairseq logs and guards on.

``compute_var`` is fairseq ``Data2VecAudioModel.compute_var``: the mean over channels of
``sqrt(var + 1e-6)`` over all positions (unbiased variance), all-reduced across ranks when
``torch.distributed`` is initialised. ``CollapseGuard`` applies fairseq's rule (raise after a number of
updates when ``target_var < min_target_var`` or ``pred_var < min_pred_var``) but with a message that
says what to try (SPEC D: lower the learning rate, raise the EMA decay, mask more). ``feature_spread`` watches
the front end, which those statistics do not see (logged and plotted, no stop rule).
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


@torch.no_grad()
def feature_spread(x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None) -> torch.Tensor:
    """How much the encoder's local features (the context encoder's input) vary along each sequence: the mean
    over channels of their std over the positions of one sequence, divided by the std of all the batch's
    feature values (every position and channel). Near 1 for features that change from frame to frame as much
    as between channels, 0 when each sequence's features are one constant vector. Measured on five validation
    clips: a random speech CNN 0.80, the log-mel front end 0.88-0.90 all through pretraining, the waveform CNN of
    the collapsed run v15-aud-A 0.06 at update 500 and 0.37 at 1,500. A learned front end can collapse this way
    while ``target_var`` and ``pred_var`` look healthy: with ``ema_transformer_only`` the teacher reads the
    student's front end, and features that barely change in time make the targets easy (docs/results.md, issue
    15). Padding is left out; per rank (not all-reduced)."""
    x = x_BTC.float()
    keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if padding_mask_BT is None else ~padding_mask_BT
    w = keep.unsqueeze(-1).to(x.dtype)  # [B, T, 1]
    n_b = w.sum(dim=1).clamp(min=1)  # [B, 1] valid positions per sequence
    mean_b = (x * w).sum(dim=1, keepdim=True) / n_b.unsqueeze(1)  # [B, 1, C]
    within = (((x - mean_b) ** 2) * w).sum(dim=(0, 1)) / w.sum().clamp(min=1)  # [C]
    n = w.sum().clamp(min=1) * x.size(-1)
    mean = (x * w).sum() / n
    total = (((x - mean) ** 2) * w).sum() / n  # over every position and channel
    return within.sqrt().mean() / total.sqrt().clamp(min=1e-12)


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
