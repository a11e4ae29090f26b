"""A sweep of many tiny jobs on the SLURM test cluster, with the ways real sweeps go wrong:
two jobs fail, one is killed from outside, one is preempted. Every other run finishes, the
failures are listed with their logs, a relaunch trains only the failed and killed runs, and
the report over the runs directory counts each run once.

The suite runs 6 jobs; `make test-load` runs the 50 of issue 13 (C2F_LOAD_JOBS=50) and prints
the counts and times.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, cli_command, cli_env, run_cli
from tests.slurm_support import ON_SLURM, job_logs, signal_step, sweep_dirs, task_id

pytestmark = pytest.mark.slow
JOBS = int(os.environ.get("C2F_LOAD_JOBS", "6"))
# 12 short epochs of a 2-block model: a few seconds per job, long enough to be hit mid-run.
CONFIG = ["compression=fshift", "schedule=2phase", "schedule.c=4", "dataset.epochs=12",
          "model.embed_dim=64", "model.depth=2", f"seed=range({JOBS})"]
FAILING = (0, JOBS - 1)  # their run directories are blocked by a stray file
KILLED, PREEMPTED = JOBS // 4, JOBS // 2


def run_paths(runs: Path, data_dir: Path) -> list[Path]:
    """Each job's run directory, in job order, from a dry run of the same sweep."""
    out = run_cli(["-m", *TINY, "logger=disabled", *CONFIG, "trainer.dry_run=true"], runs,
                  data_dir).stdout
    paths = [Path(p) for p in re.findall(r"^run \w+ -> (\S+)$", out, re.MULTILINE)]
    assert len(paths) == JOBS, out[-2000:]
    return paths


def hit_when_training(launcher: subprocess.Popen, runs: Path, paths: list[Path]) -> None:
    """Once each has started its run (its run directory has its config), kill one job's
    training process (SIGKILL, as the OOM killer or an admin does) and preempt another (USR2,
    SLURM's preemption warning)."""
    todo = {KILLED: "KILL", PREEMPTED: "USR2"}
    deadline = time.monotonic() + 600
    while todo:
        assert launcher.poll() is None and time.monotonic() < deadline, "jobs never started"
        for index in [i for i in todo if (paths[i] / "config.yaml").exists()]:
            [sweep] = sweep_dirs(runs.parent)
            signal_step(task_id(sweep, index), todo.pop(index))
        time.sleep(0.05)


def test_fifty_job_sweep_with_failures_a_kill_and_a_preemption(tmp_path, data_dir, slurm):
    runs = tmp_path / "runs"
    paths = run_paths(runs, data_dir)
    for index in FAILING:
        paths[index].parent.mkdir(parents=True, exist_ok=True)
        paths[index].write_text("not a directory")
    args = ["-m", *ON_SLURM, *CONFIG, "hydra.launcher.array_parallelism=4",
            "hydra.launcher.snapshot=true"]  # jobs run the code of their launch

    started = time.monotonic()
    # from the repository, as users launch; on Python < 3.11 (no PYTHONSAFEPATH) a snapshot
    # sweep must be launched from a folder that does not hold the code
    cwd = ROOT if sys.version_info >= (3, 11) else tmp_path
    launcher = subprocess.Popen(cli_command(args, runs, data_dir), cwd=cwd, text=True,
                                env=cli_env(slurm), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    hit_when_training(launcher, runs, paths)
    output, _ = launcher.communicate(timeout=1800)
    first_seconds = time.monotonic() - started
    assert launcher.returncode != 0 and f"3 of {JOBS} job(s) failed" in output, output[-5000:]
    report = output[output.index(f"3 of {JOBS} job(s) failed"):output.index("Finished runs are")]
    listed = dict(re.findall(r"#(\d+): .*\n\s+(\w+):", report))
    assert listed == {str(FAILING[0]): "ConfigError", str(FAILING[1]): "ConfigError",
                      str(KILLED): "UncompletedJobError"}, report
    # each names the folder it cannot write (a file stands where the run directory goes)
    assert sum(f"cannot write {paths[i]} (" in report for i in FAILING) == 2, report
    progress = re.findall(r"sweep: (\d+) of (\d+) job\(s\) ended(?: \(\d+ failed: [^)]*\))?, "
                          r"(\d+) running, (\d+) waiting", output)  # said while it waited
    assert progress[-1] == (str(JOBS), str(JOBS), "0", "0"), progress
    failed = ", ".join(f"#{i}" for i in sorted((*FAILING, KILLED)))  # counted as they ended
    assert f"sweep: {JOBS} of {JOBS} job(s) ended (3 failed: {failed})" in output
    assert any(int(running) > 0 for _, _, running, _ in progress), progress
    for logs in re.findall(r"log: (.+)", report):
        assert all(Path(p).exists() for p in logs.split(", ")), logs
    finished = [i for i, p in enumerate(paths) if (p / "summary.json").exists()]
    assert finished == [i for i in range(JOBS) if i not in (*FAILING, KILLED)]
    [sweep] = sweep_dirs(runs.parent)
    assert "this job is preempted" in "".join(job_logs(sweep, "err"))

    for index in FAILING:  # the user removes what blocked them, as the message says
        paths[index].unlink()
    started = time.monotonic()
    relaunched = run_cli(args, runs, data_dir, env=slurm, cwd=cwd)
    output = relaunched.stdout + relaunched.stderr
    relaunch_seconds = time.monotonic() - started
    relaunch = sweep_dirs(runs.parent)[-1]
    skipped = int(re.search(r"(\d+) of \d+ run\(s\) already finished", output).group(1))
    assert skipped == JOBS - 3  # only the two failed and the killed run were submitted again
    assert len(job_logs(relaunch, "out")) == 3
    assert all((p / "summary.json").exists() for p in paths)

    subprocess.run([sys.executable, "-m", "c2f.report", str(runs)], cwd=ROOT, check=True,
                   capture_output=True, env=cli_env())
    with open(runs / "report" / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["seed"]) for r in rows) == list(range(JOBS))
    assert {r["status"] for r in rows} == {"finished"}
    print(f"\n{JOBS} jobs, array_parallelism 4 on a 2-CPU node: first launch {first_seconds:.0f} s "
          f"({JOBS - 3} finished incl. 1 preempted and requeued; 2 failed, 1 killed, listed "
          f"with logs); relaunch {relaunch_seconds:.0f} s (3 trained, {skipped} skipped); "
          f"report: {len(rows)} runs, no duplicates")
