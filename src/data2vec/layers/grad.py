"""Gradient scaling into a feature encoder (fairseq ``GradMultiply``; ``feature_grad_mult`` in data2vec 1.0
speech, ``local_grad_mult`` in 2.0)."""

from __future__ import annotations

from typing import Callable

import torch


class GradMultiply(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def run_with_grad_mult(fn: Callable, mult: float, *args):
    """``fn(*args)`` with the gradient into it scaled by ``mult``: 0 runs it without a graph (frozen), 1 leaves it
    alone. Where ``fn`` returns a tuple, its first element is the one scaled."""
    if mult <= 0:
        with torch.no_grad():
            return fn(*args)
    out = fn(*args)
    if mult == 1.0:
        return out
    if isinstance(out, tuple):
        return (GradMultiply.apply(out[0], mult), *out[1:])
    return GradMultiply.apply(out, mult)
