"""A run's trainer settings compared between its starts as they acted (c2f/train/
trainer_changes.py): `auto` resolved, and a run from before trainer.eval_precision read as it
evaluated, in its training precision."""
from __future__ import annotations

import torch
import yaml

from c2f.track import RunDir
from c2f.train.trainer_changes import changes, used_now
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


def test_a_run_from_before_eval_precision_evaluated_in_its_training_precision(tmp_path):
    old = RunDir(tmp_path / "old")  # no trainer_used in plan.json, no eval_precision key
    old.create(yaml.safe_dump({"trainer": {"precision": "bf16", "num_workers": 0}}),
               {"phases": []})
    assert changes(spec_for("trainer.precision=bf16"), old, CPU) == {
        "trainer.eval_precision": ["bf16", "fp32"]}
    assert changes(spec_for("trainer.precision=bf16", "trainer.eval_precision=train"), old,
                   CPU) == {}
