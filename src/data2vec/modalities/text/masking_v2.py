"""data2vec 2.0 text masks, drawn in the collator (``TextCollator``): ``clone_batch`` (M) random masks per sample
over the batch length, following ``examples/data2vec/models/modalities/base.py::random_masking`` (MAE-style: sort
uniform noise, keep the ``int(L * (1 - p))`` positions with the smallest noise). The algorithm and the order of
its random draws are fairseq's: with the same generator state both give the same mask. The per-sample seeding is
shared with the other modalities (``data2vec.data.masks_v2``). Polarity: True = masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from data2vec.data.masks_v2 import check_clone_batch, check_prob, check_shape, draw_per_sample


@dataclass(kw_only=True)
class RandomMaskV2Config:
    """MAE-style random masking of data2vec 2.0 text: each row masks exactly L - int(L * (1 - mask_prob))."""

    mask_prob: float = 0.48  # fraction of positions masked (padding included, as in fairseq)
    clone_batch: int = 1  # M: masks (student copies) per sample

    def __post_init__(self):
        check_prob("mask_prob", self.mask_prob)
        check_clone_batch(self.clone_batch)


def random_mask(shape: tuple[int, int], mask_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """MAE-style random mask (fairseq ``random_masking``): per row, sort uniform noise and keep the
    ``int(L * (1 - mask_prob))`` positions with the smallest noise.

    Returns:
        [B, L] bool, True = masked, exactly ``L - int(L * (1 - mask_prob))`` per row.
    """
    B, L = check_shape(shape)
    len_keep = int(L * (1 - mask_prob))
    noise = torch.rand(B, L, generator=generator)
    ids_shuffle = noise.argsort(dim=1)  # ascending: the first len_keep are kept
    mask = torch.ones(B, L, dtype=torch.bool)
    mask.scatter_(1, ids_shuffle[:, :len_keep], False)
    return mask


def draw_v2_masks(cfg: RandomMaskV2Config, num_tokens: int, *, seed: int, epoch: int,
                  indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The batch's masks: [B * M, num_tokens] bool, row ``b * M + c`` = clone ``c`` of sample ``indices[b]``
    (seeding: ``data2vec.data.masks_v2.draw_per_sample``)."""
    if not isinstance(cfg, RandomMaskV2Config):
        raise TypeError(f"data2vec 2.0 text masks need a RandomMaskV2Config, got {type(cfg).__name__}")
    L = int(num_tokens)
    return draw_per_sample(lambda g: random_mask((cfg.clone_batch, L), cfg.mask_prob, g), L, seed=seed, epoch=epoch,
                           indices=indices)
