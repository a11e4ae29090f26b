"""Failures of a training epoch that a relaunch with other settings fixes: the device out of
memory (`step.OutOfMemory`) and the loader's workers out of shared memory. Each is raised with
where it happened, that the run keeps its checkpoint, and what to change."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from c2f.train.checkpoint import saved_position
from c2f.train.step import OutOfMemory
from c2f.train.stopping import Interrupted


def interrupted(checkpoint: Path, stop: BaseException | None = None, rank: int = 0
                ) -> Interrupted:
    """What an interrupted (or terminated: `stop`) run keeps: what `checkpoint`
    (ckpt/last.pt) holds, read from it. Rank 0 says it: it writes last.pt, maybe still while
    the other ranks stop."""
    kind = type(stop) if isinstance(stop, Interrupted) else Interrupted
    what = getattr(kind, "WHAT", "interrupted")
    if rank:
        return kind(f"{what}: rank {rank} stopped; rank 0 says what is saved")
    if not checkpoint.exists():
        return kind(f"{what} before the first checkpoint: nothing saved; the same command "
                    "starts the run again")
    held = saved_position(checkpoint.parent)
    kept = f"{held} saved in" if held else "the run is kept in"
    return kind(f"{what}: {kept} {checkpoint}; the same command resumes")


class SharedMemoryExhausted(RuntimeError):
    """The loader's worker processes could not pass batches through /dev/shm."""


def _shared_memory(workers: int, phase: int, c: int, epochs_done: int) -> SharedMemoryExhausted:
    try:
        usage = shutil.disk_usage("/dev/shm")
        room = f"/dev/shm: {usage.free / 2**20:.0f} MB free of {usage.total / 2**20:.0f} MB; "
    except OSError:
        room = ""
    return SharedMemoryExhausted(
        f"the data loader's {workers} worker process(es) ran out of shared memory ({room}a "
        f"container gets 64 MB unless given more) at phase {phase} (C = {c}); the run keeps its "
        f"checkpoint ({epochs_done} epoch(s) done). Relaunch with trainer.num_workers=0 (the "
        "same run: it resumes, and its results do not depend on the worker count), or give the "
        "job more shared memory (docker run --shm-size=8g)")


def explain_failure(err: RuntimeError, *, device: str, where: str, phase: int, c: int,
                    batch: int, micro: int | None, workers: int, epochs_done: int) -> None:
    """Raise the clear error for `err` (from it) where there is one; return otherwise. Shared
    memory: torch says "unable to allocate shared memory", or a worker died of a bus error."""
    if isinstance(err, torch.OutOfMemoryError):
        raise OutOfMemory(device, where, phase, c, batch, micro, epochs_done) from err
    if workers and ("shared memory" in str(err) or "Bus error" in str(err)):
        raise _shared_memory(workers, phase, c, epochs_done) from err
