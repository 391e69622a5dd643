"""Distributed set-up, driven by the launcher's environment (torchrun sets RANK/WORLD_SIZE/LOCAL_RANK).

One process per device; NCCL on CUDA, gloo on CPU. Works with ``torchrun --nnodes N --rdzv-backend c10d`` and
elastic restarts (``--max-restarts``: every restart attempt gets its own store keys, see ``_attempt_store``). Only the student is wrapped in DDP (the teacher
gets no gradients and every rank applies the same EMA update). Rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda was requested but CUDA is not available; use train.device=cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(requested_device: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, store=_attempt_store(world))
    return DistInfo(rank, world, local_rank, device)


def _attempt_store(world: int):
    """Under torchrun the workers share the agent's TCPStore, which outlives a restart (``--max-restarts``); the
    restarted workers' gloo process group would read the dead workers' addresses from it and fail to connect
    (torch 2.13). A prefix per restart attempt gives each attempt its own keys. None (env://) outside torchrun."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    from torch.distributed.constants import default_pg_timeout

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                          timeout=default_pg_timeout)
    return dist.PrefixStore(f"data2vec/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
