"""Distributed data parallel set-up for runs launched by torchrun.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT for each process; with
``--nnodes N --rdzv-endpoint host:port`` the same variables describe a multi-node job, so
nothing here changes across nodes. NCCL is used on GPUs (one GPU per process, chosen by
LOCAL_RANK) and gloo on CPU. Without those variables the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    started_here: bool = False  # this module initialized the process group (and tears it down)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when launched by torchrun; returns (info, device).

    Under DDP on CUDA each process owns ``cuda:LOCAL_RANK`` whatever device was asked for.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())
    elif launched_by_torchrun():
        backend = "nccl" if device.type == "cuda" else "gloo"
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        info = DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), started_here=True)
    else:
        return DistInfo(), device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    return info, device


def teardown_distributed(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (the resume position).

    The order of epoch ``e`` depends only on (seed, e), as in DistributedSampler, so a resumed
    run sees exactly the batches the uninterrupted run would have. Works with world_size 1
    without a process group (num_replicas and rank are passed explicitly).
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip_samples = 0

    def set_position(self, epoch: int, skip_samples: int) -> None:
        self.set_epoch(epoch)
        self.skip_samples = skip_samples

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip_samples :])

    def __len__(self) -> int:
        return self.num_samples - self.skip_samples


def all_reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum ``values`` over ranks (identity for one process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(flag: bool, device: torch.device, info: DistInfo) -> bool:
    """True on every rank if any rank says True (a NaN on one rank stops all of them)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""
    if not info.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
