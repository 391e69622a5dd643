"""Shared fixtures: a small real speech corpus (espeak-ng/flite via ``data2vec prepare speech``) and a
micro model config that trains in seconds on 2 CPU cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# audio-tiny-v1 shrunk further: 1 s clips, 2 x 32 Transformer, 16-channel conv stack (~50k params).
MICRO_OVERRIDES = [
    "encoder.conv_feature_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
    "encoder.embed_dim=32",
    "encoder.ffn_embed_dim=64",
    "encoder.depth=2",
    "encoder.num_heads=2",
    "encoder.conv_pos_width=16",
    "encoder.conv_pos_groups=4",
    "encoder.conv_pos_depth=2",
    "model.targets.average_top_k_layers=2",
    "data.max_sample_size=16000",
    "data.min_sample_size=4000",
    "data.max_tokens=32000",
    "data.num_workers=0",
    "masking.mask_length=5",
    "train.log_interval=1",
    "train.threads=1",
]


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory) -> Path:
    """About 70 s of synthesised English speech with train/valid/test manifests (built once per session)."""
    from data2vec.data.prepare_speech import prepare_speech

    out = tmp_path_factory.mktemp("speech")
    prepare_speech(out, 0.02, seed=0, workers=2)
    return out


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m data2vec.cli ARGS`` in a fresh process (real launcher, real signals)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "data2vec.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"data2vec {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def logged_step(run: Path) -> int:
    """The last update recorded in ``run/metrics.jsonl`` (0 before the first; a line being written is ignored)."""
    try:
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            steps.append(int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):
            pass
    return max(steps)


def kill9_when_logged(cmd: list[str], run: Path, step: int, *, env: dict | None = None, timeout: float = 300,
                      victim=None) -> subprocess.CompletedProcess:
    """Run ``cmd`` and SIGKILL it (``kill -9``: no handler runs, nothing is flushed) as soon as ``run``'s
    metrics.jsonl records update ``step``. ``victim(pid) -> pid`` picks another process to kill (a torchrun
    worker); the command itself then runs on to its end. Output goes to files, so a full pipe never stalls it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        deadline, killed = time.monotonic() + timeout, False
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if not killed and logged_step(run) >= step:
                    os.kill(victim(proc.pid) if victim else proc.pid, signal.SIGKILL)
                    killed = True
                    if not victim:
                        break
                time.sleep(0.005)
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            if proc.poll() is None:
                proc.kill()
        out.seek(0)
        err.seek(0)
        assert killed, f"the run ended before update {step} was logged: {out.read()[-2000:]}{err.read()[-2000:]}"
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def shared_file_mode() -> int:
    """The mode a plain ``open`` gives a new file here (0o666 less the umask): what model files must have."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


SEQS = [[0, 5, 6, 7, 2], [0, 9, 2], [0, 11, 12, 2, 2, 13, 14, 15, 2]]  # <s> ... </s>, one pair, of 3 lengths


def padded_batch(seqs: list[list[int]], pad: int = 1):
    """Token sequences right-padded with ``pad`` into one [B, T] long tensor."""
    import torch

    batch = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.tensor(s)
    return batch


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "data2vec.cli", *args]


def set_args(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]
