"""Multi-node and elastic runs under torchrun (gloo, CPU): two torchrun "nodes" on 127.0.0.1 joined by the c10d
rendezvous train as one 2-rank job, and with ``--max-restarts`` a worker killed mid-run makes the job restart from
the last checkpoint and end with the weights of the uninterrupted run, bit for bit. Both run FSDP in bf16 (its
mixed-precision policy over gloo)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MICRO_OVERRIDES, ROOT, kill9_when_logged
from test_dcp import _weights
from test_fsdp import _args, metrics

# bf16: FSDP's MixedPrecisionPolicy (bf16 all-gathers and reduce-scatters over gloo, fp32 sharded master weights)
COMMON = MICRO_OVERRIDES + ["train.precision=bf16", "train.parallel=fsdp", "train.max_update=8",
                            "train.save_interval_updates=2"]


def _worker(agent: int, rank: int) -> int:
    """The pid of torchrun ``agent``'s worker process of ``rank`` (read from /proc: its parent and environment)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent and f"RANK={rank}".encode() in env:
            return int(d.name)
    raise AssertionError(f"torchrun {agent} has no rank-{rank} worker")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_c10d_and_elastic_restart(speech_corpus, tmp_path):
    # two "nodes" (one torchrun each, one process per node) meet at a c10d rendezvous; --resume lets a restarted
    # job continue, and starts a new run when there is no checkpoint yet
    args = [*_args("audio-tiny-v1", speech_corpus, tmp_path / "nodes", COMMON), "--resume"]
    port = _free_port()
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "d2v-test",
            "-m", "data2vec.cli", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(node, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-4000:] for o in outs)
    meta_nodes = metrics(tmp_path / "nodes")
    assert [r["step"] for r in meta_nodes] == list(range(1, 9))
    from data2vec.train import dcp

    assert dcp.load_trainer_state(dcp.resolve(tmp_path / "nodes"))["world_size"] == 2

    # elastic: rank 1 is SIGKILLed by the test once update 3 is logged (the last checkpoint is update 2); torchrun
    # restarts both workers, which resume from it and finish; same job, same weights as the uninterrupted run
    run = tmp_path / "elastic"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts",
           "1", "-m", "data2vec.cli", *_args("audio-tiny-v1", speech_corpus, run, COMMON), "--resume"]
    proc = kill9_when_logged(cmd, run, 3, victim=lambda agent: _worker(agent, rank=1))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    log = proc.stdout + proc.stderr
    assert re.search(r"resuming at update [24]\b", log) and "starting at update 0" in log, log[-4000:]
    assert [r["step"] for r in metrics(run)] == list(range(1, 9))
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in meta_nodes]
    a, b = _weights(run), _weights(tmp_path / "nodes")
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert a[k].dtype == torch.float32 or not a[k].is_floating_point(), k  # the fp32 master weights
