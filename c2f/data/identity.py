"""What a run's data is, as part of its identity: a digest of the bytes of its manifests and
label CSV (`dataset.digest`).

Without it, two manifests given to the same preset (or a folder prepared again with more clips)
would name the same run: the second launch would say "already finished", or resume a
half-trained run on other clips, and the report would pair runs trained on different data.
Where the files lie is not part of it: the manifests `python -m c2f.data.prepare` writes list
their audio relative to their own folder, so a prepared dataset moved elsewhere (another
`paths.data_dir`) keeps its run ids. The audio files themselves are not read: a manifest that
lists the same files is the same data.

Digests are kept per process by (path, size, modification time), so a sweep's checks read each
file once.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from c2f.spec import ConfigError

DIGEST_LENGTH = 12
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha1 of a file's bytes, read once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha1()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def data_files(dataset: Mapping) -> list[tuple[str, str]]:
    """(config key, path) of each file that defines a manifest dataset's data, in order."""
    train = dataset.get("train_manifest")
    trains = [train] if isinstance(train, str) else list(train or ())
    return [("train_manifest", t) for t in trains] + [
        ("eval_manifest", dataset.get("eval_manifest")), ("labels_csv", dataset.get("labels_csv"))]


def data_digest(dataset: Mapping, data_dir: Path | str) -> str | None:
    """The digest of a resolved `dataset` config's files; None for the built-in dataset (its
    settings are its identity). A file that is missing raises ConfigError saying how to make
    it."""
    if dataset.get("kind", "builtin") == "builtin":
        return None
    digest = hashlib.sha1()
    for key, value in data_files(dataset):
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise ConfigError(missing_data(key, path, Path(data_dir)))
        digest.update(f"{key}:{file_digest(path)}\n".encode())
    return digest.hexdigest()[:DIGEST_LENGTH]


def missing_data(key: str, path: Path, data_dir: Path) -> str:
    """Why `dataset.<key>` cannot be read and how to make it: the preparation command when the
    file belongs to one of the datasets `python -m c2f.data.prepare` makes, else the format."""
    path, data_dir = path.absolute(), data_dir.absolute()
    folder = path.parent
    where = f"dataset.{key}={path}: no such file"
    present = sorted(p.name for p in folder.glob("*.json") if p.name != "prepared.json") \
        if folder.is_dir() else []
    if present:  # prepared, but not this file: a fold or split that does not exist
        return (f"{where}; {folder} holds {', '.join(present[:8])}"
                f"{' ...' if len(present) > 8 else ''}: check the setting that names it "
                "(dataset.fold, a split, the manifest's name)")
    if not _preparer(folder.name):
        return (f"{where}. Make an AST-format manifest "
                '({"data": [{"wav": "/path/a.wav", "labels": "/m/09x0r"}]}) and a '
                "class_labels_indices.csv (index,mid,display_name), then point "
                f"dataset.{key} at it (python -m c2f.data.prepare makes both for the paper's "
                "datasets and for folders of your own recordings)")
    name = folder.name
    elsewhere = (f". If it is prepared elsewhere, point paths.data_dir (now {data_dir}) at the "
                 f"folder holding {name}/" if folder.parent == data_dir
                 else "")
    return (f"{where}. Prepare {name} from its download into that folder: python -m "
            f"c2f.data.prepare {name} --src YOUR_{name.upper()}_DOWNLOAD --out {folder}"
            f"{elsewhere}")


def _preparer(name: str) -> bool:
    """Whether `python -m c2f.data.prepare NAME` exists (imported only to word an error)."""
    from c2f.data.prepare import DATASETS

    return name in DATASETS and name != "folder"


def eval_data_record(evaluation) -> dict:
    """What a run records of the eval set it was scored on (inference.json's `data`, read by
    c2f.evaluate and c2f.export): the manifest and label CSV, the manifest's digest (a folder
    prepared again in place is told apart from the run's own eval set) and the classes' mids in
    index order (the run's classes, whatever the CSV holds later)."""
    from c2f.data.manifest import read_label_csv

    mids, _ = read_label_csv(evaluation.labels)
    return {"eval_manifest": str(evaluation.path), "labels_csv": str(evaluation.labels),
            "eval_digest": file_digest(Path(evaluation.path)),
            "class_mids": sorted(mids, key=mids.get)}
