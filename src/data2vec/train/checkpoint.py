"""Checkpoints: plain data (``torch.load(weights_only=True)`` works), written atomically.

A checkpoint holds ``format_version``, the resolved ``config`` (JSON dict), the model state
(student and EMA teacher), the optimizer state, the update count, the data position (epoch and
batches consumed in it) and the RNG states, so ``--resume`` continues exactly where the run stopped.
It is written to ``<name>.tmp`` and renamed over the target, so a kill never leaves a torn file and
the previous checkpoint survives until the new one is complete.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """A checkpoint written by ``save_checkpoint``; ``mmap`` maps the tensors instead of reading them (cheap when
    only the config is needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    from data2vec.safe_load import safe_torch_load

    ckpt = safe_torch_load(path, mmap=mmap, map_location=map_location)  # refused/damaged files: one clear error
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise ValueError(f"{path} is not a data2vec checkpoint (no format_version); for fairseq .pt use convert")
    check_format_version(path, ckpt)
    return ckpt


def check_format_version(path, ckpt: dict) -> None:
    """Refuse a checkpoint written by a newer data2vec (every loader of our ``.pt`` files calls this)."""
    from data2vec.errors import Data2VecError

    v = ckpt.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Data2VecError(f"{path} has format_version {v!r}, which no data2vec writes: the file is damaged")
    if v > FORMAT_VERSION:
        raise Data2VecError(f"{path} has format_version {v}, written by a newer data2vec; this one reads <= "
                            f"{FORMAT_VERSION}: upgrade data2vec to load it")
