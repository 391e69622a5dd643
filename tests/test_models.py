"""The pretrained encoders shipped in ``models/``: pickle-free, small, documented, and usable by the commands."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import ROOT, set_args
from safetensors import safe_open
from test_finetune_image import _image_folders

from data2vec.cli import main
from data2vec.presets import PRESETS, get_preset
from data2vec.pretrained import load_pretrained

MODELS = ROOT / "models"
SHIPPED = sorted(d.name for d in MODELS.iterdir() if d.is_dir()) if MODELS.is_dir() else []
MAX_BYTES = 40 * 2**20  # issue 15: at most 40 MB in all


def test_models_are_pickle_free_and_within_the_size_budget():
    assert SHIPPED, "models/ holds no encoder"
    files = [f for f in MODELS.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= MAX_BYTES
    assert not [f for f in files if f.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_says_where_it_came_from(name):
    d = MODELS / name
    assert name in PRESETS, f"models/{name} is named after its preset"
    card = (d / "MODEL.md").read_text()
    for must in ("data2vec pretrain", "commit", "minutes", "scratch"):
        assert must in card, f"models/{name}/MODEL.md does not say {must!r}"
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("student.") for k in keys)  # data2vec convert --student-only
    cfg, model = load_pretrained(d)
    assert cfg.preset == name and json.loads((d / "config.json").read_text())["preset"] == name
    preset = get_preset(name).encoder
    if getattr(preset, "vocab_size", None) == 0:  # text: the vocabulary comes from the tokenizer
        preset = dataclasses.replace(preset, vocab_size=cfg.encoder.vocab_size)
    assert cfg.encoder == preset, f"models/{name} is not its preset's encoder"
    for (k, t), s in zip(model.teacher.module.state_dict().items(), model._teacher_source().state_dict().values()):
        assert t.equal(s), k


@pytest.mark.skipif("image-tiny-v2" not in SHIPPED, reason="image-tiny-v2 is not shipped")
def test_shipped_image_encoder_fine_tunes(tmp_path):
    _image_folders(tmp_path / "img")
    run = tmp_path / "ft"
    assert main(["finetune", "image-classification", "--init", str(MODELS / "image-tiny-v2"), "--data",
                 str(tmp_path / "img"), "--out", str(run),
                 *set_args(["train.max_update=2", "data.batch_size=16", "data.num_workers=0", "eval_interval=2",
                            "train.threads=1"])]) == 0
    assert json.loads((run / "config.json").read_text())["init"].endswith("image-tiny-v2")
    images = sorted(str(f) for f in (tmp_path / "img" / "test").rglob("*.png"))[:3]
    assert main(["extract", str(MODELS / "image-tiny-v2"), *images, "--pool", "mean", "--out",
                 str(tmp_path / "f.safetensors")]) == 0
    with safe_open(str(tmp_path / "f.safetensors"), "pt") as f:
        assert len(list(f.keys())) == 3 and f.get_tensor(next(iter(f.keys()))).shape[-1] == 192
