"""Speech as streaming shards (``data2vec shard``, ``data2vec.data.shards``): a manifest's clips written as
they are (the file bytes) and decoded, cropped and normalised in the loader as ``AudioDataset`` does."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from data2vec.data.sampler import rng
from data2vec.data.shards import sample_key
from data2vec.data.skips import UnreadableSample
from data2vec.errors import Data2VecError
from data2vec.modalities.audio.dataset import _crop_start, decode_clip, read_manifest, validate_manifest


def shard_source(cfg, out: Path, seed: int) -> tuple[Iterator, dict, list]:
    """(samples, index meta, skipped) of the training manifest of ``cfg.data.path``."""
    d = cfg.data
    manifest_path = Path(d.path) / f"{d.train_subset}.tsv"
    if not manifest_path.is_file():
        raise Data2VecError(f"{manifest_path} not found: --data must be a directory holding {d.train_subset}.tsv")
    manifest, report = validate_manifest(read_manifest(manifest_path), sample_rate=d.sample_rate,
                                         min_samples=d.min_sample_size)
    print(report.summary(), flush=True)
    meta = {"sample_rate": d.sample_rate, "min_sample_size": d.min_sample_size, "source": str(manifest_path)}
    return _audio_samples(manifest, rng(seed, 21).permutation(len(manifest))), meta, report.skipped()


def _audio_samples(manifest, order: np.ndarray) -> Iterator[tuple[int, dict, int]]:
    for i in order.tolist():
        rel, size = manifest.paths[i], manifest.sizes[i]
        path = manifest.root / rel
        ext = (path.suffix.lstrip(".").lower() or "wav")
        yield i, {ext: path.read_bytes(), "json": {"path": rel, "size": size, "index": i}}, size


@dataclass
class AudioDecoder:
    sample_rate: int
    min_sample_size: int
    max_sample_size: int
    normalize: bool
    seed: int
    sizes: np.ndarray  # effective (cropped) lengths

    def __call__(self, members: dict, entry: int, slot: int, epoch: int) -> dict:
        meta = json.loads(members["json"]) if "json" in members else {}
        name = meta.get("path", sample_key(entry))
        audio = [k for k in members if k != "json"]
        if not audio:
            raise UnreadableSample(name, "no audio member in its shard")
        x_S = torch.from_numpy(decode_clip(io.BytesIO(members[audio[0]]), name, sample_rate=self.sample_rate,
                                           min_sample_size=self.min_sample_size))
        if self.normalize:
            x_S = F.layer_norm(x_S, x_S.shape)
        start = _crop_start(x_S.numel(), self.max_sample_size, self.seed, epoch, slot)
        x_S = x_S[start:start + self.max_sample_size]
        if entry != slot:
            x_S = x_S[: int(self.sizes[slot])]
        return {"id": slot, "epoch": epoch, "source": x_S}
