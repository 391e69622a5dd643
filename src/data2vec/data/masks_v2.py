"""What the data2vec 2.0 masks of every modality share: the block masks of speech (1-D) and images (2-D, or 1-D
over the patches), their config, and the per-sample seeding. Each modality draws its masks in its own
``modalities/<m>/masking_v2.py`` (``draw_v2_masks``, called by its collator): ``clone_batch`` (M) masks per
sample; text's random masks live there too.

Block masks follow fairseq ``fairseq/data/data_utils.py`` (``compute_block_mask_1d`` /
``compute_block_mask_2d``). The algorithms and the order of their random draws are fairseq's: with the same
generator state both give the same mask.

Block masks in brief. ``inverse_mask`` first turns ``p`` into ``1 - p``. Then either

* overlapping (default): ``int(L * (p + adjust) / len**k * (1 + mask_dropout))`` centres are drawn uniformly
  with replacement (``k`` = 1 in 1-D, 2 in 2-D) and a span of ``len`` (a ``len x len`` square in 2-D) is
  painted around each, from ``centre - len // 2``, clamped to the borders; or
* ``non_overlapping``: the sequence (grid) is cut into ``ceil(L / len)`` tiles of ``len`` (``len x len``) and
  ``int(tiles * (p + adjust) * (1 + mask_dropout))`` distinct tiles are masked, cropped at the far border.

With ``require_same_masks`` every row is then brought to exactly ``int(L * p)`` masked positions:
``expand_adjacent`` first grows the mask to ``int(int(L * p) * (1 + mask_dropout))`` by adding unmasked
neighbours of masked positions (4-neighbours in 2-D), drawn without replacement; then surplus masked
positions are unmasked, or missing ones masked, uniformly at random (``torch.multinomial`` without
replacement). ``inverse_mask`` finally flips the mask, so ``L - int(L * (1 - p))`` positions are masked and
the *kept* regions are the blocks (data2vec 2.0 images).

Deviations, only where fairseq would fail: more non-overlapping tiles than exist are clamped to all
tiles (fairseq's ``multinomial`` raises), zero tiles draw nothing (same), and an ``expand_adjacent`` row with
nothing masked to grow from goes straight to the random top-up (fairseq asserts).

Seeding (``draw_per_sample``): sample ``index`` of ``epoch`` draws its M masks from a ``torch.Generator``
seeded with ``data2vec.core.rng.sample_seed(seed, epoch, index)``, so given the number of positions a
sample's masks do not depend on the worker, the rank, the batch it lands in or a resume. Rows are
sample-major: row ``b * M + c`` is clone ``c`` of sample ``b`` (fairseq concatenates each sample's
``precomputed_mask``; the model repeats samples with ``repeat_interleave``).

Polarity: True = masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from data2vec.core.rng import sample_seed

__all__ = ["BlockMaskV2Config", "check_clone_batch", "check_prob", "check_shape", "compute_block_mask_1d",
           "compute_block_mask_2d", "draw_per_sample"]


def check_prob(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def check_clone_batch(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"clone_batch must be an integer >= 1 (masks per sample), got {value!r}")


@dataclass(kw_only=True)
class BlockMaskV2Config:
    """Block masking of data2vec 2.0: 1-D spans for speech frames, 2-D squares for image patches."""

    mask_prob: float = 0.5  # fraction of positions masked: exactly int(L * mask_prob) per row (see inverse_mask)
    mask_prob_adjust: float = 0.0  # added to mask_prob when drawing block centres (overlaps cover less)
    mask_length: int = 5  # span length (1-D) or square side (2-D); images with 1 use 1-D masks as fairseq
    inverse_mask: bool = False  # draw blocks for 1 - mask_prob and invert: the kept positions form the blocks
    mask_dropout: float = 0.0  # draw (1 + mask_dropout) times the blocks, then trim back to the exact count
    expand_adjacent: bool = False  # reach the count by growing blocks into neighbours before random top-up
    non_overlapping: bool = False  # mask whole tiles of a mask_length grid instead of overlapping blocks
    clone_batch: int = 1  # M: masks (student copies) per sample

    def __post_init__(self):
        check_prob("mask_prob", self.mask_prob)
        if not 0.0 <= self.mask_prob_adjust < 1.0:
            raise ValueError(f"mask_prob_adjust must be in [0, 1), got {self.mask_prob_adjust}")
        if isinstance(self.mask_length, bool) or not isinstance(self.mask_length, int) or self.mask_length < 1:
            raise ValueError(f"mask_length must be an integer >= 1, got {self.mask_length!r}")
        check_prob("mask_dropout", self.mask_dropout)
        check_clone_batch(self.clone_batch)


# ---- block masks ----------------------------------------------------------------------------------------
def check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"shape must be (B, L), got {tuple(shape)}")
    B, L = (int(s) for s in shape)
    if B < 0 or L < 1:
        raise ValueError(f"shape must be (B >= 0, L >= 1), got {tuple(shape)}")
    return B, L


def _tile_draw(B: int, tiles: int, count: int, generator) -> torch.Tensor:
    """[B, tiles] float32 with ``count`` distinct ones per row (clamped to 0..tiles)."""
    inp = torch.zeros(B, tiles, dtype=torch.float32)
    n = min(count, tiles)
    if n > 0 and B > 0:
        inds = torch.multinomial(1 - inp, n, replacement=False, generator=generator)
        inp.scatter_(1, inds, 1)
    return inp


def _equalize(mask_BL: torch.Tensor, final_target_len: int, target_len: int, expand_adjacent: bool,
              neighbours, generator) -> None:
    """In place: bring each row to exactly ``final_target_len`` ones (fairseq's ``require_same_masks`` loop)."""
    n_masks = mask_BL.sum(dim=-1)
    for i in range(len(mask_BL)):
        n = int(n_masks[i])
        m = mask_BL[i]
        while expand_adjacent and n < target_len:
            cands = (1 - m + neighbours(m)) > 1  # unmasked, with a masked neighbour
            cand_sz = int(cands.sum())
            if cand_sz == 0:  # nothing to grow from (fairseq asserts): the random top-up below fills the row
                break
            to_mask = torch.multinomial(cands.float(), min(cand_sz, target_len - n), replacement=False,
                                        generator=generator)
            m[to_mask] = 1
            n += to_mask.numel()
        if n > final_target_len:
            m[torch.multinomial(m, n - final_target_len, replacement=False, generator=generator)] = 0
        elif n < final_target_len:
            m[torch.multinomial(1 - m, final_target_len - n, replacement=False, generator=generator)] = 1


def compute_block_mask_1d(shape: tuple[int, int], mask_prob: float, mask_length: int, mask_prob_adjust: float = 0.0,
                          inverse_mask: bool = False, require_same_masks: bool = True, expand_adjacent: bool = False,
                          mask_dropout: float = 0.0, non_overlapping: bool = False,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Spans of ``mask_length`` over L positions (fairseq ``compute_block_mask_1d``; see the module docstring).

    Args:
        shape: (B, L): rows and positions.
        generator: source of every random draw (None = torch's global generator, as fairseq).

    Returns:
        [B, L] bool, True = masked; with ``require_same_masks`` exactly ``int(L * mask_prob)`` masked per row
        (``L - int(L * (1 - mask_prob))`` with ``inverse_mask``).
    """
    B, L = check_shape(shape)
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if inverse_mask:
        mask_prob = 1 - mask_prob

    if non_overlapping:
        sz = math.ceil(L / mask_length)
        count = int(sz * (mask_prob + mask_prob_adjust) * (1 + mask_dropout))
        mask = _tile_draw(B, sz, count, generator).repeat_interleave(mask_length, dim=1)[:, :L].contiguous()
    else:
        mask = torch.zeros(B, L, dtype=torch.float32)
        n_centres = int(L * ((mask_prob + mask_prob_adjust) / mask_length) * (1 + mask_dropout))
        mask_inds = torch.randint(0, L, size=(B, n_centres), generator=generator)
        mask.scatter_(1, mask_inds, 1)
        rows, cols = mask.nonzero(as_tuple=True)
        offsets = torch.arange(mask_length) - mask_length // 2
        pos = (cols[:, None] + offsets[None, :]).clamp_(0, L - 1)
        mask[rows[:, None].expand_as(pos), pos] = 1

    if require_same_masks:
        w = torch.tensor([[[1.0, 0.0, 1.0]]])  # left and right neighbours

        def neighbours(m_L: torch.Tensor) -> torch.Tensor:
            return F.conv1d(m_L.view(1, 1, -1), w, padding="same").clamp_max_(1).view(-1)

        final_target_len = int(L * mask_prob)
        _equalize(mask, final_target_len, int(final_target_len * (1 + mask_dropout)), expand_adjacent, neighbours,
                  generator)

    if inverse_mask:
        mask = 1 - mask
    return mask.bool()


def compute_block_mask_2d(shape: tuple[int, int], mask_prob: float, mask_length: int, mask_prob_adjust: float = 0.0,
                          inverse_mask: bool = False, require_same_masks: bool = True, expand_adjacent: bool = False,
                          mask_dropout: float = 0.0, non_overlapping: bool = False,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """``mask_length x mask_length`` squares on a d x d grid flattened row-major to L = d * d positions
    (fairseq ``compute_block_mask_2d``; see the module docstring).

    Args:
        shape: (B, L) with L a square number.
        generator: source of every random draw (None = torch's global generator, as fairseq).

    Returns:
        [B, L] bool, True = masked; counts as in ``compute_block_mask_1d``.
    """
    B, L = check_shape(shape)
    d = math.isqrt(L)
    if d * d != L:
        raise ValueError(f"2-D block masks need a square grid: L={L} is not a square number")
    if mask_length < 2:
        raise ValueError(f"2-D block masks need mask_length >= 2, got {mask_length} (use compute_block_mask_1d)")
    if inverse_mask:
        mask_prob = 1 - mask_prob

    if non_overlapping:
        sz = math.ceil(d / mask_length)
        count = int(sz * sz * (mask_prob + mask_prob_adjust) * (1 + mask_dropout))
        tiles = _tile_draw(B, sz * sz, count, generator).view(B, sz, sz)
        mask = tiles.repeat_interleave(mask_length, 1).repeat_interleave(mask_length, 2)[:, :d, :d].contiguous()
    else:
        mask = torch.zeros(B, d, d, dtype=torch.float32)
        n_centres = int(L * ((mask_prob + mask_prob_adjust) / mask_length ** 2) * (1 + mask_dropout))
        mask_inds = torch.randint(0, L, size=(B, n_centres), generator=generator)
        mask.view(B, -1).scatter_(1, mask_inds, 1)
        b, ci, cj = mask.nonzero(as_tuple=True)
        off = torch.arange(mask_length) - mask_length // 2
        oi = off.repeat_interleave(mask_length)  # all (di, dj) pairs of the square
        oj = off.repeat(mask_length)
        pi = (ci[:, None] + oi[None, :]).clamp_(0, d - 1)
        pj = (cj[:, None] + oj[None, :]).clamp_(0, d - 1)
        mask[b[:, None].expand_as(pi), pi, pj] = 1
    mask = mask.reshape(B, L)

    if require_same_masks:
        w = torch.zeros(1, 1, 3, 3)  # the 4-neighbourhood
        w[..., 0, 1] = w[..., 2, 1] = w[..., 1, 0] = w[..., 1, 2] = 1

        def neighbours(m_L: torch.Tensor) -> torch.Tensor:
            return F.conv2d(m_L.view(1, 1, d, d), w, padding="same").clamp_max_(1).view(-1)

        final_target_len = int(L * mask_prob)
        _equalize(mask, final_target_len, int(final_target_len * (1 + mask_dropout)), expand_adjacent, neighbours,
                  generator)

    if inverse_mask:
        mask = 1 - mask
    return mask.bool()


# ---- per-sample drawing ---------------------------------------------------------------------------------
def draw_per_sample(draw: Callable[[torch.Generator], torch.Tensor], num_positions: int, *, seed: int, epoch: int,
                    indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The batch's masks, sample by sample: ``draw(generator)`` gives one sample's [M, L] masks.

    Args:
        num_positions: L, the positions of each mask (frames, tokens, patches).
        seed, epoch, indices: run seed, epoch and each sample's dataset index; sample ``indices[b]`` draws
            its M masks from ``torch.Generator().manual_seed(sample_seed(seed, epoch, indices[b]))``.

    Returns:
        [B * M, L] bool, True = masked; row ``b * M + c`` is clone ``c`` of sample ``b``.
    """
    if num_positions < 1:
        raise ValueError(f"need at least one position to mask, got {num_positions!r}")
    indices = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
    if not indices:
        return torch.zeros(0, num_positions, dtype=torch.bool)
    out = []
    for index in indices:
        g = torch.Generator().manual_seed(sample_seed(seed, epoch, index))
        out.append(draw(g))
    return torch.cat(out, 0)
