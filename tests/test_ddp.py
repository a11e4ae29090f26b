"""Data-parallel training: torchrun with 2 CPU processes (gloo) matches one process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
ARGS = [*TINY, "dataset.batch_size=10", "compression=pool_avg", "schedule=2phase",
        "schedule.c=2", "logger=disabled"]


def test_two_processes_match_one(tmp_path, data_dir):
    single = tmp_path / "single"
    run_cli(ARGS, single, data_dir)
    expected = read_metrics(run_dirs(single)[0])

    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "run.py"), *ARGS, f"paths.runs_dir={ddp}", f"paths.data_dir={data_dir}",
           f"paths.root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("GFLOPs/sample") == 1  # only rank 0 speaks
    got = read_metrics(run_dirs(ddp)[0])
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["samples"] == b["samples"] and a["flops"] == b["flops"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-4)
        assert a["acc"] == pytest.approx(b["acc"], abs=1.0 / 22)  # at most one clip flips


def test_auto_workers_use_the_jobs_cpus_less_one(monkeypatch):
    from c2f.train.distributed import loader_workers

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert loader_workers("auto") == 7
    assert loader_workers(3) == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.delenv("SLURM_JOB_CPUS_PER_NODE", raising=False)
    assert loader_workers("auto") == len(os.sched_getaffinity(0)) - 1
