"""Length-bucketed batching shared by the modalities (fairseq ``batch_by_size`` semantics).

Every random choice is drawn from a generator seeded by ``(seed, epoch, ...)``: the batches of an
epoch are the same in any process and after a resume, and the global RNG is never touched.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch


class PretrainData(NamedTuple):
    """What a modality's ``build_pretrain_data`` returns to the training loop."""

    sampler: Any
    make_loader: Callable  # (epoch, start_batch) -> iterable of batches (batch["skipped"]: data2vec.data.skips)
    report: Any  # .summary() -> str, printed before training; .skipped() -> [(file, reason)], if any were
    num_examples: int


def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


class BucketBatchSampler(torch.utils.data.Sampler):
    """fairseq ``batch_by_size``: sort by length, pack greedily so that ``len(batch) * longest <= max_tokens``.

    A single item longer than ``max_tokens`` gets a batch of its own. Items of equal length are shuffled first (ties broken per epoch), batches are shuffled per epoch.
    With ``num_replicas > 1`` every rank gets the same number of batches (the remainder is dropped)
    and rank r takes batches ``r, r + R, ...``, so update k on R ranks sees the same R batches as
    update k of one process with ``update_freq = R``.
    """

    def __init__(self, sizes, *, max_tokens: int, max_sentences: int | None = None, seed: int,
                 num_replicas: int = 1, rank: int = 0):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.max_tokens, self.max_sentences, self.seed = max_tokens, max_sentences, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self, epoch: int) -> list[list[int]]:
        order = rng(self.seed, epoch, 2).permutation(len(self.sizes))
        order = order[np.argsort(-self.sizes[order], kind="stable")]
        batches, cur, longest = [], [], 0
        for i in order:
            n = int(self.sizes[i])
            longest_new = max(longest, n)
            full = self.max_sentences is not None and len(cur) >= self.max_sentences
            if cur and (full or (len(cur) + 1) * longest_new > self.max_tokens):
                batches.append(cur)
                cur, longest_new = [], n
            cur.append(int(i))
            longest = longest_new
        if cur:
            batches.append(cur)
        return [batches[j] for j in rng(self.seed, epoch, 3).permutation(len(batches))]

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        b = self.all_batches(self.epoch if epoch is None else epoch)
        if self.num_replicas > 1:
            b = b[: len(b) - len(b) % self.num_replicas]
        return b[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class ListBatchSampler(torch.utils.data.Sampler):
    """A fixed list of batches (e.g. the rest of an epoch after a resume)."""

    def __init__(self, batches: list[list[int]]):
        self._batches = batches

    def __iter__(self):
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


def build_loader(dataset, sampler: BucketBatchSampler, collator, *, num_workers: int, epoch: int,
                 start_batch: int = 0) -> torch.utils.data.DataLoader:
    """The loader for one epoch, starting after ``start_batch`` batches (skipped without loading them).

    ``dataset`` must have ``set_epoch`` (it stamps the epoch on each sample for the collator's masks)."""
    dataset.set_epoch(epoch)
    sampler.set_epoch(epoch)
    batches = sampler.batches(epoch)[start_batch:]
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=ListBatchSampler(batches), collate_fn=collator, num_workers=num_workers,
        generator=torch.Generator().manual_seed(int(epoch)), persistent_workers=False,
        multiprocessing_context="fork" if num_workers > 0 else None)
