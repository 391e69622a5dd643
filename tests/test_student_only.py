"""``data2vec convert --student-only``: the teacher-free directory that ``models/`` ships (half the size), loaded
by every command that reads a pretrained model with teacher = student."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli, shared_file_mode
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
    for d in (full, tmp_path / "slim"):  # group/others may read, as the umask allows (safetensors writes 0o600)
        assert (d / "model.safetensors").stat().st_mode & 0o777 == shared_file_mode()
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


def test_encoder_only_round_trip(tmp_path):
    """``--encoder-only`` keeps the student's encoder alone (no teacher, no v2 decoder): the smallest directory;
    it extracts exactly as the full one, loads with a fresh decoder and teacher = student, and a file whose
    metadata claims the encoder alone but holds more is refused in one line."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from data2vec.errors import Data2VecError

    cfg = merge(get_preset("image-tiny-v2"), SMALL)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    full = save_pretrained(cfg, model, tmp_path / "full")
    out = run_cli("convert", str(full), "--out", str(tmp_path / "enc"), "--encoder-only")
    assert "encoder parameters" in out.stdout and "EMA teacher" not in out.stdout

    path = tmp_path / "enc" / "model.safetensors"
    stored = load_file(str(path))
    assert stored and all(k.startswith("student.encoder.") for k in stored)
    assert len(stored) == len(model.student.encoder.state_dict())
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"contents": "encoder"}
    assert any(k.startswith("student.decoder.") for k in load_file(str(full / "model.safetensors")))

    _, enc = load_pretrained(tmp_path / "enc")
    assert enc.student.decoder is not None  # freshly initialised: continued pretraining has a decoder to train
    for k, v in model.student.encoder.state_dict().items():
        torch.testing.assert_close(enc.student.encoder.state_dict()[k], v, rtol=0, atol=0)
    for (k, t), s in zip(enc.teacher.module.state_dict().items(), enc._teacher_source().state_dict().values()):
        torch.testing.assert_close(t, s, rtol=0, atol=0, msg=f"teacher {k} is not the student's copy")
    images = torch.rand(3, 1, 28, 28)
    a, b = (encode(Extractor(d).encoder, images)[0].x for d in (full, tmp_path / "enc"))
    torch.testing.assert_close(a, b, rtol=0, atol=0)

    save_file({**stored, "teacher.x": torch.zeros(1)}, str(path), metadata={"contents": "encoder"})
    with pytest.raises(Data2VecError, match="encoder alone") as e:
        load_pretrained(tmp_path / "enc")
    assert "\n" not in str(e.value)
