"""A small on-disk cache of predicted FLOPs (and of passed rehearsals, c2f/rehearsal.py), so
that planning a sweep is instant.

A prediction runs forward + backward on the meta device (about a second for AST-Base); a paper
table's sweep repeats a few shapes over many jobs and many launches. Entries are keyed by
everything that decides the count: the model config and input shape, and the versions of
torch, timm, c2f's own model, compression, FLOPs and rehearsal code and its plugins' code (a
hash of their sources), so an edit to any of them never reuses a stale count. The file lives in
$C2F_CACHE_DIR, else $XDG_CACHE_HOME/c2f (~/.cache/c2f); it is written atomically and losing it
costs nothing.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import timm
import torch

import c2f.compression
import c2f.models
import c2f.train.flops
from c2f.registry import plugin_folders


def cache_file() -> Path:
    root = os.environ.get("C2F_CACHE_DIR")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "c2f"
    return Path(root) / "flops.json"


@functools.cache
def code_version() -> str:
    digest = hashlib.sha1(f"{torch.__version__} {timm.__version__}".encode())
    sources = sorted(Path(c2f.models.__file__).parent.glob("*.py"))
    sources += sorted(Path(c2f.compression.__file__).parent.glob("*.py"))  # the rehearsal's
    for folder in plugin_folders():  # a plugin's models (c2f/registry.py)
        sources += sorted(folder.rglob("*.py"))
    rehearsal = Path(__file__).with_name("rehearsal.py")
    for path in [*sources, Path(c2f.train.flops.__file__), rehearsal]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(*parts) -> str:
    blob = json.dumps([code_version(), *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cached(key: str, compute) -> int:
    """`compute()` once per key, across processes and launches."""
    path = cache_file()
    value = _read(path).get(key)
    if value is not None:
        return int(value)
    value = int(compute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read(path) | {key: value}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as tmp:
            json.dump(entries, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only home still plans, only slower
    return value
