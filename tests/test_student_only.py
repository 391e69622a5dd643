"""``data2vec convert --student-only``: the teacher-free directory that ``models/`` ships (half the size), loaded
by every command that reads a pretrained model with teacher = student."""

from __future__ import annotations

import torch
from conftest import run_cli
from safetensors.torch import load_file

from data2vec.config import merge
from data2vec.extract import Extractor, encode
from data2vec.presets import get_preset
from data2vec.pretrained import build_model, load_pretrained, save_pretrained

SMALL = {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "model": {"targets": {"average_top_k_layers": 2}}}


def test_student_only_round_trip(tmp_path):
    cfg = merge(get_preset("image-tiny-v1"), SMALL)
    model = build_model(cfg)
    with torch.no_grad():  # a student that has moved away from its teacher, as after pretraining
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    full = save_pretrained(cfg, model, tmp_path / "full")
    out = run_cli("convert", str(full), "--out", str(tmp_path / "slim"), "--student-only")
    assert "EMA teacher" not in out.stdout

    stored = load_file(str(tmp_path / "slim" / "model.safetensors"))
    assert stored and all(k.startswith("student.") for k in stored)
    assert (tmp_path / "slim" / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size

    _, slim = load_pretrained(tmp_path / "slim")
    for k, v in model.student.state_dict().items():
        torch.testing.assert_close(slim.student.state_dict()[k], v, rtol=0, atol=0)
    for (k, t), s in zip(slim.teacher.module.state_dict().items(), slim._teacher_source().state_dict().values()):
        torch.testing.assert_close(t, s, rtol=0, atol=0, msg=f"teacher {k} is not the student's copy")

    images = torch.rand(3, 1, 28, 28)
    a, b = (encode(Extractor(d).encoder, images)[0].x for d in (full, tmp_path / "slim"))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
