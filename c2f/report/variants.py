"""Runs that one table cell would otherwise mix up: the same dataset, model preset, method,
schedule, budget and seed, trained with another setting (a learning rate, the model's or the
method's options, a phase length). The settings that tell them apart are named in the run's
model label (settings of the model and its training: each gets its own baseline) or method
label (settings of the method and its schedule), so each is a row of its own instead of a
"duplicate run" that is dropped. A setting at its recipe's value stays unnamed: a method
setting at the value its schedule's or method's config file gives (`schedule.final_epochs`
null), a model setting at the value its dataset and model presets compose to (vggsound's
`optim.lr` 1e-5); so do the weight-averaging window and count when nothing is averaged."""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from c2f.report.select import flat_config

# Keys a table cell (dataset, model, budget, method, schedule) and its replicate (seed, fold)
# already name, or that tell apart pretraining and fine-tuning runs (report/savings.py).
NAMED = {"seed", "dataset.name", "dataset.epochs", "dataset.fold", "model.name",
         "compression.name", "schedule.name", "schedule.c", "schedule.phases", "schedule.steps",
         "schedule.switch.rule"}
METHOD_GROUPS = ("compression.", "schedule.")  # the method's side; the rest is the model's
ABSENT = "-"  # a key a run's config does not have (a run made by an older c2f)


# Groups a run made before c2f had them lacks; their absence meant this (the report reads it
# so; run ids, hashed from the config as written, do not change).
BEFORE = {"average": {"mode": "none"}}  # weight averaging came later: nothing was averaged


def flat_setting(semantic: Mapping[str, Any]) -> dict[str, str]:
    """A run's semantic config as {dotted key: value as JSON text}, less the keys in NAMED (an
    empty mapping sets nothing); a group it lacks as BEFORE says."""
    semantic = {**BEFORE, **semantic} if semantic else semantic
    return {key: json.dumps(value, sort_keys=True, default=str)
            for key, value in flat_config(semantic).items() if key not in NAMED}


def setting_differences(run, other) -> str:
    """The model-side settings on which `run` differs from `other` (a baseline of its preset
    under another label): "optim.lr=0.0005 (the baseline's: 0.001)"."""
    keys = sorted(k for k in set(run.setting) | set(other.setting)
                  if not k.startswith(METHOD_GROUPS) and not _idle(run, k)
                  and run.setting.get(k, ABSENT) != other.setting.get(k, ABSENT))
    return ", ".join(f"{k}={shown(run.setting.get(k, ABSENT))} (the baseline's: "
                     f"{shown(other.setting.get(k, ABSENT))})" for k in keys)


def _differing(runs: list, keys: set[str]) -> list[str]:
    """The keys among `keys` whose value is not the same in every run."""
    return sorted(k for k in keys if len({r.setting.get(k, ABSENT) for r in runs}) > 1)


def _suffixed(name: str, run, keys: list[str], recipe: dict[str, str] | None = None) -> str:
    """`name [key=value, ...]`, or `name` when no key tells the run apart. A key at its value
    in `recipe` is left out: the run follows the recipe there, the others are named."""
    recipe = recipe or {}
    keys = [k for k in keys if k not in recipe or run.setting.get(k, ABSENT) != recipe[k]]
    if not keys:
        return name
    named = ", ".join(f"{k}={shown(run.setting.get(k, ABSENT))}" for k in keys)
    return f"{name} [{named}]"


CONF = Path(__file__).resolve().parents[2] / "conf"


@functools.cache
def _group_defaults(group: str, option: str) -> dict[str, str]:
    """The values `conf/<group>/<option>.yaml` sets, as flat_setting writes them; {} for a
    file c2f does not have (a method from another package) or cannot read."""
    try:
        raw = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {f"{group}.{key}": json.dumps(value, sort_keys=True, default=str)
            for key, value in flat_config(raw).items()
            if not (isinstance(value, str) and "${" in value)}  # interpolations: unknown here


def recipe_setting(run) -> dict[str, str]:
    """The method settings of `run`'s recipe: what its schedule's and method's config files
    set (`schedule.final_epochs` null: the final phase fills the budget; 3phase's
    initial_fraction 0.3). A row's run at these values keeps its plain name, and with it the
    paper's column."""
    config = run.config or {}
    found: dict[str, str] = {}
    for group in ("schedule", "compression"):
        option = (config.get(group) or {}).get("name")
        if isinstance(option, str):
            found |= _group_defaults(group, option)
    return found


@functools.cache
def preset_setting(dataset: str, model: str) -> dict[str, str]:
    """The model-side recipe of a dataset and model preset: the config `dataset=<dataset>
    model=<model>` composes to (the optimizer and weight averaging the presets choose, their
    values), as flat_setting writes it; {} where c2f has no such preset (a dataset of one's
    own) or the config cannot be composed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from c2f.spec import semantic_config

    if not all((CONF / group / f"{name}.yaml").is_file()
               for group, name in (("dataset", dataset), ("model", model))):
        return {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            composed = compose("config", overrides=[f"dataset={dataset}", f"model={model}"])
        raw = OmegaConf.to_container(composed, resolve=False)
    except Exception:  # noqa: BLE001 - no recipe known: its settings stay named
        return {}
    finally:
        GlobalHydra.instance().clear()
    return {key: value for key, value in flat_setting(semantic_config(raw)).items()
            if "${" not in value}  # interpolations: unknown here


def model_recipe(run) -> dict[str, str]:
    """The model-side settings of `run`'s recipe: what its dataset and model presets compose
    to (`optim.lr` 1e-5 for vggsound and ast_base). A run at these values keeps its plain
    model name, and with it the paper's column, beside runs of another learning rate."""
    if run.pretrain:  # composed from another config (pretrain.yaml): not known here
        return {}
    return preset_setting(run.dataset, base_name(run.model))


def _idle(run, key: str) -> bool:
    """A setting without effect on `run`: the window and count of weight averaging
    (average.k/start/end) when it averages nothing (average.mode none)."""
    return key.startswith("average.") and key != "average.mode" and \
        run.setting.get("average.mode") == json.dumps("none")


def shown(value: str) -> str:
    """JSON text as a Hydra override writes it: strings without quotes."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, str) else value


def split_label(label: str) -> tuple[str, str]:
    """A model or method label as (name, the settings that tell its runs apart): ("m",
    "optim.lr=0.0001") for "m [optim.lr=0.0001]", ("m", "") for "m"."""
    name, _, setting = label.partition(" [")
    return name, setting.removesuffix("]")


def base_name(label: str) -> str:
    """A model or method name without the settings that tell its runs apart."""
    return split_label(label)[0]


def name_variants(runs: list) -> None:
    """Add to each run's model and method the settings that tell it apart from the runs it
    would share a row or a baseline with (in place). Runs that differ in nothing but what the
    cell names keep their names: a duplicate stays a duplicate."""
    families: dict[tuple, list] = {}
    for run in runs:  # pretraining, fine-tuning and plain runs are compared among their kind
        kind = "pretrain" if run.pretrain else "finetune" if run.pretrained_from else "train"
        families.setdefault((run.dataset, run.model, kind), []).append(run)
    for (_, _, kind), members in families.items():
        keys = {k for r in members for k in r.setting}
        if kind == "finetune":  # which pretraining it started from is its schedule's business
            keys.discard("model.pretrained")
        of_method = {k for k in keys if k.startswith(METHOD_GROUPS)}
        model_keys = _differing(members, keys - of_method)
        rows: dict[tuple, list] = {}
        for run in members:
            if not run.is_baseline:
                rows.setdefault((run.method, run.schedule), []).append(run)
        method_keys = {id(run): _differing(row, of_method) for row in rows.values() for run in row}
        for run in members:
            run.model = _suffixed(run.model, run, [k for k in model_keys if not _idle(run, k)],
                                  model_recipe(run) if model_keys else None)
            run.method = _suffixed(run.method, run, method_keys.get(id(run), []),
                                   recipe_setting(run))


def data_versions(runs: list) -> list[str]:
    """A warning for each dataset whose runs trained on more than one version of its data
    (`dataset.digest`: its manifests or label CSV changed, as a folder prepared again)."""
    digests: dict[str, set[str]] = {}
    for run in runs:
        digest = run.setting.get("dataset.digest")
        if digest is not None:
            digests.setdefault(run.dataset, set()).add(shown(digest))
    return [f"dataset {name}: runs on {len(found)} versions of its data (dataset.digest "
            f"{', '.join(sorted(found))}: its manifests or label CSV changed); each version's "
            "runs are rows of their own, paired with that version's baseline; `--where "
            "dataset.digest=<one of them>` reports one version alone"
            for name, found in sorted(digests.items()) if len(found) > 1]
