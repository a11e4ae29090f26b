"""Every job's config of a sweep, composed side by side in forked processes when it has many.

Hydra composes one job in 0.2-0.4 s on a 2-core machine (it builds the defaults list from the
YAML files anew for each job), so the launchers' composition of every job before any starts
(to check them all) took ~18 s of a 44-job dry run. Jobs are split into contiguous chunks,
each composed in a process forked from the launcher (Hydra's loader and config store as they
are, nothing imported again) and sent back pickled, in the sweep's order; a pickled config
keeps the values it resolved once (the sweep folder's ${now:...}, copied from the launcher's
config by Hydra's `load_sweep_config`).

Sequential instead: with fewer than `JOBS_PER_PROCESS` jobs per extra process, where `fork` is
not available or not safe (another thread is running); and for any job a process could not
compose (or all of them, if a process died): it is composed here again, so Hydra's own error is
raised as it would be."""
from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from omegaconf import DictConfig

JOBS_PER_PROCESS = 8  # a process (fork, pickling back) pays off from about this many jobs
MAX_PROCESSES = 16

_loader = None  # what the forked processes compose with: set before they are forked
_master: DictConfig | None = None


def _compose_chunk(chunk: Sequence[Sequence[str]]) -> list[DictConfig | None]:
    """In a forked process: the configs of a chunk of jobs (None where composing failed)."""
    out = []
    for overrides in chunk:
        try:
            out.append(_loader.load_sweep_config(_master, list(overrides)))
        except Exception:  # raised again, as Hydra words it, where the launcher composes it
            out.append(None)
    return out


def processes_for(jobs: int) -> int:
    """How many processes compose `jobs` jobs (1: the launcher alone)."""
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, jobs // JOBS_PER_PROCESS, MAX_PROCESSES))


def compose_jobs(loader, master: DictConfig,
                 job_overrides: Sequence[Sequence[str]]) -> list[DictConfig]:
    """`loader.load_sweep_config(master, overrides)` for every job, in the sweep's order."""
    global _loader, _master
    processes = processes_for(len(job_overrides))
    if processes == 1:
        return [loader.load_sweep_config(master, list(o)) for o in job_overrides]
    size = -(-len(job_overrides) // processes)
    chunks = [job_overrides[i:i + size] for i in range(0, len(job_overrides), size)]
    _loader, _master = loader, master
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(len(chunks), mp_context=context) as pool:
            composed = [c for chunk in pool.map(_compose_chunk, chunks) for c in chunk]
    except Exception:  # a process died (BrokenProcessPool: killed, out of memory), or a config
        composed = [None] * len(job_overrides)  # did not pickle: every job is composed here
    finally:
        _loader = _master = None
    return [loader.load_sweep_config(master, list(overrides)) if config is None else config
            for overrides, config in zip(job_overrides, composed)]
