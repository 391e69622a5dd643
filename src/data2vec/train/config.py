"""The pretraining config: one typed dataclass tree, resolved to JSON in the run directory.

``encoder``, ``masking`` and ``data`` take the modality's own dataclasses (``data2vec.modalities``);
``model`` is the modality-agnostic method (EMA, targets, loss, collapse guard, head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from data2vec.config import from_dict
from data2vec.core.data2vec import Data2VecConfig
from data2vec.modalities import get_modality
from data2vec.train.optim import OptimConfig


@dataclass(kw_only=True)
class TrainConfig:
    max_update: int = 400000  # optimizer updates (fairseq optimization.max_update)
    update_freq: int = 1  # gradient accumulation: micro-batches per update
    seed: int = 1
    device: str = "auto"  # auto = cuda if available, else cpu
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    log_interval: int = 10  # updates between metric records
    save_interval_updates: int = 1000  # updates between checkpoints (and one at the end)
    keep_interval_checkpoints: bool = False  # also keep a copy checkpoint_<step>.pt at every save interval
    threads: int = 0  # torch intra-op threads on CPU (0 = torch default)
    init_from: str = ""  # start from these weights (HF dir, fairseq .pt, our checkpoint or converted dir)


@dataclass(kw_only=True)
class PretrainConfig:
    modality: str
    version: int = 1  # data2vec 1.0 or 2.0 (picks the classes of encoder and masking)
    preset: str = ""  # name of the preset this config started from
    encoder: Any
    masking: Any
    data: Any
    model: Data2VecConfig = field(default_factory=Data2VecConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def pretrain_config_from_dict(d: dict) -> PretrainConfig:
    """Rebuild a PretrainConfig from its JSON form (the modality picks the section classes)."""
    if "modality" not in d:
        raise ValueError("config has no 'modality'")
    spec = get_modality(d["modality"])
    known = {"modality", "version", "preset", "encoder", "masking", "data", "model", "optim", "train"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; valid: {sorted(known)}")
    version = d.get("version", 1)
    encoder_cls, mask_cls = spec.configs(version)
    return PretrainConfig(
        modality=d["modality"],
        version=version,
        preset=d.get("preset", ""),
        encoder=from_dict(encoder_cls, d.get("encoder", {}), "encoder."),
        masking=from_dict(mask_cls, d.get("masking", {}), "masking."),
        data=from_dict(spec.data_config, d.get("data", {}), "data."),
        model=from_dict(Data2VecConfig, d.get("model", {}), "model."),
        optim=from_dict(OptimConfig, d.get("optim", {}), "optim."),
        train=from_dict(TrainConfig, d.get("train", {}), "train."),
    )
