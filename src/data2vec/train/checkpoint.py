"""Checkpoints: plain data (``torch.load(weights_only=True)`` works), written atomically.

A checkpoint holds ``format_version``, the resolved ``config`` (JSON dict), the model state
(student and EMA teacher), the optimizer state, the update count, the data position (epoch and
batches consumed in it) and the RNG states, so ``--resume`` continues exactly where the run stopped.
It is written to ``<name>.<pid>.tmp`` (unique per process) and renamed over the target, so a kill never
leaves a torn file and the previous checkpoint survives until the new one is complete; a failed write (disk
full) removes its temp file and raises :class:`~data2vec.errors.Data2VecError`.

One process trains in a run directory at a time: :class:`RunLock` holds an exclusive ``flock`` on
``RUN/run.lock`` (which names the holder's pid and host). The kernel drops it when the holder exits or dies,
so a killed run resumes without manual steps.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import torch

from data2vec.errors import Data2VecError
from data2vec.safe_load import safe_torch_load

FORMAT_VERSION = 1
LOCK_FILE = "run.lock"


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Data2VecError(f"cannot create {path.parent}: {e.strerror}") from None
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # unique: a second writer never shares it
    try:
        with open(tmp, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise Data2VecError(f"could not write {path}: {os_reason(e)}; {_previous(path)}") from None
    except BaseException:  # an interrupt or a bug mid-write: no partial file is left behind
        tmp.unlink(missing_ok=True)
        raise


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint atomically (temp file + rename), with the same one-line error as ``save_checkpoint``."""
    import shutil

    dst = Path(dst)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise Data2VecError(f"could not write {dst}: {os_reason(e)}; {_previous(dst)}") from None


def os_reason(e: OSError) -> str:
    """What went wrong and what to do, for the OS errors a user can fix."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror} (free some space, then rerun with --resume)"
    if e.errno == errno.EROFS:
        return f"{e.strerror} (choose an --out on a writable file system)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{e.strerror} (choose an --out you may write to)"
    return e.strerror or str(e)


def _previous(path: Path) -> str:
    if path.exists():
        return f"the previous {path.name} is intact"
    return f"no {path.name} was written (nothing on disk changed)"


def load_checkpoint(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """A checkpoint written by ``save_checkpoint``; ``mmap`` maps the tensors instead of reading them (cheap when
    only the config is needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")

    ckpt = safe_torch_load(path, mmap=mmap, map_location=map_location)  # refused/damaged files: one clear error
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise Data2VecError(f"{path} is not a data2vec checkpoint (no format_version); for fairseq .pt use convert")
    check_format_version(path, ckpt)
    return ckpt


def check_format_version(path, ckpt: dict) -> None:
    """Refuse a checkpoint written by a newer data2vec (every loader of our ``.pt`` files calls this)."""
    v = ckpt.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Data2VecError(f"{path} has format_version {v!r}, which no data2vec writes: the file is damaged")
    if v > FORMAT_VERSION:
        raise Data2VecError(f"{path} has format_version {v}, written by a newer data2vec; this one reads <= "
                            f"{FORMAT_VERSION}: upgrade data2vec to load it")


def require_entries(path, ckpt: dict, keys: tuple[str, ...]) -> None:
    """A checkpoint missing what resuming needs is damaged: say which entries, in one line."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        names = ", ".join(repr(k) for k in missing)
        raise Data2VecError(f"{path} has no {names} entr{'y' if len(missing) == 1 else 'ies'}: it is damaged or not a "
                            "training checkpoint; restore it from a backup or start a new --out")


def check_state_shapes(path, model: torch.nn.Module, state: dict, fix: str) -> None:
    """Compare a saved ``state`` dict with ``model`` before ``load_state_dict`` (whose error lists every tensor):
    one line naming the first differences and ``fix``."""
    if not isinstance(state, dict):
        raise Data2VecError(f"{path}: its 'model' entry is not a state dict; the checkpoint is damaged")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
           if k in state and torch.is_tensor(state[k]) and state[k].shape != own[k].shape]
    if not (missing or unexpected or bad):
        return
    parts = []
    if bad:
        parts.append(f"{len(bad)} tensor shape(s) differ (checkpoint vs config), e.g. {'; '.join(bad[:2])}")
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}")
    raise Data2VecError(f"{path}: the weights do not match the model its config describes: {', '.join(parts)}; {fix}")


_HELD: dict[int, "RunLock"] = {}  # fd -> lock held by this process (closed in forked children)


def _close_in_child() -> None:
    # A forked child (a DataLoader worker) shares the lock's open file; closing its copy of the descriptor
    # keeps a worker that outlives a killed parent from holding the run directory.
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunLock:
    """Exclusive ownership of a run directory for one process (``fcntl.flock`` on ``RUN/run.lock``).

    ``acquire`` creates the directory (a one-line error when it cannot: read-only file system, a file in the
    way, no permission), takes the lock without waiting, writes ``pid``/``host``/start time into the file and
    removes temp files a killed writer left. A second process gets a one-line error naming the holder. The
    lock file itself is never deleted (that would let two processes lock different files); the kernel releases
    the lock when the holder exits or is killed. Under DDP only rank 0 takes it: the other ranks write nothing
    into the run directory, and rank 0 failing stops the job.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        make_run_dir(self.run_dir)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise Data2VecError(f"cannot use {self.run_dir} as --out: {os_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Data2VecError(f"cannot lock {self.path}: {os_reason(e)}") from None
            raise Data2VecError(
                f"{self.run_dir} is in use by another data2vec run ({holder or 'holder unknown'}); wait for it to "
                "finish or stop it, or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:  # the lock is what matters; the note is for the error message
            pass
        self.fd = fd
        _HELD[fd] = self
        for pattern in ("*.pt.*tmp", "*.dcp.*tmp"):  # a writer killed mid-checkpoint (we own the directory now)
            for stale in self.run_dir.glob(pattern):
                stale.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        if self.fd is not None:
            _HELD.pop(self.fd, None)
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def make_run_dir(run_dir: str | Path) -> Path:
    """Create ``run_dir`` (and parents) or say in one line why it cannot be: a file in the way, a read-only file
    system, no permission."""
    run_dir = Path(run_dir)
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise Data2VecError(f"cannot use {run_dir} as --out: {parent} is a file, not a directory")
            break
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Data2VecError(f"cannot create --out {run_dir}: {os_reason(e)}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise Data2VecError(f"cannot write into --out {run_dir}: permission denied (choose an --out you may write to)")
    return run_dir
