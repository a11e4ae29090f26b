"""A run taken by another launch while a sweep runs, and Ctrl-C: real CLI processes, real locks
and signals. Neither is a failure: one line each, no traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from c2f.track import RunLock
from tests.conftest import TINY, run_cli, run_dirs, start_cli

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


def test_a_sweep_that_meets_a_held_run_at_launch_exits_0(tmp_path, data_dir):
    runs = tmp_path / "runs"
    held = _run_of([*SWEEP, "compression=fshift"], runs, data_dir)
    holder = RunLock(held)
    holder.acquire()
    try:
        proc = run_cli(["-m", *SWEEP, "compression=fshift,pool_avg"], runs, data_dir,
                       check=False)
    finally:
        holder.release()
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    assert "Traceback" not in text and "Error executing job" not in text, text[-5000:]
    assert "1 of 2 run(s) are being trained by other processes, not started" in text
