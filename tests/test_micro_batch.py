"""`trainer.micro_batch`: a batch trained in parts whose gradients add up to the whole batch's
(c2f/train/step.py), the same run at any part size for AST (through run.py under DDP:
tests/test_ddp.py); refused where it cannot work."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from c2f.models import build_model
from c2f.models.mixup import BatchMix, draw_batch_mix
from c2f.spec import BatchMixup, ConfigError, build_spec, config_hash, semantic_config
from c2f.train.metrics import classification_loss
from c2f.train.precision import Precision
from c2f.train.step import forward_backward, micro_slices, split_note
from tests.conftest import (
    TINY,
)
from tests.test_configs import compose_with
from tests.test_models import TINY_MODELS


class Mixing(nn.Module):
    """A linear model that mixes its input as CNN14 and HTS-AT do inside theirs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor, mix: BatchMix | None = None) -> torch.Tensor:
        return self.linear(x if mix is None else mix.inputs(x))


def gradients(model, inputs, target, mix, loss, micro_rows, precision="fp32"):
    model.zero_grad(set_to_none=True)
    value = forward_backward(model, inputs, target, mix,
                             lambda y, t: classification_loss(loss, y, t),
                             Precision(precision, torch.device("cpu")), micro_rows)
    return value, [p.grad.clone() for p in model.parameters()]


def test_parts_cover_the_batch():
    assert micro_slices(10, None) == [slice(0, 10)] and micro_slices(10, 12) == [slice(0, 10)]
    assert micro_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_ast_gradients_of_the_parts_are_the_whole_batchs(loss):
    torch.manual_seed(0)
    model = build_model(TINY_MODELS["ast"], num_classes=5, num_mel_bins=128, frames=64,
                        patch=(16, 16))
    model.train()
    inputs = torch.randn(7, 64, 128)
    target = nn.functional.one_hot(torch.arange(7) % 5, 5).float()
    whole, expected = gradients(model, inputs, target, None, loss, None)
    for rows in (1, 3, 6):
        value, got = gradients(model, inputs, target, None, loss, rows)
        assert float(value) == pytest.approx(float(whole), rel=1e-6)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pairing", ["adjacent", "flipped"])
def test_in_model_mixup_splits_with_its_weights(pairing):
    """PANNs' adjacent pairs are never split (the same step as the whole batch, targets mixed
    alike); HTS-AT's flipped clips keep their weights, partners within the part."""
    torch.manual_seed(0)
    model = Mixing()
    inputs, target = torch.randn(8, 6), torch.rand(8, 4).round()
    mix = draw_batch_mix(BatchMixup(pairing=pairing, alpha=1.0, mix_targets=True), 8, 3)
    whole, expected = gradients(model, inputs, target, mix, "bce", None)
    value, got = gradients(model, inputs, target, mix, "bce", 4)
    parts = [mix.part(0, 4).inputs(inputs[:4]), mix.part(4, 8).inputs(inputs[4:])]
    if pairing == "adjacent":
        assert float(value) == pytest.approx(float(whole), rel=1e-6)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(torch.cat(parts), mix.inputs(inputs))
    else:
        lam = mix.lam.view(-1, 1)
        torch.testing.assert_close(parts[0], inputs[:4] * lam[:4] + inputs[:4].flip(0)
                                   * (1 - lam[:4]))
        assert not torch.allclose(got[0], expected[0])  # other partners: another step


def test_fp16_scaled_parts_step_as_the_whole_batch():
    """With a GradScaler the scaled gradients accumulate and are unscaled once."""
    torch.manual_seed(0)
    model, inputs = Mixing(), torch.randn(6, 6)
    target = nn.functional.one_hot(torch.arange(6) % 4, 4).float()
    _, expected = gradients(model, inputs, target, None, "ce", None)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    precision = Precision("fp16", torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    forward_backward(model, inputs, target, None,
                     lambda y, t: classification_loss("ce", y, t), precision, 2)
    before = [p.detach().clone() for p in model.parameters()]
    precision.apply(optimizer, model.parameters(), grad_clip=None)
    for old, new, grad in zip(before, model.parameters(), expected):
        torch.testing.assert_close(old - new.detach(), grad, rtol=2e-2, atol=2e-3)


def test_the_note_says_what_parts_change():
    ast = build_model(TINY_MODELS["ast"], num_classes=5, num_mel_bins=128, frames=64,
                      patch=(16, 16))
    cnn = build_model(TINY_MODELS["cnn14"], num_classes=5, num_mel_bins=64, frames=64,
                      patch=(16, 16))
    assert split_note(ast, 12, 4, False) == ("trainer.micro_batch=4: each step's 12 examples "
                                             "run in 3 parts; their gradients add up to the "
                                             "batch's")
    assert "but batch norm normalizes over a part and in-model mixup pairs clips within a " \
           "part, as on one of 2 GPUs" in split_note(cnn, 64, 32, True)


def test_the_part_size_is_not_part_of_the_runs_identity():
    def run_id(*overrides):
        return config_hash(semantic_config(OmegaConf.to_container(compose_with(*overrides),
                                                                  resolve=True)))
    assert run_id("trainer.micro_batch=4") == run_id()
    assert run_id("dataset.batch_size=4") != run_id()


@pytest.mark.parametrize("override, message", [
    ("trainer.micro_batch=0", "trainer.micro_batch`: examples per forward: a count >= 1"),
    ("trainer.micro_batch=true", "`trainer.micro_batch`: takes an integer or null, got True"),
    ("trainer.max_steps_per_epoch=0", "`trainer.max_steps_per_epoch`: steps of an epoch: a count"),
    ("trainer.micro_batch=4 trainer.cuda_graphs=true trainer.device=cuda",
     "trainer.cuda_graphs=true graphs whole steps; use trainer.cuda_graphs=auto"),
])
def test_a_bad_part_size_is_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(OmegaConf.to_container(compose_with(*override.split()), resolve=True))


def test_running_out_of_memory_says_what_to_change_and_the_run_resumes(tmp_path, data_dir,
                                                                       monkeypatch):
    """A device out of memory in the fine phase: the error names the phase and the part size
    to relaunch with; relaunched with it, the run resumes from its checkpoint."""
    import c2f.train.loop
    from c2f.track import RunDir
    from c2f.train.job import run_job
    from c2f.train.step import OutOfMemory

    overrides = [*TINY, "logger=disabled", "compression=fshift", "schedule=2phase",
                 "schedule.c=2", "dataset.epochs=2", "dataset.batch_size=8",
                 f"paths.runs_dir={tmp_path}", f"paths.data_dir={data_dir}"]

    def job(*extra):
        cfg = compose_with(*overrides, *extra)
        spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
        return spec, run_job(spec, OmegaConf.to_yaml(cfg), echo=lambda *a: None)

    real = c2f.train.loop.forward_backward

    def too_big(model, inputs, *args):  # the fine phase's forwards of more than 4 examples
        if inputs.shape[1] == 128 and min(inputs.shape[0], args[-1] or 8) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, inputs, *args)

    monkeypatch.setattr(c2f.train.loop, "forward_backward", too_big)
    with pytest.raises(OutOfMemory, match=r"cpu ran out of memory in training at phase 1 "
                       r"\(C = 1\), with 8 examples per step on this process; the run keeps "
                       r"its checkpoint \(1 epoch\(s\) done\): relaunch with "
                       r"trainer.micro_batch=4 \(the same run: it resumes"):
        job()
    spec, summary = job("trainer.micro_batch=4")
    records = RunDir(spec.run_dir).read_metrics()
    assert [(r["epoch"], r["C"]) for r in records] == [(1, 2), (2, 1)]
    assert summary["epochs"] == 2
