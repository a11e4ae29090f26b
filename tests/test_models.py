"""The model registry: every registered model x every compression it takes builds at C = 1, 2,
4, moves its weights to the next phase, runs, and its FLOPs predicted on the meta device equal
those counted on a real batch; CNN14's log-mel and PANNs checkpoints."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchaudio
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f import features
from c2f.compression import BaseInput, create_compression
from c2f.models import build_model, list_models, model_family
from c2f.plan import build_plan
from c2f.spec import ConfigError, ModelFeatures, ModelSpec, build_spec
from c2f.train.flops import predicted_flops_per_sample, training_flops
from tests.conftest import ROOT, TINY, kill_after_records, read_metrics, run_cli, run_dirs

# a tiny configuration of every registered model (a new model adds its own here; its options as
# `options=(("key", value), ...)`)
TINY_MODELS = {
    "ast": ModelSpec(name="t", arch="ast", patch=(16, 16), embed_dim=32, depth=1, num_heads=2),
    "cnn14": ModelSpec(name="t", arch="cnn14", channels=(4, 4, 8, 8, 8, 8),
                       features=ModelFeatures()),
    "htsat": ModelSpec(name="t", arch="htsat", embed_dim=8, depths=(1, 1, 1, 1),
                       heads=(1, 1, 2, 2), chunk=32, mlp_ratio=2.0, features=ModelFeatures()),
}
MEL = {"ast": 128}  # mel bins of the tests' input: 64 unless named here


def supported(arch: str) -> list[str]:
    return [c for c in model_family(arch).methods() if c != "none"]


def test_every_registered_model_is_covered():
    """c2f's own models (a plugin's are its own package's business)."""
    own = {name for name in list_models()
           if type(model_family(name)).__module__.startswith("c2f.models.")}
    missing = sorted(own - set(TINY_MODELS))
    assert not missing, f"add a tiny configuration of {missing} to TINY_MODELS (this file)"


@pytest.mark.parametrize("arch, method", [(a, m) for a in TINY_MODELS for m in supported(a)])
def test_build_transfer_forward_and_flops(arch, method):
    family, spec, mel = model_family(arch), TINY_MODELS[arch], MEL.get(arch, 64)
    compression = create_compression(method)
    base = BaseInput(10.0, 128, (16, 16), 24)
    previous = None
    for c in (4, 2, 1):
        phase = compression.phase_input(base, c)
        family.validate(spec, method, phase, mel, c)

        def factory(phase=phase, c=c):
            return build_model(spec, num_classes=5, num_mel_bins=mel,
                               frames=phase.model_frames, patch=phase.patch, c=c)

        torch.manual_seed(c)
        model = factory()
        if previous is not None:
            family.transfer(previous, model, compression)
            moved = {k for k, v in model.state_dict().items()
                     if k in previous.state_dict() and v.shape == previous.state_dict()[k].shape
                     and torch.equal(v, previous.state_dict()[k])}
            assert moved, "nothing moved between phases"
        batch = torch.randn(3, phase.model_frames, mel)
        assert model(batch).shape == (3, 5)
        predicted = predicted_flops_per_sample(factory, phase.model_frames, mel)
        assert predicted * 3 == training_flops(model, batch)
        previous = model


def test_unsupported_compression_fails_at_plan_time():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=cnn14_tiny", "compression=patch_pi",
                                           "schedule=2phase"])
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    takes = model_family("cnn14").methods()  # c2f's and any added to c2f/compression/
    assert {"fshift", "none", "pool_avg", "pool_max"} <= set(takes)
    with pytest.raises(ConfigError, match=r"model.arch=cnn14.*compression=patch_pi.*reshapes "
                       rf"the patches.*features: {', '.join(takes)}$"):
        build_plan(spec)


def test_logmel_is_torchaudio_mel_spectrogram_in_db():
    """PANNs' log-mel (torchlibrosa) equals torchaudio's MelSpectrogram with librosa's Slaney
    filters, power 2, centred reflect-padded periodic-Hann STFT, in 10 log10."""
    waves = torch.randn(2, 32000)
    ours = features.logmel_batch(waves, 32000, 64, 320, 1024, 50.0, 14000.0, 100)
    reference = torchaudio.transforms.MelSpectrogram(
        32000, n_fft=1024, hop_length=320, f_min=50.0, f_max=14000.0, n_mels=64, power=2.0,
        norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")(waves)
    expected = 10 * torch.log10(reference.clamp_min(1e-10)).transpose(1, 2)[:, :100]
    assert ours.shape == (2, 100, 64)
    assert (ours - expected).abs().max() < 1e-3


def panns_state(model: torch.nn.Module, classes: int) -> dict:
    """A checkpoint as PANNs saves it: {"model": state} with the log-mel extractors' buffers
    and a 527-class head."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    state["logmel_extractor.melW"] = torch.randn(513, 64)
    state["fc_audioset.weight"] = torch.randn(classes, state["fc1.weight"].shape[0])
    state["fc_audioset.bias"] = torch.randn(classes)
    # pytorch/main.py saves {'iteration', 'model', 'sampler'}; its balanced sampler's state
    # holds numpy arrays (utils/data_generator.py BalancedTrainSampler.state_dict)
    sampler = {"indexes_per_class": [np.arange(4), np.arange(3)], "queue": [np.int64(2)],
               "pointers_of_classes": [0, 1]}
    return {"iteration": 600000, "model": state, "sampler": sampler}


def test_panns_checkpoint_loads_by_its_key_names(tmp_path):
    spec = TINY_MODELS["cnn14"]
    model = build_model(spec, num_classes=5, num_mel_bins=64, frames=64, patch=(16, 16))
    saved = panns_state(model, classes=527)
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save(saved, path)
    left = model_family("cnn14").load_pretrained(model, replace(spec, pretrained=str(path)),
                                                 create_compression("none"))
    assert left == ["fc_audioset.bias", "fc_audioset.weight"]  # 527 classes vs 5
    assert torch.equal(model.state_dict()["conv_block3.conv2.weight"],
                       saved["model"]["conv_block3.conv2.weight"])
    assert torch.equal(model.state_dict()["bn0.running_mean"], saved["model"]["bn0.running_mean"])
    assert "logmel_extractor.melW" in left.unused  # said in the log, not loaded
    # the same file for a model of another width: refused, naming shapes and the preset
    narrow = build_model(replace(spec, channels=(8, 16, 32, 32, 32, 32)), num_classes=5,
                         num_mel_bins=64, frames=64, patch=(16, 16))
    with pytest.raises(ConfigError, match=r"a model of another size: \d+ of its tensors have "
                                          r"this model's names but other shapes \(conv_block1"):
        model_family("cnn14").load_pretrained(narrow, replace(spec, pretrained=str(path)),
                                              create_compression("none"))
    # another mel count: only bn0 (a weight per mel bin) differs; it stays at init, said
    mel128 = build_model(spec, num_classes=5, num_mel_bins=128, frames=64, patch=(16, 16))
    left = model_family("cnn14").load_pretrained(mel128, replace(spec, pretrained=str(path)),
                                                 create_compression("none"))
    assert "bn0.weight" in left and left.unused["bn0.weight"] == "shape [64], this model's [128]"
    # an AST state dict given to CNN14: named for what it is
    ast_file = tmp_path / "ast.pth"
    torch.save(build_model(TINY_MODELS["ast"], num_classes=5, num_mel_bins=128, frames=64,
                           patch=(16, 16)).state_dict(), ast_file)
    with pytest.raises(ConfigError, match=r"no parameter of this model found .*; it looks like "
                                          r"c2f's AST"):
        model_family("cnn14").load_pretrained(model, replace(spec, pretrained=str(ast_file)),
                                              create_compression("none"))
    # given to HTS-AT, the file is named for what it is
    with pytest.raises(ConfigError, match=r"its top-level keys: 'iteration', 'model', 'sampler';"
                                          r" it looks like PANNs' CNN14"):
        model_family("htsat").load_pretrained(htsat(128, 1), replace(
            TINY_MODELS["htsat"], pretrained=str(path)), create_compression("none"))


def htsat(frames: int, c: int, classes: int = 5) -> torch.nn.Module:
    return build_model(TINY_MODELS["htsat"], num_classes=classes, num_mel_bins=64,
                       frames=frames, patch=(4, 4), c=c)


def test_htsat_coarse_phase_sees_fewer_tokens_and_windows_read_the_same_table():
    """At C = 4 the folded image has a quarter of the rows (one 32-frame chunk instead of
    four), so every stage has a quarter of the tokens; the deep stages' windows shrink along
    frequency and index the sub-block of the same (2*8-1)^2 bias table."""
    fine, coarse = htsat(128, 1), htsat(32, 4)
    assert fine.layers[0].blocks[0].grid == (64, 8) and coarse.layers[0].blocks[0].grid == (16, 8)
    deep_fine, deep_coarse = fine.layers[3].blocks[0], coarse.layers[3].blocks[0]
    assert deep_fine.window == (8, 1) and deep_coarse.window == (2, 1)
    full = deep_fine.attn.index.view(8, 1, 8, 1)  # query (h, w) x key (h, w) of an 8 x 1 window
    assert torch.equal(deep_coarse.attn.index, full[:2, :, :2, :].reshape(2, 2))
    assert {k: v.shape for k, v in fine.state_dict().items()} == \
        {k: v.shape for k, v in coarse.state_dict().items()}  # nothing depends on the grid


def test_htsat_checkpoint_loads_by_its_lightning_names(tmp_path):
    """{"state_dict": {"sed_model.<name>": ...}} with the buffers and the unused `head` that
    htsat.py saves; a TSCAM head for another class count stays at init."""
    model = htsat(128, 1, classes=527)
    state = {f"sed_model.{k}": torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    state["sed_model.layers.0.blocks.1.attn_mask"] = torch.zeros(64, 64, 64)
    state["sed_model.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(64, 64)
    state["sed_model.head.weight"] = torch.randn(527, 527)
    state["sed_model.logmel_extractor.melW"] = torch.randn(513, 64)
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"epoch": 40, "state_dict": state}, path)
    spec = replace(TINY_MODELS["htsat"], pretrained=str(path))
    family = model_family("htsat")
    assert family.load_pretrained(model, spec, create_compression("none")) == []
    assert torch.equal(model.state_dict()["layers.2.blocks.0.attn.relative_position_bias_table"],
                       state["sed_model.layers.2.blocks.0.attn.relative_position_bias_table"])
    other = htsat(128, 1, classes=5)
    assert family.load_pretrained(other, spec, create_compression("none")) == [
        "tscam_conv.bias", "tscam_conv.weight"]


CNN14 = [*(o for o in TINY if not o.startswith("model.")), "model=cnn14_tiny",
         "logger=disabled", "dataset.target_length=128", "compression=pool_avg",
         "schedule=2phase", "schedule.c=4", "+model.batch_mixup.pairing=adjacent"]
HTSAT = [*(o for o in TINY if not o.startswith("model.")), "model=htsat_tiny",
         "logger=disabled", "dataset.target_length=256", "compression=fshift",
         "schedule=2phase", "schedule.c=4", "+model.batch_mixup.pairing=flipped",
         "+model.batch_mixup.alpha=0.5", "+model.batch_mixup.mix_targets=false"]


@pytest.mark.slow
@pytest.mark.parametrize("args, inside", [(CNN14, True), (HTSAT, False)],
                         ids=["cnn14-pool_avg", "htsat-fshift"])
def test_trains_through_run_py_and_resumes_bitwise(tmp_path, data_dir, args, inside):
    """Tiny CNN14 and HTS-AT on the built-in dataset resampled to 32 kHz, 4 -> 1, each with its
    in-model mixup, killed and resumed: the same metrics as a straight run, to the bit; the
    coarse phase costs about a quarter of the fine one's FLOPs. HTS-AT is killed at the phase
    boundary; CNN14 inside its third epoch, after a checkpoint there
    (trainer.checkpoint_minutes=0: every step), so its dropout and SpecAugment, drawn from the
    global RNG, resume where they were."""
    straight = tmp_path / "straight"
    run_cli(args, straight, data_dir)
    [run] = run_dirs(straight)
    expected = read_metrics(run)
    assert [r["C"] for r in expected] == [4, 1, 1, 1]
    plan = json.loads((run / "plan.json").read_text())
    assert plan["phases"][0]["grid"] is None  # the plan shows no AST patch grid
    ratio = plan["phases"][0]["flops_per_sample"] / plan["phases"][1]["flops_per_sample"]
    assert 0.2 < ratio < 0.3
    resumed = tmp_path / "resumed"
    kill_after_records([*args, *(["trainer.checkpoint_minutes=0"] if inside else [])],
                       2 if inside else 1, resumed, data_dir, inside_epoch=inside)
    run_cli(args, resumed, data_dir)
    [again] = run_dirs(resumed)
    same = ("value", "train_loss", "eval_loss", "flops", "flops_cum", "samples", "lr", "C")
    assert [{k: r[k] for k in same} for r in read_metrics(again)] == \
        [{k: r[k] for k in same} for r in expected]
