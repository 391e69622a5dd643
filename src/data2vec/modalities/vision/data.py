"""Image pretraining data: ImageFolder -> fixed-size batches -> block masks in the collator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data2vec.data.images import AugmentConfig
from data2vec.data.sampler import PretrainData


@dataclass(kw_only=True)
class ImageDataConfig:
    path: str = ""  # directory with <train_subset>/<class>/<images> (e.g. from `data2vec prepare images`)
    train_subset: str = "train"
    batch_size: int = 128  # images per batch and process
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 2


def build_pretrain_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    from data2vec.data.images import ImageCollator, ImageFolder
    from data2vec.data.sampler import BucketBatchSampler, build_loader

    d: ImageDataConfig = cfg.data
    if not d.path:
        raise ValueError("no training data: pass --data DIR (a directory with train/<class>/<images>)")
    if d.augment.image_size != encoder.cfg.image_size:
        raise ValueError(f"data.augment.image_size={d.augment.image_size} differs from encoder.image_size="
                         f"{encoder.cfg.image_size}")
    dataset = ImageFolder(Path(d.path) / d.train_subset, channels=encoder.cfg.in_chans, augment_cfg=d.augment, seed=seed)
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=d.batch_size, seed=seed, num_replicas=dist.world_size,
                                 rank=dist.rank)
    collator = ImageCollator(cfg.masking, (encoder.cfg.grid, encoder.cfg.grid), seed)

    class Report:
        @staticmethod
        def summary() -> str:
            return (f"{dataset.root}: {len(dataset):,} images in {len(dataset.classes)} classes; "
                    f"{len(sampler):,} batches of {d.batch_size} per epoch and process")

    def make_loader(epoch: int, start_batch: int = 0):
        return build_loader(dataset, sampler, collator, num_workers=d.num_workers, epoch=epoch, start_batch=start_batch)

    return PretrainData(sampler, make_loader, Report(), len(dataset))
