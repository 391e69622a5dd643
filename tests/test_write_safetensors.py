"""write_safetensors: the file mode of a plain ``open`` and no half-written file in place of a good one."""

from __future__ import annotations

import os

import pytest
import torch

from data2vec import safe_load
from data2vec.safe_load import read_safetensors, write_safetensors


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_mode_follows_the_umask_and_the_umask_is_left_alone(tmp_path, umask_027):
    write_safetensors({"w": torch.arange(3.0)}, tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640  # not safetensors' 0o600
    assert safe_load._umask() == 0o027
    assert os.umask(0o027) == 0o027  # reading it did not change it


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "m.safetensors"
    write_safetensors({"w": torch.arange(3.0)}, path)

    def dies_half_way(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x08\x00\x00")  # a torn header
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors({"w": torch.zeros(3)}, path)
    assert torch.equal(read_safetensors(path)["w"], torch.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary file left behind
