"""Padding masks from lengths."""

from __future__ import annotations

import torch


def lengths_to_padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """[B, length] bool, True at the positions at or past each row's length (padding)."""
    return torch.arange(length, device=lengths.device)[None, :] >= lengths[:, None]
