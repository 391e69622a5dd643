"""Image inputs of ``data2vec extract``: image files -> batches at the model's input size (no random crop)."""

from __future__ import annotations

from typing import Iterator

import torch

from data2vec.modalities.image.dataset import augment, load_image

INPUT = "files"
BATCH_SIZE = 32


def extract_batches(cfg, encoder, inputs: list[str], batch_size: int | None = None,
                    tokenizer=None) -> Iterator[tuple[list[int], torch.Tensor, None]]:
    batch_size = batch_size or BATCH_SIZE
    for s in range(0, len(inputs), batch_size):
        idx = list(range(s, min(s + batch_size, len(inputs))))
        yield idx, torch.stack([augment(load_image(inputs[i], cfg.encoder.in_chans), cfg.data.augment, None)
                                for i in idx]), None
