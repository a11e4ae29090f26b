"""A config's dataset made complete before it becomes a spec (`complete_dataset`): the values a
preparation worked out filled in, and the data's digest stamped.

`dataset.prepared`: presets whose values a dataset preparation works out (the `folder`
preset: class count, input length, time mask, single- or multi-label, the scored split).

`python -m c2f.data.prepare` writes them to `prepared.json` (`preset_values`); before a config
becomes a spec, each of those keys of `dataset` that is `???` or null takes its value from there
(null, because OmegaConf does not merge `???` over a value). A value given on the command line
stays, and the filled config is what the run stores in its
config.yaml, so a run never reads prepared.json again once it has started.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from c2f.data.identity import data_digest
from c2f.features import TIME_MASK_SHARE
from c2f.spec import ConfigError

PATH_KEYS = ("train_manifest", "eval_manifest", "labels_csv")  # relative to the folder


def complete_dataset(cfg: DictConfig) -> DictConfig:
    """`cfg`, in place, ready to become a spec: `dataset.prepared`'s values filled in
    (`fill_prepared`), a time mask left null set to AST's share of the input length, then
    `dataset.digest` set to what its manifests and label CSV hold
    (c2f/data/identity.py). A missing file raises ConfigError saying how to make it, but in a
    dry run, which plans before the data exists: there it is said once, and the run's id is
    the one without its data. A key still `???` is left for the spec to name."""
    fill_prepared(cfg)
    dataset = cfg.get("dataset")
    if dataset is not None and "timem" in dataset and dataset.get("timem") is None \
            and isinstance(dataset.get("target_length"), int):
        with open_dict(dataset):  # the manifest preset's time mask: AST's share of the input
            dataset.timem = round(dataset.target_length * TIME_MASK_SHARE)
    if dataset is None or any(OmegaConf.is_missing(dataset, key) for key in PATH_KEYS
                              if key in dataset):
        return cfg
    try:
        digest = data_digest(OmegaConf.to_container(dataset, resolve=True),
                             OmegaConf.select(cfg, "paths.data_dir", default="data"))
    except ConfigError as err:
        if OmegaConf.select(cfg, "trainer.dry_run", default=False) is not True:
            raise
        if str(err) not in _SAID:
            _SAID.add(str(err))
            print(f"note (dry run): {err}", file=sys.stderr)
        return cfg
    if digest is not None:
        with open_dict(dataset):
            dataset.digest = digest
    return cfg


_SAID: set[str] = set()  # what a dry run said of missing data, said once per process


def _note_resampling(dataset: DictConfig, folder: Path, rate: int | None) -> None:
    """Training at another rate than the folder was prepared at is allowed (every clip is
    resampled), and said once: a user who meant "my files are 8 kHz" learns what it does. The
    fbank's mel filters span 20 Hz to the training rate's Nyquist frequency (kaldi's
    high_freq=0, c2f/features.py)."""
    wanted = dataset.get("sample_rate")
    if not (isinstance(rate, int) and isinstance(wanted, int)) or wanted == rate:
        return
    said = (f"note: dataset.sample_rate={wanted} resamples {folder}'s audio, prepared at "
            f"{rate} Hz; " + (f"what it holds above {wanted // 2} Hz is left out"
                              if wanted < rate else
                              f"the mel filters above {rate // 2} Hz hear nothing (the "
                              "folder holds nothing there)"))
    if said not in _SAID:
        _SAID.add(said)
        print(said, file=sys.stderr)


def fill_prepared(cfg: DictConfig) -> DictConfig:
    """Fill `cfg.dataset`'s `???` and null keys from `<dataset.prepared>/prepared.json`, in place;
    returns `cfg`. A config without `dataset.prepared` is left as it is. A target_length given
    on the command line takes the prepared time mask at its share of the prepared length."""
    dataset = cfg.get("dataset")
    if dataset is None or not dataset.get("prepared"):
        return cfg
    folder = Path(dataset.prepared)
    report = folder / "prepared.json"
    try:
        prepared = json.loads(report.read_text())
        values = prepared["preset_values"]
    except PermissionError as err:
        raise ConfigError(
            f"`dataset.prepared`={folder}: {report.name} cannot be read by this user "
            f"({err.strerror}); ask its owner to make the folder readable (chmod -R a+rX "
            f"{folder}), or prepare a copy of your own") from None
    except (OSError, ValueError, KeyError) as err:
        why = "not found" if isinstance(err, FileNotFoundError) else \
            f"unreadable or from an older c2f ({type(err).__name__}: {err})"
        others = sorted(p.parent.name for p in folder.parent.glob("*/prepared.json")) \
            if folder.parent.is_dir() else []
        raise ConfigError(
            f"`dataset.prepared`={folder}: {report.name} {why}. Prepare the data there first "
            f"(python -m c2f.data.prepare folder --src YOUR_RECORDINGS --out {folder}), or "
            "check dataset.name and paths.data_dir"
            + (f" (prepared in {folder.parent}: {', '.join(others)})" if others else "")) \
            from None
    _note_resampling(dataset, folder, prepared.get("sample_rate"))
    given = {key for key in values
             if not OmegaConf.is_missing(dataset, key) and dataset.get(key) is not None}
    with open_dict(dataset):
        for key, value in values.items():
            if key not in given:
                dataset[key] = str(folder / value) if key in PATH_KEYS else value
        if "target_length" in given and "timem" not in given and values.get("timem") \
                and values.get("target_length"):
            # the time mask keeps its share of the input (AST's 192 of 1024) at another length
            dataset.timem = round(values["timem"] * dataset.target_length
                                  / values["target_length"])
    return cfg
