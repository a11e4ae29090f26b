"""Failures that real sweeps meet, against real processes and files: a loss that blows up, and
checkpoints that a dying node or a full disk left unreadable."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY, kill_after_records, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
BASE = [*TINY, "logger=disabled", "dataset.epochs=3"]
SAME = ("value", "train_loss", "eval_loss", "flops", "flops_cum", "samples", "lr", "C")


def test_nan_loss_stops_at_its_step_keeps_the_last_good_checkpoint_and_is_not_repeated(
        tmp_path, data_dir):
    """From epoch 2 on the learning rate is infinite (gamma = inf): the first update of that
    epoch makes the weights infinite and the next loss NaN."""
    args = [*BASE, "optim.gamma=inf", "optim.milestones_start=1"]
    runs = tmp_path / "runs"
    first = run_cli(args, runs, data_dir, check=False)
    assert first.returncode == 3
    steps = 4  # 44 clips in batches of 11
    assert (f"the training loss became NaN at phase 0 (C = 1), epoch 2, step {steps + 2} of "
            "the phase") in first.stderr
    assert "lower optim.lr, set optim.grad_clip" in first.stderr
    [run] = run_dirs(runs)
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # the good epoch is kept
    state = torch.load(run / "ckpt" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 1
    assert json.loads((run / "diverged.json").read_text())["step"] == steps + 2
    again = run_cli(args, runs, data_dir, check=False)
    assert again.returncode == 2 and "diverged before" in again.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # nothing was trained again


def truncate(path) -> None:
    """What a node dying mid-write leaves on a filesystem without atomic rename."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_unreadable_checkpoints_fall_back_to_the_newest_readable_one(tmp_path, data_dir):
    """last.pt and the newest kept checkpoint truncated: the run resumes from the one before,
    trims metrics.jsonl to it, and ends with the straight run's metrics."""
    args = [*BASE, "trainer.keep_checkpoints=all"]
    straight = tmp_path / "straight"
    run_cli(args, straight, data_dir)
    expected = read_metrics(run_dirs(straight)[0])
    runs = tmp_path / "runs"
    kill_after_records(args, 2, runs, data_dir)
    [run] = run_dirs(runs)
    truncate(run / "ckpt" / "last.pt")
    truncate(run / "ckpt" / "epoch0002.pt")
    proc = run_cli(args, runs, data_dir)
    assert "unreadable" in proc.stdout and "resuming from" in proc.stdout
    assert "epoch0001.pt (epoch 1)" in proc.stdout
    assert [{k: r[k] for k in SAME} for r in read_metrics(run)] == \
        [{k: r[k] for k in SAME} for r in expected]


def test_no_readable_checkpoint_says_what_to_do(tmp_path, data_dir):
    runs = tmp_path / "runs"
    kill_after_records(BASE, 1, runs, data_dir)
    [run] = run_dirs(runs)
    truncate(run / "ckpt" / "last.pt")
    proc = run_cli(BASE, runs, data_dir, check=False)
    assert proc.returncode != 0
    assert "no readable checkpoint" in proc.stderr and f"delete {run}" in proc.stderr
    assert "trainer.keep_checkpoints=all" in proc.stderr
