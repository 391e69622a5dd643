"""Image classification on a data2vec image encoder (SPEC B.2): mean-pooled ``fc_norm`` head.
(``head.pool=flat``, our addition, keeps the layout: the head reads every normalised patch token.)

logits = head(fc_norm(mean over patches of the last block's output)) — BEiT's fine-tuning layout (the
pretraining final LayerNorm is not used). Layer-wise learning-rate decay (BEiT layer ids: embeddings
and shared position bias 0, block i -> i + 1, fc_norm and head depth + 1), label smoothing, drop path
(``encoder.drop_path_rate``), and a linear-probe mode (frozen encoder in eval mode, only
``fc_norm`` + ``head`` train). Implements the training-task interface of ``data2vec.train.loop.Trainer``.
Mixup / cutmix (timm semantics, batch mode: the batch is mixed with its reverse; cutmix's lambda is
corrected to the pasted box's true area; label smoothing is applied to the mixed soft targets).

data2vec 2.0 encoders follow fairseq ``mae_image_classification.py`` for a ``data2vec_multi`` checkpoint
(``prediction_mode: mean_pooling``): the mean of the patch tokens of the last block (the CLS / extra tokens
dropped) -> a new ``fc_norm`` (eps 1e-6) -> ``head`` (trunc-normal std 0.02); layer-wise lr decay over the
prenet blocks then the shared blocks only (n blocks: block i gets ``layer_decay ** (n - i)``, everything else
1); the default config zeroes the dropouts and layerdrop and sets drop path to fairseq's schedule for
``drop_path_rate`` 0.1 over the shared blocks (``encoder.start/end_drop_path_rate``; our v2 prenet has no drop
path, fairseq's goes up to ``dpr[prenet_depth - 1]``, 0.011 for ViT-B).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data2vec.core.data2vec import StepLoss
from data2vec.data.sampler import BucketBatchSampler, build_loader
from data2vec.data.skips import CollateWithSkips
from data2vec.finetune.loop import (
    FinetuneBase,
    FinetuneModel,
    eval_splits,
    label_subset,
    layer_decay_param_groups,
    with_num_classes,
)
from data2vec.modalities.base_v2 import is_v2
from data2vec.modalities.image import ImageEncoderConfig
from data2vec.modalities.image.dataset import AugmentConfig, ImageFolder
from data2vec.modalities.image.encoder_v2 import ImageEncoderV2Config
from data2vec.train.config import TrainConfig
from data2vec.train.optim import OptimConfig


@dataclass(kw_only=True)
class ImageHeadConfig:
    num_classes: int = 0  # 0 = the number of class folders in the data
    label_smoothing: float = 0.1
    layer_decay: float = 0.65  # lr of layer l = lr * layer_decay ** (depth + 1 - l); 1 = off
    linear_probe: bool = False  # freeze the encoder; train fc_norm + head only
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs (official v1 ViT-B: 0.8; 0 = off)
    cutmix: float = 0.0  # Beta(a, a) area of a pasted box (official: 1.0; 0 = off)
    mix_prob: float = 1.0  # probability of mixing a batch at all
    mix_switch_prob: float = 0.5  # with both on: probability of cutmix instead of mixup
    # "mean": fc_norm of the mean over the patch tokens (BEiT / fairseq / HF); "flat": fc_norm of each patch token,
    # all of them concatenated in grid order (grid**2 x embed_dim features: the head sees the layout, as a linear
    # probe on raw pixels does). Not in fairseq or HF: a model fine-tuned with "flat" cannot be exported to HF.
    pool: Literal["mean", "flat"] = "mean"


class ImageClassifier(FinetuneModel):
    log_keys = ("acc",)
    units_name = "examples"

    def __init__(self, encoder: nn.Module, cfg: ImageHeadConfig):
        super().__init__()
        if cfg.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {cfg.num_classes}")
        self.cfg = cfg
        self.encoder = encoder
        self.v2 = is_v2(encoder)
        C = encoder.embed_dim
        # an encoder in the fine-tuned layout (use_mean_pooling, e.g. imported from HF) brings its fc_norm;
        # a pretrained one gets a fresh one (its final LayerNorm is then unused, as in BEiT fine-tuning)
        own = getattr(encoder.context_encoder, "fc_norm", None) is None
        eps = 1e-6 if self.v2 else encoder.cfg.layer_norm_eps  # fairseq mae_image_classification: eps 1e-6
        self.fc_norm = nn.LayerNorm(C, eps=eps) if own else None
        if cfg.pool not in ("mean", "flat"):
            raise ValueError(f"head.pool must be 'mean' or 'flat', got {cfg.pool!r}")
        self.head = nn.Linear(C * (encoder.cfg.grid ** 2 if cfg.pool == "flat" else 1), cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02 if self.v2 else 2e-5)  # v1: BEiT init_scale 0.001
        nn.init.zeros_(self.head.bias)
        if cfg.linear_probe:
            encoder.requires_grad_(False)
            if self.fc_norm is None:
                encoder.context_encoder.fc_norm.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.linear_probe:
            self.encoder.eval()  # frozen features: no dropout / drop path
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.encoder(images)
        norm = self.fc_norm if self.fc_norm is not None else self.encoder.context_encoder.fc_norm
        # v1 (BEiT's fine-tuning layout) pools the last block before the pretraining final norm, v2 its final output
        patches = out.x[:, out.num_extra:] if self.v2 else out.layer_outputs[-1]
        if self.cfg.pool == "flat":
            return self.head(norm(patches).flatten(1))
        return self.head(norm(patches.mean(1)))

    # ---- training-task interface (the rest: FinetuneModel) ---------------------------------
    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        x, y = batch["source"], batch["labels"]
        targets = soft_targets(y, self.cfg.num_classes, self.cfg.label_smoothing)
        x, targets = mix_batch(x, targets, self.cfg)
        logits = wrapped(x).float()
        loss = -(targets * F.log_softmax(logits, dim=-1)).sum()
        acc = (logits.argmax(-1) == targets.argmax(-1)).float().mean().item()
        return StepLoss(loss, int(y.numel()), {"acc": acc})

    def optim_param_groups(self, weight_decay: float, no_decay_1d: bool) -> list[dict]:
        """AdamW groups with ``lr_scale`` for layer-wise decay and no weight decay on 1-D parameters."""
        return layer_decay_param_groups(self, weight_decay, no_decay_1d, self.cfg.layer_decay, head_keys=("fc_norm",),
                                        no_wd_keys=("token", "rel_pos"))  # fc_norm: ours or the encoder's


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot with label smoothing as in ``F.cross_entropy(label_smoothing=...)``: (1 - s) + s / K on the label."""
    off = smoothing / num_classes
    t = torch.full((labels.numel(), num_classes), off, device=labels.device)
    return t.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def mix_batch(x: torch.Tensor, targets: torch.Tensor, cfg: ImageHeadConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix of the batch with its reverse (global torch RNG, so it is restored on resume)."""
    use_mixup, use_cutmix = cfg.mixup > 0, cfg.cutmix > 0
    if not (use_mixup or use_cutmix) or torch.rand(()).item() >= cfg.mix_prob:
        return x, targets
    cut = use_cutmix and (not use_mixup or torch.rand(()).item() < cfg.mix_switch_prob)
    alpha = cfg.cutmix if cut else cfg.mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    flipped = x.flip(0)
    if cut:
        H, W = x.shape[-2:]
        rh, rw = int(H * (1 - lam) ** 0.5), int(W * (1 - lam) ** 0.5)
        cy, cx = int(torch.randint(H, ())), int(torch.randint(W, ()))
        y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, H)
        x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, W)
        x = x.clone()
        x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    else:
        x = lam * x + (1 - lam) * flipped
    return x, lam * targets + (1 - lam) * targets.flip(0)


@torch.no_grad()
def evaluate(model: ImageClassifier, loader, device: torch.device) -> dict:
    """Top-1 / top-5 accuracy and mean cross-entropy over a loader."""
    model.eval()
    n = top1 = top5 = 0
    nll = 0.0
    for batch in loader:
        x, y = batch["source"].to(device), batch["labels"].to(device)
        logits = model(x).float()
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.size(-1))
        topk = logits.topk(k, dim=-1).indices
        top1 += (topk[:, 0] == y).sum().item()
        top5 += (topk == y[:, None]).any(-1).sum().item()
        n += y.numel()
    return {"top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "loss": nll / max(n, 1), "examples": n}


# ---- the fine-tuning task (data2vec.finetune.loop) ------------------------------------------------
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
class ImageFinetuneConfig(FinetuneBase):
    task: Literal["image-classification"] = "image-classification"
    encoder: ImageEncoderConfig | ImageEncoderV2Config
    head: ImageHeadConfig = field(default_factory=ImageHeadConfig)
    data: ImageFinetuneDataConfig = field(default_factory=ImageFinetuneDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, adam_betas=(0.9, 0.999), adam_eps=1e-8, weight_decay=0.05, lr_scheduler="cosine",
        warmup_updates=20, min_lr=1e-6, clip_norm=3.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_update=300, log_interval=10,
                                                                   save_interval_updates=100))


def collate(samples: list[dict]) -> dict:
    labels = torch.tensor([s["label"] for s in samples])
    return {"source": torch.stack([s["image"] for s in samples]), "labels": labels,
            "indices": torch.tensor([s["id"] for s in samples])}


class ImageFinetuneData:
    def __init__(self, cfg: ImageFinetuneConfig, dist, seed: int):
        d = cfg.data
        root = Path(d.path)
        if not d.path or not (root / d.train_subset).is_dir():
            raise ValueError(f"--data must be a directory with {d.train_subset}/<class>/<images> "
                             "(e.g. `data2vec prepare images --out DIR`)")
        c = cfg.encoder.in_chans
        # an image that fails only when decoded is replaced by the next readable one (named in batch['skipped'])
        self.train = ImageFolder(root / d.train_subset, channels=c, augment_cfg=d.augment, seed=seed, train=True,
                                 skip_unreadable=True, keep=lambda labels: label_subset(labels, d.label_fraction, seed))
        self.label_fraction = d.label_fraction
        self.sets = {name: ImageFolder(root / sub, channels=c, augment_cfg=d.augment, seed=seed, train=False)
                     for name, sub in eval_splits(cfg, d) if (root / sub).is_dir()}
        for name, s in self.sets.items():
            if s.classes != self.train.classes:
                raise ValueError(f"{name} classes {s.classes} differ from train classes {self.train.classes}")
        self.sampler = BucketBatchSampler(self.train.sizes, max_tokens=d.batch_size, seed=seed,
                                          num_replicas=dist.world_size, rank=dist.rank)
        self.num_workers = d.num_workers
        self.batch_size = d.batch_size

    def describe(self) -> str:
        text = (f"{len(self.train):,} labelled training images ({self.label_fraction:g} of the labels), "
                f"{len(self.train.classes)} classes")
        for name, ds in [("train", self.train), *self.sets.items()]:
            if ds.report.dropped:  # files whose header failed the check: left out, and said so
                shown = "; ".join(f"{p} ({r})" for p, r in ds.report.dropped[:5])
                more = f" and {len(ds.report.dropped) - 5} more" if len(ds.report.dropped) > 5 else ""
                text += f"\n  {name}: left out {len(ds.report.dropped)} unusable image(s): {shown}{more}"
        return text

    def make_loader(self, epoch: int, start_batch: int = 0):
        return build_loader(self.train, self.sampler, CollateWithSkips(collate), num_workers=self.num_workers,
                            epoch=epoch,
                            start_batch=start_batch)

    def eval_loader(self, name: str):
        return torch.utils.data.DataLoader(self.sets[name], batch_size=self.batch_size, collate_fn=collate,
                                           num_workers=self.num_workers)


def finetune_encoder_v2(enc: ImageEncoderV2Config, drop_path_rate: float = 0.1) -> ImageEncoderV2Config:
    """fairseq ``MaeImageClassificationConfig`` overrides of a ``data2vec_multi`` encoder: every dropout and
    layerdrop 0, and drop path ``linspace(0, drop_path_rate, depth)`` of which the shared blocks take
    ``dpr[prenet_depth]`` .. ``dpr[-1]``."""
    dpr = np.linspace(0, drop_path_rate, enc.depth)
    return replace(enc, encoder_dropout=0.0, post_mlp_drop=0.0, attention_dropout=0.0, activation_dropout=0.0,
                   dropout_input=0.0, layerdrop=0.0, prenet_layerdrop=0.0, prenet_dropout=0.0,
                   start_drop_path_rate=float(dpr[min(enc.prenet_depth, enc.depth - 1)]),
                   end_drop_path_rate=float(dpr[-1]))


class _ImageTask:
    name = "image-classification"
    modality = "image"
    config_cls = ImageFinetuneConfig
    metric = "top1"
    higher_is_better = True

    @staticmethod
    def default_config(src, init: str) -> ImageFinetuneConfig:
        # fairseq's v2 recipe zeroes the pretraining dropouts and sets drop path; v1 (BEiT) keeps the encoder's
        enc = finetune_encoder_v2(src.encoder) if is_v2(src.encoder) else src.encoder
        return ImageFinetuneConfig(init=init, encoder=enc, data=ImageFinetuneDataConfig(augment=src.data.augment))

    build_data = ImageFinetuneData

    @staticmethod
    def complete_config(cfg, data: ImageFinetuneData):
        return with_num_classes(cfg, len(data.train.classes))

    @staticmethod
    def build_model(cfg, encoder, data) -> ImageClassifier:
        return ImageClassifier(encoder, cfg.head)

    @staticmethod
    def evaluate(model, loader, device, cfg) -> dict:
        return evaluate(model, loader, device)

    @staticmethod
    def eval_data(cfg: ImageFinetuneConfig, data_dir: str, subset: str):
        """Loader over DIR/<subset>/<class>/<images> (``data2vec evaluate``); classes as in training."""
        root = Path(data_dir) / subset
        if not root.is_dir():
            raise FileNotFoundError(f"{root} not found (--data DIR --subset NAME reads DIR/NAME/<class>/...)")
        ds = ImageFolder(root, channels=cfg.encoder.in_chans, augment_cfg=cfg.data.augment, seed=0, train=False)
        if len(ds.classes) != cfg.head.num_classes:
            raise ValueError(f"{root} has {len(ds.classes)} classes, the model {cfg.head.num_classes}")
        return torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, collate_fn=collate)


TASK = _ImageTask()
