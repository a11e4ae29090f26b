"""`dataset.prepared`: presets whose values a dataset preparation works out (the `folder`
preset: class count, input length, time mask, single- or multi-label, the scored split).

`python -m c2f.data.prepare` writes them to `prepared.json` (`preset_values`); before a config
becomes a spec, each of those keys of `dataset` that is `???` or null takes its value from there
(null, because OmegaConf does not merge `???` over a value). A value given on the command line
stays, and the filled config is what the run stores in its
config.yaml, so a run never reads prepared.json again once it has started.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from c2f.spec import ConfigError

PATH_KEYS = ("train_manifest", "eval_manifest", "labels_csv")  # relative to the folder


def fill_prepared(cfg: DictConfig) -> DictConfig:
    """Fill `cfg.dataset`'s `???` and null keys from `<dataset.prepared>/prepared.json`, in place;
    returns `cfg`. A config without `dataset.prepared` is left as it is."""
    dataset = cfg.get("dataset")
    if dataset is None or not dataset.get("prepared"):
        return cfg
    folder = Path(dataset.prepared)
    report = folder / "prepared.json"
    try:
        values = json.loads(report.read_text())["preset_values"]
    except (OSError, ValueError, KeyError) as err:
        why = "not found" if isinstance(err, FileNotFoundError) else \
            f"unreadable or from an older c2f ({type(err).__name__}: {err})"
        raise ConfigError(
            f"`dataset.prepared`={folder}: {report.name} {why}. Prepare the data there first "
            f"(python -m c2f.data.prepare folder --src YOUR_RECORDINGS --out {folder}), or "
            "check dataset.name and paths.data_dir") from None
    with open_dict(dataset):
        for key, value in values.items():
            if OmegaConf.is_missing(dataset, key) or dataset.get(key) is None:
                dataset[key] = str(folder / value) if key in PATH_KEYS else value
    return cfg
