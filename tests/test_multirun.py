"""The issue's multirun: three methods x two schedules, locally, in one Hydra process."""
from __future__ import annotations

import re

import pytest

from tests.conftest import TINY, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow


def test_six_run_multirun_and_a_relaunch_that_runs_only_the_new_one(tmp_path, data_dir):
    runs = tmp_path / "runs"
    grid = ["-m", "compression=fshift,pool_avg,patch_pi", "schedule=2phase,3phase",
            "schedule.c=4", "dataset.epochs=4", *TINY, "logger=disabled"]
    run_cli(grid, runs, data_dir)
    found = {}
    for run in run_dirs(runs):
        records = read_metrics(run)
        assert (run / "summary.json").exists(), run
        found[(records[0]["method"], records[0]["schedule"])] = [r["C"] for r in records]
    assert found == {
        (method, schedule): ([4, 1, 1, 1] if schedule == "2phase" else [4, 2, 1, 1])
        for method in ("fshift", "pool_avg", "patch_pi") for schedule in ("2phase", "3phase")
    }
    before = {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in run_dirs(runs)}
    grid[1] += ",pool_max"  # one more method: its two runs are the only ones trained
    out = run_cli(grid, runs, data_dir).stdout
    assert "6 of 8 run(s) already finished, not started again" in out, out[-3000:]
    assert "Launching 2 jobs locally" in out
    listed = re.findall(r"^  #\d+ .*-> (\S+)$", out, re.MULTILINE)
    assert sorted(listed) == sorted(str(run) for run in before)
    assert {run: (run / "metrics.jsonl").stat().st_mtime_ns for run in before} == before
    assert len(run_dirs(runs)) == 8


def test_multilabel_builtin_reports_map(tmp_path, data_dir):
    runs = tmp_path / "runs"
    run_cli(["dataset=builtin_multilabel", "compression=pool_max", "schedule=2phase",
             "schedule.c=2", *TINY, "dataset.epochs=2", "logger=disabled"], runs, data_dir)
    [run] = run_dirs(runs)
    records = read_metrics(run)
    assert [r["C"] for r in records] == [2, 1]
    for record in records:
        assert record["metric"] == "mAP" and record["value"] == record["mAP"]
        assert 0.0 < record["mAP"] <= 1.0 and 0.0 < record["AUC"] <= 1.0
        assert "d_prime" in record


def test_jobs_that_are_one_run_train_once_and_own_groups_tell_them_apart(tmp_path, data_dir):
    """trainer.precision is not part of a run's identity (how a run trains, not what): a
    sweep over it alone is one run, trained once and said so; a group per precision (as the
    message says) splits it."""
    runs = tmp_path / "runs"
    sweep = ["-m", *TINY, "logger=disabled", "dataset.epochs=1", "trainer.precision=fp32,bf16",
             "group=one,p-${trainer.precision}"]
    out = run_cli(sweep, runs, data_dir).stdout
    assert "1 job(s) are the same run as an earlier job of this sweep, trained once" in out
    one = runs / "one"
    [run] = [run for run in run_dirs(runs) if run.parent == one]
    assert f"  #2 = #0 (trainer.precision=bf16) -> {run}" in out, out[-3000:]
    assert "'group=mine-${trainer.precision}'" in out
    assert "Launching 3 jobs locally" in out and len(read_metrics(run)) == 1
    split = {run.parent.name for run in run_dirs(runs) if run.parent != one}
    assert split == {"p-bf16", "p-fp32"}
    assert all((run / "summary.json").exists() for run in run_dirs(runs))
