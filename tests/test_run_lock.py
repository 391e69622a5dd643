"""One run per directory (issue 14, part 3): a second ``pretrain``/``finetune`` on a busy ``--out`` exits 2 with
one line naming the holder; a ``kill -9``-ed holder (even one whose forked workers live on) does not block
``--resume``; checkpoints are written to per-process temp names and a killed writer's temp file is cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import MICRO_OVERRIDES, ROOT, run_cli, set_args
from data2vec.cli import main
from data2vec.train.checkpoint import LOCK_FILE, RunLock, load_checkpoint


def _pretrain_args(data, out, overrides) -> list[str]:
    return ["pretrain", "--preset", "audio-tiny-v1", "--data", str(data), "--out", str(out),
            *set_args(MICRO_OVERRIDES + overrides)]


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.1)


def test_second_process_is_refused_and_a_killed_holder_does_not_block_resume(speech_corpus, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-m", "data2vec.cli",
         *_pretrain_args(speech_corpus, run, ["train.max_update=100000", "train.save_interval_updates=1"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(lambda: (run / "checkpoint_last.pt").exists(), holder)
        # the second process: same --out, with and without --resume
        for extra in ([], ["--resume"]):
            second = run_cli(*_pretrain_args(speech_corpus, run, ["train.max_update=100000"]), *extra, check=False)
            err = second.stderr.strip()
            assert second.returncode == 2, second.stdout + second.stderr
            assert len(err.splitlines()) == 1 and "Traceback" not in err, err
            assert "in use by another data2vec run" in err and f"pid {holder.pid} " in err, err
        assert holder.poll() is None  # the holder was not disturbed
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    step = load_checkpoint(run / "checkpoint_last.pt")["step"]
    assert step >= 1 and f"pid {holder.pid} " in (run / LOCK_FILE).read_text()  # the stale note stays: harmless
    run_cli("pretrain", "--out", str(run), "--resume", "--set", f"train.max_update={step + 1}")
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == step + 1
    assert not list(run.glob("*.tmp"))


def test_finetune_and_pretrain_refuse_a_locked_directory(tmp_path, capsys):
    """The lock is per open file, so a lock held in this very process is seen too (no training starts)."""
    run = tmp_path / "busy"
    with RunLock(run):
        rc_ft = main(["finetune", "image-classification", "--preset", "image-tiny-v1", "--data", str(tmp_path),
                      "--out", str(run)])
        err_ft = capsys.readouterr().err.strip()
        rc_pt = main(["pretrain", "--preset", "audio-tiny-v1", "--data", str(tmp_path), "--out", str(run)])
        err_pt = capsys.readouterr().err.strip()
    for rc, err in ((rc_ft, err_ft), (rc_pt, err_pt)):
        assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"in use by another data2vec run (pid {os.getpid()} on " in err, err
    with RunLock(run):  # released: free again
        pass


def test_forked_worker_of_a_killed_holder_does_not_keep_the_lock(tmp_path):
    """DataLoader workers are forked children; they close their copy of the lock, so only the holder owns it."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from data2vec.train.checkpoint import RunLock
        RunLock({str(run)!r}).acquire()
        child = os.fork()
        if child == 0:  # a worker that outlives its parent for a while
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == -9, proc.stderr
    child = int(proc.stdout)
    try:
        os.kill(child, 0)  # the orphaned worker still lives ...
        with RunLock(run):  # ... yet the directory is free
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_unique_temp_names_and_stale_temp_files_are_removed(tmp_path, monkeypatch):
    from data2vec.train import checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_last.pt.tmp").write_bytes(b"torn")  # left by a writer killed mid-save
    (run / "checkpoint_last.pt.12345.tmp").write_bytes(b"torn")
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoint.os, "replace", lambda a, b: (seen.append(str(a)), real_replace(a, b)))
    with RunLock(run):
        assert not list(run.glob("*.tmp"))
        checkpoint.save_checkpoint(run / "checkpoint_last.pt", {"step": 1})
    assert seen == [str(run / f"checkpoint_last.pt.{os.getpid()}.tmp")]
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 1


@pytest.mark.parametrize("blocker", ["file", "readonly"])
def test_lock_needs_a_writable_directory(tmp_path, monkeypatch, blocker):
    import errno
    from pathlib import Path

    from data2vec.errors import Data2VecError

    if blocker == "file":
        (tmp_path / "f").write_text("x")
        target, match = tmp_path / "f" / "run", "is a file, not a directory"
    else:
        target, match = tmp_path / "ro" / "run", "Read-only file system"

        def mkdir(self, *a, **k):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(Data2VecError, match=match):
        RunLock(target).acquire()
