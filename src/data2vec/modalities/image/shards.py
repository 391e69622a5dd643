"""Images as streaming shards (``data2vec shard``, ``data2vec.data.shards``): an ImageFolder's files written as
they are and decoded and augmented in the loader as ``ImageFolder`` does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from data2vec.data.sampler import rng
from data2vec.data.shards import sample_key
from data2vec.data.skips import UnreadableSample
from data2vec.modalities.image.dataset import AugmentConfig, ImageFolder, augment, load_image


def shard_source(cfg, out: Path, seed: int) -> tuple[Iterator, dict, list]:
    """(samples, index meta, skipped) of the training image folder of ``cfg.data.path``."""
    d = cfg.data
    folder = ImageFolder(Path(d.path) / d.train_subset, channels=3, augment_cfg=AugmentConfig(), seed=0,
                         max_pixels=d.max_image_pixels)
    print(folder.report.summary(), flush=True)
    meta = {"classes": folder.classes, "source": str(folder.root)}
    return _image_samples(folder, rng(seed, 21).permutation(len(folder))), meta, folder.report.skipped()


def _image_samples(folder, order: np.ndarray) -> Iterator[tuple[int, dict, int]]:
    for i in order.tolist():
        path, label = folder.files[i]
        ext = path.suffix.lstrip(".").lower()
        yield i, {ext: path.read_bytes(), "json": {"path": str(path.relative_to(folder.root)), "label": label,
                                                   "index": i}}, 1


@dataclass
class ImageDecoder:
    channels: int
    augment_cfg: object
    seed: int
    max_pixels: int

    def __call__(self, members: dict, entry: int, slot: int, epoch: int) -> dict:
        meta = json.loads(members["json"]) if "json" in members else {}
        name = meta.get("path", sample_key(entry))
        image = [k for k in members if k != "json"]
        if not image:
            raise UnreadableSample(name, "no image member in its shard")
        img = load_image(name, self.channels, self.max_pixels, data=members[image[0]])
        return {"id": slot, "epoch": epoch, "image": augment(img, self.augment_cfg, rng(self.seed, epoch, slot, 7)),
                "label": int(meta.get("label", 0))}
