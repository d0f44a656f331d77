"""Multi-process training with torch.distributed: gloo on the CPU, NCCL on GPUs, under ``torchrun``.

Without torchrun's environment (RANK, WORLD_SIZE) everything runs in one process and the helpers
here are no-ops, so the same training command works on a laptop and on a multi-GPU node.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from USGenLib.train.devices import resolve_device


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _setup(device_name: str) -> tuple[Rank, torch.device]:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank(), resolve_device(device_name)
    rank = Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, rank.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return rank, device


def _teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device_name: str):
    """``with session(device) as (rank, device):`` joins torchrun's process group for the block.

    On success every rank waits at a barrier until rank 0 has validated and saved, then all leave
    together: destroy_process_group is collective, and a rank tearing down while another still runs
    can abort under gloo. After an error the rank leaves at once (the others would wait forever)."""
    rank, device = _setup(device_name)
    try:
        yield rank, device
    except BaseException:
        _teardown()
        raise
    barrier(rank)
    _teardown()


def wrap(module: torch.nn.Module, rank: Rank, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel when several processes train, else the module itself."""
    if not rank.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def mean_over_ranks(values: dict[str, float], rank: Rank, device: torch.device) -> dict[str, float]:
    """Average logged figures over processes so rank 0's log describes the whole batch."""
    if not rank.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / rank.world_size for k, v in zip(keys, t.tolist())}


def barrier(rank: Rank) -> None:
    if rank.distributed:
        dist.barrier()
