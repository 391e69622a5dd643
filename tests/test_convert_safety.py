"""Reading fairseq checkpoints never runs code from the file."""

from __future__ import annotations

import os

import pytest
import torch

from data2vec.convert.fairseq_pickle import UnsafeCheckpointError, load_fairseq_checkpoint


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_fairseq_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_plain_checkpoint_loads(tmp_path):
    torch.save({"model": {"w": torch.arange(3.0)}, "args": None}, tmp_path / "ok.pt")
    ck = load_fairseq_checkpoint(tmp_path / "ok.pt")
    assert torch.equal(ck["model"]["w"], torch.arange(3.0))
