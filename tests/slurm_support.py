"""Helpers for tests on the SLURM test cluster (tests/slurm/cluster.sh; the `slurm` fixture
that reaches it is in conftest.py)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import TINY

# One CPU per job, no GPU, no memory request: the test node has 2 cores. A 60-minute limit:
# submitit calls a signal before min(80% of the limit, limit - 10 min) a preemption, after it
# a timeout (so a 10-minute limit turns every preemption into a timeout).
ON_SLURM = ["launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=60", "logger=disabled", *TINY]
# what differs between two runs of one config: their times, and where they ran
TIMING = ("seconds", "seconds_cum", "host", "device", "slurm_job")


def sweep_dirs(root: Path) -> list[Path]:
    """Hydra's sweep folders under root, oldest first."""
    return sorted(p.parent for p in root.glob("multirun/*/*/.submitit"))


def job_logs(sweep_dir: Path, suffix: str) -> list[str]:
    """The text of every task's submitit log (`out` or `err`)."""
    return [p.read_text() for p in sorted(sweep_dir.glob(f".submitit/*/*_log.{suffix}"))]


def task_id(sweep_dir: Path, index: int) -> str:
    """The SLURM id of the sweep's job `index`: "<array id>_<index>", or the job id of a sweep
    of one job (submitit submits it without an array)."""
    folders = [p.name for p in sweep_dir.glob(".submitit/*") if p.is_dir()]
    found = [name for name in folders if name.endswith(f"_{index}")] or (
        folders if index == 0 and len(folders) == 1 else [])
    assert len(found) == 1, f"task {index} of {sweep_dir}/.submitit: {folders}"
    return found[0]


def signal_step(task: str, signal: str) -> None:
    """Send `signal` to the job's training step, as SLURM's preemption warning (USR2) or a
    kill (KILL) reaches it. (Not `scancel --signal X JOB`: SLURM refuses it while submitit
    requeues the job, and scancel retries until it hits the requeued job's start.)"""
    subprocess.run(["scancel", f"--signal={signal}", f"{task}.0"], check=True, timeout=30)


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]
