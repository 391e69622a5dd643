"""Distributed checkpoints (``torch.distributed.checkpoint``) for ``train.parallel=fsdp`` runs.

Layout of a run directory::

    RUN/checkpoint_last.dcp             pointer: one line, the step directory below (switched with os.replace)
    RUN/dcp/step_00000040/.metadata     DCP: student, teacher and optimizer, every rank writes its own shards
    RUN/dcp/step_00000040/__0_0.distcp ...
    RUN/dcp/step_00000040/trainer.pt    config, update count, data position, every rank's RNG (weights_only file)

Atomic as a whole: every rank writes its shards into a *new* step directory in parallel (``dcp.save``), rank 0 adds
``trainer.pt`` and only then replaces the pointer file, so a save killed at any point leaves the pointer on the
previous complete step directory; older step directories are removed after the switch (unless
``train.keep_interval_checkpoints``), and a killed save's directory at the next save.

DCP reshards on load: a checkpoint saved by N ranks resumes on M ranks (FSDP DTensors or, on one process, plain
tensors); the data position is stored as batches per rank and converted to the new world size. The learning-rate
schedule is a function of the update count (``optim.lr_at``), so it has no state of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import torch.distributed as dist

from data2vec.errors import Data2VecError
from data2vec.train.checkpoint import load_checkpoint, os_reason, save_checkpoint
from data2vec.train.config import build_model, pretrain_config_from_dict

POINTER = "checkpoint_last.dcp"
STEPS_DIR = "dcp"
TRAINER_FILE = "trainer.pt"


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_quiet():
    """DCP warns that it assumes a single process when there is no process group: that is the intent here."""
    if _dist():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def is_dcp_dir(path: str | Path) -> bool:
    return (Path(path) / ".metadata").is_file()


def resolve(path: str | Path) -> Path | None:
    """The step directory a pointer file, a run directory or a step directory names; None if none."""
    p = Path(path)
    if p.is_dir() and is_dcp_dir(p):
        return p
    if p.is_dir() and (p / POINTER).is_file():
        p = p / POINTER
    if p.is_file() and p.name.endswith(".dcp"):
        rel = p.read_text().strip()
        step_dir = p.parent / rel
        if not is_dcp_dir(step_dir):
            raise Data2VecError(f"{p} points at {rel}, which is not a complete DCP checkpoint (no .metadata): the "
                                "run directory is damaged; restore it from a backup or start a new --out")
        return step_dir
    return None


def save(run_dir: Path, step: int, model_sd: dict, optim_sd: dict, trainer_state: dict, *, is_main: bool,
         keep_old: bool) -> Path:
    """Write step ``step``'s distributed checkpoint (every rank calls this), then switch the pointer (rank 0)."""
    import torch.distributed.checkpoint as dcp

    steps = run_dir / STEPS_DIR
    name = f"step_{step:08d}"
    step_dir = steps / name
    current = resolve(run_dir)
    if is_main:
        try:
            steps.mkdir(parents=True, exist_ok=True)
            if step_dir.exists() and (current is None or current.resolve() != step_dir.resolve()):
                shutil.rmtree(step_dir)  # a killed save of this step
        except OSError as e:
            raise Data2VecError(f"could not prepare {step_dir}: {os_reason(e)}") from None
    if _dist():
        dist.barrier()
    if current is not None and current.resolve() == step_dir.resolve():
        return step_dir  # already saved (nothing trained since)
    with _single_process_quiet():
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(step_dir))  # all ranks, in parallel
    if is_main:
        save_checkpoint(step_dir / TRAINER_FILE, trainer_state)
        tmp = run_dir / f"{POINTER}.{os.getpid()}.tmp"
        try:
            tmp.write_text(f"{STEPS_DIR}/{name}\n")
            os.replace(tmp, run_dir / POINTER)  # the commit point
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise Data2VecError(f"could not write {run_dir / POINTER}: {os_reason(e)}") from None
        if not keep_old:
            for old in steps.glob("step_*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
    if _dist():
        dist.barrier()
    return step_dir


def load_trainer_state(step_dir: Path) -> dict:
    return load_checkpoint(step_dir / TRAINER_FILE)


def load_into(step_dir: Path, model_sd: dict, optim_sd: dict | None) -> None:
    """Fill ``model_sd`` (and ``optim_sd``) in place from ``step_dir``; they may be sharded (DTensors) or plain."""
    import torch.distributed.checkpoint as dcp

    state = {"model": model_sd}
    if optim_sd is not None:
        state["optimizer"] = optim_sd
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(step_dir))


def load_model(path: str | Path):
    """(config, ``Data2Vec`` model with plain full tensors) of a DCP checkpoint, on one process: for
    ``data2vec convert`` / ``load_pretrained``. ``path``: a run directory, its pointer file or a step directory."""
    step_dir = resolve(path)
    if step_dir is None:
        raise Data2VecError(f"{path} is not a distributed checkpoint (no .metadata, no {POINTER})")
    cfg = pretrain_config_from_dict(load_trainer_state(step_dir)["config"])
    model = build_model(cfg)
    sd = model.state_dict()
    load_into(step_dir, sd, None)
    model.load_state_dict(sd)
    return cfg, model


def is_dcp_path(path: str | Path) -> bool:
    p = Path(path)
    return (p.is_dir() and (is_dcp_dir(p) or (p / POINTER).is_file())) or (p.is_file() and p.name.endswith(".dcp"))
