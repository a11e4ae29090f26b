"""What a user adds in an afternoon is taken without editing c2f: a compression method that
only compresses the features trains every model, and a model's own hyperparameters are its
`model.options`, checked by its family's dataclass before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from c2f.compression import _REGISTRY as COMPRESSIONS
from c2f.compression import Compression, PhaseInput
from c2f.models import build_model, model_family
from c2f.models.registry import _REGISTRY as MODELS
from c2f.models.registry import ModelFamily
from c2f.plan import build_plan
from c2f.spec import ConfigError, build_spec
from tests.conftest import ROOT


class EveryOtherFrame(Compression):
    """A user's new method: it only compresses the features, as Fshift and pooling do."""

    name = "every_other_frame"

    def phase_input(self, base, c):
        return PhaseInput(base.frame_shift_ms, base.target_length, base.target_length // c,
                          base.patch, base.time_mask // c)

    def transform(self, fbank, c):
        return fbank[..., ::c, :]


@dataclass(frozen=True)
class ConvOptions:
    hidden: int = 16
    kernels: tuple[int, ...] = (3,)


class ConvFamily(ModelFamily):
    """A user's new model with hyperparameters that ModelSpec does not know."""

    name = "user_conv"
    options = ConvOptions

    def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
        own = self.own_options(spec)
        layers, width = [], num_mel_bins
        for kernel in own.kernels:
            layers += [nn.Conv1d(width, own.hidden, kernel, padding=kernel // 2), nn.ReLU()]
            width = own.hidden
        return _OverTime(nn.Sequential(*layers), nn.Linear(width, num_classes))


class _OverTime(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, spec):  # [batch, frames, mel]
        return self.head(self.body(spec.transpose(1, 2)).mean(dim=2))


def spec_for(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return build_spec(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("arch", ["cnn14", "htsat"])
def test_a_new_feature_method_is_taken_by_every_model_without_editing_it(arch, monkeypatch):
    monkeypatch.setitem(COMPRESSIONS.classes, EveryOtherFrame.name, EveryOtherFrame)
    assert model_family(arch).methods() == ["every_other_frame", "fshift", "none", "pool_avg",
                                            "pool_max"]
    plan = build_plan(spec_for(f"model={arch}_tiny", "compression.name=every_other_frame",
                               "schedule=2phase"))
    assert [(p.method, p.c, p.input.model_frames) for p in plan.phases] == [
        ("every_other_frame", 4, 64), ("every_other_frame", 1, 256)]


def test_a_new_model_reads_its_own_options(monkeypatch):
    monkeypatch.setitem(MODELS.classes, ConvFamily.name, ConvFamily)
    spec = spec_for("model.arch=user_conv", "+model.options.hidden=24",
                    "+model.options.kernels=[5,3]", "compression=fshift", "schedule=2phase")
    assert ConvFamily().own_options(spec.model) == ConvOptions(hidden=24, kernels=(5, 3))
    plan = build_plan(spec)
    model = build_model(spec.model, num_classes=11, num_mel_bins=128, frames=64, patch=(16, 16))
    assert [tuple(m.weight.shape) for m in model.body if isinstance(m, nn.Conv1d)] == [
        (24, 128, 5), (24, 24, 3)]
    assert model(torch.zeros(2, 64, 128)).shape == (2, 11)
    # the plan's FLOPs are those of the model the options build: per frame, 2 per multiply-add
    # of both convolutions' forward and weight gradient, and the second's input gradient
    per_frame = 2 * (2 * 24 * 128 * 5 + 3 * 24 * 24 * 3)
    coarse, fine = (p.flops_per_sample for p in plan.phases)
    assert fine - coarse == (256 - 64) * per_frame
    # the options are part of the run's identity; no options and empty ones are the same run
    assert spec.run_id != spec_for("model.arch=user_conv", "+model.options.hidden=32",
                                   "+model.options.kernels=[5,3]", "compression=fshift",
                                   "schedule=2phase").run_id
    assert spec_for("+model.options={}").run_id == spec_for().run_id


def test_model_options_are_checked_before_anything_is_built(monkeypatch):
    monkeypatch.setitem(MODELS.classes, ConvFamily.name, ConvFamily)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.options.hiden; allowed: "
                                          r"hidden, kernels"):
        build_plan(spec_for("model.arch=user_conv", "+model.options.hiden=24"))
    with pytest.raises(ConfigError, match=r"`model.options.hidden`: takes an integer, got 'wide'"):
        build_plan(spec_for("model.arch=user_conv", "+model.options.hidden=wide"))
    with pytest.raises(ConfigError, match=r"`model.options`: `model.arch=ast` has no options of "
                                          r"its own, got depth; its settings are model.\* keys"):
        build_plan(spec_for("+model.options.depth=2"))
