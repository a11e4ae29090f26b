"""Data-parallel training: torchrun with 2 CPU processes (gloo) matches one process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import DDP_ARGS, ROOT, assert_matches_one_process, read_metrics, run_dirs

pytestmark = pytest.mark.slow


def test_two_processes_match_one(tmp_path, data_dir, ddp_reference):
    """Each process's 5 examples in micro-batches of 2 (trainer.micro_batch: DDP syncs the
    last only), and a checkpoint after every step inside an epoch (the ranks' sums gathered);
    the SLURM test (tests/test_slurm.py) runs whole batches, checkpointed at epoch ends."""
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "run.py"), *DDP_ARGS, "trainer.micro_batch=2",
           "trainer.checkpoint_minutes=0", f"paths.runs_dir={ddp}",
           f"paths.data_dir={data_dir}", f"paths.root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("FLOPs/sample") == 1  # only rank 0 speaks
    assert "each step's 5 examples run in 3 parts" in proc.stdout
    assert_matches_one_process(read_metrics(run_dirs(ddp)[0]), ddp_reference)


def test_auto_workers_use_the_jobs_cpus_less_one(monkeypatch):
    from c2f.train.distributed import loader_workers

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert loader_workers("auto") == 7
    assert loader_workers(3) == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.delenv("SLURM_JOB_CPUS_PER_NODE", raising=False)
    assert loader_workers("auto") == len(os.sched_getaffinity(0)) - 1


def _skip_votes(rank: int, sizes: list[list[int]], out: str) -> None:
    """One of two gloo processes: whether it skips each step, given its batches' sizes."""
    import json

    import torch.distributed as dist

    from c2f.train.distributed import World

    dist.init_process_group("gloo", rank=rank, world_size=2)
    world = World(rank, 2)
    votes = [world.skips(size, may_skip=True) for size in sizes[rank]]
    dist.destroy_process_group()
    with open(f"{out}/{rank}.json", "w") as f:
        json.dump(votes, f)


def test_a_step_one_rank_lost_all_its_clips_is_skipped_by_every_rank(tmp_path, monkeypatch):
    """dataset.on_bad_audio=skip under DDP: a rank whose batch lost every clip skips the step,
    and so do the others (else they would wait for it in the gradients' all-reduce); their
    clips of that step go untrained, and every rank knows how many."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    sizes = [[0, 3, 2], [4, 3, 0]]
    mp.spawn(_skip_votes, args=(sizes, str(tmp_path)), nprocs=2)
    votes = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    # a skipped step's good clips on the other rank are counted as untrained
    assert votes == [[[True, 4], [False, 0], [True, 2]]] * 2
