"""Multi-process training through ``torchrun`` and torch.distributed: which rank this is, and setting up the group.

``torchrun --nproc_per_node N -m mriganx train ...`` starts N processes with RANK, LOCAL_RANK and WORLD_SIZE set;
each joins one process group (NCCL on GPUs, Gloo on CPU), draws its own samples, and DistributedDataParallel
averages the gradients. Only rank 0 writes logs, figures, checkpoints and the model.

>>> World().is_main, World().size
(True, 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def join(device: str) -> World:
    """Join the process group that torchrun describes in the environment (a no-op when run as one process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = device != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return world


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
