"""Fine-tuning on labelled data with the same training loop as pretraining (``Trainer``).

    data2vec finetune image-classification --init runs/demo-image-tiny-v1/checkpoint_last.pt \\
        --data data/images --out runs/ft-image [--set data.label_fraction=0.01]
    data2vec finetune image-classification --preset image-tiny-v1 --data data/images --out runs/ft-scratch

``--init`` takes any format ``data2vec convert`` reads (its encoder config comes along); without it
the encoder of ``--preset`` starts from random weights (the from-scratch baseline). Validation every
``eval_interval`` updates and at the end; the best validation top-1 is kept as ``checkpoint_best.pt``
and evaluated on the test split into ``metrics.json``. Resume, DDP, logs and plots as for pretraining.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from data2vec.config import to_dict
from data2vec.data.images import AugmentConfig, ImageFolder
from data2vec.finetune.image import ImageClassifier, ImageHeadConfig, evaluate
from data2vec.modalities.vision import VisionEncoder, VisionEncoderConfig
from data2vec.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from data2vec.train.config import TrainConfig
from data2vec.train.distributed import cleanup, init_distributed
from data2vec.train.loop import Trainer, _StopFlag, batch_stream, seed_everything
from data2vec.train.optim import OptimConfig
from data2vec.train.run_log import RunLog


@dataclass(kw_only=True)
class ImageFinetuneDataConfig:
    path: str = ""  # DIR with train/valid/test/<class>/<images>
    train_subset: str = "train"
    valid_subset: str = "valid"
    test_subset: str = "test"
    label_fraction: float = 1.0  # fraction of the training labels used (per class, seeded)
    batch_size: int = 128
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 1


@dataclass(kw_only=True)
class FinetuneConfig:
    task: Literal["image-classification"] = "image-classification"
    init: str = ""  # pretrained weights ("" = random initialisation)
    encoder: VisionEncoderConfig
    head: ImageHeadConfig = field(default_factory=ImageHeadConfig)
    data: ImageFinetuneDataConfig = field(default_factory=ImageFinetuneDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, adam_betas=(0.9, 0.999), adam_eps=1e-8, weight_decay=0.05, lr_scheduler="cosine",
        warmup_updates=20, min_lr=1e-6, clip_norm=3.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_update=300, log_interval=10,
                                                                   save_interval_updates=100))
    eval_interval: int = 100  # updates between validations (and at the end)


def finetune_config_from_dict(d: dict) -> FinetuneConfig:
    from data2vec.config import from_dict

    return from_dict(FinetuneConfig, d)


def _subset_labels(ds: ImageFolder, fraction: float, seed: int) -> None:
    """Keep ``fraction`` of each class (at least one image per class), chosen with a seeded permutation."""
    if fraction >= 1.0:
        return
    if fraction <= 0:
        raise ValueError(f"data.label_fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 11])
    labels = np.array([c for _, c in ds.files])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += sorted(rng.permutation(idx)[: max(1, int(round(len(idx) * fraction)))].tolist())
    ds.files = [ds.files[i] for i in sorted(keep)]
    ds.sizes = np.ones(len(ds.files), dtype=np.int64)


def collate(samples: list[dict]) -> dict:
    labels = torch.tensor([s["label"] for s in samples])
    return {"source": torch.stack([s["image"] for s in samples]), "labels": labels,
            "indices": torch.tensor([s["id"] for s in samples])}


class _Data:
    def __init__(self, cfg: FinetuneConfig, dist, seed: int):
        from data2vec.data.sampler import BucketBatchSampler

        d = cfg.data
        root = Path(d.path)
        if not d.path or not (root / d.train_subset).is_dir():
            raise ValueError(f"--data must be a directory with {d.train_subset}/<class>/<images> "
                             "(e.g. `data2vec prepare images --out DIR`)")
        c = cfg.encoder.in_chans
        self.train = ImageFolder(root / d.train_subset, channels=c, augment_cfg=d.augment, seed=seed, train=True)
        _subset_labels(self.train, d.label_fraction, seed)
        self.sets = {name: ImageFolder(root / sub, channels=c, augment_cfg=d.augment, seed=seed, train=False)
                     for name, sub in (("valid", d.valid_subset), ("test", d.test_subset)) if (root / sub).is_dir()}
        for name, s in self.sets.items():
            if s.classes != self.train.classes:
                raise ValueError(f"{name} classes {s.classes} differ from train classes {self.train.classes}")
        self.sampler = BucketBatchSampler(self.train.sizes, max_tokens=d.batch_size, seed=seed,
                                          num_replicas=dist.world_size, rank=dist.rank)
        self.num_workers = d.num_workers
        self.batch_size = d.batch_size

    def make_loader(self, epoch: int, start_batch: int = 0):
        from data2vec.data.sampler import build_loader

        return build_loader(self.train, self.sampler, collate, num_workers=self.num_workers, epoch=epoch,
                            start_batch=start_batch)

    def eval_loader(self, name: str):
        return torch.utils.data.DataLoader(self.sets[name], batch_size=self.batch_size, collate_fn=collate,
                                           num_workers=self.num_workers)


def finetune(cfg: FinetuneConfig, out_dir: str | Path, *, resume: bool = False) -> dict:
    run_dir = Path(out_dir)
    last_path, best_path = run_dir / "checkpoint_last.pt", run_dir / "checkpoint_best.pt"
    if last_path.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    dist_info = init_distributed(cfg.train.device)
    try:
        return _finetune(cfg, run_dir, last_path, best_path, resume and last_path.exists(), dist_info)
    finally:
        cleanup()


def _finetune(cfg, run_dir, last_path, best_path, resume, dist_info) -> dict:
    main = dist_info.is_main
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    data = _Data(cfg, dist_info, cfg.train.seed)
    if cfg.head.num_classes == 0:
        from data2vec.config import merge

        cfg = merge(cfg, {"head": {"num_classes": len(data.train.classes)}})
    encoder = VisionEncoder(cfg.encoder)
    if cfg.init and not resume:
        from data2vec.convert.keys import load_into
        from data2vec.pretrained import load_pretrained

        load_into(encoder, load_pretrained(cfg.init)[1].student.encoder.state_dict())
    model = ImageClassifier(encoder, cfg.head).to(dist_info.device)
    trainer = Trainer(cfg, model, dist_info)
    best = {"top1": -1.0, "step": 0}
    if resume:
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        trainer.optimizer.load_state_dict(ck["optimizer"])
        trainer.step, trainer.epoch, trainer.batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        best = ck["best"]
        set_rng_state(ck["rng"][0])
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{cfg.task}: {len(data.train):,} labelled training images ({cfg.data.label_fraction:g} of the labels), "
              f"{len(data.train.classes)} classes; {n / 1e6:.2f} M trainable parameters; "
              f"{'from ' + cfg.init if cfg.init else 'random initialisation'}", flush=True)
    log = RunLog(run_dir, cfg.train.max_update, trainer.step, enabled=main)

    def state() -> dict:
        return {"config": to_dict(cfg), "model": model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                "step": trainer.step, "epoch": trainer.epoch, "batch_in_epoch": trainer.batch_in_epoch,
                "best": best, "rng": [rng_state()], "world_size": dist_info.world_size}

    stream = batch_stream(data, trainer.epoch, trainer.batch_in_epoch)
    t = cfg.train
    with _StopFlag() as stop:
        while trainer.step < t.max_update and not stop.requested:
            micro = []
            for _ in range(t.update_freq):
                trainer.epoch, trainer.batch_in_epoch, b = next(stream)
                micro.append(b)
            rec = trainer.train_update(micro)
            log.advance()
            if trainer.step % t.log_interval == 0:
                log.log(trainer.step, rec)
            done = trainer.step == t.max_update
            if "valid" in data.sets and (trainer.step % cfg.eval_interval == 0 or done):
                v = evaluate(model, data.eval_loader("valid"), dist_info.device)
                if main:
                    log.log(trainer.step, {"valid_loss": v["loss"], "valid_top1": v["top1"], "valid_top5": v["top5"]})
                if v["top1"] > best["top1"]:
                    best = {"top1": v["top1"], "top5": v["top5"], "step": trainer.step}
                    if main:
                        save_checkpoint(best_path, {"config": to_dict(cfg), "model": model.state_dict(), "best": best})
            if main and (trainer.step % t.save_interval_updates == 0 or done):
                save_checkpoint(last_path, state())
    if stop.requested:
        if main:
            save_checkpoint(last_path, state())
            print(f"stopped at update {trainer.step}; rerun with --resume", flush=True)
        return {"status": "interrupted", "steps": trainer.step}
    summary = {"status": "done", "steps": trainer.step, "best_valid": best}
    if best_path.exists() and "test" in data.sets:
        model.load_state_dict(load_checkpoint(best_path)["model"])
        summary["test"] = evaluate(model, data.eval_loader("test"), dist_info.device)
    if main:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.finish({k: v for k, v in summary.items() if not isinstance(v, dict)} | {
        "best_valid_top1": best["top1"], "test_top1": summary.get("test", {}).get("top1")})
    return summary
