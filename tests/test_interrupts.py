"""A run taken by another launch while a sweep runs, and Ctrl-C: real CLI processes, real locks
and signals. Neither is a failure: one line each, no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from c2f.track import RunLock
from tests.conftest import (
    ROOT,
    TINY,
    cli_command,
    cli_env,
    read_metrics,
    run_cli,
    run_dirs,
    start_cli,
)

pytestmark = pytest.mark.slow
SWEEP = [*TINY, "logger=disabled", "dataset.epochs=2", "schedule=2phase"]


def _run_of(args: list[str], runs: Path, data_dir: Path) -> Path:
    """The run folder of `args` (a dry run names it)."""
    dry = run_cli([*args, "trainer.dry_run=true"], runs, data_dir)
    return Path(dry.stdout.split(" -> ")[1].split()[0])


@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
def test_a_run_taken_by_another_launch_during_the_sweep_is_skipped_not_failed(
        tmp_path, data_dir, launcher):
    """The sweep checked its runs when launched (none held); another launch then takes the
    second run before its job starts: that job ends as skipped, the sweep exits 0."""
    runs = tmp_path / "runs"
    held = _run_of([*SWEEP, "compression=pool_avg"], runs, data_dir)
    sweep = start_cli(["-m", f"launcher={launcher}", "hydra.launcher.parallelism=1", *SWEEP,
                       "compression=fshift,pool_avg"] if launcher == "submitit_local" else
                      ["-m", *SWEEP, "compression=fshift,pool_avg"], runs, data_dir)
    holder = RunLock(held)
    seen = []
    try:
        for line in sweep.stdout:  # launched: the held-at-launch check is behind it
            seen.append(line)
            if "Launching" in line or "Local sweep:" in line:
                holder.acquire()
                break
        out, err = sweep.communicate(timeout=600)
    finally:
        holder.release()
    text = "".join(seen) + out + err
    assert sweep.returncode == 0, text[-5000:]
    assert "Traceback" not in text and "Error executing job" not in text, text[-5000:]
    assert "not started" not in text  # not held when launched
    assert text.count("1 run(s) skipped, held by other processes:") == 1
    assert "compression=pool_avg" in text.split("skipped, held")[1].splitlines()[1]
    assert "job(s) failed" not in text
    trained = [r for r in run_dirs(runs) if (r / "summary.json").exists()]
    assert len(trained) == 1 and trained[0] != held


def _interrupt_after_records(args: list[str], runs: Path, data_dir: Path, records: int):
    """Start `run.py ARGS` as a terminal's foreground job; Ctrl-C (SIGINT to its process
    group, loader workers included) once metrics.jsonl has `records` lines and a checkpoint
    is written. Its exit status and stderr."""
    proc = subprocess.Popen(cli_command(args, runs, data_dir), cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=cli_env(), start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= records \
                and (found[0].parent / "ckpt" / "last.pt").exists():
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    assert not list(runs.glob("*/*/summary.json")), "the run finished before the Ctrl-C"
    return proc.returncode, err


def test_ctrl_c_says_what_is_saved_in_one_line_and_the_same_command_resumes(tmp_path,
                                                                             data_dir):
    """Ctrl-C: exit 130, one line naming the epochs saved and the checkpoint, no traceback;
    W&B's run ends with that exit code (W&B has no 'interrupted' state: see tracker.close)."""
    from tests import wandb_log

    args = [*TINY, "logger=wandb", "logger.mode=offline", "dataset.epochs=6"]
    runs = tmp_path / "runs"
    code, err = _interrupt_after_records(args, runs, data_dir, 1)
    [run] = run_dirs(runs)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    [line] = [x for x in err.splitlines() if x.startswith("interrupted")]
    saved = int(line.split("interrupted: ")[1].split()[0])
    assert line == (f"interrupted: {saved} epoch(s) saved in {run / 'ckpt' / 'last.pt'}; "
                    "the same command resumes")
    assert saved >= 1 and saved == torch.load(run / "ckpt" / "last.pt",
                                              weights_only=True)["state"]["epoch"]
    [log] = run.glob("wandb/offline-run-*/run-*.wandb")
    exits = [r.exit.exit_code for r in wandb_log.records(log)
             if r.WhichOneof("record_type") == "exit"]
    assert exits == [130]
    resumed = run_cli(args, runs, data_dir)
    assert f"({saved} epoch(s) done)" in resumed.stdout and len(read_metrics(run)) == 6


def test_ctrl_c_stops_a_sweep_in_one_line(tmp_path, data_dir):
    runs = tmp_path / "runs"
    code, err = _interrupt_after_records(
        ["-m", *SWEEP, "dataset.epochs=4", "compression=fshift,pool_avg"], runs, data_dir, 1)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "Error executing job" not in err, err[-3000:]
    [line] = [x for x in err.splitlines() if x.startswith("interrupted")]
    assert line.endswith("; the sweep stopped: launching it again trains only what is left")
    assert " epoch(s) saved in " in line


def _interrupt_submitit_sweep(runs: Path, data_dir: Path, group: bool):
    """A submitit_local sweep of two long runs, Ctrl-C'd once both run: to its whole process
    group (a terminal's Ctrl-C, which reaches the local jobs too) or to the launcher alone (as
    on SLURM, where the jobs run elsewhere). Its exit status and stderr (a file: jobs that go
    on hold the launcher's pipes)."""
    stderr = runs.parent / "stderr.txt"
    with stderr.open("w") as sink:
        proc = subprocess.Popen(
            cli_command(["-m", "launcher=submitit_local", *SWEEP, "dataset.epochs=1000",
                         "compression=fshift,pool_avg"], runs, data_dir), cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=sink, env=cli_env(), start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(runs.glob("*/*/ckpt/last.pt"))) < 2:
        time.sleep(0.05)
    (os.killpg if group else os.kill)(proc.pid, signal.SIGINT)
    return proc.wait(timeout=300), stderr.read_text()


@pytest.mark.parametrize("group", [False, True], ids=["launcher-only", "process-group"])
def test_ctrl_c_on_a_submitit_sweep_says_which_jobs_go_on(tmp_path, data_dir, group):
    """Jobs the Ctrl-C did not reach go on: the last line says so, with their ids and how to
    stop them, never 'the sweep stopped'; jobs it reached stop and keep their checkpoints."""
    runs = tmp_path / "runs"
    code, err = _interrupt_submitit_sweep(runs, data_dir, group)
    assert code == 130, err[-3000:]
    # submitit's local job controller, which the terminal's Ctrl-C reaches too, prints its own
    assert err.count("Traceback") == err.count("controller.run()"), err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted") and "the sweep stopped" not in line, err[-3000:]
    if group:
        assert line.startswith("interrupted: 2 running job(s) ended with this process")
        assert "go on" not in line and not list(runs.glob("*/*/summary.json"))
        return
    assert "2 job(s) go on without this process (scheduler ids " in line, line
    ids = line.split("scheduler ids ")[1].split(")")[0].split()
    assert f"`kill -INT {' '.join(ids)}` stops them" in line
    for pid in ids:  # they do go on, until stopped as the line says
        os.kill(int(pid), 0)
        os.kill(int(pid), signal.SIGINT)
    deadline = time.time() + 120
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in ids):
        time.sleep(0.2)
    assert not list(runs.glob("*/*/summary.json"))  # stopped before their 1000 epochs


def test_the_ctrl_c_line_says_what_the_checkpoint_holds(tmp_path):
    """Read from last.pt itself: epochs and the steps of a checkpoint inside an epoch (30
    minutes into an AudioSet epoch is not "0 epoch(s)"), or pretraining's steps."""
    from c2f.train.checkpoint import LAST, TrainState, save_checkpoint
    from c2f.train.failures import interrupted

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = tmp_path / "ckpt"
    assert "nothing saved" in str(interrupted(ckpt / LAST))
    save_checkpoint(ckpt, TrainState(epoch=3, progress={"steps": 40}), model, optimizer)
    assert str(interrupted(ckpt / LAST)) == (
        f"interrupted: 3 epoch(s) and 40 step(s) of epoch 4 saved in {ckpt / LAST}; the same "
        "command resumes")
    save_checkpoint(ckpt, TrainState(epoch=4), model, optimizer)
    assert str(interrupted(ckpt / LAST)).startswith("interrupted: 4 epoch(s) saved in")
    torch.save({"state": {"global_step": 60}, "model": {}}, ckpt / LAST)  # pretraining's
    assert str(interrupted(ckpt / LAST)).startswith("interrupted: 60 pretraining step(s) saved")
