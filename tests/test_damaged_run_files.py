"""A run folder whose files a crash, a full disk or a careless edit damaged: plan.json,
metrics.jsonl, config.yaml and checkpoints. Each is either rebuilt with a warning or refused
with an `error:` line (exit 2) that names the file and the fix; nothing computed is lost."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from c2f.files import atomic_torch_save
from c2f.track import RunDir, RunFileError
from tests.conftest import TINY, kill_after_records, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
ARGS = [*TINY, "logger=disabled"]  # 4 epochs


@pytest.fixture(scope="module")
def partial(tmp_path_factory, data_dir) -> Path:
    """A runs folder whose one run was killed with 2 or 3 epochs checkpointed."""
    runs = tmp_path_factory.mktemp("partial") / "runs"
    kill_after_records(ARGS, 3, runs, data_dir)
    return runs


def copy(partial: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the killed run: its runs folder and run folder."""
    runs = tmp_path / "runs"
    shutil.copytree(partial, runs)
    return runs, run_dirs(runs)[0]


def epochs_done(run: Path) -> int:
    return torch.load(run / "ckpt" / "last.pt", weights_only=True)["state"]["epoch"]


def assert_refused(proc, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert error, proc.stderr[-3000:]
    for phrase in phrases:
        assert phrase in error[0], error[0]


def test_a_cut_plan_json_is_rebuilt_with_a_warning(partial, tmp_path, data_dir):
    runs, run = copy(partial, tmp_path)
    plan = run / "plan.json"
    plan.write_text(plan.read_text()[:200])
    proc = run_cli(ARGS, runs, data_dir)
    assert f"warning: {plan} is unreadable" in proc.stdout
    assert "Lost: its W&B run id" in proc.stdout and "resuming from" in proc.stdout
    assert json.loads(plan.read_text())["phases"]  # written again
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_a_torn_last_metrics_line_is_dropped_a_bad_middle_line_is_named(partial, tmp_path,
                                                                         data_dir):
    runs, run = copy(partial, tmp_path)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    done = epochs_done(run)
    # a record in the middle garbled: named, nothing trained
    metrics.write_text("".join([lines[0][:40] + "\n", *lines[1:]]))
    assert_refused(run_cli(ARGS, runs, data_dir, check=False),
                   f"{metrics} line 1 is unreadable", "Restore the file", f"delete {run / 'ckpt'}")
    # a last line cut short (a torn append of an epoch the checkpoint lacks): dropped
    metrics.write_text("".join([*lines[:done], lines[done - 1][:60]]))
    proc = run_cli(ARGS, runs, data_dir)
    assert f"warning: {metrics} line {done + 1} is cut short" in proc.stdout
    assert f"({done} epoch(s) done)" in proc.stdout
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_records_missing_for_checkpointed_epochs_are_refused_not_summarized(
        partial, tmp_path, data_dir):
    """metrics.jsonl deleted: resuming would write a 'finished' summary judged on 2 epochs."""
    runs, run = copy(partial, tmp_path)
    (run / "metrics.jsonl").unlink()
    done = epochs_done(run)
    assert_refused(run_cli(ARGS, runs, data_dir, check=False),
                   f"{run / 'metrics.jsonl'} lacks the record(s) of epoch(s) 1-{done}",
                   "Restore the file", f"delete {run / 'ckpt'}")
    assert not (run / "summary.json").exists()
    shutil.rmtree(run / "ckpt")  # the second fix the error gives
    run_cli(ARGS, runs, data_dir)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_a_garbled_config_yaml_is_named_with_its_fix(partial, tmp_path, data_dir):
    runs, run = copy(partial, tmp_path)
    config = run / "config.yaml"
    config.write_text("model: [unclosed\n  - x: {")
    assert_refused(run_cli(ARGS, runs, data_dir, check=False),
                   f"{config} is unreadable (line ", "delete that file")
    config.unlink()  # as the error says: written again, the run resumes
    assert "resuming from" in run_cli(ARGS, runs, data_dir).stdout
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_no_readable_checkpoint_is_named_damaged_and_removing_it_trains_again(
        partial, tmp_path, data_dir):
    runs, run = copy(partial, tmp_path)
    last = run / "ckpt" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    proc = run_cli(ARGS, runs, data_dir, check=False)
    assert_refused(proc, f"no readable checkpoint in {run / 'ckpt'}: last.pt is damaged",
                   "truncated, or not a checkpoint", f"(rm {last})",
                   "trainer.keep_checkpoints=all")
    assert "weights_only" not in proc.stderr
    last.unlink()  # as the error says: the run trains again from epoch 1, in its folder
    proc = run_cli(ARGS, runs, data_dir)
    assert "resuming from" not in proc.stdout
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_an_unwritable_ckpt_folder_is_named_before_training(tmp_path, data_dir):
    """ckpt/ that cannot take a file (here: a file in its place; on a cluster, a folder
    made read-only): named before any work, and the probe leaves nothing behind."""
    runs = tmp_path / "runs"
    dry = run_cli([*ARGS, "trainer.dry_run=true"], runs, data_dir)
    run = Path(dry.stdout.split(" -> ")[1].split()[0])
    run.mkdir(parents=True)
    (run / "ckpt").write_text("not a folder")
    assert_refused(run_cli(ARGS, runs, data_dir, check=False),
                   f"cannot write {run / 'ckpt'} (", "paths.runs_dir")
    assert not list(run.glob(".write-test-*")) and not (run / "metrics.jsonl").exists()


def test_a_checkpoint_write_that_fails_says_why_and_leaves_no_half_file(tmp_path,
                                                                         monkeypatch):
    """A disk that fills during torch.save (torch raises its own RuntimeError), and a target
    that cannot be replaced: the path, the cause, the previous file intact, no temp file."""
    target = tmp_path / "ckpt" / "last.pt"
    atomic_torch_save({"epoch": 1}, target)
    before = target.read_bytes()

    def filling_save(obj, path):
        Path(path).write_bytes(b"x" * 4096)  # half a checkpoint, then the disk is full
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6198272")

    monkeypatch.setattr(torch, "save", filling_save)
    monkeypatch.setattr("c2f.files.shutil.disk_usage",
                        lambda path: SimpleNamespace(total=16 << 20, used=16 << 20, free=0))
    with pytest.raises(RunFileError) as raised:
        atomic_torch_save({"epoch": 2}, target)
    message = str(raised.value)
    assert f"cannot write {target} (No space left on device: 0.0 MiB free" in message
    assert "the previous last.pt is intact" in message and "run the same command" in message
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
    monkeypatch.undo()
    blocked = tmp_path / "ckpt" / "average.pt"
    (blocked / "inside").mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(RunFileError, match=f"cannot write {blocked} .*Is a directory"):
        atomic_torch_save({"epoch": 2}, blocked)
    assert not list(blocked.parent.glob(".*.tmp"))
    # torch's writer failing with room on the disk (a file-size limit, a quota): its text
    def limited_save(obj, path):
        Path(path).write_bytes(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096")

    monkeypatch.setattr(torch, "save", limited_save)
    with pytest.raises(RunFileError, match=r"cannot write .*last\.pt \(\[enforce fail at "
                       r"inline_container.cc:672\] \. unexpected pos 4096\); the previous"):
        atomic_torch_save({"epoch": 2}, target)
    monkeypatch.undo()
    # not the file system's doing: the error itself, not "free space"; Ctrl-C mid-write
    with pytest.raises(Exception, match="lambda") as raised:
        atomic_torch_save({"epoch": 2, "fn": lambda: None}, target)
    assert not isinstance(raised.value, RunFileError)

    def interrupted_save(obj, path):
        Path(path).write_bytes(b"x" * 4096)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"epoch": 2}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["average.pt", "last.pt"]
    assert target.read_bytes() == before


def test_an_unreadable_plan_keeps_the_wandb_id_its_logs_name(tmp_path):
    run = RunDir(tmp_path / "g" / "0123abcd")
    run.create("seed: 0\n", {"phases": []})
    kept = run.wandb_id()
    for name in (f"offline-run-20260101_000000-{kept}", "offline-run-19990101_000000-old-id"):
        (run.path / "wandb" / name).mkdir(parents=True)
    (run.path / "plan.json").write_text('{"phases": [')
    assert run.wandb_id() == kept  # a finished run, never rebuilt, still finds its W&B run
    said = []
    run.create("seed: 0\n", {"phases": []}, log=said.append)
    assert run.wandb_id() == kept
    assert len(said) == 1 and f"W&B run id {kept} from its wandb/ logs" in said[0]
    assert "initial_weights" in said[0] and "its W&B run id" not in said[0].split("Lost")[1]
