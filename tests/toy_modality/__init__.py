"""A fourth modality that lives only in the test tree: 3-channel sensor signals (``[T, 3]`` float arrays, one
``.npy`` per sample; the class is the frequency band of the signal).

It proves the modality interface (docs/architecture.md): registering its ``ModalitySpec`` and its fine-tuning
task is all it takes to pretrain, fine-tune, extract and convert it with the package's own code, unchanged.

    register(monkeypatch)   # MODALITIES["sensor"] and TASKS["sensor-classification"], for one test
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data2vec.data.sampler import BucketBatchSampler, PretrainData, build_loader, rng
from data2vec.errors import Data2VecError
from data2vec.finetune.loop import FinetuneBase, FinetuneModel
from data2vec.layers.transformer import ContextOutput, Embedded, PostLNBlock, init_bert_params, run_layers
from data2vec.modalities import ModalitySpec
from data2vec.train.config import TrainConfig
from data2vec.train.optim import OptimConfig
from data2vec.train.task import StepLoss

NAME, TASK_NAME = "sensor", "sensor-classification"


# ---- encoder ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SensorEncoderConfig:
    channels: int = 3
    max_len: int = 64
    embed_dim: int = 32
    depth: int = 2
    num_heads: int = 2
    ffn_dim: int = 64
    dropout: float = 0.0


class SensorContextEncoder(nn.Module):
    def __init__(self, cfg: SensorEncoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(PostLNBlock(cfg.embed_dim, cfg.ffn_dim, cfg.num_heads, dropout=cfg.dropout)
                                    for _ in range(cfg.depth))

    def forward(self, x, padding_mask=None) -> ContextOutput:
        return ContextOutput(*run_layers(self.layers, x, padding_mask, 0.0, self.training))


class SensorEncoder(nn.Module):
    """Linear projection of each time step + learned positions; masked steps get a learned embedding."""

    def __init__(self, cfg: SensorEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.channels, cfg.embed_dim)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.embed_dim))
        self.mask_emb = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.context_encoder = SensorContextEncoder(cfg)
        self.apply(init_bert_params)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_emb, std=0.02)

    embed_dim = property(lambda self: self.cfg.embed_dim)
    num_layers = property(lambda self: self.cfg.depth)

    def ema_copy_keys(self, transformer_only: bool) -> set[str]:
        return set()  # the teacher is an EMA of the context encoder; the projection is shared

    def embed(self, source, padding_mask=None, mask=None) -> Embedded:
        unmasked = self.proj(source) + self.pos[: source.size(1)]
        x = unmasked if mask is None else torch.where(mask[..., None], self.mask_emb.to(unmasked.dtype), unmasked)
        return Embedded(x, unmasked, padding_mask)


# ---- data: one .npy [T, channels] per sample under DIR/<split>/<class>/ --------------------------------------
@dataclass(kw_only=True)
class SensorMaskConfig:
    mask_prob: float = 0.5


@dataclass(kw_only=True)
class SensorDataConfig:
    path: str = ""
    train_subset: str = "train"
    batch_size: int = 16
    num_workers: int = 0


def write_corpus(root: Path, n: int, length: int = 32, seed: int = 0) -> Path:
    """Two classes: slow and fast sine waves with random phase and noise, on 3 channels."""
    g = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    for split, count in (("train", n), ("valid", n // 4), ("test", n // 4)):
        for i in range(count):
            label = i % 2
            freq = (0.05 if label == 0 else 0.2) * g.uniform(0.8, 1.2, size=3)
            x = np.sin(2 * np.pi * freq * t + g.uniform(0, 6.3, size=3)) + 0.1 * g.standard_normal((length, 3))
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
            np.save(root / split / str(label) / f"{i}.npy", x.astype(np.float32))
    return root


class SensorFiles(torch.utils.data.Dataset):
    def __init__(self, root: Path):
        self.files = sorted((p, int(p.parent.name)) for p in Path(root).glob("*/*.npy"))
        if not self.files:
            raise Data2VecError(f"{root}: no <class>/*.npy files")
        self.sizes = np.ones(len(self.files), dtype=np.int64)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path, label = self.files[i]
        return {"id": i, "epoch": self.epoch, "source": torch.from_numpy(np.load(path)), "label": label}


@dataclass
class SensorCollator:
    mask_cfg: SensorMaskConfig
    seed: int

    def __call__(self, samples: list[dict]) -> dict:
        source = torch.stack([s["source"] for s in samples])
        T = source.size(1)
        k = max(1, int(round(self.mask_cfg.mask_prob * T)))
        mask = torch.zeros(len(samples), T, dtype=torch.bool)
        for b, s in enumerate(samples):  # seeded by (seed, epoch, sample): the same masks after a resume
            mask[b, torch.from_numpy(rng(self.seed, s["epoch"], s["id"]).permutation(T)[:k])] = True
        return {"source": source, "padding_mask": None, "mask": mask, "num_masked": int(mask.sum()),
                "labels": torch.tensor([s["label"] for s in samples]),
                "indices": torch.tensor([s["id"] for s in samples])}


class _NoSkips:
    @staticmethod
    def summary() -> str:
        return "sensor corpus"

    @staticmethod
    def skipped() -> list:
        return []


def build_pretrain_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    ds = SensorFiles(Path(cfg.data.path) / cfg.data.train_subset)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=cfg.data.batch_size, seed=seed, num_replicas=dist.world_size,
                                 rank=dist.rank)
    collator = SensorCollator(cfg.masking, seed)

    def make_loader(epoch: int, start_batch: int = 0):
        return build_loader(ds, sampler, collator, num_workers=cfg.data.num_workers, epoch=epoch,
                            start_batch=start_batch)

    return PretrainData(sampler, make_loader, _NoSkips(), len(ds))


def shard_source(cfg, out, seed):
    raise Data2VecError("the sensor modality has no streaming shards")


def extract_batches(cfg, encoder, inputs: list[str], batch_size=None, tokenizer=None):
    for s in range(0, len(inputs), batch_size or 8):
        idx = list(range(s, min(s + (batch_size or 8), len(inputs))))
        yield idx, torch.stack([torch.from_numpy(np.load(inputs[i])) for i in idx]), None


def spec() -> ModalitySpec:
    return ModalitySpec(name=NAME, encoder_config=SensorEncoderConfig, mask_config=SensorMaskConfig,
                        data_config=SensorDataConfig, build_encoder=SensorEncoder,
                        build_pretrain_data=build_pretrain_data, shard_source=shard_source,
                        extract_batches=extract_batches, extract_input="files")


# ---- fine-tuning task --------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SensorHeadConfig:
    num_classes: int = 2


@dataclass(kw_only=True)
class SensorFinetuneConfig(FinetuneBase):
    task: Literal["sensor-classification"] = TASK_NAME
    encoder: SensorEncoderConfig
    head: SensorHeadConfig = field(default_factory=SensorHeadConfig)
    data: SensorDataConfig = field(default_factory=SensorDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3, warmup_updates=3, lr_scheduler="cosine"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_update=30, log_interval=5,
                                                                   save_interval_updates=10, threads=1))


class SensorClassifier(FinetuneModel):
    units_name = "examples"

    def __init__(self, encoder: SensorEncoder, cfg: SensorHeadConfig):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, cfg.num_classes)

    def forward(self, source):
        e = self.encoder.embed(source)
        return self.head(self.encoder.context_encoder(e.x).x.mean(1))

    def step_loss(self, batch: dict, wrapped: nn.Module) -> StepLoss:
        return StepLoss(F.cross_entropy(wrapped(batch["source"]), batch["labels"], reduction="sum"),
                        int(batch["labels"].numel()), {})


class SensorFinetuneData:
    def __init__(self, cfg, dist, seed: int):
        root = Path(cfg.data.path)
        self.train = SensorFiles(root / "train")
        self.sets = {s: SensorFiles(root / s) for s in ("valid", "test") if (root / s).is_dir()}
        self.sampler = BucketBatchSampler(self.train.sizes, max_tokens=cfg.data.batch_size, seed=seed,
                                          num_replicas=dist.world_size, rank=dist.rank)
        self.collator = SensorCollator(SensorMaskConfig(), seed)

    def describe(self) -> str:
        return f"{len(self.train)} labelled sensor signals"

    def make_loader(self, epoch: int, start_batch: int = 0):
        return build_loader(self.train, self.sampler, self.collator, num_workers=0, epoch=epoch,
                            start_batch=start_batch)

    def eval_loader(self, name: str):
        return torch.utils.data.DataLoader(self.sets[name], batch_size=32, collate_fn=self.collator)


@torch.no_grad()
def evaluate(model, loader, device) -> dict:
    model.eval()
    right = n = 0
    for b in loader:
        right += int((model(b["source"].to(device)).argmax(-1).cpu() == b["labels"]).sum())
        n += len(b["labels"])
    model.train()
    return {"acc": right / n, "examples": n}


class _SensorTask:
    name, modality, config_cls, metric, higher_is_better = TASK_NAME, NAME, SensorFinetuneConfig, "acc", True
    build_data = SensorFinetuneData

    @staticmethod
    def default_config(src, init: str) -> SensorFinetuneConfig:
        return SensorFinetuneConfig(init=init, encoder=src.encoder, data=SensorDataConfig(path=src.data.path),
                                    eval_interval=10)

    @staticmethod
    def complete_config(cfg, data):
        return cfg

    @staticmethod
    def build_model(cfg, encoder, data) -> SensorClassifier:
        return SensorClassifier(encoder, cfg.head)

    @staticmethod
    def evaluate(model, loader, device, cfg) -> dict:
        return evaluate(model, loader, device)


TASK = _SensorTask()


def register(monkeypatch) -> None:
    """Make the modality and its task known to the package for one test (undone after it)."""
    from data2vec import modalities
    from data2vec.finetune import loop

    monkeypatch.setitem(modalities.MODALITIES, NAME, spec)
    monkeypatch.setitem(loop.TASKS, TASK_NAME, __name__)
