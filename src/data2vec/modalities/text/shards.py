"""Text as streaming shards (``data2vec shard``, ``data2vec.data.shards``): a prepared corpus's blocks written as
token arrays (the tokenizer files copied beside them)."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from data2vec.data.sampler import rng
from data2vec.data.shards import sample_key
from data2vec.data.skips import UnreadableSample
from data2vec.data.text import TextBlockDataset, Tokenizer, read_corpus_info
from data2vec.errors import Data2VecError


def shard_source(cfg, out: Path, seed: int) -> tuple[Iterator, dict, list]:
    """(samples, index meta, skipped) of the prepared training corpus of ``cfg.data.path``; copies the
    tokenizer files and ``corpus.json`` to ``out``."""
    d = cfg.data
    src = Path(d.path)
    npz = src / f"{d.train_subset}.npz"
    if not npz.is_file():
        raise Data2VecError(f"{npz} not found: --data must be a directory made by `data2vec prepare text`")
    tok = Tokenizer(src)
    dataset = TextBlockDataset(npz, tokens_per_sample=d.tokens_per_sample, break_mode=d.break_mode,
                               bos=tok.bos, vocab_size=tok.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt", "dict.txt", "corpus.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    meta = {"tokens_per_sample": d.tokens_per_sample, "break_mode": d.break_mode, "source": str(npz)}
    skipped = [tuple(x) for x in read_corpus_info(src).get("skipped", [])]
    return _text_samples(dataset, rng(seed, 21).permutation(len(dataset))), meta, skipped


def _text_samples(dataset, order: np.ndarray) -> Iterator[tuple[int, dict, int]]:
    for i in order.tolist():
        buf = io.BytesIO()
        np.save(buf, dataset[i]["tokens"].astype(np.int32))
        yield i, {"npy": buf.getvalue(), "json": {"index": i}}, int(dataset.sizes[i])


@dataclass
class TextDecoder:
    vocab_size: int

    def __call__(self, members: dict, entry: int, slot: int, epoch: int) -> dict:
        try:
            toks = np.load(io.BytesIO(members["npy"]), allow_pickle=False).astype(np.int64)
        except (KeyError, ValueError, OSError, EOFError) as e:
            raise UnreadableSample(sample_key(entry), f"unreadable tokens: {type(e).__name__}") from None
        if toks.ndim != 1 or not len(toks) or toks.min() < 0 or toks.max() >= self.vocab_size:
            raise UnreadableSample(sample_key(entry), "token ids outside the vocabulary")
        return {"id": slot, "epoch": epoch, "tokens": toks}


# ---------------------------------------------------------------------------------------------- glue
