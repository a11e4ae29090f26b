"""Sweeps on a real SLURM (tests/slurm/cluster.sh): grid, relaunch, preemption, time limit,
two tasks per job, a failing job, a code snapshot. The cluster: tests/slurm_support.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import wandb_log
from tests.conftest import (
    DDP_ARGS,
    ROOT,
    TINY,
    assert_matches_one_process,
    finish,
    read_metrics,
    run_cli,
    run_dirs,
    start_cli,
)
from tests.slurm_support import (
    ON_SLURM,
    job_logs,
    signal_step,
    sweep_dirs,
    task_id,
    without_timing,
)

pytestmark = pytest.mark.slow
# fshift twice: jobs #4 and #5 are the runs of jobs #0 and #1 again (trained once)
GRID = ["compression=fshift,pool_avg,fshift", "schedule=2phase,3phase", "schedule.c=4"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir, slurm) -> tuple[Path, list[str], str]:
    """2 methods x 2 schedules, once, on SLURM (and two jobs that repeat runs)."""
    runs = tmp_path_factory.mktemp("grid") / "runs"
    args = ["-m", *ON_SLURM, *GRID]
    proc = run_cli(args, runs, data_dir, env=slurm)
    return runs, args, proc.stdout + proc.stderr


def test_grid_lands_four_finished_runs(grid):
    runs, _, out = grid
    assert "2 job(s) are the same run as an earlier job of this sweep" in out, out[-3000:]
    assert re.findall(r"^  #(\d) = #(\d) \(", out, re.MULTILINE) == [("4", "0"), ("5", "1")]
    found = {}
    for run in run_dirs(runs):
        records = read_metrics(run)
        assert (run / "summary.json").exists(), run
        found[(records[0]["method"], records[0]["schedule"])] = [r["C"] for r in records]
    assert found == {(method, schedule): [4, 1, 1, 1] if schedule == "2phase" else [4, 2, 1, 1]
                     for method in ("fshift", "pool_avg") for schedule in ("2phase", "3phase")}
    [sweep] = sweep_dirs(runs.parent)
    assert len(list(sweep.glob(".submitit/*_*/*_log.out"))) == 4  # four SLURM array tasks
    # it ends saying where the runs are and how to report them
    assert f"runs in {runs / 'default'}; report: python -m c2f.report {runs / 'default'}" in out


def test_relaunch_submits_nothing(grid, data_dir, slurm):
    """Finished runs are listed by the launcher and never queued: no job, no SLURM array."""
    runs, args, _ = grid
    before = {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in run_dirs(runs)}
    proc = run_cli(args, runs, data_dir, env=slurm)
    after = {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in run_dirs(runs)}
    assert after == before and len(after) == 4
    out = proc.stdout + proc.stderr
    assert "6 of 6 run(s) already finished, not started again" in out, out[-3000:]
    listed = re.findall(r"^  #\d+ .*-> (\S+)$", out, re.MULTILINE)
    assert len(listed) == 6 and set(listed) == {str(run) for run in after}
    assert len(sweep_dirs(runs.parent)) == 1  # nothing was submitted


def test_impossible_job_stops_the_sweep_before_anything_is_submitted(tmp_path, data_dir, slurm):
    runs = tmp_path / "runs"
    proc = run_cli(["-m", *ON_SLURM, "compression=fshift", "schedule=3phase", "schedule.c=3,4"],
                   runs, data_dir, env={**slurm, "HYDRA_FULL_ERROR": "0"}, check=False)
    assert proc.returncode != 0
    assert "1 of 2 job(s) cannot run; nothing was started" in proc.stderr
    assert "needs an even C" in proc.stderr and "#0 schedule.c=3" in proc.stderr
    assert run_dirs(runs) == [] and not list(runs.parent.rglob(".submitit"))


def test_a_sweep_sbatch_refuses_says_what_to_change(tmp_path, data_dir, slurm):
    """The test cluster has no GPUs: sbatch refuses a job array asking for one."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", *ON_SLURM, "seed=0,1", "hydra.launcher.gpus_per_node=1"], runs,
                   data_dir, env={**slurm, "HYDRA_FULL_ERROR": "0"}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "sbatch refused the sweep's job array: sbatch: error: Invalid generic resource" \
        in proc.stderr
    assert "Nothing was started" in proc.stderr and "gpus_per_node=1," in proc.stderr
    assert run_dirs(runs) == []


def test_failing_job_is_reported_and_siblings_finish(tmp_path, data_dir, slurm):
    """A job that fails on the node (its SoundFont is missing: only the job can tell)."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", *ON_SLURM, "compression=fshift", "schedule=3phase", "schedule.c=4",
                    "dataset.builtin.soundfont=null,/no/such.sf2"],
                   runs, data_dir, env=slurm, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # the list alone
    assert re.search(r"sweep: [12] of 2 job\(s\) ended \(1 failed: #1\)", out), out[-3000:]
    report = out[out.index("1 of 2 job(s) failed"):]
    assert "soundfont=/no/such.sf2" in report.splitlines()[1] and "such.sf2" in report
    logs = [Path(p) for p in re.search(r"log: (.+)", report).group(1).split(", ")]
    assert logs and all(p.exists() for p in logs)
    assert "not an existing .sf2/.sf3 file" in logs[0].read_text()
    [run] = run_dirs(runs)
    assert [r["C"] for r in read_metrics(run)] == [4, 2, 1, 1]
    assert (run / "summary.json").exists()


def test_preempted_job_resumes_with_the_same_metrics(tmp_path, data_dir, slurm):
    config = ["compression=fshift", "schedule=2phase", "schedule.c=4", "dataset.epochs=12"]
    reference = start_cli([*TINY, *config, "logger=disabled"],  # config last: it wins
                          tmp_path / "reference" / "runs", data_dir)  # on the other core
    runs = tmp_path / "slurm" / "runs"
    launcher = start_cli(["-m", *ON_SLURM, *config, "logger=wandb", "logger.mode=offline"],
                         runs, data_dir, env=slurm)
    deadline = time.monotonic() + 120
    while not (metrics := next(runs.glob("*/*/metrics.jsonl"), None)) or len(
            metrics.read_text().splitlines()) < 2:
        assert launcher.poll() is None and time.monotonic() < deadline, "job never trained"
        time.sleep(0.1)
    [sweep] = sweep_dirs(runs.parent)
    signal_step(task_id(sweep, 0), "USR2")  # preemption
    done_at_signal = len(metrics.read_text().splitlines())
    finish(launcher, timeout=240)
    finish(reference)
    expected = without_timing(read_metrics(run_dirs(tmp_path / "reference" / "runs")[0]))
    assert done_at_signal < len(expected), "the job finished before it was preempted"
    assert "this job is preempted" in "".join(job_logs(sweep, "err"))
    # the training was saved at the signal (after the step it came in), then requeued
    outs = "".join(job_logs(sweep, "out"))
    assert "USR2: saving the training at the next step" in outs and \
        "USR2: the training is saved" in outs, outs[-3000:]
    # and W&B was told: the run shows preempted, not failed
    kinds = {r.WhichOneof("record_type") for log in metrics.parent.glob("wandb/*/run-*.wandb")
             for r in wandb_log.records(log)}
    assert "preempting" in kinds, kinds
    assert without_timing(read_metrics(metrics.parent)) == expected


def test_a_sigterm_to_a_job_step_saves_its_training_before_it_is_killed(tmp_path, data_dir,
                                                                        slurm):
    """A preemption without a warning: SLURM cancels the step, SIGTERM to every process of it
    (W&B's service too: c2f goes on without it), SIGKILL later. The job saves its training at
    its next step; the sweep launched again resumes from there and finishes."""
    from c2f.train.checkpoint import saved_state

    args = ["-m", *ON_SLURM, "compression=fshift", "schedule=2phase", "schedule.c=4",
            "dataset.epochs=12", "logger=wandb", "logger.mode=offline"]
    runs = tmp_path / "runs"
    launcher = start_cli(args, runs, data_dir, env=slurm)
    deadline = time.monotonic() + 120
    while not (metrics := next(runs.glob("*/*/metrics.jsonl"), None)) or len(
            metrics.read_text().splitlines()) < 2:
        assert launcher.poll() is None and time.monotonic() < deadline, "job never trained"
        time.sleep(0.1)
    before = saved_state(metrics.parent / "ckpt")
    [sweep] = sweep_dirs(runs.parent)
    signal_step(task_id(sweep, 0), "TERM")
    launcher.communicate(timeout=240)  # the job was cancelled: the sweep says it failed
    outs, errs = "".join(job_logs(sweep, "out")), "".join(job_logs(sweep, "err"))
    assert "SIGTERM: the training is saved" in outs, outs[-3000:]
    assert "Traceback" not in errs, errs[-3000:]  # W&B's exit hook, its service gone, had one
    after = saved_state(metrics.parent / "ckpt")
    progress = (after.get("progress") or {}).get("steps", 0)
    assert (after["epoch"], progress) > (before["epoch"], 0), (before, after)
    again = run_cli(args, runs, data_dir, env=slurm)
    assert len(read_metrics(metrics.parent)) == 12, again.stdout[-2000:]


# About 70 s on one core: longer than the one-minute limit below.
LONG = ["compression=fshift", "schedule=2phase", "schedule.c=4", "dataset.epochs=40",
        "model.embed_dim=192", "model.depth=12", "model.num_heads=3"]


def test_job_past_its_time_limit_is_requeued_and_resumes(tmp_path, data_dir, slurm):
    """A real one-minute SLURM limit on a job that needs longer: SLURM signals it before the
    limit (signal_delay_s), submitit requeues it as a timeout, the run resumes from its
    checkpoint, as often as it takes, and finishes every epoch once. (That a requeued job
    resumes to an uninterrupted run's metrics is the preemption test's: the same requeue.)"""
    runs = tmp_path / "runs"
    run_cli(["-m", *ON_SLURM, *LONG, "hydra.launcher.timeout_min=1",
             "hydra.launcher.signal_delay_s=10"], runs, data_dir, env=slurm)
    [run] = run_dirs(runs)
    [sweep] = sweep_dirs(runs.parent)
    errors = "".join(job_logs(sweep, "err"))
    assert "this job is timed-out" in errors and "this job is preempted" not in errors
    assert (run / "summary.json").exists()
    last = re.escape(str(run / "ckpt" / "last.pt"))
    resumed = [int(n) for n in re.findall(rf"resuming from {last} \((\d+) epoch\(s\) done\)",
                                          "".join(job_logs(sweep, "out")))]
    assert resumed and all(0 < n < 40 for n in resumed), resumed
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == list(range(1, 41))
    assert [r["C"] for r in records] == [4] * 10 + [1] * 30


def test_two_slurm_tasks_train_one_run_like_one_process(tmp_path, data_dir, slurm,
                                                        ddp_reference):
    """tasks_per_node=2: DDP (gloo) through submitit's environment, as torchrun does it;
    preempted (USR2 to both tasks) after its first epoch: the ranks agree to save, rank 0
    requeues the job while rank 1 waits for the requeue to end it (it would crash in a
    collective without its peer), and the requeued job resumes to the one-process metrics."""
    from c2f.train.checkpoint import saved_state

    runs = tmp_path / "runs"
    launcher = start_cli(["-m", *ON_SLURM, *DDP_ARGS, "hydra.launcher.tasks_per_node=2"],
                         runs, data_dir, env=slurm)
    deadline, state = time.monotonic() + 180, None
    while not (state and state["epoch"] >= 1):
        assert launcher.poll() is None and time.monotonic() < deadline, "job never trained"
        time.sleep(0.05)
        state = next((saved_state(p) for p in runs.glob("*/*/ckpt")), None)
    [sweep] = sweep_dirs(runs.parent)
    signal_step(task_id(sweep, 0), "USR2")
    finish(launcher, timeout=300)
    assert "this job is preempted" in "".join(job_logs(sweep, "err"))
    outs = sorted(sweep.glob(".submitit/*/*_log.out"))
    assert [p.name.split("_")[-2] for p in outs] == ["0", "1"]  # one log per task
    said = [p.read_text() for p in outs]
    assert [s.count("FLOPs/sample") for s in said] == [2, 0], said  # rank 0 speaks, twice
    assert "USR2: the training is saved" in said[0] and "resuming from" in said[0], said[0]
    [run] = run_dirs(runs)
    assert_matches_one_process(read_metrics(run), ddp_reference)


def test_snapshot_keeps_edits_out_of_queued_jobs(tmp_path, data_dir, slurm):
    """A job held in the queue runs the code of its launch, not the code edited meanwhile."""
    repo = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(repo / "run.py"), "-m", *ON_SLURM, "hydra.launcher.snapshot=true",
           "+hydra.launcher.additional_parameters.begin=now+6",  # held in the queue
           f"paths.runs_dir={runs}", f"paths.data_dir={data_dir}", f"paths.root={tmp_path}"]
    env = {**os.environ, **slurm, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("multirun/*/*/.submitit/*/*_submission.sh")):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()
        time.sleep(0.1)
    job_py = repo / "c2f" / "train" / "job.py"
    job_py.write_text('raise RuntimeError("edited after launch")\n' + job_py.read_text())
    output, _ = launcher.communicate(timeout=180)
    assert launcher.returncode == 0, output[-3000:]
    [run] = run_dirs(runs)
    assert (run / "summary.json").exists()
    [code] = tmp_path.glob("multirun/*/*/code")
    assert "edited after launch" not in (code / "c2f" / "train" / "job.py").read_text()
