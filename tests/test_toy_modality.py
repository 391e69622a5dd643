"""A fourth modality defined only in the test tree (tests/toy_modality: sensor signals) pretrains, resumes,
round-trips its checkpoint, extracts features and fine-tunes through the package's own entry points, with
nothing changed outside its own package: the ModalitySpec and the task registry are the whole interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import toy_modality as toy
from data2vec.cli import main
from data2vec.config import to_dict
from data2vec.core.data2vec import Data2VecConfig
from data2vec.core.targets import TargetConfig
from data2vec.finetune.loop import default_config, finetune
from data2vec.pretrained import load_pretrained, save_pretrained
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.config import PretrainConfig, TrainConfig, pretrain_config_from_dict
from data2vec.train.loop import pretrain
from data2vec.train.optim import OptimConfig


@pytest.fixture
def sensor(monkeypatch, tmp_path):
    toy.register(monkeypatch)
    return toy.write_corpus(tmp_path / "sensor", n=64)


def _cfg(data, max_update: int) -> PretrainConfig:
    return PretrainConfig(
        modality="sensor", encoder=toy.SensorEncoderConfig(), masking=toy.SensorMaskConfig(),
        data=toy.SensorDataConfig(path=str(data)),
        model=Data2VecConfig(targets=TargetConfig(average_top_k_layers=2, instance_norm_target_layer=True)),
        optim=OptimConfig(lr=1e-3, lr_scheduler="fixed"),  # the schedule does not depend on max_update
        train=TrainConfig(max_update=max_update, log_interval=1, save_interval_updates=4, threads=1,
                          precision="fp32"))


def test_sensor_modality_pretrains_resumes_converts_extracts_and_finetunes(sensor, tmp_path):
    # pretrain 8 updates, and 4 + resume 4: the same weights (the package's checkpoints and RNG handling)
    full, part = tmp_path / "full", tmp_path / "part"
    assert pretrain(_cfg(sensor, 8), full)["steps"] == 8
    pretrain(_cfg(sensor, 4), part)
    assert pretrain(pretrain_config_from_dict(json.loads((part / "config.json").read_text()) |
                                              {"train": to_dict(_cfg(sensor, 8).train)}), part, resume=True)["steps"] == 8
    a, b = load_checkpoint(full / "checkpoint_last.pt"), load_checkpoint(part / "checkpoint_last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    losses = [json.loads(line)["loss"] for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and all(np.isfinite(losses))

    # checkpoint -> pickle-free directory (the CLI's convert) -> the same model
    out = tmp_path / "converted"
    assert main(["convert", str(full / "checkpoint_last.pt"), "--out", str(out)]) == 0
    cfg, model = load_pretrained(out)
    assert cfg.modality == "sensor" and isinstance(cfg.encoder, toy.SensorEncoderConfig)
    for k, v in model.state_dict().items():
        assert torch.equal(v, a["model"][k]), k
    save_pretrained(cfg, model, tmp_path / "again")
    assert load_file(str(tmp_path / "again" / "model.safetensors")).keys() == model.state_dict().keys()

    # features through the CLI: the encoder's final output per input, in input order
    files = sorted(str(p) for p in (sensor / "test").glob("*/*.npy"))[:5]
    assert main(["extract", str(out), *files, "--out", str(tmp_path / "f.safetensors")]) == 0
    feats = load_file(str(tmp_path / "f.safetensors"))
    enc = model.student.encoder.eval()
    with torch.no_grad():
        e = enc.embed(torch.from_numpy(np.load(files[3]))[None])
        ref = enc.context_encoder(e.x).x[0]
    assert len(feats) == 5 and torch.allclose(feats["3"], ref, atol=1e-6)

    # fine-tune from the pretrained model with the registered task: validation, best checkpoint, test score
    ft_cfg = default_config("sensor-classification", cfg, init=str(out))
    summary = finetune(ft_cfg, tmp_path / "ft")
    assert summary["status"] == "done" and summary["steps"] == 30
    assert 0.0 <= summary["test"]["acc"] <= 1.0 and (tmp_path / "ft" / "checkpoint_best.pt").is_file()
    ck = load_checkpoint(tmp_path / "ft" / "checkpoint_last.pt")
    assert ck["best"]["step"] > 0 and len(ck["rng"]) == 1 and "wall_s" in ck  # the shared Trainer's state
