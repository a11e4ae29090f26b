"""The W&B side of a run folder: one W&B run per folder, and a W&B that cannot finish (its
service stopped by a SLURM requeue's signal) does not become the job's outcome."""
from __future__ import annotations

import json

from c2f.track import RunDir
from c2f.tracker import Tracker


def test_each_run_folder_has_its_own_wandb_run_kept_across_relaunches(tmp_path):
    """One config in two groups, or a folder deleted and trained anew, are two W&B runs; a
    relaunch (requeue, resume) of one folder continues its W&B run."""
    first, other = RunDir(tmp_path / "a" / "0123abcd"), RunDir(tmp_path / "b" / "0123abcd")
    for run in (first, other):
        run.create("seed: 0\n", {"phases": []})
    assert first.wandb_id().startswith("0123abcd-") and first.wandb_id() != other.wandb_id()
    kept = first.wandb_id()
    first.create("seed: 0\n", {"phases": [], "code_version": "x"})  # relaunched
    assert first.wandb_id() == kept
    # a folder planned before wandb_id existed keeps the run's id, which its W&B run has
    older = RunDir(tmp_path / "c" / "0123abcd")
    older.path.mkdir(parents=True)
    (older.path / "plan.json").write_text(json.dumps({"phases": []}))
    older.create("seed: 0\n", {"phases": []})
    assert older.wandb_id() == "0123abcd"


def test_a_wandb_that_cannot_finish_is_said_not_raised(tmp_path):
    """A requeue's SIGTERM stops W&B's service before the job's `finally` closes the run:
    finishing then raises (here: after wandb.teardown()). The job's own outcome (the requeue's
    SystemExit) must be what propagates, not W&B's error."""
    import wandb

    said = []
    tracker = Tracker("offline", "c2f-test", None, "abc123-f00", "g", tmp_path,
                      {"dataset": "d", "model": "m", "method": "none", "C": 1,
                       "schedule": "baseline"}, log=said.append)
    tracker.run.log({"epoch": 1, "acc": 0.5})
    wandb.teardown()
    tracker.close(exit_code=1)  # raised AlreadyJoinedError before
    assert tracker.run is None
    assert len(said) == 1 and said[0].startswith("warning: W&B could not finish")
    assert list(tmp_path.glob("wandb/offline-run-*/run-abc123-f00.wandb"))  # its log kept


def test_a_wandb_whose_service_died_is_said_once_and_the_training_goes_on(tmp_path):
    """SLURM signals every process of a job step, W&B's service too: its next `log` raises
    (ConnectionResetError). The tracker says so once and stops logging; the run goes on, and
    its W&B files are left unfinished, so that the next start logs what they lack."""
    from types import SimpleNamespace

    from c2f.tracker import lacks_epochs

    def dead(*args, **kwargs):
        raise ConnectionResetError("Connection lost")

    said = []
    tracker = Tracker("disabled", "c2f", None, "r", "g", tmp_path, {}, log=said.append)
    tracker.run = SimpleNamespace(log=dead, step=0, summary={}, finish=dead)
    record = {"kind": "epoch", "epoch": 1, "samples_cum": 8, "train_loss": 1.0}
    tracker.log(record)
    tracker.log_step({"loss": 1.0}, 8)
    assert tracker.replay([record]) == 0
    tracker.close()
    assert said == ["warning: W&B stopped working (ConnectionResetError: Connection lost); "
                    "this attempt trains on without it, and the next start logs the epochs "
                    "W&B lacks"]
    assert lacks_epochs(tmp_path, [record])
