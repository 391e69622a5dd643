"""data2vec 2.0 speech masks, drawn in the collator (``AudioCollator``): ``clone_batch`` (M) 1-D block masks per
clip over its frames (fairseq ``compute_block_mask_1d``, as ``RawAudioDataset`` draws them from the task's
``precompute_mask_config``). The block-mask algorithm and the per-sample seeding are shared with images
(``data2vec.data.masks_v2``). Polarity: True = masked.
"""

from __future__ import annotations

from typing import Sequence

import torch

from data2vec.data.masks_v2 import BlockMaskV2Config, compute_block_mask_1d, draw_per_sample


def draw_v2_masks(cfg: BlockMaskV2Config, num_frames: int, *, seed: int, epoch: int,
                  indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The batch's masks: [B * M, num_frames] bool, row ``b * M + c`` = clone ``c`` of sample ``indices[b]``
    (seeding: ``data2vec.data.masks_v2.draw_per_sample``)."""
    if not isinstance(cfg, BlockMaskV2Config):
        raise TypeError(f"data2vec 2.0 speech masks need a BlockMaskV2Config, got {type(cfg).__name__}")
    L = int(num_frames)

    def draw(g: torch.Generator) -> torch.Tensor:
        return compute_block_mask_1d((cfg.clone_batch, L), mask_prob=cfg.mask_prob, mask_length=cfg.mask_length,
                                     mask_prob_adjust=cfg.mask_prob_adjust, inverse_mask=cfg.inverse_mask,
                                     require_same_masks=True, expand_adjacent=cfg.expand_adjacent,
                                     mask_dropout=cfg.mask_dropout, non_overlapping=cfg.non_overlapping, generator=g)

    return draw_per_sample(draw, L, seed=seed, epoch=epoch, indices=indices)
