"""Speech inputs of ``data2vec extract``: audio files -> padded batches, similar lengths together."""

from __future__ import annotations

from typing import Iterator

import torch

from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.modalities.audio.dataset import audio_files
from data2vec.modalities.base_v2 import is_v2

INPUT = "files"
BATCH_SIZE = 8


def batches_padded(encoder) -> bool:
    """Whether a padded batch gives every clip its unpadded output: data2vec 2.0 with the layer-norm CNN or the
    log-mel front end (its positional conv zeroes padded frames before every layer); v1's stacked positional conv
    sees the padding."""
    return is_v2(encoder) and encoder.cfg.extractor_mode in ("layer_norm", "log_mel")


def extract_batches(cfg, encoder, inputs: list[str], batch_size: int | None = None,
                    tokenizer=None) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor | None]]:
    """(input indices, source [B, S], padding mask or None) per batch; one clip per batch where padding would
    change the numbers."""
    ds = audio_files(inputs, sample_rate=cfg.data.sample_rate, normalize=cfg.data.normalize)
    batch_size = (batch_size or BATCH_SIZE) if batches_padded(encoder) else 1
    clips = [ds[i]["source"] for i in range(len(inputs))]
    order = sorted(range(len(clips)), key=lambda i: -clips[i].numel())  # similar lengths: little padding
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        lengths = torch.tensor([clips[i].numel() for i in idx])
        x = torch.zeros(len(idx), int(lengths.max()))
        for b, i in enumerate(idx):
            x[b, : lengths[b]] = clips[i]
        pad = lengths_to_padding_mask(lengths, x.size(1))
        yield idx, x, pad if bool(pad.any()) else None
