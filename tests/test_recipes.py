"""The paper presets hold the recipes the authors ran, each value with its source beside it.

EXPECTED is the reference: change a preset and this test says which value drifted. Sources:
the paper (§3.2-3.4), AST's egs/audioset/run.sh and src/ (YuanGongND/ast), and the same
authors' scripts (JiuFengSC/FlexiAST_INTERSPEECH23 egs/vggsound/run16.sh,
egs/voxceleb/vox_sup_from16.sh).
"""
from __future__ import annotations

import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.spec import build_spec
from c2f.train.optim import lr_at
from tests.conftest import ROOT

# The paper's "setup of the AudioSet training" (§3.2) as VGGSound/VoxCeleb/Kinetics-Sounds use it.
AST_OPTIM = {"name": "adam", "lr": 1e-5, "weight_decay": 5e-7, "betas": (0.95, 0.999),
             "warmup_steps": 1000, "warmup_stairs": 20, "scheduler": "multistep",
             "milestones_start": 2, "milestones_step": 1, "gamma": 0.5}
FEATURES = {"sample_rate": 16000, "num_mel_bins": 128, "frame_shift_ms": 10,
            "target_length": 1024, "freqm": 48, "timem": 192, "batch_size": 12,
            "noise": False}  # AST egs/audioset/run.sh: no --noise (src/run.py default False)
EXPECTED = {
    "vggsound": {
        "dataset": {**FEATURES, "num_classes": 309, "multilabel": False, "metric": "acc",
                    "loss": "bce", "norm_mean": -5.0767093, "norm_std": 4.4533687,
                    "mixup": 0.0, "epochs": 20, "balanced_sampler": False},
        "optim": AST_OPTIM, "average": {"mode": "none"}},
    "voxceleb1": {
        "dataset": {**FEATURES, "num_classes": 1251, "multilabel": False, "metric": "acc",
                    "loss": "ce", "norm_mean": -3.7614744, "norm_std": 4.2011642,
                    "mixup": 0.0, "epochs": 20, "balanced_sampler": False},
        "optim": AST_OPTIM, "average": {"mode": "none"}},
    "kinetics_sounds": {
        "dataset": {**FEATURES, "multilabel": False, "metric": "acc", "loss": "bce",
                    "norm_mean": None, "norm_std": None, "mixup": 0.0, "epochs": 20,
                    "balanced_sampler": False},
        "optim": AST_OPTIM, "average": {"mode": "none"}},
    "audioset_full": {
        "dataset": {**FEATURES, "num_classes": 527, "multilabel": True, "metric": "mAP",
                    "loss": "bce", "norm_mean": -4.2677393, "norm_std": 4.5689974,
                    "mixup": 0.5, "epochs": 5, "balanced_sampler": True},
        "optim": AST_OPTIM, "average": {"mode": "epochs", "start": 1, "end": None}},
    "audioset_balanced": {
        "dataset": {**FEATURES, "num_classes": 527, "multilabel": True, "metric": "mAP",
                    "loss": "bce", "norm_mean": -4.2677393, "norm_std": 4.5689974,
                    "mixup": 0.5, "epochs": 25, "balanced_sampler": False},
        "optim": {**AST_OPTIM, "lr": 5e-5, "milestones_start": 10, "milestones_step": 5},
        "average": {"mode": "epochs", "start": 6, "end": None}},
}
AST_BASE = {"patch": (16, 16), "embed_dim": 768, "depth": 12, "num_heads": 12,
            "dist_token": True}
PAPER_FILES = [*(f"conf/dataset/{name}.yaml" for name in EXPECTED), "conf/model/ast_base.yaml",
               "conf/optim/ast_recipe.yaml", "conf/optim/ast_audioset_full.yaml",
               "conf/optim/ast_audioset_balanced.yaml", "conf/schedule/2phase.yaml",
               "conf/schedule/3phase.yaml", "conf/dataset/manifest.yaml"]
# Keys that are not recipe values: where files live and what things are called.
NOT_RECIPE = {"name", "kind", "train_manifest", "eval_manifest", "labels_csv", "dataset",
              "average", "phases", "final_epochs", "pretrained", "on_bad_audio", "arch"}


def spec_for(dataset: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={dataset}", "model=ast_base"])
    return build_spec(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_preset_holds_the_published_recipe(dataset):
    spec = spec_for(dataset)
    for group, values in EXPECTED[dataset].items():
        for key, value in values.items():
            assert getattr(getattr(spec, group), key) == value, f"{dataset}: {group}.{key}"
    for key, value in AST_BASE.items():
        assert getattr(spec.model, key) == value, f"model.{key}"


def test_paper_recipe_decays_like_asts_multistep_scheduler():
    """lr_at against torch's MultiStepLR(range(2, 1000, 1), 0.5), stepped once per epoch as
    AST's src/traintest.py does: epochs 1-2 at 1e-5, then halved every epoch."""
    optim = spec_for("vggsound").optim
    param = torch.nn.Parameter(torch.zeros(1))
    adam = torch.optim.Adam([param], lr=optim.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        adam, list(range(optim.milestones_start, 1000, optim.milestones_step)), optim.gamma)
    for epoch in range(20):
        after_warmup = optim.warmup_steps + 5
        assert lr_at(optim, after_warmup, epoch, 10**6) == pytest.approx(
            adam.param_groups[0]["lr"], rel=1e-12), f"epoch {epoch + 1}"
        adam.step()  # (no gradient: nothing moves) then the end-of-epoch scheduler step
        scheduler.step()
    assert lr_at(optim, 10**5, 9, 10**6) == pytest.approx(1e-5 * 0.5 ** 8)


@pytest.mark.parametrize("path", PAPER_FILES)
def test_every_recipe_value_names_its_source(path):
    """A `key: value` line of a paper preset carries a comment (its source), or sits under a
    comment block that gives it."""
    lines = (ROOT / path).read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"\s*(\w+):\s*(\S.*)?$", line)
        if not match or match.group(1) in NOT_RECIPE or line.lstrip().startswith("#"):
            continue
        if "#" in line or (number and lines[number - 1].lstrip().startswith("#")):
            continue
        pytest.fail(f"{path}:{number + 1}: `{line.strip()}` has no source beside it")


def test_speech_commands_preset_trains_with_asts_noise():
    """AST's egs/speechcommands/run_sc.sh: freqm=48, timem=48, mixup=0.6, noise=True."""
    d = spec_for("speechcommands").dataset
    assert (d.freqm, d.timem, d.mixup, d.noise) == (48, 48, 0.6, True)
