"""Read W&B's offline transaction log (run-<id>.wandb) back, for tests.

The file is a 7-byte W&B header followed by a LevelDB log (32 KiB blocks, records with a
7-byte header: crc32c, little-endian length, type FULL/FIRST/MIDDLE/LAST) of Record protos.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4: pos + 7])
        chunk = data[pos + HEADER: pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def history(path: Path) -> list[dict]:
    """The logged history rows, as dicts of key -> value."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def metrics(path: Path) -> dict[str, dict]:
    """The declared metrics (define_metric): name or glob -> its step metric and summary."""
    out = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "metric":
            m = record.metric
            out[m.name or m.glob_name] = {"step_metric": m.step_metric,
                                          "summary": [k for k in ("min", "max", "mean", "last")
                                                      if getattr(m.summary, k)]}
    return out


def run_record(path: Path):
    """The run's RunRecord (id, group, tags, ...): the first one in the log."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"no run record in {path}")


def media(row: dict, prefix: str) -> dict[str, dict]:
    """The media logged under `prefix/` in a history row (tables, images), by name: W&B
    stores each as nested keys `prefix/<name>/<field>`."""
    out: dict[str, dict] = {}
    for key, value in row.items():
        if key.startswith(f"{prefix}/"):
            name, _, field = key[len(prefix) + 1:].rpartition("/")
            out.setdefault(name, {})[field] = value
    return out
