"""Index bookkeeping for data2vec 2.0's "encode only the unmasked tokens" (fairseq ``MaskInfo``).

Mirrors ``ModalitySpecificEncoder.make_maskinfo`` (``examples/data2vec/models/modalities/base.py``):
``ids_shuffle = argsort(mask)`` puts kept positions first, ``ids_keep`` are the first K of them and
``ids_restore`` undoes the shuffle. Deviation: we sort *stably*, so kept (and masked) positions stay
in increasing order; fairseq's unstable argsort permutes them arbitrarily. The model is permutation-
equivariant over kept tokens (ALiBi is gathered with the same indices), so only float summation
order differs.

Every row must mask the same number of positions (the collators guarantee it, as fairseq's
``require_same_masks``), since the kept tokens of all rows form one [B, K, C] tensor.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class MaskInfo(NamedTuple):
    mask: torch.Tensor  # [B, T] bool, True = masked
    ids_keep: torch.Tensor  # [B, K] positions of the kept tokens, increasing
    ids_masked: torch.Tensor  # [B, T - K] positions of the masked tokens, increasing
    ids_restore: torch.Tensor  # [B, T] index into cat(kept, masked) that restores sequence order


def make_mask_info(mask_BT: torch.Tensor) -> MaskInfo:
    if mask_BT.dim() != 2:
        raise ValueError(f"mask must be [batch, positions], got shape {tuple(mask_BT.shape)}")
    counts = mask_BT.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"data2vec 2.0 needs the same number of masked positions in every row, got "
                         f"{sorted(set(counts.tolist()))}; draw masks with the v2 maskers (exact counts)")
    T = mask_BT.size(1)
    K = T - int(counts[0])
    if K < 1:
        raise ValueError("every position of a row is masked: lower mask_prob")
    ids_shuffle = torch.argsort(mask_BT.to(torch.uint8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return MaskInfo(mask_BT.bool(), ids_shuffle[:, :K], ids_shuffle[:, K:], ids_restore)


def gather_positions(x_BTC: torch.Tensor, ids_BK: torch.Tensor) -> torch.Tensor:
    """x[b, ids[b, k]] -> [B, K, C]."""
    return torch.gather(x_BTC, 1, ids_BK[:, :, None].expand(-1, -1, x_BTC.size(-1)))
