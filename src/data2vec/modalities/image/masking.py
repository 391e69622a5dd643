"""BEiT blockwise masking (the official data2vec vision recipe), per sample, drawn in the collator.

Rectangular blocks are added until ``num_mask_patches`` patches are masked: each block has an area
drawn uniformly in ``[min_num_patches, min(max_num_patches, still to mask)]`` and a log-uniform aspect
ratio in ``[min_aspect, 1 / min_aspect]``; a block is kept when it masks at least one new patch and no
more than still needed (10 placement attempts per block, as BEiT's ``MaskingGenerator``; the loop stops
early when no block fits, so a few masks can fall short of the target). Randomness comes from
``(seed, epoch, index)`` like every other masker here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data2vec.core.rng import sample_rng


@dataclass(kw_only=True)
class BlockMaskConfig:
    num_mask_patches: int = 120  # official ViT-B: 120 of 196 (~60%)
    min_num_patches: int = 16  # smallest block, in patches
    max_num_patches: int | None = None  # largest block (None = num_mask_patches)
    min_aspect: float = 0.3  # aspect ratio range [min_aspect, 1 / min_aspect]

    def __post_init__(self):
        if self.num_mask_patches < 1 or self.min_num_patches < 1:
            raise ValueError("num_mask_patches and min_num_patches must be >= 1")
        if not 0 < self.min_aspect <= 1:
            raise ValueError(f"min_aspect must be in (0, 1], got {self.min_aspect}")


def _add_block(mask: np.ndarray, max_patches: int, cfg: BlockMaskConfig, rng: np.random.Generator) -> int:
    H, W = mask.shape
    log_aspect = (math.log(cfg.min_aspect), math.log(1 / cfg.min_aspect))
    for _ in range(10):
        lo = cfg.min_num_patches
        area = lo + (max_patches - lo) * rng.random()  # like random.uniform: allows max < min near the end
        aspect = math.exp(rng.uniform(*log_aspect))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w < W and 0 < h < H:
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            block = mask[top:top + h, left:left + w]
            new = h * w - int(block.sum())
            if 0 < new <= max_patches:
                block[:] = True
                return new
    return 0


def block_mask(grid: tuple[int, int], cfg: BlockMaskConfig, *, seed: int, epoch: int, index: int) -> np.ndarray:
    """Boolean [H * W] mask (True = masked) for one image, patches in row-major order."""
    H, W = grid
    if cfg.num_mask_patches > H * W:
        raise ValueError(f"num_mask_patches={cfg.num_mask_patches} exceeds the {H * W} patches of the image")
    rng = sample_rng(seed, epoch, index)
    mask = np.zeros((H, W), dtype=bool)
    count, cap = 0, cfg.max_num_patches or cfg.num_mask_patches
    while count < cfg.num_mask_patches:
        delta = _add_block(mask, min(cfg.num_mask_patches - count, cap), cfg, rng)
        if delta == 0:
            break
        count += delta
    return mask.reshape(-1)
