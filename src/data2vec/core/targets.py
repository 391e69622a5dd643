"""Teacher targets: top-K layer outputs, per-layer norm, average, optional final norm (fp32).

Mirrors the target construction in fairseq ``examples/data2vec/models/data2vec_audio.py::forward``
(and ``data2vec2.py::make_targets``): per-layer ``instance_norm_target_layer`` (over time, per channel,
per sample), ``batch_norm_target_layer`` (over batch and time), ``layer_norm_target_layer``
(parameter-free LN over channels), then the mean over the K layers, then optional
``layer_norm_targets`` / ``instance_norm_targets``. Everything is computed in fp32.

Padding (a deliberate, documented deviation, default on): fairseq's ``F.instance_norm`` runs over the
whole padded time axis, so padded frames of the teacher output change the statistics of shorter
utterances (see the d2v1_audio fixture README). Our batches are padded (fairseq's recipe crops
instead), so by default instance and batch statistics use valid frames only.
``include_padding_in_norm=True`` reproduces fairseq exactly (used by the parity test).

Shapes: B batch, T time, C channels, K layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(kw_only=True)
class TargetConfig:
    average_top_k_layers: int = 8  # K: how many top teacher layers are averaged
    layer_results: Literal["ffn", "end"] = "ffn"  # ffn = FFN output before the residual (v1 speech/text); end = block output (v1 image)
    instance_norm_target_layer: bool = False  # per layer: normalise each channel over time
    batch_norm_target_layer: bool = False  # per layer: normalise each channel over batch and time
    layer_norm_target_layer: bool = False  # per layer: parameter-free LN over channels
    layer_norm_targets: bool = False  # after averaging: LN over channels
    instance_norm_targets: bool = False  # after averaging: instance norm over time
    include_padding_in_norm: bool = False  # True = fairseq (padded frames enter the statistics)


def _masked_norm_over(x_BTC: torch.Tensor, valid_BT1: torch.Tensor | None, dims: tuple[int, ...], eps: float):
    if valid_BT1 is None:
        mean = x_BTC.mean(dim=dims, keepdim=True)
        var = x_BTC.var(dim=dims, keepdim=True, unbiased=False)
    else:
        w = valid_BT1.to(x_BTC.dtype)
        n = w.sum(dim=dims, keepdim=True).clamp_min(1.0)
        mean = (x_BTC * w).sum(dim=dims, keepdim=True) / n
        var = (((x_BTC - mean) * w) ** 2).sum(dim=dims, keepdim=True) / n
    return (x_BTC - mean) / torch.sqrt(var + eps)


def instance_norm(x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None, eps: float = 1e-5):
    """Normalise each channel of each sample over time (F.instance_norm on B x C x T)."""
    valid = None if padding_mask_BT is None else (~padding_mask_BT).unsqueeze(-1)
    return _masked_norm_over(x_BTC, valid, (1,), eps)


def batch_norm(x_BTC: torch.Tensor, padding_mask_BT: torch.Tensor | None = None, eps: float = 1e-5):
    """Normalise each channel over batch and time (F.batch_norm, training statistics)."""
    valid = None if padding_mask_BT is None else (~padding_mask_BT).unsqueeze(-1)
    return _masked_norm_over(x_BTC, valid, (0, 1), eps)


def build_targets(
    layers_KBTC: list[torch.Tensor], cfg: TargetConfig, padding_mask_BT: torch.Tensor | None = None
) -> torch.Tensor:
    """Average of the normalised top-K layer outputs.

    Args:
        layers_KBTC: per-layer teacher outputs [B, T, C], bottom to top (all layers or at least K).
        cfg: which norms to apply.
        padding_mask_BT: True = padded frame; ignored when ``cfg.include_padding_in_norm``.

    Returns:
        [B, T, C] fp32 targets.
    """
    k = cfg.average_top_k_layers
    if not 1 <= k <= len(layers_KBTC):
        raise ValueError(f"average_top_k_layers={k} but the teacher has {len(layers_KBTC)} layers")
    pad = None if cfg.include_padding_in_norm else padding_mask_BT
    if pad is not None and not pad.any():
        pad = None
    ys = [y.float() for y in layers_KBTC[-k:]]
    if cfg.batch_norm_target_layer:
        ys = [batch_norm(y, pad) for y in ys]
    if cfg.instance_norm_target_layer:
        ys = [instance_norm(y, pad) for y in ys]
    if cfg.layer_norm_target_layer:
        ys = [F.layer_norm(y, y.shape[-1:]) for y in ys]
    y = sum(ys) / len(ys)
    if cfg.layer_norm_targets:
        y = F.layer_norm(y, y.shape[-1:])
    if cfg.instance_norm_targets:
        y = instance_norm(y, pad)
    return y
