"""A sweep on one machine (`launcher=submitit_local`): jobs run side by side in slots, each slot
its own GPUs (or, without GPUs, its own share of the CPUs), at most one job per slot.

submitit's local executor alone starts every job of a sweep at once and gives each the same
first `gpus_per_node` GPUs (and none at all when `gpus_per_node` is unset: the jobs would train
on the CPU of a GPU machine). Here the machine's GPUs (`visible_gpus`, default: those this
process sees) are cut into slots of `gpus_per_node` (default 1 when there are GPUs), a job
starts when a slot is free, and each job is told its CPUs: `cpus_per_task` (default: the
machine's CPUs shared between the slots) as OMP_NUM_THREADS and C2F_JOB_CPUS, which
`trainer.num_workers=auto` reads.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from c2f.train.distributed import job_cpus
from hydra_plugins.c2f_plugins.environ import job_environ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slots:
    """Where the jobs of a local sweep run: one entry per slot (its GPU ids, or none)."""

    gpus: list[list[int]]
    cpus_per_job: int

    def describe(self) -> str:
        where = ", ".join("GPU " + ",".join(map(str, gpus)) for gpus in self.gpus) if any(
            self.gpus) else "CPU"
        return (f"{len(self.gpus)} job(s) at a time ({where}), {self.cpus_per_job} CPU(s) "
                "each")


def visible_gpu_ids() -> list[int]:
    """The GPUs this process may use, by the ids its CUDA_VISIBLE_DEVICES gives them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        import torch

        return list(range(torch.cuda.device_count()))
    ids = [item.strip() for item in listed.split(",") if item.strip()]
    if not all(item.isdigit() for item in ids):
        raise ValueError(f"CUDA_VISIBLE_DEVICES={listed} names GPUs by other than their index; "
                         "give the pool as hydra.launcher.visible_gpus=[0,1,...]")
    return [int(item) for item in ids]


def plan_slots(*, gpus_per_node: int | None, visible_gpus: Sequence[int] | None,
               parallelism: int | None, cpus_per_task: int | None,
               tasks_per_node: int = 1) -> Slots:
    """The slots of a local sweep from the launcher's keys (None: decided from the machine)."""
    pool = list(visible_gpus) if visible_gpus is not None else visible_gpu_ids()
    per_job = (1 if pool else 0) if gpus_per_node is None else int(gpus_per_node)
    if per_job > len(pool):
        raise ValueError(f"hydra.launcher.gpus_per_node={per_job}, but this machine offers "
                         f"{len(pool)} GPU(s) ({pool or 'none'}): lower it, or name the GPUs "
                         "with hydra.launcher.visible_gpus")
    cpus, tasks = job_cpus(), max(1, int(tasks_per_node))  # the launcher's CPUs
    if per_job:
        groups = [pool[i:i + per_job] for i in range(0, len(pool) - per_job + 1, per_job)]
    else:  # CPU jobs: as many as the CPUs hold at cpus_per_task (1) each
        groups = [[]] * max(1, cpus // (tasks * (cpus_per_task or 1)))
    count = len(groups) if parallelism is None else int(parallelism)
    if count < 1:
        raise ValueError(f"hydra.launcher.parallelism={parallelism}: at least 1")
    # more jobs than GPU groups share them in turn (small jobs, several per GPU)
    gpus = [groups[i % len(groups)] for i in range(count)]
    per_cpu = cpus_per_task or max(1, cpus // (count * tasks))
    return Slots(gpus=gpus, cpus_per_job=int(per_cpu))


def job_cpus_environ(cpus: int) -> dict[str, str]:
    """A job's `cpus` as its thread count (unless OMP_NUM_THREADS is set) and its CPU count
    (C2F_JOB_CPUS, read by `trainer.num_workers=auto`)."""
    values = {"C2F_JOB_CPUS": str(cpus)}
    if "OMP_NUM_THREADS" not in os.environ:
        values["OMP_NUM_THREADS"] = str(cpus)
    return values


def submit_in_slots(executor: Any, submit: Callable[[Any], Any], items: Sequence[Any],
                    slots: Slots, poll_s: float = 0.5) -> list[Any]:
    """Submit each item when a slot is free (`submit(item)` returns a job of `executor`, a
    submitit.LocalExecutor); returns the jobs in item order once the last one has started."""
    free, running, jobs = list(range(len(slots.gpus))), {}, []
    for item in items:
        while not free:
            time.sleep(poll_s)
            for slot in [s for s, job in running.items() if job.done()]:
                free.append(slot)
                del running[slot]
        slot = free.pop(0)
        gpus = slots.gpus[slot]
        executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
        with job_environ(job_cpus_environ(slots.cpus_per_job)):
            running[slot] = submit(item)
        jobs.append(running[slot])
        where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
        log.info(f"started job {len(jobs)} of {len(items)} on {where} "
                 f"({len(jobs) - len(running)} ended)")
    return jobs
