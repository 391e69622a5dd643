"""Per-sample random generators shared by every masker (fairseq's convention)."""

from __future__ import annotations

import numpy as np


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The per-sample generator seed fairseq uses: ``int(hash((seed, epoch, index)) % 1e6)``.
    Python's hash of a tuple of ints does not depend on PYTHONHASHSEED, so this is stable across
    processes: a sample's mask is the same in any worker, on any rank and after a resume."""
    return int(hash((int(seed), int(epoch), int(index))) % 1e6)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(sample_seed(seed, epoch, index))
