"""AST-format manifests (JSON) and class label CSVs, validated up front."""

from __future__ import annotations

import csv
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile

from c2f.data.audio import TRUNCATED, declared_short
from c2f.data.errors import DataError

CSV_HEADER = ["index", "mid", "display_name"]
ON_BAD_CHOICES = ("fail", "skip")
MAX_LISTED = 10


@dataclass(frozen=True)
class Clip:
    """One manifest entry: an audio file and its class indices."""

    path: Path
    label_ids: tuple[int, ...]
    line: int
    seconds: float | None = None  # its length, from check_files' header check (None: unknown)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: clips plus the class names of its label CSV."""

    path: Path
    clips: list[Clip]
    class_names: list[str]
    sources: tuple[Path, ...] = ()  # the manifests a joined one was made of (join_manifests)
    labels: Path | None = None  # the label CSV it was read with
    # (path, reason) of the clips `check_files` dropped (dataset.on_bad_audio=skip): the run
    # lists them in skipped.txt with the clips skipped while training
    dropped: tuple[tuple[str, str], ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of classes in the label CSV."""
        return len(self.class_names)


def multi_hot(clips: Sequence[Clip], num_classes: int) -> np.ndarray:
    """[clips, classes] float32 targets, 1.0 at each clip's classes and 0.0 elsewhere (one 1.0
    for a single-label clip). The one definition: the targets items carry, which training and
    evaluation score against (SpectrogramDataset.target), and those a run reads its eval set's
    chance level and scored classes from without decoding audio (records.eval_targets) must
    not differ."""
    targets = np.zeros((len(clips), num_classes), np.float32)
    for row, clip in enumerate(clips):
        targets[row, list(clip.label_ids)] = 1.0
    return targets


def read_label_csv(csv_path: str | PathLike[str]) -> tuple[dict[str, int], list[str]]:
    """Read AST's class_labels_indices.csv into (mid -> index, index -> display name)."""
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"{path}: label CSV not found; pass the path of class_labels_indices.csv")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse label CSV ({e}); save it as UTF-8 CSV") from e
    if not rows or [c.strip() for c in rows[0]] != CSV_HEADER:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(f"{path}: label CSV header must be 'index,mid,display_name', got {got!r}")
    mids: dict[str, int] = {}
    names: dict[int, str] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 3:
            raise DataError(
                f"{path}:{lineno}: expected 3 columns (index,mid,display_name), got {len(row)}; "
                "quote display names that contain commas"
            )
        index_text, mid, name = (c.strip() for c in row)
        try:
            index = int(index_text)
        except ValueError:
            raise DataError(f"{path}:{lineno}: index {index_text!r} is not an integer") from None
        if index in names:
            raise DataError(
                f"{path}:{lineno}: duplicate index {index}; each index must appear once"
            )
        if not mid:
            raise DataError(f"{path}:{lineno}: empty mid; every class needs a unique mid")
        if mid in mids:
            raise DataError(f"{path}:{lineno}: duplicate mid {mid!r}; each mid must appear once")
        mids[mid] = index
        names[index] = name
    if not names:
        raise DataError(f"{path}: label CSV has no classes; add one row per class")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise DataError(
            f"{path}: indices must be 0..{len(names) - 1} without gaps; missing {missing[:10]}"
        )
    return mids, [names[i] for i in range(len(names))]


def _parse_entry(entry: object, i: int, path: Path, csv_path: Path, mids: dict[str, int],
                 unlabeled: bool = False, names: dict[str, str] | None = None,
                 model_classes: bool = False) -> Clip:
    """Validate one manifest entry and turn it into a Clip (`unlabeled`: labels optional, for
    self-supervised pretraining)."""
    if not isinstance(entry, dict):
        raise DataError(f"{path}: data[{i}] is not an object; use {{'wav': ..., 'labels': ...}}")
    if unlabeled and not entry.get("labels"):
        entry = {**entry, "labels": None}
    for key in ("wav", "labels"):
        if key not in entry:
            raise DataError(
                f"{path}: data[{i}] has no {key!r} key; every entry needs 'wav' and 'labels'"
            )
    wav, labels = entry["wav"], entry["labels"]
    if not isinstance(wav, str) or not wav.strip():
        raise DataError(f"{path}: data[{i}] 'wav' must be a non-empty path string, got {wav!r}")
    if labels is None:  # an unlabeled clip
        return Clip(path=_wav_path(wav, path), label_ids=(), line=i)
    if not isinstance(labels, str):
        raise DataError(
            f"{path}: data[{i}] 'labels' must be a string of comma-separated mids, got {labels!r}"
        )
    parts = [p.strip() for p in labels.split(",") if p.strip()]
    if not parts:
        raise DataError(
            f"{path}: data[{i}] has empty labels; give at least one mid from {csv_path}"
        )
    for part in parts:
        if part not in mids:
            named = (names or {}).get(part)
            if model_classes:  # a trained model's own classes: nothing to add them to
                raise DataError(f"{path}: data[{i}] has label {part!r}, not one of the "
                                f"{len(mids)} classes the model of {csv_path} was trained on; "
                                "give a manifest of those classes")
            raise DataError(
                f"{path}: data[{i}] has unknown label {part!r} not in {csv_path}; "
                + (f"labels are mids: {part!r} is the display_name of {named!r}, so write "
                   f"{named!r}" if named else "fix the label or add it to the CSV"))
    ids = tuple(dict.fromkeys(mids[p] for p in parts))
    return Clip(path=_wav_path(wav, path), label_ids=ids, line=i)


def _wav_path(wav: str, manifest: Path) -> Path:
    """An entry's audio path: absolute, or relative to the manifest's folder."""
    wav_path = Path(wav).expanduser()
    if not wav_path.is_absolute():
        wav_path = manifest.parent / wav_path
    return wav_path.resolve()


def _entries(path: Path) -> list:
    """The "data" list of an AST-format manifest, checked."""
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; check the dataset's manifest path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}; "
            "fix the syntax there"
        ) from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); save the manifest as UTF-8 JSON") from e
    if not isinstance(doc, dict) or "data" not in doc:
        raise DataError(
            f'{path}: no "data" key; the format is {{"data": [{{"wav": ..., "labels": ...}}]}}'
        )
    data = doc["data"]
    if not isinstance(data, list):
        raise DataError(f'{path}: "data" must be a list of entries, got {type(data).__name__}')
    if not data:
        raise DataError(
            f'{path}: manifest is empty ("data" has no entries); add clips or fix the path'
        )
    return data


def load_manifest(json_path: str | PathLike[str], labels_csv: str | PathLike[str],
                  unlabeled: bool = False,
                  classes: tuple[list[str], list[str]] | None = None) -> Manifest:
    """Load and validate an AST-format manifest against its label CSV (`unlabeled`: entries
    may leave out "labels", as pretraining data does). `classes` (mids and display names in
    index order, as an exported model carries them) stand in for the CSV's rows; `labels_csv`
    then names where they came from, for messages."""
    path = Path(json_path).resolve()
    csv_path = Path(labels_csv).resolve()
    if classes is None:
        mids, class_names = read_label_csv(csv_path)
    else:
        mids, class_names = {mid: i for i, mid in enumerate(classes[0])}, list(classes[1])
    names = {class_names[index]: mid for mid, index in mids.items()}  # for messages
    clips = [_parse_entry(entry, i, path, csv_path, mids, unlabeled, names, classes is not None)
             for i, entry in enumerate(_entries(path))]
    return Manifest(path=path, clips=clips, class_names=class_names, labels=csv_path)


def manifest_audio(json_path: str | PathLike[str]) -> list[Path]:
    """The audio files of a manifest, whatever its labels (for prediction)."""
    path = Path(json_path).resolve()
    return [_parse_entry({**entry, "labels": None} if isinstance(entry, dict) else entry,
                         i, path, path, {}, unlabeled=True).path
            for i, entry in enumerate(_entries(path))]


def join_manifests(manifests: list[Manifest]) -> Manifest:
    """Several manifests over one label CSV as one (SSAST pretrains on AudioSet + LibriSpeech);
    named by the first, with every source kept for messages and the statistics cache."""
    if len(manifests) == 1:
        return manifests[0]
    first = manifests[0]
    return Manifest(path=first.path, clips=[c for m in manifests for c in m.clips],
                    class_names=first.class_names, sources=tuple(m.path for m in manifests),
                    labels=first.labels, dropped=tuple(d for m in manifests for d in m.dropped))


def _problem(clip: Clip) -> tuple[str | None, float | None]:
    """Why a clip's file is unusable (cheap header check), or None if it looks fine; and its
    length in seconds where the header says it (libsndfile's, or PyAV's for m4a, mp4, ...)."""
    if not clip.path.is_file():
        return "file not found", None
    if clip.path.stat().st_size == 0:
        return "empty file (0 bytes)", None
    try:
        info = soundfile.info(str(clip.path))
    except (soundfile.LibsndfileError, RuntimeError) as e:
        from c2f.data.container import probe  # m4a, mp4, webm...: PyAV reads them

        reason, seconds = probe(clip.path)
        return (None if reason is None else f"unreadable audio header ({e}; PyAV: {reason})",
                seconds)
    if info.frames <= 0:
        return "zero-length audio (0 frames)", None
    if declared_short(info.extra_info):  # an interrupted copy: found here, not mid-training
        return TRUNCATED.format(""), None
    return None, info.frames / info.samplerate


def _none_found(manifest: Manifest) -> str:
    """None of a manifest's files exists here: a folder not mounted on this node, or a
    manifest that moved without its audio; skipping clips cannot help."""
    top = Path(os.path.commonpath([str(c.path.parent) for c in manifest.clips]))
    there = next((p for p in (top, *top.parents) if p.exists()), None)
    return (f"{manifest.path}: none of its {len(manifest.clips)} audio files exists on "
            f"{socket.gethostname()}, e.g. {manifest.clips[0].path} (they lie under {top}"
            + (f"; of that path only {there} exists here" if there and there != top else "")
            + "). Is that folder mounted on this machine (a compute node sees other disks "
            "than a login node), or did the manifest move without its audio? Manifests name "
            "their audio relative to themselves or absolutely")


def check_files(manifest: Manifest, on_bad: str = "fail") -> tuple[Manifest, list[str]]:
    """Check every clip's file header; fail on bad files or drop them ('skip'). The clips
    kept carry their length (`Clip.seconds`) where the header says it."""
    if on_bad not in ON_BAD_CHOICES:
        raise ValueError(f"on_bad must be one of {ON_BAD_CHOICES}, got {on_bad!r}")
    good: list[Clip] = []
    bad: list[str] = []
    dropped: list[tuple[str, str]] = []
    for clip in manifest.clips:
        reason, seconds = _problem(clip)
        if reason is None:
            good.append(Clip(clip.path, clip.label_ids, clip.line, seconds))
        else:
            bad.append(f"{clip.path} (data[{clip.line}]): {reason}")
            dropped.append((str(clip.path), f"{reason} (data[{clip.line}] of {manifest.path})"))
    if dropped and all(reason.startswith("file not found") for _, reason in dropped) \
            and len(dropped) == len(manifest.clips):
        raise DataError(_none_found(manifest))
    if bad and on_bad == "fail":
        listed = "\n  ".join(bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise DataError(
            f"{manifest.path}: {len(bad)} of {len(manifest.clips)} audio files are bad:\n"
            f"  {listed}{more}\n"
            "Fix or remove them, or set dataset.on_bad_audio=skip to train without them."
        )
    if not good:
        raise DataError(
            f"{manifest.path}: all {len(bad)} audio files are bad; nothing left to train on"
        )
    return replace(manifest, clips=good, dropped=manifest.dropped + tuple(dropped)), bad
