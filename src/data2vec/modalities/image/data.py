"""Image pretraining data: ImageFolder -> fixed-size batches -> block masks in the collator.

Files whose header is bad (empty, not an image, more than ``max_image_pixels``) are dropped and reported
before training; an image that fails when decoded (truncated) is replaced by the next one and named in
``batch["skipped"]`` (``data2vec.data.skips``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data2vec.data.sampler import BucketBatchSampler, PretrainData, build_loader
from data2vec.data.shards import build_shard_data, is_shard_dir, load_index
from data2vec.data.skips import CollateWithSkips
from data2vec.errors import Data2VecError
from data2vec.modalities.image.dataset import MAX_IMAGE_PIXELS, AugmentConfig, ImageCollator, ImageFolder
from data2vec.modalities.image.shards import ImageDecoder


@dataclass(kw_only=True)
class ImageDataConfig:
    path: str = ""  # directory with <train_subset>/<class>/<images> (e.g. from `data2vec prepare images`), or shards
    train_subset: str = "train"
    batch_size: int = 128  # images per batch and process
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 2
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images (width x height) are skipped, never decoded


def build_pretrain_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    d: ImageDataConfig = cfg.data
    if not d.path:
        raise ValueError("no training data: pass --data DIR (a directory with train/<class>/<images>)")
    if d.augment.image_size != encoder.cfg.image_size:
        raise ValueError(f"data.augment.image_size={d.augment.image_size} differs from encoder.image_size="
                         f"{encoder.cfg.image_size}")
    if d.max_image_pixels < 1:
        raise Data2VecError(f"data.max_image_pixels must be >= 1, got {d.max_image_pixels}")
    if is_shard_dir(d.path):
        return _build_shard_data(cfg, encoder, dist, seed=seed)
    dataset = ImageFolder(Path(d.path) / d.train_subset, channels=encoder.cfg.in_chans, augment_cfg=d.augment,
                          seed=seed, max_pixels=d.max_image_pixels, skip_unreadable=True)
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=d.batch_size, seed=seed, num_replicas=dist.world_size,
                                 rank=dist.rank)
    collator = CollateWithSkips(ImageCollator(cfg.masking, (encoder.cfg.grid, encoder.cfg.grid), seed))

    class Report:
        @staticmethod
        def skipped() -> list[tuple[str, str]]:
            return dataset.report.skipped()

        @staticmethod
        def summary() -> str:
            dropped = "\n".join(dataset.report.summary().splitlines()[1:])
            return (f"{dataset.root}: {len(dataset):,} images in {len(dataset.classes)} classes; "
                    f"{len(sampler):,} batches of {d.batch_size} per epoch and process"
                    + (f"\n{dropped}" if dropped else ""))

    def make_loader(epoch: int, start_batch: int = 0):
        return build_loader(dataset, sampler, collator, num_workers=d.num_workers, epoch=epoch, start_batch=start_batch)

    return PretrainData(sampler, make_loader, Report(), len(dataset))


def _build_shard_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    """Streaming from ``data2vec shard`` output (``data2vec.data.shards``): the same images, crops and masks."""
    d: ImageDataConfig = cfg.data
    index = load_index(d.path, "image")
    decode = ImageDecoder(encoder.cfg.in_chans, d.augment, seed, d.max_image_pixels)
    collator = CollateWithSkips(ImageCollator(cfg.masking, (encoder.cfg.grid, encoder.cfg.grid), seed))
    return build_shard_data(index, decode=decode, collate=collator, sizes=np.ones(len(index), dtype=np.int64),
                            seed=seed, dist=dist, num_workers=d.num_workers, max_tokens=d.batch_size,
                            max_sentences=None)
