"""Data-parallel training: torchrun with 2 CPU processes (gloo) matches one process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    DDP_ARGS,
    ROOT,
    assert_matches_one_process,
    read_metrics,
    run_cli,
    run_dirs,
)

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
    from c2f.train.records import format_summary, summarize
    from tests.conftest import ROOT
    from tests.test_optim_metrics import eval_manifest

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["compression=fshift", "schedule=2phase"])
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    plan = build_plan(spec)
    records = [{"kind": "epoch", "phase": p, "C": c, "epoch": e, "final_phase": p == 1,
                "value": 0.1 * e, "flops": 10, "flops_cum": 10 * e, "seconds": 1.0,
                "seconds_cum": float(e), **({"untrained": n} if n else {})}
               for e, (p, c, n) in enumerate([(0, 4, 3), (1, 1, 0), (1, 1, 2)], 1)]
    evaluation = eval_manifest([(0,), (1,)], spec.dataset.num_classes)
    summary = summarize(spec, plan, records, {}, {"train": 0, "eval": 0}, evaluation)
    assert summary["untrained_clips"] == 5
    assert "WARNING: 5 good clip(s) went untrained: under DDP a step one rank's batch lost " \
        "entirely (all its clips bad) is skipped on every rank" in format_summary(summary, records)
    quiet = [{k: v for k, v in r.items() if k != "untrained"} for r in records]
    assert "untrained" not in format_summary(summarize(spec, plan, quiet, {}, {"train": 0,
                                                                             "eval": 0},
                                                       evaluation), quiet)


def _one_bad_clip(tmp_path, data_dir) -> list[str]:
    """A manifest dataset of 21 good built-in clips and one NaN file, which only decoding
    finds: with one clip per rank and step, it leaves its step's other clip untrained."""
    import json

    import numpy as np
    import soundfile

    from c2f.data.builtin import BuiltinParams, ensure_builtin

    paths = ensure_builtin(data_dir, BuiltinParams(train_per_class=2, eval_per_class=1,
                                                   clip_seconds=1.28))
    train = json.loads(paths["train"].read_text())["data"][:21]
    for entry in train:
        entry["wav"] = str((paths["train"].parent / entry["wav"]).resolve())
    nan_wav = tmp_path / "nan.wav"
    soundfile.write(nan_wav, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"data": [*train, {"wav": str(nan_wav),
                                                      "labels": train[0]["labels"]}]}))
    return ["dataset=manifest", "dataset.num_classes=11", "dataset.norm_mean=-8.0",
            "dataset.norm_std=6.0", f"dataset.train_manifest={manifest}",
            f"dataset.eval_manifest={paths['eval']}", f"dataset.labels_csv={paths['labels']}"]


def test_untrained_clips_are_counted_once_across_a_kill_inside_the_epoch(tmp_path, data_dir):
    """torchrun, 2 processes, one clip each per step, dataset.on_bad_audio=skip: the NaN clip's
    step is skipped on both ranks and the other rank's clip counted as untrained, once per
    epoch; killed after a checkpoint inside an epoch that already counted it, the resumed
    epoch neither loses the count nor counts it again."""
    import json
    import signal
    import time

    import torch

    from tests.conftest import TINY_TRAINING, cli_env, mid_epoch

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "run.py"), *TINY_TRAINING, *_one_bad_clip(tmp_path, data_dir),
           "dataset.batch_size=2", "dataset.epochs=2", "schedule=baseline", "logger=disabled",
           "dataset.on_bad_audio=skip", "trainer.checkpoint_minutes=0",
           f"paths.runs_dir={runs}", f"paths.data_dir={data_dir}", f"paths.root={tmp_path}"]
    log = tmp_path / "killed.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads while the run writes to it
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=cli_env())
    deadline, counted = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        tree = _process_tree(proc.pid)  # torchrun starts each worker in a session of its own
        _signal_all(tree, signal.SIGSTOP)  # frozen while its checkpoint is read
        if mid_epoch(runs, 0):
            [last] = runs.glob("*/*/ckpt/last.pt")
            progress = torch.load(last, weights_only=True)["state"]["progress"]
            if progress.get("untrained"):
                counted, epoch = progress, torch.load(last, weights_only=True)["state"]["epoch"]
                _signal_all(tree, signal.SIGKILL)
                break
        _signal_all(tree, signal.SIGCONT)
    proc.wait()
    assert counted is not None, log.read_text()[-3000:]
    assert counted["untrained"] == 1 and counted["steps"] < 11
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=cli_env())
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # (before the fix, a checkpoint inside an epoch held DDP's `module.` names: no resume)
    assert f"resuming phase 0's epoch {epoch + 1} after {counted['steps']} steps" in resumed.stdout
    [run] = runs.glob("*/*")
    epochs = [r for r in read_metrics(run) if r["kind"] == "epoch"]
    # per epoch: 22 clips, the NaN one skipped, its step's other clip untrained
    assert [(r["samples"], r["skipped"], r.get("untrained")) for r in epochs] == [(20, 1, 1)] * 2
    assert json.loads((run / "summary.json").read_text())["untrained_clips"] == 2
    assert "WARNING: 2 good clip(s) went untrained" in resumed.stdout


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc (Linux)."""
    tree, queue = [], [pid]
    while queue:
        parent = queue.pop()
        tree.append(parent)
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return tree


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def test_a_checkpoint_holding_the_wrappers_names_resumes(tmp_path):
    """Checkpoints written inside an epoch before the fix hold the names DDP, torch.compile and
    c2f's CUDA graphs give the model; they load under the model's own names."""
    import torch

    from c2f.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
    from c2f.train.graphs import GraphedModel

    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    ddp = torch.nn.Module()  # DDP's names: the model as its `module`
    ddp.module = model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for name, wrapped in [("ddp", ddp), ("compiled", torch.compile(model)),
                          ("compiled_ddp", torch.compile(ddp)),
                          ("graphs", GraphedModel(model, autocast=None))]:
        assert set(wrapped.state_dict()) != {"0.weight", "0.bias"}
        save_checkpoint(tmp_path / name, TrainState(epoch=1), wrapped, optimizer)
        loaded = load_checkpoint(tmp_path / name, log=lambda _: None)
        assert set(loaded.model) == {"0.weight", "0.bias"}, name
        torch.nn.Sequential(torch.nn.Linear(2, 3)).load_state_dict(loaded.model)


# 44 eval clips in batches of 1: 22 per rank, so that the ranks look for a stop signal at
# their 20th eval batch (c2f/train/progress.py's EVERY)
EVAL_LOOKS = ["dataset.builtin.eval_per_class=4", "dataset.eval_batch_size=1"]
# 132 training clips: 14 steps an epoch, still fewer than 20, and epochs long enough for the
# signal to come while one trains on a loaded machine (44 clips trained 3 epochs in 0.4 s)
LONGER_EPOCHS = ["dataset.builtin.train_per_class=12"]


@pytest.mark.parametrize("saved_at", ["epoch end", "evaluation"])
def test_a_sigterm_to_torchrun_saves_the_training_of_both_ranks(tmp_path, data_dir,
                                                                  ddp_reference, saved_at):
    """torchrun passes a SIGTERM on to its 2 processes as they train an epoch; its 14 (or 5)
    steps are fewer than the ranks' 20 between looks, so they agree to save after it: at the
    epoch's end, or, with 20 eval batches each, at the 20th, with the epoch's training (the
    resumed run evaluates it). Rank 0 says what last.pt holds; the relaunch resumes to the
    one-process metrics."""
    import re
    import signal
    import time

    from c2f.train.checkpoint import saved_state

    args = [*DDP_ARGS, *(EVAL_LOOKS if saved_at == "evaluation" else LONGER_EPOCHS)]
    run_cli(args, tmp_path / "one", data_dir)
    ddp_reference = read_metrics(run_dirs(tmp_path / "one")[0])
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "run.py"), *args, f"paths.runs_dir={runs}",
           f"paths.data_dir={data_dir}", f"paths.root={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "terminated.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads while the run writes to it
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline, state = time.monotonic() + 300, None
    while not (state and state["epoch"] >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
        state = next((saved_state(p) for p in runs.glob("*/*/ckpt")), None)
    proc.send_signal(signal.SIGTERM)  # as the next epoch trains
    proc.wait(timeout=120)
    said = log.read_text()
    assert "terminated (SIGTERM): rank 1 stopped; rank 0 says what is saved" in said, said
    saved = re.search(r"terminated \(SIGTERM\): (\d+) epoch\(s\)( and the training of epoch "
                      r"\d+ \(5 steps; evaluated on resume\))? saved in", said)
    assert saved, said[-3000:]
    if saved_at == "evaluation":  # the epoch the signal came in, before its evaluation ends
        assert saved.group(2) and int(saved.group(1)) == state["epoch"], said[-3000:]
    else:
        assert not saved.group(2) and int(saved.group(1)) > state["epoch"], said[-3000:]
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert_matches_one_process(read_metrics(run_dirs(runs)[0]), ddp_reference)
