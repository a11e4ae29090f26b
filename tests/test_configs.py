"""Every shipped yaml composes (Hydra's compose API) and builds a valid spec where it can."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.plan import build_plan
from c2f.spec import ConfigError, build_spec
from tests.conftest import ROOT

CONF = ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
# Options that need user input (their ??? keys) or pair with a multi-phase schedule.
NEEDS_USER_INPUT = {("dataset", "manifest"): "train_manifest",
                    ("dataset", "folder"): "eval_manifest"}
PAIRS = {"schedule": ["compression=fshift"], "experiment": []}


def compose_with(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


def test_groups_are_the_designed_ones():
    assert {"dataset", "model", "compression", "schedule", "optim", "trainer",
            "logger"} <= set(GROUPS)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    prefix = "+" if group == "experiment" else ""
    extra = PAIRS.get(group, [])
    if group == "compression" and option != "none":
        extra = ["schedule=2phase"]
    cfg = compose_with(f"{prefix}{group}={option}", *extra)
    if (group, option) in NEEDS_USER_INPUT:
        missing = NEEDS_USER_INPUT[group, option]
        assert OmegaConf.is_missing(cfg.dataset, missing)
        with pytest.raises(ConfigError, match=f"`dataset.{missing}` has no value: give it"):
            build_spec(OmegaConf.to_container(cfg, resolve=True))
        return
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    if spec.model.require_pretrained:  # weights only the user has: the plan says which
        with pytest.raises(ConfigError, match="`model.pretrained` is required"):
            build_plan(spec)
        return
    plan = build_plan(spec)
    assert plan.phases[-1].c == 1 or group == "schedule"
    assert Path(spec.runs_dir).is_absolute()
