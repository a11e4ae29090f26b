"""In-model batch mixup (`model.batch_mixup`, c2f/models/mixup.py): PANNs' adjacent pairs and
HTS-AT's flipped batch, compared with their `do_mixup` transcribed; the mixing point (after
bn0 and SpecAugment) inside CNN14 and HTS-AT; FLOPs per loaded clip; the config checks."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.models import build_model
from c2f.models.mixup import BatchMix, draw_batch_mix, loaded_per_step
from c2f.plan import build_plan
from c2f.spec import BatchMixup, ConfigError, build_spec
from c2f.train.flops import predicted_flops_per_sample, training_flops
from tests.conftest import ROOT
from tests.test_models import TINY_MODELS

PANNS = BatchMixup(pairing="adjacent", alpha=1.0, mix_targets=True)
HTSAT = BatchMixup(pairing="flipped", alpha=0.5, mix_targets=False)


def panns_do_mixup(x: torch.Tensor, mixup_lambda: torch.Tensor) -> torch.Tensor:
    """audioset_tagging_cnn pytorch/pytorch_utils.py do_mixup, as published."""
    return (x[0::2].transpose(0, -1) * mixup_lambda[0::2]
            + x[1::2].transpose(0, -1) * mixup_lambda[1::2]).transpose(0, -1)


def htsat_do_mixup(x: torch.Tensor, mixup_lambda: torch.Tensor) -> torch.Tensor:
    """HTS-Audio-Transformer utils.py do_mixup, as published."""
    return (x.transpose(0, -1) * mixup_lambda
            + torch.flip(x, dims=[0]).transpose(0, -1) * (1 - mixup_lambda)).transpose(0, -1)


def test_adjacent_pairs_are_panns_do_mixup_and_an_odd_clip_stays_itself():
    x, y = torch.randn(6, 1, 10, 4), torch.rand(6, 3)
    mix = draw_batch_mix(PANNS, 6, seed=1)
    assert mix.lam.shape == (3,) and ((mix.lam > 0) & (mix.lam < 1)).all()
    panns = torch.stack([mix.lam, 1 - mix.lam], 1).flatten()  # utilities.py Mixup.get_lambda
    assert torch.allclose(mix.inputs(x), panns_do_mixup(x, panns), atol=1e-6)
    assert torch.allclose(mix.targets(y), panns_do_mixup(y, panns), atol=1e-6)
    odd = draw_batch_mix(PANNS, 5, seed=1)
    out = odd.inputs(x[:5])
    assert out.shape == (3, 1, 10, 4)
    assert torch.allclose(out[:2], panns_do_mixup(x[:4], panns[:4]), atol=1e-6)
    assert torch.allclose(out[2], x[4], atol=1e-6)  # paired with itself


def test_flipped_is_htsat_do_mixup_and_keeps_targets():
    x, y = torch.randn(5, 1, 10, 4), torch.rand(5, 3)
    mix = draw_batch_mix(HTSAT, 5, seed=2)
    assert mix.lam.shape == (5,)
    assert torch.allclose(mix.inputs(x), htsat_do_mixup(x, mix.lam), atol=1e-6)
    assert torch.equal(mix.targets(y), y)


def test_weights_follow_the_seed_and_the_beta_alpha():
    a, b = draw_batch_mix(HTSAT, 4000, seed=3), draw_batch_mix(HTSAT, 4000, seed=3)
    assert torch.equal(a.lam, b.lam)
    assert not torch.equal(a.lam, draw_batch_mix(HTSAT, 4000, seed=4).lam)
    # Beta(0.5, 0.5) piles up at 0 and 1, Beta(10, 10) (AST's) around 1/2
    edges = ((a.lam < 0.1) | (a.lam > 0.9)).float().mean()
    narrow = draw_batch_mix(replace(HTSAT, alpha=10.0), 4000, seed=3).lam
    assert edges > 0.35 and ((narrow < 0.1) | (narrow > 0.9)).float().mean() < 0.01
    assert abs(float(a.lam.mean()) - 0.5) < 0.03


def first_stage_input(model: torch.nn.Module, layer: str, spec: torch.Tensor,
                      mix: BatchMix | None) -> torch.Tensor:
    """What `layer` receives in a training forward; torch's generator is seeded the same way
    for every call, so SpecAugment draws the same stripes."""
    seen = []
    handle = getattr(model, layer).register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    torch.manual_seed(0)
    model(spec) if mix is None else model(spec, mix=mix)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("arch, mixup, layer", [("cnn14", PANNS, "conv_block1"),
                                                ("htsat", HTSAT, "patch_embed")])
def test_models_mix_after_bn0_and_specaugment_in_training_only(arch, mixup, layer):
    """The first stage receives the mix of what it would receive unmixed: bn0's batch
    statistics come from every loaded clip and SpecAugment drops the same stripes."""
    model = build_model(TINY_MODELS[arch], num_classes=5, num_mel_bins=64, frames=64,
                        patch=(16, 16))
    spec, mix = torch.randn(4, 64, 64) * 3 + 1, draw_batch_mix(mixup, 4, seed=5)
    plain = first_stage_input(model, layer, spec, None)
    mixed = first_stage_input(model, layer, spec, mix)
    assert (plain == 0).any()  # SpecAugment dropped stripes
    assert torch.allclose(mixed, mix.inputs(plain), atol=1e-5)
    assert model(spec, mix=mix).shape == ((2 if mixup is PANNS else 4), 5)
    model.eval()
    assert torch.equal(model(spec, mix=mix), model(spec))  # evaluation never mixes


@pytest.mark.parametrize("arch, mixup", [("cnn14", PANNS), ("htsat", HTSAT)])
def test_flops_per_loaded_clip_predicted_on_meta_equal_counted(arch, mixup):
    spec = replace(TINY_MODELS[arch], batch_mixup=mixup)

    def factory():
        return build_model(spec, num_classes=5, num_mel_bins=64, frames=64, patch=(16, 16))

    model = factory()
    counted = training_flops(model, torch.randn(4, 64, 64), mix=draw_batch_mix(mixup, 4, 0))
    predicted = predicted_flops_per_sample(factory, 64, 64, mixup)
    assert abs(predicted - counted / 4) <= 1
    unmixed = predicted_flops_per_sample(factory, 64, 64)
    if mixup.pairing == "adjacent":  # the network runs on one example per two clips
        assert predicted / unmixed == pytest.approx(0.5, abs=0.01)
        assert loaded_per_step(mixup, 32) == 64
    else:
        assert predicted / unmixed == pytest.approx(1, abs=0.01)
        assert loaded_per_step(mixup, 32) == 32


def spec_of(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return build_spec(OmegaConf.to_container(cfg, resolve=True))


def test_presets_carry_the_official_mixups():
    panns = spec_of("model=cnn14", "dataset=audioset_full")
    assert panns.model.batch_mixup == PANNS and panns.dataset.mixup == 0
    htsat = spec_of("model=htsat", "dataset=audioset_full")
    assert htsat.model.batch_mixup == HTSAT and htsat.dataset.mixup == 0
    assert spec_of("model=ast_tiny").model.batch_mixup is None


@pytest.mark.parametrize("overrides, match", [
    (["model=cnn14_tiny", "+model.batch_mixup.pairing=adjacent", "dataset.mixup=0.5"],
     r"dataset.mixup.*choose one"),
    (["model=cnn14_tiny", "+model.batch_mixup.pairing=sideways"],
     r"model.batch_mixup.pairing.*adjacent\|flipped"),
    (["model=cnn14_tiny", "+model.batch_mixup.mix_targets=false"],
     r"model.batch_mixup.mix_targets.*halve the batch"),
    (["model=htsat_tiny", "+model.batch_mixup.alpha=0"], r"model.batch_mixup.alpha.*> 0"),
    (["+model.batch_mixup.pairing=flipped", "compression=fshift", "schedule=2phase"],
     r"model.batch_mixup.*model.arch=ast.*dataset.mixup"),
])
def test_impossible_mixups_fail_before_training_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_plan(spec_of(*overrides))


def test_run_ids_without_batch_mixup_are_unchanged():
    spec = spec_of("model=cnn14_tiny")
    assert "batch_mixup" not in spec.semantic["model"]
    assert spec_of("model=cnn14_tiny", "+model.batch_mixup=null").run_id == spec.run_id
    assert spec_of("model=cnn14_tiny", "+model.batch_mixup.pairing=adjacent").run_id \
        != spec.run_id
