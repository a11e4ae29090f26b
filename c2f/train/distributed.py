"""Data-parallel training within one job: torchrun, or submitit's tasks_per_node (SLURM, local).

One process per device; rank 0 alone writes metrics, checkpoints and W&B. The sampler gives
each rank an interleaved share of one global permutation, so that with a global batch split
evenly the ranks together see exactly the batches a single process would.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from c2f.data.sampling import Draw
from c2f.spec import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def skips(self, size: int, may_skip: bool) -> tuple[bool, int]:
        """Whether a step is skipped: its batch lost all its clips (dataset.on_bad_audio=skip),
        and the good clips the skip leaves untrained, over all ranks. Under DDP every rank
        skips a step one rank's batch lost, so that none waits for the others in the step's
        collectives (the gradients' all-reduce, synced batch norm): the other ranks' clips
        of that step go untrained, and are counted."""
        if not (self.active and may_skip):
            return size == 0, 0
        empty, clips = all_sum([float(size == 0), float(size)], self)
        return empty > 0, int(clips) if empty > 0 else 0


def world_from_env() -> World:
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # torchrun
        return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                     int(os.environ.get("LOCAL_RANK", 0)))
    executor = os.environ.get("SUBMITIT_EXECUTOR")  # tasks_per_node of a SLURM or local job
    tasks = os.environ.get("SUBMITIT_LOCAL_NTASKS" if executor == "local" else "SLURM_NTASKS")
    if executor and int(tasks or 1) > 1:
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment().export()  # sets MASTER_ADDR/PORT, RANK, ...
        return World(env.rank, env.world_size, env.local_rank)
    return World()


def init_world(requested: str) -> World:
    """Join the process group when launched with several processes; else a world of one.
    ConfigError, before any data is read, when the device (`trainer.device`, `auto` resolved
    as device_for does) is a GPU this rank does not have.

    On GPUs each rank binds its own (`set_device`: object gathers and the loader's pinning
    thread use the current device) and the group has two backends: NCCL for the gradients and
    other CUDA tensors, gloo for the small host-side sums and object gathers (an NCCL-only
    group has no CPU backend)."""
    world = world_from_env()
    kind = device_for(world, requested).type
    if kind == "cuda" and torch.cuda.device_count() <= world.local_rank:
        found = torch.cuda.device_count()
        why = (f"torch {torch.__version__} was built without CUDA" if torch.version.cuda is None
               else f"{found} CUDA device(s) visible" + ("" if found else
                                                         " (no driver, or CUDA_VISIBLE_DEVICES)"))
        other = "trainer.device=cpu" if requested == "auto" else \
            "trainer.device=auto (the GPU where there is one, else the CPU) or cpu"
        raise ConfigError(f"`trainer.device={requested}`: no GPU for local rank "
                          f"{world.local_rank} here ({why}); run on a GPU node with a GPU per "
                          f"task, or set {other}")
    if kind == "cuda":
        torch.cuda.set_device(world.local_rank)
    if world.active and not dist.is_initialized():
        if kind == "cuda":
            dist.init_process_group("cpu:gloo,cuda:nccl", rank=world.rank,
                                    world_size=world.size,
                                    device_id=torch.device("cuda", world.local_rank))
        else:
            dist.init_process_group("gloo", rank=world.rank, world_size=world.size)
    return world


def device_for(world: World, requested: str) -> torch.device:
    kind = requested
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return torch.device("cuda", world.local_rank)
    return torch.device(kind)


def job_cpus() -> int:
    """CPUs this process may use: its share of a local sweep's machine (C2F_JOB_CPUS, set by
    `launcher=submitit_local`), the SLURM allocation per task, else the affinity mask."""
    for key in ("C2F_JOB_CPUS", "SLURM_CPUS_PER_TASK", "SLURM_JOB_CPUS_PER_NODE"):
        value = os.environ.get(key, "").split("(")[0].split(",")[0]
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def loader_workers(setting: int | str) -> int:
    """`trainer.num_workers`: a count, or `auto` = the job's CPUs less one for the trainer."""
    return max(0, job_cpus() - 1) if setting == "auto" else int(setting)


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum over ranks."""
    if not world.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(obj, world: World) -> list:
    """Every rank's `obj`, in rank order."""
    if not world.active:
        return [obj]
    parts: list = [None] * world.size
    dist.all_gather_object(parts, obj)
    return parts


def all_gather(array: np.ndarray, world: World) -> np.ndarray:
    """Concatenate every rank's rows."""
    return np.concatenate(gather_objects(array, world))


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


class ShardedShuffle(Sampler[int]):
    """This rank's share of a seeded global order: a permutation, or a balanced draw
    (c2f/data/sampling.py). Shares are padded to equal length by wrapping."""

    def __init__(self, length: int, seed: int, world: World, draw: Draw | None = None):
        self.length, self.seed, self.world, self.draw = length, seed, world, draw or Draw()
        self.skip = 0  # this rank's items of the pass already consumed (a resumed pass)

    def set_seed(self, seed: int) -> None:
        """The order of the next pass (one seed per epoch)."""
        self.seed = seed

    def _order(self) -> list[int]:
        return self.draw.order(self.length, torch.Generator().manual_seed(self.seed))

    def __iter__(self):
        order = self._order()
        per_rank = -(-len(order) // self.world.size)
        order += order[: per_rank * self.world.size - len(order)]
        return iter(order[self.world.rank:: self.world.size][self.skip:])

    def __len__(self) -> int:
        return max(0, -(-self.length // self.world.size) - self.skip)


def eval_indices(length: int, world: World) -> list[int]:
    """This rank's share of the eval set (no padding: every clip counted once)."""
    return list(range(world.rank, length, world.size))


def settled_clock(device: torch.device) -> float:
    """time.perf_counter() once the work queued on `device` is done (CUDA runs it later)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
