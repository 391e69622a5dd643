"""Distributed checkpoints of ``train.parallel=fsdp`` runs (``torch.distributed.checkpoint``): every rank writes its
shards, a pointer file commits the step directory, resuming reshards (2 -> 1 and 1 -> 2 ranks give the next losses
of a same-size resume), and ``data2vec convert`` turns one into config.json + model.safetensors."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import MICRO_OVERRIDES
from data2vec.cli import main
from data2vec.train import dcp
from test_fsdp import _args, metrics, torchrun

COMMON = MICRO_OVERRIDES + ["train.precision=fp32", "train.parallel=fsdp", "train.save_interval_updates=2"]


def _resume(run, *over) -> list[str]:
    return ["pretrain", "--out", str(run), "--resume", "--set", "train.max_update=4",
            *[a for o in over for a in ("--set", o)]]


def _weights(run) -> dict:
    return dcp.load_model(run)[1].state_dict()


def _close(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.slow
def test_resume_on_another_world_size(speech_corpus, tmp_path):
    # saved by 2 ranks -> resumed on 2 and on 1
    torchrun(_args("audio-tiny-v1", speech_corpus, tmp_path / "a", COMMON + ["train.max_update=2"]))
    step_dir = dcp.resolve(tmp_path / "a")
    assert step_dir.name == "step_00000002" and len(list(step_dir.glob("*.distcp"))) == 2
    assert (tmp_path / "a" / "checkpoint_last.dcp").read_text().strip() == "dcp/step_00000002"
    for name in ("a2", "a1"):
        shutil.copytree(tmp_path / "a", tmp_path / name)
    # a save killed half-way (shards, no .metadata, pointer not switched) does not disturb the resume
    torn = tmp_path / "a2" / "dcp" / "step_00000004"
    torn.mkdir()
    (torn / "__0_0.distcp").write_bytes(b"torn")
    torchrun(_resume(tmp_path / "a2"))
    assert main(_resume(tmp_path / "a1", "train.update_freq=2")) == 0
    assert sorted(p.name for p in (tmp_path / "a2" / "dcp").iterdir()) == ["step_00000004"]  # old + torn removed
    assert dcp.load_trainer_state(dcp.resolve(tmp_path / "a1"))["world_size"] == 1

    l22, l21 = metrics(tmp_path / "a2"), metrics(tmp_path / "a1")
    assert [r["step"] for r in l21] == [1, 2, 3, 4]
    # the first resumed update runs the same forward arithmetic from the same weights: bit-identical loss
    assert l21[2]["loss"] == l22[2]["loss"]
    assert [r["loss"] for r in l21] == pytest.approx([r["loss"] for r in l22], rel=1e-6, abs=1e-6)
    _close(_weights(tmp_path / "a1"), _weights(tmp_path / "a2"))

    # saved by 1 process -> resumed on 1 (bit-identical to an uninterrupted run) and on 2
    assert main(_args("audio-tiny-v1", speech_corpus, tmp_path / "b", COMMON
                      + ["train.max_update=2", "train.update_freq=2"])) == 0
    assert main(_args("audio-tiny-v1", speech_corpus, tmp_path / "full", COMMON
                      + ["train.max_update=4", "train.update_freq=2"])) == 0
    for name in ("b1", "b2"):
        shutil.copytree(tmp_path / "b", tmp_path / name)
    assert main(_resume(tmp_path / "b1")) == 0
    torchrun(_resume(tmp_path / "b2", "train.update_freq=1"))
    l11, l12, lfull = metrics(tmp_path / "b1"), metrics(tmp_path / "b2"), metrics(tmp_path / "full")
    assert [r["loss"] for r in l11] == [r["loss"] for r in lfull]
    _close(_weights(tmp_path / "b1"), _weights(tmp_path / "full"), exact=True)
    assert l12[2]["loss"] == l11[2]["loss"]
    assert [r["loss"] for r in l12] == pytest.approx([r["loss"] for r in l11], rel=1e-6, abs=1e-6)
    _close(_weights(tmp_path / "b2"), _weights(tmp_path / "b1"))

    # convert: config.json + model.safetensors with the checkpoint's student and teacher
    from data2vec.pretrained import load_pretrained

    assert main(["convert", str(tmp_path / "a2" / "checkpoint_last.dcp"), "--out", str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    _close(load_pretrained(tmp_path / "m")[1].state_dict(), _weights(tmp_path / "a2"), exact=True)
