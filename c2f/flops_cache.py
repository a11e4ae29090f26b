"""A small on-disk cache of predicted FLOPs (and of passed rehearsals, c2f/rehearsal.py), so
that planning a sweep is instant.

A prediction runs forward + backward on the meta device (about a second for AST-Base); a paper
table's sweep repeats a few shapes over many jobs and many launches. Entries are keyed by
everything that decides the count: the model config and input shape, and the versions of
torch, timm and the code concerned (a hash of the sources of c2f's FLOPs and rehearsal code and
of the method's and model's modules, c2f's or a plugin's, with what they share), so an edit to
any of them never reuses a stale count, and a new method's file keeps the others' entries.
The file lives in $C2F_CACHE_DIR, else $XDG_CACHE_HOME/c2f (~/.cache/c2f); it is written
atomically and losing it costs nothing.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

import timm
import torch

import c2f.compression
import c2f.models
import c2f.train.flops
from c2f.files import atomic_write_text
from c2f.registry import plugin_folders


def cache_file() -> Path:
    root = os.environ.get("C2F_CACHE_DIR")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "c2f"
    return Path(root) / "flops.json"


ALL = "*"  # code_version's default: the code of every method and model


@functools.cache
def code_version(method: str | None = ALL, arch: str | None = ALL) -> str:
    """A hash of the code a plan depends on: the torch and timm versions, c2f's FLOPs and
    rehearsal code, and the modules of the methods and models (c2f's and its plugins'), less
    those that register only methods and models other than `method` and `arch` (None: none;
    ALL: every one). A file added or edited for one method or model thus leaves the plans and
    cached predictions of every other one standing."""
    from c2f.compression import compression_class, list_compressions
    from c2f.models import list_models, model_family

    digest = hashlib.sha1(f"{torch.__version__} {timm.__version__}".encode())
    sources = sorted(Path(c2f.models.__file__).parent.glob("*.py"))
    sources += sorted(Path(c2f.compression.__file__).parent.glob("*.py"))  # the rehearsal's
    for folder in plugin_folders():  # a plugin's models (c2f/registry.py)
        sources += sorted(folder.rglob("*.py"))
    classes = {name: compression_class(name) for name in list_compressions()} | {
        f"arch:{name}": type(model_family(name)) for name in list_models()}
    own = set().union(*(_uses(classes[key]) for key in (method, f"arch:{arch}")
                        if key in classes))
    others = set() if ALL in (method, arch) else {_source(c) for c in classes.values()} - own
    rehearsal = Path(__file__).with_name("rehearsal.py")
    for path in [*sources, Path(c2f.train.flops.__file__), rehearsal]:
        if path.resolve() not in others:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _source(thing) -> Path | None:
    try:
        found = inspect.getsourcefile(thing)
    except TypeError:  # a builtin
        return None
    return Path(found).resolve() if found else None


def _uses(cls: type) -> set[Path | None]:
    """The files a registered class's code comes from: its module, its base classes' and what
    its module imports (a plugin's family built on c2f's AST depends on c2f/models/ast.py)."""
    module = sys.modules.get(cls.__module__)
    found = {_source(base) for base in cls.__mro__}
    for value in vars(module).values() if module is not None else ():
        if inspect.ismodule(value):
            found.add(_source(value))
        elif inspect.isclass(value) or inspect.isfunction(value):
            found.add(_source(sys.modules.get(getattr(value, "__module__", ""), value)))
    return found


def cache_key(code: str, *parts) -> str:
    """The cache's key of `parts` computed by code of version `code` (code_version)."""
    blob = json.dumps([code, *parts], sort_keys=True, default=str)
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
        # as readable as open() makes it (NamedTemporaryFile's 0o600 hid a shared cache)
        atomic_write_text(path, json.dumps(_read(path) | {key: value}))
    except OSError:
        pass  # a read-only home still plans, only slower
    return value
