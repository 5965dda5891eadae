"""Several processes training one model: ``torchrun --nproc_per_node=N main.py train ...``.

torchrun starts N copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address in the environment. Each copy cuts its crops from its own share of the
training images (:func:`shard_images`), the only ones it puts on its device, and takes as many
crops an epoch as every other; DistributedDataParallel averages the gradients. Process 0
alone writes checkpoints and the project. Validation is split over the processes and the
confusion matrices are summed, so every process takes the same best/last decisions. A stop
(Ctrl+C, the time budget) is agreed by all processes on every step, so none is left waiting in
a collective operation.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def shard_images(examples: list, rank: int, world: int) -> list:
    """Process ``rank``'s share of the training images: disjoint shares whose union is every
    image, balanced by the weight the crop sampler gives an image (the square root of its
    labeled pixels), so that each process's equal number of crops an epoch spreads over the
    images about as one process's would. With fewer labeled images than processes some
    processes share an image (each still crops differently: their samplers draw apart).
    The same on every process: it depends only on the images, in their order."""
    import numpy as np

    from engine.labels import UNLABELED

    if world <= 1:
        return list(examples)
    weights = [float(np.sqrt(np.count_nonzero(ex.label != UNLABELED))) for ex in examples]
    labeled = [i for i, w in enumerate(weights) if w > 0]
    if len(labeled) < world:
        return [examples[labeled[rank % len(labeled)]]] if labeled else list(examples)
    loads = [0.0] * world
    owner = {}
    # Heaviest first, each to the lightest share so far (ties: the lower rank).
    for i in sorted(labeled, key=lambda i: (-weights[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += weights[i]
    for i, w in enumerate(weights):  # images whose labels are all held out: no crops anyway
        if w == 0:
            owner[i] = i % world
    return [ex for i, ex in enumerate(examples) if owner[i] == rank]


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def current() -> DistInfo:
    """The process group in effect (world 1 when there is none)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_from_env(device_request: str = "auto") -> DistInfo:
    """Join the process group torchrun described; a no-op outside torchrun.

    NCCL when this process will train on a CUDA GPU (one GPU per process, by ``LOCAL_RANK``),
    gloo otherwise.
    """
    import torch
    import torch.distributed as dist

    if env_world_size() <= 1:
        return DistInfo()
    if dist.is_initialized():
        return current()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_request or "auto").lower() not in ("cpu", "mps")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group("nccl" if use_cuda else "gloo",
                            timeout=datetime.timedelta(minutes=30))
    return current()


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def agree(stop: bool, progress: float, device) -> tuple[bool, float]:
    """Every process learns whether any wants to stop, and the furthest progress (the schedule
    and the time budget then move in step everywhere)."""
    import torch
    import torch.distributed as dist

    flags = torch.tensor([1.0 if stop else 0.0, float(progress)], dtype=torch.float64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0].item() > 0), float(flags[1].item())


def sum_tensor(tensor):
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj, src: int = 0):
    import torch.distributed as dist

    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
