"""Training on several processes with PyTorch's DistributedDataParallel, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 -m napari_unet train ...

torchrun starts one process per GPU (or per group of CPU cores) and tells each its rank in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...). Every process loads
the same data and model; the :class:`~napari_unet.core.train.trainer.Trainer` then draws patches
seeded by rank, averages gradients through DDP (nccl between GPUs, gloo between CPU processes),
and leaves validation and every file write to rank 0. Without torchrun nothing changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import UserInputError
from ..network.devices import resolve_device


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes (one process: the defaults)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, prints and writes files."""
        return self.rank == 0


SINGLE = World()


def world_from_environment(device: str = "auto") -> World:
    """Join the process group torchrun set up (nccl on CUDA devices, gloo otherwise), or
    return :data:`SINGLE` when this process was not started by torchrun (or with one process).
    """
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return SINGLE
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except (KeyError, ValueError) as err:
        raise UserInputError(
            f"WORLD_SIZE is {size} but RANK/LOCAL_RANK are not set: start distributed training "
            "with torchrun (torchrun --nproc_per_node=N -m napari_unet train ...)"
        ) from err
    import torch.distributed as dist

    cuda = resolve_device(device).type == "cuda"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UserInputError(
                f"process {local_rank} on this node has no GPU of its own "
                f"({torch.cuda.device_count()} visible); start at most that many per node"
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank=rank, size=size, local_rank=local_rank, backend=backend)


def device_for(world: World, device: str) -> str:
    """The device this process trains on: its own GPU (``cuda:LOCAL_RANK``) when distributed."""
    if world.distributed and resolve_device(device).type == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def shutdown(world: World) -> None:
    """Leave the process group (nothing to do for a single process)."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def agree(world: World, device: torch.device, loss: float, seconds: float) -> tuple[float, float]:
    """A step's loss averaged over the processes, and rank 0's clock. Each process's clock
    differs a little; all must use the same learning rate and stop at the same step (one that
    stopped alone would leave the others waiting for its gradients)."""
    if not world.distributed:
        return loss, seconds
    import torch.distributed as dist

    on = device if world.backend == "nccl" else torch.device("cpu")
    clock = seconds if world.is_main else 0.0
    shared = torch.tensor([loss / world.size, clock], dtype=torch.float64, device=on)
    dist.all_reduce(shared)
    return float(shared[0]), float(shared[1])
