"""Turn a DatasetSpec into checked manifests and feature settings, before training starts."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from c2f.data.builtin import BuiltinParams, ensure_builtin
from c2f.data.errors import DataError
from c2f.data.frontend import FeatureSettings
from c2f.data.identity import data_files, missing_data
from c2f.data.manifest import (
    MAX_LISTED,
    Manifest,
    check_files,
    join_manifests,
    load_manifest,
)
from c2f.data.stats import cached_stats
from c2f.spec import ConfigError, DatasetSpec, ModelFeatures


def manifest_paths(dataset: DatasetSpec, data_dir: Path) -> dict[str, list[Path] | Path]:
    """train (a list: several manifests are joined), eval and labels paths; the built-in
    dataset is rendered on first use."""
    if dataset.kind == "builtin":
        try:
            params = BuiltinParams(**dataset.builtin)
        except TypeError as err:
            raise ConfigError(f"`dataset.builtin`: {err}") from None
        paths = ensure_builtin(data_dir, params)
        return {**paths, "train": [paths["train"]]}
    given = data_files(vars(dataset))
    for option, value in given:
        if not Path(value).is_file():
            raise DataError(missing_data(option, Path(value), data_dir))
    return {"train": [Path(value) for option, value in given if option == "train_manifest"],
            "eval": Path(dataset.eval_manifest),
            "labels": Path(dataset.labels_csv)}


def train_clip_count(dataset: DatasetSpec) -> int | None:
    """The clips of an epoch, counted without reading any audio (a dry run's predicted
    compute): the built-in dataset's from its settings, a manifest's from its entries; None
    where a manifest is not here to count."""
    if dataset.kind == "builtin":
        try:
            params = BuiltinParams(**dataset.builtin)
        except TypeError:
            return None
        return params.train_per_class * dataset.num_classes
    counts = [_entries_in(Path(value)) for option, value in data_files(vars(dataset))
              if option == "train_manifest"]
    return None if not counts or None in counts else sum(counts)


@functools.cache
def _entries_in(path: Path) -> int | None:
    try:
        return len(json.loads(path.read_text()).get("data", []))
    except (OSError, ValueError, AttributeError):
        return None


def _checked(manifest: Manifest, on_bad: str, log) -> Manifest:
    manifest, bad = check_files(manifest, on_bad)
    if bad:
        log(f"WARNING: skipping {len(bad)} unreadable clip(s) of {manifest.path} (listed in "
            "the run's skipped.txt):")
        for line in bad[:MAX_LISTED]:
            log(f"  {line}")
        if len(bad) > MAX_LISTED:
            log(f"  ... and {len(bad) - MAX_LISTED} more")
    return manifest


def _note_long_clips(dataset: DatasetSpec, manifests: dict[str, Manifest], log) -> None:
    """Say how many clips are longer than the input: the model sees their start only (every
    clip is padded or cut to target_length), which a user of long recordings should know.
    Counted where the header check learned a clip's length (libsndfile's, or PyAV's header for
    m4a, mp4, webm: a container that does not say is not counted)."""
    seconds = dataset.target_length * dataset.frame_shift_ms / 1000
    found = {split: [c.seconds for c in m.clips if (c.seconds or 0) > seconds + 0.05]
             for split, m in manifests.items()}
    if not any(found.values()):
        return
    counts = " and ".join(f"{len(found[s])} of {len(manifests[s].clips)} {s}"
                          for s in manifests if found[s])
    longest = max(x for longs in found.values() for x in longs)
    log(f"note: {counts} clip(s) are longer than the input ({seconds:.2f} s, "
        f"dataset.target_length={dataset.target_length}); the model sees the first "
        f"{seconds:.2f} s of each (the longest: {longest:.1f} s). To use all of "
        "them, cut the recordings into clips, or raise dataset.target_length")


def several_labels(manifest: Manifest) -> str | None:
    """The first entry with several labels, and how many more there are, for a message; None
    when each clip has one label."""
    several = [clip for clip in manifest.clips if len(clip.label_ids) > 1]
    if not several:
        return None
    clip = several[0]
    names = ", ".join(repr(manifest.class_names[i]) for i in clip.label_ids)
    return (f"{manifest.path}: data[{clip.line}] has {len(clip.label_ids)} labels ({names})"
            + (f", as do {len(several) - 1} more entries" if len(several) > 1 else ""))


def _one_label_each(manifest: Manifest) -> None:
    """Single-label training (one class per clip, its first) of clips with several labels
    would quietly train on part of them: refused, naming the first such entry."""
    found = several_labels(manifest)
    if found:
        raise ConfigError(
            found + ", but dataset.multilabel=false (one label "
            "per clip). For multi-label data add dataset.multilabel=true dataset.loss=bce "
            "dataset.metric=mAP (AST's AudioSet recipe); else give each entry one label")


def labelled_manifests(dataset: DatasetSpec, data_dir: Path,
                       unlabeled: bool = False) -> tuple[list[Manifest], Manifest]:
    """(train manifests, eval manifest) parsed against the label CSV and checked against the
    config (one label per clip unless multi-label, the CSV's class count); no audio read."""
    paths = manifest_paths(dataset, data_dir)
    trains = [load_manifest(path, paths["labels"], unlabeled) for path in paths["train"]]
    evaluation = load_manifest(paths["eval"], paths["labels"], unlabeled)
    if not dataset.multilabel:
        for manifest in (*trains, evaluation):
            _one_label_each(manifest)
    if trains[0].num_classes != dataset.num_classes:
        raise ConfigError(f"`dataset.num_classes`={dataset.num_classes} but {paths['labels']} "
                          f"lists {trains[0].num_classes} classes; set dataset.num_classes="
                          f"{trains[0].num_classes}")
    return trains, evaluation


def resolve_data(dataset: DatasetSpec, data_dir: Path, log=print,
                 own: ModelFeatures | None = None, unlabeled: bool = False):
    """(train manifest, eval manifest, FeatureSettings), all checked before training; `own`
    is the model's own feature settings (model.features), which replace the dataset's;
    `unlabeled` (pretraining) lets manifest entries leave out their labels."""
    trains, evaluation = labelled_manifests(dataset, data_dir, unlabeled)
    train = join_manifests([_checked(m, dataset.on_bad_audio, log) for m in trains])
    evaluation = _checked(evaluation, dataset.on_bad_audio, log)
    _note_long_clips(dataset, {"training": train, "eval": evaluation}, log)
    if own is not None:
        return train, evaluation, _own_settings(dataset, own)
    mean, std = dataset.norm_mean, dataset.norm_std
    if mean is None:
        mean, std = cached_stats(data_dir / "stats", train, sample_rate=dataset.sample_rate,
                                 num_mel_bins=dataset.num_mel_bins,
                                 frame_shift_ms=dataset.frame_shift_ms,
                                 target_length=dataset.target_length, log=log)
        log(f"normalization from the training set: mean {mean:.4f}, std {std:.4f}")
    settings = FeatureSettings(dataset.sample_rate, dataset.num_mel_bins, mean, std,
                               dataset.freqm, dataset.mixup, dataset.on_bad_audio == "skip",
                               noise=dataset.noise)
    return train, evaluation, settings


def _own_settings(dataset: DatasetSpec, own: ModelFeatures) -> FeatureSettings:
    """Feature settings of a model with its own log-mel (CNN14, HTS-AT)."""
    if own.normalize and dataset.norm_mean is None:
        raise ConfigError("`model.features.normalize`=true needs dataset.norm_mean and "
                          "dataset.norm_std of the model's log-mel (c2f computes statistics "
                          "of AST's fbank only)")
    mean, std = (dataset.norm_mean, dataset.norm_std) if own.normalize else (0.0, 1.0)
    return FeatureSettings(own.sample_rate, own.num_mel_bins, mean, std, dataset.freqm,
                           dataset.mixup, dataset.on_bad_audio == "skip", noise=dataset.noise,
                           kind=own.kind,
                           window=own.window, fmin=own.fmin, fmax=own.fmax,
                           normalize=own.normalize)
