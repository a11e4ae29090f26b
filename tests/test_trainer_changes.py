"""A run's trainer settings compared between its starts as they acted (c2f/train/
trainer_changes.py): `auto` resolved, and a run from before trainer.eval_precision read as it
evaluated, in its training precision."""
from __future__ import annotations

import torch
import yaml

from c2f.track import RunDir
from c2f.train.trainer_changes import (
    acting,
    changes,
    finished_otherwise,
    resumed_otherwise,
    used_now,
)
from tests.test_plan import spec_for

CPU = torch.device("cpu")


def test_settings_are_compared_as_they_acted(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create(yaml.safe_dump({"trainer": {"precision": "auto"}}),
               {"phases": [], "trainer_used": used_now(spec_for(), CPU)})
    assert changes(spec_for("trainer.precision=fp32"), run, CPU) == {}  # auto: fp32 on CPU
    assert changes(spec_for("trainer.precision=bf16"), run, CPU) == {
        "trainer.precision": ["fp32", "bf16"]}
    assert changes(spec_for("trainer.num_workers=3"), run, CPU) == {
        "trainer.num_workers": [0, 3]}
    # trained on a GPU (device auto), resumed on a CPU node: said, whatever the config says
    gpu = RunDir(tmp_path / "gpu")
    gpu.create(yaml.safe_dump({"trainer": {"device": "auto"}}), {"phases": [], "trainer_used": {
        **used_now(spec_for(), CPU), "device": "cuda", "precision": "bf16"}})
    assert changes(spec_for(), gpu, CPU) == {"trainer.device": ["cuda", "cpu"],
                                             "trainer.precision": ["bf16", "fp32"]}


def test_a_run_from_before_eval_precision_evaluated_in_its_training_precision(tmp_path):
    old = RunDir(tmp_path / "old")  # no trainer_used in plan.json, no eval_precision key
    old.create(yaml.safe_dump({"trainer": {"precision": "bf16", "num_workers": 0}}),
               {"phases": []})
    assert changes(spec_for("trainer.precision=bf16"), old, CPU) == {
        "trainer.eval_precision": ["bf16", "fp32"]}
    assert changes(spec_for("trainer.precision=bf16", "trainer.eval_precision=train"), old,
                   CPU) == {}


def test_a_finished_run_is_compared_as_typed_and_a_missing_gpu_is_not_asked(tmp_path):
    """The same command on another machine (bf16 on its GPU, fp32 here) is not "your other
    settings"; a CUDA device this machine lacks is refused later, not resolved here."""
    run = RunDir(tmp_path / "run")
    gpu = dict(used_now(spec_for(), CPU), precision="bf16")
    run.create(yaml.safe_dump({"trainer": {"precision": "auto"}}),
               {"phases": [], "trainer_used": gpu})
    assert finished_otherwise(spec_for(), run) == ""
    assert "Your trainer.precision=fp16 (the run's: auto)" in finished_otherwise(
        spec_for("trainer.precision=fp16"), run)
    if not torch.cuda.is_available():
        assert acting({"precision": "auto"}, torch.device("cuda"))["precision"] == "auto"


def test_a_pretraining_resume_records_its_steps(tmp_path):
    run = RunDir(tmp_path / "pre")
    run.create(yaml.safe_dump({"trainer": {"precision": "fp32"}}),
               {"phases": [], "trainer_used": used_now(spec_for(), CPU)})
    torch.save({"state": {"global_step": 40}, "model": {}}, run.ckpt_dir / "last.pt")
    said = []
    change = resumed_otherwise(spec_for("trainer.precision=bf16"), run, CPU, said.append)
    assert change == {"after_steps": 40, "changed": {"trainer.precision": ["fp32", "bf16"]}}
    assert "resumes with trainer.precision=bf16 (before: fp32)" in said[0]
