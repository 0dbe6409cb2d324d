"""Data-parallel training of one run over several processes: torch.distributed with
DistributedDataParallel (DDP), launched by `torchrun` or `accelerate launch --multi_gpu` (which runs
torchrun; both set RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables this reads).

What each process does in a step of `atod.train.trainer.run_training`: the step's `tasks_per_step`
tasks are the same on every process (the seeded TaskSampler); process r rolls out tasks r, r + n, ...
(`shard`) with its own sampling seed, scores them with its own copy of the teacher, computes their
advantages (GRPO groups and T-DUR weights never span two tasks, so they are what one process would
compute on the whole batch) and its loss; DDP averages the gradients, so with the same number of
episodes on every process the update is the one of the whole batch taken at once (tests compare the
two; with `updates_per_step` > 1 also when each process's episodes split evenly into the minibatches).
Process 0 alone validates, writes metrics, checkpoints and the final model; the others wait.

Not here: FSDP / DeepSpeed sharding (every process holds the whole student, its optimizer state and its
teacher, which is what the 0.6B-4B models of the paper need on 80-141 GB GPUs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# Processes 1..n-1 wait in a collective while process 0 validates or checkpoints: allow a long validation
# (a process that waits longer fails, and the launcher stops the others).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: rank in [0, world_size), local_rank (its GPU)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device  # where this process computes (its collectives' tensors live there)

    @classmethod
    def from_env(cls, device: torch.device | str) -> DataParallel | None:
        """None in a single process (WORLD_SIZE unset or 1); otherwise joins the process group (NCCL on
        CUDA, gloo on CPU; once per process) and returns this process's place, on CUDA with device
        cuda:LOCAL_RANK (which becomes the current device)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        device = torch.device(device)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"process with LOCAL_RANK {local_rank} but torch sees "
                                   f"{torch.cuda.device_count()} CUDA device(s): launch at most one process per GPU")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        if dist.get_world_size() != world:
            raise RuntimeError(f"WORLD_SIZE is {world} but the process group has {dist.get_world_size()} processes")
        return cls(rank=dist.get_rank(), world_size=world, local_rank=local_rank, device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This process's share of a step's items: items[rank::world_size]."""
        if len(items) % self.world_size:
            raise ValueError(f"{len(items)} items cannot be shared equally by {self.world_size} processes")
        return items[self.rank::self.world_size]

    def barrier(self) -> None:
        dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable), in rank order, on every process."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Process 0's `obj` on every process."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def process_device(models_cfg) -> tuple[torch.device, DataParallel | None]:
    """Where this process computes, and its place in a data-parallel run (None in a single process):
    `models.device` resolved (`atod.agent.models.resolve_device`: also applies torch_threads), then, under
    torchrun, the process group joined and, on CUDA, this process's own GPU (cuda:LOCAL_RANK)."""
    from atod.agent.models import resolve_device

    device = resolve_device(models_cfg)
    dp = DataParallel.from_env(device)
    return (device if dp is None else dp.device), dp


def wrap_model(model, dp: DataParallel | None):
    """The model the update computes its gradients through: `model` itself in one process, else a
    DistributedDataParallel around it (same parameters; process 0's values are broadcast to the others)."""
    if dp is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dp.device.index] if dp.device.type == "cuda" else None)
