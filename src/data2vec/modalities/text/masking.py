"""Token masking for text (fairseq ``MaskTokensDataset`` semantics, per sample, drawn in the collator).

For a sequence of ``n`` maskable tokens: ``int(mask_prob * n / L + u)`` span starts (``u ~ U[0, 1)``,
probabilistic rounding) are drawn without replacement, each span covers ``L = mask_multiple_length``
tokens and is cut at the end. Of the selected tokens, ``random_token_prob`` become a random token and
``leave_unmasked_prob`` keep their id; the rest become ``<mask>``. As in fairseq's data2vec text model,
the regressed positions are those holding ``<mask>`` (BERT style is ``mask_prob 0.15, 0.1, 0.1``; the
shipped data2vec config is spans: ``0.35, L = 4, 0, 0``).

The generator is ``np.random.default_rng(hash((seed, epoch, index)) % 1e6)`` with fairseq's order of
draws. Deliberate deviation: fairseq draws over the whole sequence, so spans can cover ``<s>`` and
``</s>``; by default we draw over the non-special tokens only (``mask_special_tokens: false``), which
is fairseq's algorithm applied to the sentence between them. ``mask_special_tokens: true`` reproduces
fairseq's masks exactly (the parity test checks it). Padding is never masked (masks are drawn per
sample, before padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data2vec.core.rng import sample_rng


@dataclass(kw_only=True)
class TokenMaskConfig:
    mask_prob: float = 0.35  # fraction of tokens selected (in expectation)
    mask_multiple_length: int = 4  # span length L
    leave_unmasked_prob: float = 0.0  # of the selected: keep the original token
    random_token_prob: float = 0.0  # of the selected: replace with a random non-special token
    mask_special_tokens: bool = False  # True = fairseq (spans may cover <s> and </s>)

    def __post_init__(self):
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_multiple_length < 1:
            raise ValueError(f"mask_multiple_length must be >= 1, got {self.mask_multiple_length}")
        if min(self.leave_unmasked_prob, self.random_token_prob) < 0 or \
                self.leave_unmasked_prob + self.random_token_prob > 1:
            raise ValueError("leave_unmasked_prob and random_token_prob must be >= 0 and sum to at most 1")


def mask_tokens(tokens: np.ndarray, cfg: TokenMaskConfig, *, seed: int, epoch: int, index: int, mask_idx: int,
                special_ids: set[int] | frozenset[int], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt one sequence. Returns (student tokens, regressed positions as a bool array)."""
    tokens = np.asarray(tokens)
    if mask_idx in tokens:
        raise ValueError(f"the sequence already contains the mask id {mask_idx}")
    rng = sample_rng(seed, epoch, index)
    if cfg.mask_special_tokens:
        where = np.arange(len(tokens))
    else:
        where = np.flatnonzero(~np.isin(tokens, list(special_ids)))
    sz = len(where)
    sel = np.zeros(sz, dtype=bool)
    L = cfg.mask_multiple_length
    num = int(cfg.mask_prob * sz / float(L) + rng.random())
    starts = rng.choice(sz, num, replace=False)
    idc = np.concatenate([starts + i for i in range(L)])
    sel[idc[idc < sz]] = True

    mask = sel
    rand = None
    p = cfg.random_token_prob + cfg.leave_unmasked_prob
    if p > 0:
        rand_or_unmask = sel & (rng.random(sz) < p)
        if cfg.random_token_prob == 0:
            unmask = rand_or_unmask
        elif cfg.leave_unmasked_prob == 0:
            unmask, rand = None, rand_or_unmask
        else:
            decision = rng.random(sz) < cfg.leave_unmasked_prob / p
            unmask, rand = rand_or_unmask & decision, rand_or_unmask & ~decision
        if unmask is not None:
            mask = sel ^ unmask
    out = tokens.copy()
    sub = out[where]
    sub[mask] = mask_idx
    if rand is not None and rand.any():
        weights = np.ones(vocab_size)
        weights[list(special_ids | {mask_idx})] = 0
        sub[rand] = rng.choice(vocab_size, int(rand.sum()), p=weights / weights.sum())
    out[where] = sub
    full_mask = np.zeros(len(tokens), dtype=bool)
    regressed = mask & ~rand if rand is not None else mask  # fairseq regresses the <mask> positions only
    full_mask[where[regressed]] = True
    return out, full_mask
