"""The text collator: blocks of token ids -> a padded batch with data2vec 1.0 (BERT-style corruption) or
data2vec 2.0 (M random masks per sample) masks. The blocks come from ``data2vec.data.text.TextBlockDataset``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.modalities.text.masking import TokenMaskConfig, mask_tokens
from data2vec.modalities.text.masking_v2 import RandomMaskV2Config, draw_v2_masks


@dataclass
class TextCollator:
    """Samples -> {source (corrupted), teacher_source (clean), padding_mask, mask, indices, num_masked}.

    With a ``RandomMaskV2Config`` (data2vec 2.0) tokens are not corrupted (the student drops masked positions):
    {source (clean) [B, T], padding_mask [B, T] or None, mask [B * M, T], indices, num_masked}, where each
    sample gets ``clone_batch`` (M) random masks over the batch length T, sample-major. As in fairseq, padded
    positions may be masked (every row masks the same count); num_masked counts masked non-padding positions.
    """

    mask_cfg: TokenMaskConfig | RandomMaskV2Config
    seed: int
    pad: int
    mask_idx: int
    special_ids: frozenset
    vocab_size: int

    def __post_init__(self):
        if isinstance(self.mask_cfg, BlockMaskV2Config):
            raise ValueError("data2vec 2.0 text uses random masking: set masking to a RandomMaskV2Config "
                             "(mask_prob, clone_batch), not a BlockMaskV2Config")

    def __call__(self, samples: list[dict]) -> dict:
        if isinstance(self.mask_cfg, RandomMaskV2Config):
            return self._collate_v2(samples)
        B, T = len(samples), max(len(s["tokens"]) for s in samples)
        clean = torch.full((B, T), self.pad, dtype=torch.long)
        corrupt = clean.clone()
        mask = torch.zeros(B, T, dtype=torch.bool)
        for b, s in enumerate(samples):
            n = len(s["tokens"])
            src, m = mask_tokens(s["tokens"], self.mask_cfg, seed=self.seed, epoch=s["epoch"], index=s["id"],
                                 mask_idx=self.mask_idx, special_ids=self.special_ids, vocab_size=self.vocab_size)
            clean[b, :n] = torch.from_numpy(s["tokens"])
            corrupt[b, :n] = torch.from_numpy(src)
            mask[b, :n] = torch.from_numpy(m)
        padding_mask = clean.eq(self.pad)
        return {"source": corrupt, "teacher_source": clean,
                "padding_mask": padding_mask if padding_mask.any() else None, "mask": mask,
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": int(mask.sum())}

    def _collate_v2(self, samples: list[dict]) -> dict:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        B, T = len(samples), max(len(s["tokens"]) for s in samples)
        source = torch.full((B, T), self.pad, dtype=torch.long)
        for b, s in enumerate(samples):
            source[b, :len(s["tokens"])] = torch.from_numpy(np.asarray(s["tokens"], dtype=np.int64))
        padding_mask = source.eq(self.pad)  # as the v1 path and fairseq
        # each sample with its own epoch, as the v1 path
        mask = torch.cat([draw_v2_masks(self.mask_cfg, T, seed=self.seed, epoch=s["epoch"], indices=[s["id"]])
                          for s in samples])
        M = self.mask_cfg.clone_batch
        num_masked = int((mask & ~padding_mask.repeat_interleave(M, 0)).sum())
        return {"source": source, "padding_mask": padding_mask if padding_mask.any() else None, "mask": mask,
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": num_masked}
