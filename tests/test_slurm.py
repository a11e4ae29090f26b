"""Sweeps on a real SLURM (tests/slurm/cluster.sh): grid, relaunch, preemption, a failing job.

`.ci/run` starts the cluster; without one these tests start it themselves (root and apt
needed) and stop it afterwards, or skip with the reason printed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
SLURM_CONF = Path(os.environ.get("C2F_SLURM_STATE", "/tmp/c2f-slurm")) / "slurm.conf"
# One CPU per job, no GPU, no memory request: the test node has 2 cores. A 60-minute limit:
# submitit calls a signal before min(80% of the limit, limit - 10 min) a preemption, after it
# a timeout (so a 10-minute limit turns every preemption into a timeout).
ON_SLURM = ["launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=60", "logger=disabled", *TINY]
GRID = ["compression=fshift,pool_avg", "schedule=2phase,3phase", "schedule.c=4"]
TIMING = ("seconds", "seconds_cum")


@pytest.fixture(scope="module")
def slurm(request) -> dict:
    """The environment that reaches the cluster; starts (and later stops) it if needed."""
    started = False
    if subprocess.run([CLUSTER, "status"], capture_output=True).returncode != 0:
        proc = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            reason = "SLURM cannot be started here: " + (proc.stderr.strip().splitlines()
                                                         or ["no output"])[-1]
            plugins = request.config.pluginmanager
            with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
                plugins.get_plugin("terminalreporter").write_line(f"\n{__name__}: {reason}")
            pytest.skip(reason)
        started = True
    yield {"SLURM_CONF": str(SLURM_CONF)}
    if started:
        subprocess.run([CLUSTER, "stop"], capture_output=True, timeout=120)


def sweep_dirs(root: Path) -> list[Path]:
    """Hydra's sweep folders under root, oldest first."""
    return sorted(p.parent for p in root.glob("multirun/*/*/.submitit"))


def job_logs(sweep_dir: Path, suffix: str) -> list[str]:
    return [p.read_text() for p in sorted(sweep_dir.glob(f".submitit/*/*_log.{suffix}"))]


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir, slurm) -> tuple[Path, list[str]]:
    """2 methods x 2 schedules, once, on SLURM."""
    runs = tmp_path_factory.mktemp("grid") / "runs"
    args = ["-m", *ON_SLURM, *GRID]
    run_cli(args, runs, data_dir, env=slurm)
    return runs, args


def test_grid_lands_four_finished_runs(grid):
    runs, _ = grid
    found = {}
    for run in run_dirs(runs):
        records = read_metrics(run)
        assert (run / "summary.json").exists(), run
        found[(records[0]["method"], records[0]["schedule"])] = [r["C"] for r in records]
    assert found == {(method, schedule): [4, 1, 1, 1] if schedule == "2phase" else [4, 2, 1, 1]
                     for method in ("fshift", "pool_avg") for schedule in ("2phase", "3phase")}
    [sweep] = sweep_dirs(runs.parent)
    assert len(list(sweep.glob(".submitit/*_*/*_log.out"))) == 4  # four SLURM array tasks


def test_relaunch_trains_nothing(grid, data_dir, slurm):
    runs, args = grid
    before = {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in run_dirs(runs)}
    run_cli(args, runs, data_dir, env=slurm)
    after = {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in run_dirs(runs)}
    assert after == before and len(after) == 4
    logs = "".join(job_logs(sweep_dirs(runs.parent)[-1], "out"))
    assert logs.count("already finished") == 4


def test_impossible_job_stops_the_sweep_before_anything_is_submitted(tmp_path, data_dir, slurm):
    runs = tmp_path / "runs"
    proc = run_cli(["-m", *ON_SLURM, "compression=fshift", "schedule=3phase", "schedule.c=3,4"],
                   runs, data_dir, env={**slurm, "HYDRA_FULL_ERROR": "0"}, check=False)
    assert proc.returncode != 0
    assert "1 of 2 job(s) cannot run; nothing was started" in proc.stderr
    assert "needs an even C" in proc.stderr and "#0 schedule.c=3" in proc.stderr
    assert run_dirs(runs) == [] and not list(runs.parent.rglob(".submitit"))


def test_failing_job_is_reported_and_siblings_finish(tmp_path, data_dir, slurm):
    """A job that fails on the node (its SoundFont is missing: only the job can tell)."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", *ON_SLURM, "compression=fshift", "schedule=3phase", "schedule.c=4",
                    "dataset.builtin.soundfont=null,/no/such.sf2"],
                   runs, data_dir, env=slurm, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    report = out[out.index("1 of 2 job(s) failed"):]
    assert "soundfont=/no/such.sf2" in report.splitlines()[1] and "such.sf2" in report
    logs = [Path(p) for p in re.search(r"log: (.+)", report).group(1).split(", ")]
    assert logs and all(p.exists() for p in logs)
    assert "not an existing .sf2/.sf3 file" in logs[0].read_text()
    [run] = run_dirs(runs)
    assert [r["C"] for r in read_metrics(run)] == [4, 2, 1, 1]
    assert (run / "summary.json").exists()


def _metrics_without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run)]


def test_preempted_job_resumes_with_the_same_metrics(tmp_path, data_dir, slurm):
    from submitit.slurm.slurm import SlurmJob

    config = ["compression=fshift", "schedule=2phase", "schedule.c=4", "dataset.epochs=12"]
    reference = tmp_path / "reference" / "runs"
    run_cli([*TINY, *config, "logger=disabled"], reference, data_dir)  # config last: it wins
    [expected_run] = run_dirs(reference)
    expected = _metrics_without_timing(expected_run)

    runs = tmp_path / "slurm" / "runs"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *ON_SLURM, *config,
           f"paths.runs_dir={runs}", f"paths.data_dir={data_dir}", f"paths.root={runs.parent}"]
    env = {**os.environ, **slurm, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    metrics = runs / "default" / expected_run.name / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, "job never trained"
        time.sleep(0.1)
    [sweep] = sweep_dirs(runs.parent)
    [job_folder] = [p for p in sweep.glob(".submitit/*") if p.is_dir()]
    SlurmJob(folder=job_folder, job_id=job_folder.name)._interrupt()  # preemption
    done_at_signal = len(metrics.read_text().splitlines())
    output, _ = launcher.communicate(timeout=240)
    assert launcher.returncode == 0, output[-3000:]
    assert done_at_signal < len(expected), "the job finished before it was preempted"
    assert "this job is preempted" in "".join(job_logs(sweep, "err"))
    assert _metrics_without_timing(metrics.parent) == expected


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
