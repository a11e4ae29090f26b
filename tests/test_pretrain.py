"""SSAST pretraining through run.py (`-cn pretrain`): step-based phases whose masked-patch loss
falls, bitwise resume after a kill mid-phase and at the phase boundary, and a fine-tuning run
that starts from the pretraining run by naming it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import kill_after_records, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
# a tiny AST encoder on 1.28 s built-in clips: 8 x 2 patches at C = 4, 8 x 8 at C = 1
PRETRAIN = ["-cn", "pretrain", "dataset=builtin", "dataset.builtin.train_per_class=4",
            "dataset.builtin.eval_per_class=2", "dataset.builtin.clip_seconds=1.28",
            "dataset.target_length=128", "dataset.norm_mean=null", "dataset.norm_std=null",
            "model.embed_dim=32", "model.depth=1", "model.num_heads=2", "compression=fshift",
            "schedule.phases=[4,1]", "schedule.steps=[20,60]", "pretrain.eval_every=20",
            "dataset.batch_size=8", "optim.warmup_steps=10", "optim.lr=1e-3",
            "logger=disabled", "trainer.progress=false"]
SAME = ("C", "phase", "step", "global_step", "train_loss", "train_acc", "train_nce",
        "train_mse", "eval_acc", "eval_nce", "eval_mse", "lr", "flops", "flops_cum",
        "samples_cum")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_dir):
    """One finished tiny pretraining run: (runs dir, run dir, its records)."""
    runs = tmp_path_factory.mktemp("pretrain") / "runs"
    run_cli(PRETRAIN, runs, data_dir)
    [run] = run_dirs(runs)
    return runs, run, read_metrics(run)


def test_pretraining_phases_in_steps_and_its_loss_falls(pretrained):
    _, run, records = pretrained
    assert [(r["phase"], r["C"], r["step"]) for r in records] == [
        (0, 4, 20), (1, 1, 20), (1, 1, 40), (1, 1, 60)]
    assert all(r["kind"] == "pretrain" for r in records)
    # 20 steps of up to 8 clips (44 clips: every sixth batch of a pass holds 4)
    assert all(140 <= r["samples"] <= 160 for r in records)
    final = [r for r in records if r["phase"] == 1]
    assert final[-1]["train_loss"] < final[0]["train_loss"]
    assert final[-1]["eval_acc"] > 2 / 50  # chance: 1 of 50 masked patches
    plan = json.loads((run / "plan.json").read_text())
    assert [p["steps"] for p in plan["phases"]] == [20, 60]
    coarse, fine = (p["flops_per_sample"] for p in plan["phases"])
    assert coarse < 0.35 * fine  # a quarter of the patches, and 12 masked instead of 50
    assert [r["flops"] for r in records] == [
        (coarse if r["phase"] == 0 else fine) * r["samples"] for r in records]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["kind"] == "pretrain"
    assert summary["steps"] == 80 and (run / "ckpt" / "last.pt").exists()


@pytest.mark.parametrize("kill_after", [1, 2, 3],
                         ids=["at-phase-boundary", "mid-phase", "between-evaluations"])
def test_killed_pretraining_resumes_bitwise(pretrained, tmp_path, data_dir, kill_after):
    """Killed after an evaluation's checkpoint, or (checkpointing every step) between two
    evaluations, its running sums saved: the same records, bitwise."""
    expected = pretrained[2]
    runs = tmp_path / "runs"
    between = kill_after == 3
    args = [*PRETRAIN, *(["trainer.checkpoint_minutes=0"] if between else [])]
    kill_after_records(args, 2 if between else kill_after, runs, data_dir,
                       inside=between_evaluations if between else None)
    [run] = run_dirs(runs)
    assert len(read_metrics(run)) < len(expected)
    resumed = run_cli(args, runs, data_dir)
    if between:  # the checkpoint it resumed from was written between evaluations
        step = int(re.search(r"resuming at phase 1, step (\d+)", resumed.stdout).group(1))
        assert step % 20, resumed.stdout
    assert [{k: r[k] for k in SAME} for r in read_metrics(run)] == \
        [{k: r[k] for k in SAME} for r in expected]


def between_evaluations(runs: Path, _records: int) -> bool:
    """Whether the pretraining run's last.pt was written between two evaluations."""
    import torch

    found = list(runs.glob("*/*/ckpt/last.pt"))
    return bool(found) and bool(torch.load(found[0], weights_only=True)["state"]["interval"])


def test_finetuning_starts_from_the_pretraining_run_by_its_id(pretrained, tmp_path, data_dir):
    runs, run, _ = pretrained
    # no model.pretrained_grid: the preset's [8, 64] (SSAST's own 1024 frames) yields to the
    # grid the run pretrained at, 8 x 8, from its plan.json
    args = ["model=ssast_base", f"model.pretrained={run.name}", "model.embed_dim=32",
            "model.depth=1", "model.num_heads=2",
            "dataset.builtin.train_per_class=4", "dataset.builtin.eval_per_class=2",
            "dataset.builtin.clip_seconds=1.28", "dataset.target_length=128",
            "dataset.epochs=2", "optim.warmup_steps=2", "logger=disabled",
            "trainer.progress=false"]
    proc = run_cli(args, runs, data_dir)
    assert f"loaded {run / 'ckpt' / 'last.pt'}; left at init: head.0.bias, head.0.weight, " \
           "head.1.bias, head.1.weight" in proc.stdout
    finetuned = [r for r in run_dirs(runs) if r != run]
    assert len(finetuned) == 1 and len(read_metrics(finetuned[0])) == 2
    # the pretraining run it loaded, for the report's Table 6 pairing
    assert json.loads((finetuned[0] / "plan.json").read_text())["pretrained_run"] == \
        f"{run.parent.name}/{run.name}"


# adaptive: the coarse phase ends by the plateau rule after 1 evaluation without a gain (of
# at most 40 steps); the final phase gets the rest of the 80
ADAPTIVE = [*[a for a in PRETRAIN if not a.startswith(("schedule.steps", "pretrain.eval"))],
            "schedule=adaptive", "schedule.steps=[40,40]", "pretrain.eval_every=5",
            "schedule.switch.patience=1"]


def test_adaptive_pretraining_switches_in_evaluations_and_resumes_at_the_switch(tmp_path,
                                                                                data_dir):
    straight = tmp_path / "straight"
    proc = run_cli(ADAPTIVE, straight, data_dir)
    [run] = run_dirs(straight)
    records = read_metrics(run)
    [at] = [i for i, r in enumerate(records, 1) if "switch" in r]
    decision = records[at - 1]["switch"]
    assert decision["steps"] == 5 * at < 40 and decision["reason"].startswith("plateau")
    assert f"phase 0 (C = 4) ends after {decision['steps']} steps" in proc.stdout
    assert records[-1]["global_step"] == 80 and records[-1]["step"] == 80 - decision["steps"]
    plan = json.loads((run / "plan.json").read_text())
    assert [p["steps"] for p in plan["phases"]] == [decision["steps"], 80 - decision["steps"]]
    resumed = tmp_path / "resumed"
    kill_after_records(ADAPTIVE, at, resumed, data_dir)
    run_cli(ADAPTIVE, resumed, data_dir)
    [again] = run_dirs(resumed)
    assert [{k: r.get(k) for k in (*SAME, "switch")} for r in read_metrics(again)] == \
        [{k: r.get(k) for k in (*SAME, "switch")} for r in records]
    assert json.loads((again / "plan.json").read_text())["switches"] == [decision]


def _unfinished_copy(pretrained, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished pretraining run as if killed after its last checkpoint."""
    _, source, _ = pretrained  # (its runs dir also holds the fine-tuning test's run)
    run = tmp_path / "runs" / source.parent.name / source.name
    shutil.copytree(source, run)
    (run / "summary.json").unlink()
    return tmp_path / "runs", run


def _refused(proc, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")][0]
    for phrase in phrases:
        assert phrase in error, error


def test_a_damaged_pretraining_checkpoint_is_named_with_its_fix(pretrained, tmp_path,
                                                                  data_dir):
    runs, run = _unfinished_copy(pretrained, tmp_path)
    last = run / "ckpt" / "last.pt"
    last.write_bytes(last.read_bytes()[:20000])
    _refused(run_cli(PRETRAIN, runs, data_dir, check=False),
             f"no readable checkpoint in {run / 'ckpt'}: last.pt is damaged", f"(rm {last})",
             "from step 1")
    last.unlink()  # as the error says: trained again from step 1, in its folder
    run_cli(PRETRAIN, runs, data_dir)
    assert [r["global_step"] for r in read_metrics(run)] == [20, 40, 60, 80]


def test_pretraining_records_missing_for_the_checkpoint_are_refused(pretrained, tmp_path,
                                                                    data_dir):
    runs, run = _unfinished_copy(pretrained, tmp_path)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:1] + lines[2:]))  # the evaluation at global step 40
    _refused(run_cli(PRETRAIN, runs, data_dir, check=False),
             f"{metrics} lacks the record(s) of 1 of the 4 evaluation(s)", "global steps 40)",
             f"delete {run / 'ckpt'}")
    metrics.unlink()
    _refused(run_cli(PRETRAIN, runs, data_dir, check=False), "4 of the 4 evaluation(s)")
    assert not (run / "summary.json").exists()
