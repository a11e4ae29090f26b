"""Which listed clips a preparation already converted, and which of those to convert again.

A clip converted before counts even when its source has since been deleted (a download kept
only as its prepared copy). A recipe that `recheck_sources` (your own recordings: fixed and
exported again under the same name) also converts a clip again when its source's size is not
the one it was converted from, kept in `audio/.sources.json`. Sizes, not modification times: a
plain copy of the sources (`cp -r`, another disk) changes every time, and would convert a whole
dataset again.
"""
from __future__ import annotations

import json
from pathlib import Path

from c2f.data.prepare.registry import Entry
from c2f.files import atomic_write_text

SIZES = ".sources.json"  # under audio/: {key: the source's size in bytes when converted}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def read_sizes(audio: Path) -> dict[str, int]:
    """The sources' sizes recorded at conversion; {} when none were (or unreadable)."""
    try:
        sizes = json.loads((audio / SIZES).read_text())
    except (OSError, ValueError):
        return {}
    return sizes if isinstance(sizes, dict) else {}


def already_converted(entries: list[Entry], outputs: dict[str, Path], sizes: dict[str, int],
                      recheck: bool) -> tuple[set[str], set[str]]:
    """(keys whose converted clip stands, keys to convert again because their source
    changed size). `outputs`: each entry's converted clip; `sizes`: read_sizes, updated in
    place with the size of every standing clip's source that had none recorded."""
    converted, changed = set(), set()
    for entry in entries:
        if not outputs[entry.key].exists():
            continue
        if recheck and entry.found is not None:
            now = _size(entry.found.path)
            if entry.key in sizes and now is not None and now != sizes[entry.key]:
                changed.add(entry.key)
                continue
            if now is not None:
                sizes.setdefault(entry.key, now)
        converted.add(entry.key)
    return converted, changed


def record_sizes(audio: Path, sizes: dict[str, int], done: list[Entry]) -> None:
    """Keep the sizes of the sources just converted beside the ones recorded before."""
    for entry in done:
        size = _size(entry.found.path) if entry.found is not None else None
        if size is not None:
            sizes[entry.key] = size
    if sizes:
        audio.mkdir(parents=True, exist_ok=True)
        atomic_write_text(audio / SIZES, json.dumps(sizes, sort_keys=True))
