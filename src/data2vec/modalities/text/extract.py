"""Text inputs of ``data2vec extract``: lines -> ``<s> tokens </s>`` padded batches (padding is masked out of
attention, so a padded batch equals one line at a time)."""

from __future__ import annotations

from typing import Iterator

import torch

from data2vec.data.text import Tokenizer

INPUT = "lines"
BATCH_SIZE = 32


def extract_batches(cfg, encoder, inputs: list[str], batch_size: int | None = None,
                    tokenizer: str | None = None) -> Iterator[tuple[list[int], torch.Tensor, None]]:
    tdir = tokenizer or cfg.data.path
    if not tdir:
        raise ValueError("text model without a tokenizer: pass --tokenizer DIR (vocab.json + merges.txt)")
    tok, limit, batch_size = Tokenizer(tdir), cfg.encoder.max_positions, batch_size or BATCH_SIZE
    for s in range(0, len(inputs), batch_size):
        idx = list(range(s, min(s + batch_size, len(inputs))))
        ids = [[tok.bos] + tok.encode(inputs[i])[: limit - 2] + [tok.eos] for i in idx]
        x = torch.full((len(ids), max(map(len, ids))), tok.pad, dtype=torch.long)
        for b, row in enumerate(ids):
            x[b, : len(row)] = torch.tensor(row)
        yield idx, x, None  # the encoder derives the padding mask from the pad token
