"""data2vec 2.0 image masks, drawn in the collator (``ImageCollator``): ``clone_batch`` (M) block masks per image
over its square patch grid, flattened row-major: 2-D squares (fairseq ``compute_block_mask_2d``, as
``MaeImageDataset`` draws them from the task's ``precompute_mask_config``; the recipe inverts them, so the kept
patches form the blocks), or 1-D spans over the patches with ``mask_length`` 1, as fairseq. The block-mask
algorithms and the per-sample seeding are shared with speech (``data2vec.data.masks_v2``). Polarity: True = masked.
"""

from __future__ import annotations

from typing import Sequence

import torch

from data2vec.data.masks_v2 import BlockMaskV2Config, compute_block_mask_1d, compute_block_mask_2d, draw_per_sample


def draw_v2_masks(cfg: BlockMaskV2Config, grid: Sequence[int], *, seed: int, epoch: int,
                  indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The batch's masks over the (h, w) patch grid: [B * M, h * w] bool, row ``b * M + c`` = clone ``c`` of
    sample ``indices[b]`` (seeding: ``data2vec.data.masks_v2.draw_per_sample``)."""
    if not isinstance(cfg, BlockMaskV2Config):
        raise TypeError(f"data2vec 2.0 image masks need a BlockMaskV2Config, got {type(cfg).__name__}")
    hw = tuple(int(x) for x in grid)
    if len(hw) != 2:
        raise ValueError(f"grid must be the (h, w) patch grid, got {grid!r}")
    h, w = hw
    if cfg.mask_length > 1 and h != w:
        raise ValueError(f"2-D block masks need a square patch grid, got {h} x {w}: use square images "
                         "(image_size divisible by patch_size, same height and width)")
    M = cfg.clone_batch
    kw = dict(mask_prob=cfg.mask_prob, mask_length=cfg.mask_length, mask_prob_adjust=cfg.mask_prob_adjust,
              inverse_mask=cfg.inverse_mask, require_same_masks=True)

    def draw(g: torch.Generator) -> torch.Tensor:
        if cfg.mask_length == 1:  # fairseq MaeImageDataset: 1-D over the patches, without the 2-D-only options
            return compute_block_mask_1d((M, h * w), generator=g, **kw)
        return compute_block_mask_2d((M, h * w), expand_adjacent=cfg.expand_adjacent, mask_dropout=cfg.mask_dropout,
                                     non_overlapping=cfg.non_overlapping, generator=g, **kw)

    return draw_per_sample(draw, h * w, seed=seed, epoch=epoch, indices=indices)
