"""A newcomer's model or method with a mistake, or one the plan's meta-device rehearsal
cannot run, gets one line that names it, where it is and the fix (or, when nothing is wrong
with it, a plan): the errors of the "add your own model or method" recipe of the README."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from c2f.plan import build_plan
from c2f.spec import ConfigError
from c2f.train.flops import training_flops
from tests.test_extending import scratch_registries, spec_for  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("scratch_registries")  # registrations undone after
TWO = ["schedule=2phase", "compression=fshift"]


class Reads(nn.Module):
    """A small convolutional model whose forward reads a value (a host sync)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv1d(128, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, spec):  # [batch, frames, mel]
        x = self.conv(spec.transpose(1, 2))
        if x.abs().max().item() > 1e9:  # what the meta device cannot run
            x = x * 0
        return self.head(x.mean(dim=2))


def test_a_model_the_meta_device_cannot_run_is_planned_on_a_real_batch():
    from c2f.models.registry import ModelFamily, register_model

    @register_model("reads_a_value")
    class ReadsFamily(ModelFamily):
        def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
            return Reads(num_classes)

    plan = build_plan(spec_for("model.arch=reads_a_value", *TWO))
    counted = [training_flops(Reads(11), torch.zeros(3, frames, 128)) // 3
               for frames in (64, 256)]  # as the loop counts them, on a real batch
    assert [p.flops_per_sample for p in plan.phases] == counted


def test_a_family_without_build_is_named():
    from c2f.models.registry import ModelFamily, register_model

    @register_model("no_build")
    class NoBuildFamily(ModelFamily):
        def buld(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):  # a typo
            return nn.Linear(128, num_classes)

    with pytest.raises(ConfigError, match=r"^`model.arch=no_build`: NoBuildFamily "
                                          r"\(.*test_extending_errors.py\) does not define "
                                          r"`build`.*README"):
        build_plan(spec_for("model.arch=no_build", *TWO))


def test_a_forward_left_unwritten_is_not_taken_for_a_meta_device_limit():
    from c2f.models.registry import ModelFamily, register_model

    class Todo(nn.Linear):
        def forward(self, spec):
            raise NotImplementedError("TODO")

    @register_model("todo")
    class TodoFamily(ModelFamily):
        def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
            return Todo(128, num_classes)

    with pytest.raises(ConfigError, match=r"`model.arch=todo` fails on phase 0 .*"
                                          r"NotImplementedError: TODO"):
        build_plan(spec_for("model.arch=todo", *TWO))
