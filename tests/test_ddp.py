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


def test_untrained_clips_reach_the_summary_and_its_warning():
    """The epochs' `untrained` counts (good clips of DDP steps skipped for another rank's
    lost batch) add up in the run's summary, which warns; epochs without any carry no key."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from c2f.plan import build_plan
    from c2f.spec import build_spec
    from c2f.train.job import format_summary
    from c2f.train.records import summarize
    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["compression=fshift", "schedule=2phase"])
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    plan = build_plan(spec)
    records = [{"kind": "epoch", "phase": p, "C": c, "epoch": e, "final_phase": p == 1,
                "value": 0.1 * e, "flops": 10, "flops_cum": 10 * e, "seconds": 1.0,
                "seconds_cum": float(e), **({"untrained": n} if n else {})}
               for e, (p, c, n) in enumerate([(0, 4, 3), (1, 1, 0), (1, 1, 2)], 1)]
    summary = summarize(spec, plan, records, {}, {"train": 0, "eval": 0})
    assert summary["untrained_clips"] == 5
    assert "WARNING: 5 good clip(s) went untrained: under DDP a step one rank's batch lost " \
        "entirely (all its clips bad) is skipped on every rank" in format_summary(summary, records)
    quiet = [{k: v for k, v in r.items() if k != "untrained"} for r in records]
    assert "untrained" not in format_summary(summarize(spec, plan, quiet, {}, {"train": 0,
                                                                             "eval": 0}), quiet)
