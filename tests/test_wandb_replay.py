"""W&B's files hold every epoch of metrics.jsonl after a SIGKILL and a resume: W&B's service
writes rows some time after `log`, so the killed attempt loses some; the resume logs them
again. Real W&B (offline), real kill, files read back as `wandb sync` would read them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import wandb_log
from tests.conftest import TINY, kill_after_records, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
ARGS = [*TINY, "logger=wandb", "logger.mode=offline", "dataset.epochs=4"]


def wandb_epochs(run: Path) -> list[int]:
    """The epochs with a training loss in the history of each of the run's offline folders."""
    return sorted(row["epoch"] for log in run.glob("wandb/offline-run-*/run-*.wandb")
                  for row in wandb_log.history(log) if "train_loss" in row)


@pytest.fixture
def shared_wandb_service(tmp_path, monkeypatch):
    """A W&B service of this process, which the runs it starts inherit (WANDB_SERVICE), as
    from a notebook or a script that used W&B, or `wandb beta core start`."""
    import wandb

    from c2f.tracker import Tracker

    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    parent = Tracker("offline", "c2f", None, "parent", "g", tmp_path / "parent", {
        "dataset": "d", "model": "m", "method": "none", "C": 1, "schedule": "s"})
    assert os.environ.get("WANDB_SERVICE"), "W&B no longer shares its service by env"
    yield
    parent.close()
    wandb.teardown()


def test_every_epoch_reaches_wandb_after_a_kill_and_a_resume(tmp_path, data_dir,
                                                             shared_wandb_service):
    """Through a shared W&B service, which outlives the killed attempt and goes on holding
    its run ("run ID ... is in use"): the resume opens a service of its own, rather than
    training without W&B, and logs every epoch."""
    runs = tmp_path / "runs"
    kill_after_records(ARGS, 3, runs, data_dir)
    resumed = run_cli(ARGS, runs, data_dir)
    assert "could not open" not in resumed.stdout, resumed.stdout
    [run] = run_dirs(runs)
    epochs = [r["epoch"] for r in read_metrics(run) if "train_loss" in r]
    assert epochs == [1, 2, 3, 4]
    assert set(wandb_epochs(run)) == set(epochs), wandb_epochs(run)
    # finished, with W&B's files complete: a relaunch does not open W&B again
    folders = len(list(run.glob("wandb/offline-run-*")))
    again = run_cli(ARGS, runs, data_dir)
    assert "already finished" in again.stdout
    assert len(list(run.glob("wandb/offline-run-*"))) == folders


def test_a_finished_run_logs_its_epochs_to_wandb_once(tmp_path, data_dir):
    """Trained with logger=disabled (logger keys are not part of a run's identity): a
    relaunch with W&B finds it finished and logs its epochs, once."""
    runs = tmp_path / "runs"
    run_cli([*TINY, "logger=disabled", "dataset.epochs=2"], runs, data_dir)
    [run] = run_dirs(runs)
    args = [*ARGS, "dataset.epochs=2"]
    first = run_cli(args, runs, data_dir)
    assert "already finished" in first.stdout and "W&B: logged 2 epoch(s)" in first.stdout
    assert wandb_epochs(run) == [1, 2]
    second = run_cli(args, runs, data_dir)
    assert "W&B: logged" not in second.stdout and wandb_epochs(run) == [1, 2]


def test_an_online_run_whose_wandb_has_every_epoch_is_not_opened_again(tmp_path):
    """Online, W&B tells its last step on resume (`run.step`): epochs at or below it are not
    logged again, and count as logged, so that the finished run's relaunch leaves W&B shut."""
    from types import SimpleNamespace

    from c2f.tracker import Tracker, lacks_epochs

    tracker = Tracker("disabled", "c2f", None, "r", "g", tmp_path, {})
    rows = []
    tracker.run = SimpleNamespace(step=10**9, log=lambda row, step: rows.append(step),
                                  finish=lambda exit_code: None)
    records = [{"kind": "epoch", "epoch": e, "samples_cum": 8 * e, "train_loss": 1.0}
               for e in (1, 2)]
    assert tracker.replay(records) == 0 and rows == []
    assert lacks_epochs(tmp_path, records)
    tracker.close()
    assert not lacks_epochs(tmp_path, records)


def test_a_run_a_shared_service_holds_is_opened_in_a_service_of_its_own(tmp_path, monkeypatch):
    """W&B says the run is in use (a shared service holds it for a killed attempt): this
    process leaves that service (WANDB_SERVICE) and opens the run in a service of its own; if
    even that fails, this attempt trains without W&B, saying so (the next start logs what it
    lacks)."""
    from types import SimpleNamespace

    import wandb

    from c2f import tracker as tracking

    calls, held = [], []

    def init(**kwargs):
        calls.append(os.environ.get("WANDB_SERVICE"))
        if len(calls) <= len(held):
            raise RuntimeError(f"run ID {kwargs['id']} is in use")
        return SimpleNamespace(define_metric=lambda *args, **kwargs: None)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_SERVICE", "3-1-unix-/nonexistent")
    said, config = [], {"dataset": "d", "model": "m", "method": "fshift", "C": 4, "schedule": "s"}
    held.append(1)
    opened = tracking.Tracker("offline", "c2f", None, "r-1", "g", tmp_path, config,
                              log=said.append)
    assert opened.run is not None and calls == ["3-1-unix-/nonexistent", None]
    assert len(said) == 1 and said[0].startswith("note: the W&B service this process shares")
    monkeypatch.setenv("WANDB_SERVICE", "3-1-unix-/nonexistent")
    calls.clear(), said.clear(), held.append(2)
    left = tracking.Tracker("offline", "c2f", None, "r-1", "g", tmp_path, config,
                            log=said.append)
    assert left.run is None and len(calls) == 2 and said[1] == (
        "warning: W&B could not open run r-1 (run ID r-1 is in use); this attempt trains "
        "without it, and the next start logs the epochs W&B lacks")


def test_every_pretraining_evaluation_reaches_wandb_after_a_kill_and_a_resume(tmp_path,
                                                                              data_dir):
    """SSAST pretraining logs an evaluation record every `pretrain.eval_every` steps: the ones
    a killed attempt's W&B lost are logged again on resume, as a classification run's epochs."""
    from tests.test_pretrain import PRETRAIN

    args = [*PRETRAIN, "logger=wandb", "logger.mode=offline"]
    runs = tmp_path / "runs"
    kill_after_records(args, 2, runs, data_dir)
    run_cli(args, runs, data_dir)
    [run] = run_dirs(runs)
    steps = [r["global_step"] for r in read_metrics(run)]
    assert steps == [20, 40, 60, 80]
    logged = {row["global_step"] for log in run.glob("wandb/offline-run-*/run-*.wandb")
              for row in wandb_log.history(log) if "train_loss" in row}
    assert logged == set(steps)
    folders = len(list(run.glob("wandb/offline-run-*")))
    assert "already finished" in run_cli(args, runs, data_dir).stdout
    assert len(list(run.glob("wandb/offline-run-*"))) == folders
