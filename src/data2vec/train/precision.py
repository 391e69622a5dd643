"""Mixed precision: which arithmetic ``train.precision`` means on a device, and the autocast context for it.

``fp32``: no autocast. ``bf16``: ``torch.autocast(dtype=bfloat16)`` around the forward pass and the loss,
on any device. ``auto`` (the default): bf16 on CUDA, and on a CPU with native bf16 arithmetic (AVX512-BF16
or AMX); fp32 on other CPUs, where bf16 is emulated and slower. ``DATA2VEC_CPU_BF16=0``/``1`` overrides the
CPU detection (``auto`` only).

What stays fp32 under bf16 autocast (SPEC A.0, as fairseq's fp16 training with ``ema_fp32``): the master
weights (parameters and optimizer state are never cast; autocast casts copies for the matmuls), the
gradients, the EMA teacher's weights and its update (after the optimizer step, outside autocast), the
target construction (the teacher's layer outputs are cast to fp32 before the per-layer norms and the
average, ``data2vec.core.targets``) and the loss (``regression_loss_sum`` casts both sides to fp32).
The teacher's and the student's matmuls and convolutions run in bf16.

Validated on the tiny presets (``experiments/bf16_curves.py``, docs/results.md "bf16 autocast on CPU") and
``tests/test_bf16.py``.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU does bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX-BF16, Arm BF16).

    Reads torch's own CPU feature checks (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``)
    where this torch has them, else the Linux ``/proc/cpuinfo`` flags (``avx512_bf16``, ``amx_bf16``, Arm
    ``bf16``). Unknown means no. ``DATA2VEC_CPU_BF16=1``/``0`` forces the answer."""
    forced = os.environ.get("DATA2VEC_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, name, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # noqa: BLE001 - a feature probe must never stop training
                pass
    return "bf16" in _cpuinfo_flags()


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags named in ``path`` (x86 ``flags``, Arm ``Features``); 'bf16' if a bf16 flag is there."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        flags.add("bf16")
    return flags


def use_bf16(device: torch.device | str, precision: str) -> bool:
    """Whether ``precision`` (``auto``/``fp32``/``bf16``) means bf16 autocast on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    return kind == "cpu" and cpu_has_native_bf16()


def resolved_precision(device: torch.device | str, precision: str) -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device`` (for logs and summaries)."""
    return "bf16" if use_bf16(device, precision) else "fp32"


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast(bfloat16)`` when :func:`use_bf16`, else a no-op context."""
    if not use_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
