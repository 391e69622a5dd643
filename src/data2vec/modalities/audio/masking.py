"""Span masking for speech (wav2vec 2.0 / data2vec 1.0 semantics).

Mirrors fairseq ``fairseq/data/data_utils.py::compute_mask_indices`` (static span lengths,
``num_mask_ver=2``, ``idc_select_ver=1``, overlapping spans allowed): each row gets
``int(mask_prob * valid_len / mask_length + u)`` span starts (u ~ U[0, 1), probabilistic rounding,
at least ``min_masks``), spans of ``mask_length`` frames, clipped to the valid (unpadded) length.
With ``require_same_masks`` every row keeps the smallest masked count in the batch, dropping masked
frames at random; ``mask_dropout`` then unmasks that fraction of each row.

Randomness is per sample: row ``i`` draws from ``np.random.default_rng(hash((seed, epoch, index_i)) % 1e6)``
exactly as fairseq does when it is given ``seed``/``epoch``/``indices`` (Python's hash of a tuple of ints
does not depend on PYTHONHASHSEED), so a mask depends only on the sample, its epoch and the run seed:
it is the same in every data-loader worker, on every rank and after a resume. As in fairseq, the
equalisation step of the last loop draws from the generator of the last row.

Polarity: True = masked. Padding is never masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data2vec.core.rng import sample_seed  # noqa: F401 - re-exported


@dataclass(kw_only=True)
class SpanMaskConfig:
    mask_prob: float = 0.65  # expected fraction of frames covered by span starts x mask_length
    mask_length: int = 10  # span length in frames
    min_masks: int = 1  # at least this many spans per row (fairseq passes min_masks=1 in data2vec)
    require_same_masks: bool = True  # same number of masked frames in every row of a batch
    mask_dropout: float = 0.0  # fraction of masked frames unmasked again per row

    def __post_init__(self):
        if not 0.0 <= self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in [0, 1), got {self.mask_prob}")
        if self.mask_length < 1:
            raise ValueError(f"mask_length must be >= 1, got {self.mask_length}")
        if not 0.0 <= self.mask_dropout < 1.0:
            raise ValueError(f"mask_dropout must be in [0, 1), got {self.mask_dropout}")


def compute_span_mask(
    shape: tuple[int, int],
    padding_mask: np.ndarray | None,
    cfg: SpanMaskConfig,
    *,
    seed: int,
    epoch: int,
    indices: np.ndarray | list[int],
) -> np.ndarray:
    """Draw a span mask for a batch.

    Args:
        shape: (B, T) in frames.
        padding_mask: [B, T] bool, True = padded frame, or None.
        cfg: masking parameters.
        seed, epoch, indices: run seed, epoch and the dataset index of each row; together they
            seed each row's generator.

    Returns:
        [B, T] bool mask, True = masked.
    """
    bsz, all_sz = shape
    if len(indices) != bsz:
        raise ValueError(f"need one dataset index per row: got {len(indices)} for batch of {bsz}")
    mask = np.full((bsz, all_sz), False)
    mask_idcs = []
    rng = None
    for i in range(bsz):
        rng = np.random.default_rng(sample_seed(seed, epoch, indices[i]))
        sz = all_sz - int(padding_mask[i].sum()) if padding_mask is not None else all_sz
        num_mask = int(cfg.mask_prob * sz / float(cfg.mask_length) + rng.random())
        num_mask = max(cfg.min_masks, num_mask)
        lengths = np.full(num_mask, cfg.mask_length)
        if sum(lengths) == 0:
            lengths = [min(cfg.mask_length, sz - 1)]
        min_len = min(lengths)
        if sz - min_len <= num_mask:
            min_len = sz - num_mask - 1
        if sz - min_len < num_mask or sz < 2:
            raise ValueError(
                f"sample {indices[i]} has only {sz} frames, too short to mask {num_mask} span(s) of "
                f"{cfg.mask_length}; raise the minimum sample length or lower mask_length/min_masks"
            )
        starts = rng.choice(sz - min_len, num_mask, replace=False)
        idc = np.asarray([starts[j] + off for j in range(len(starts)) for off in range(lengths[j])], dtype=np.int64)
        idc = np.unique(idc[idc < sz])
        if len(idc) >= sz:
            raise ValueError(f"the whole of sample {indices[i]} ({sz} frames) would be masked")
        mask_idcs.append(idc)

    target_len = min(len(m) for m in mask_idcs) if cfg.require_same_masks else None
    for i, idc in enumerate(mask_idcs):
        if target_len is not None and len(idc) > target_len:
            idc = rng.choice(idc, target_len, replace=False)
        mask[i, idc] = True
        if cfg.mask_dropout > 0:
            masked = np.flatnonzero(mask[i])
            num_holes = np.rint(len(masked) * cfg.mask_dropout).astype(int)
            mask[i, rng.choice(masked, num_holes, replace=False)] = False
    return mask
