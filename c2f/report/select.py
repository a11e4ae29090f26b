"""`--where KEY=VALUE`: report only the runs whose config has that value (`optim.lr=0.0001`,
`dataset.digest=3f2a...`, `seed=0`), so one report can be made of a folder that holds several
sweeps or several versions of a dataset's data."""
from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

import yaml


class SelectError(ValueError):
    """A --where that cannot select: not KEY=VALUE, or a key no run has."""


def parse_where(items: list[str]) -> dict[str, str]:
    """{key: value} from `KEY=VALUE` texts; SelectError for anything else."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SelectError(f"--where {item!r}: expected KEY=VALUE, e.g. --where optim.lr=0.0001")
        out[key.strip()] = value.strip()
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as {dotted key: value}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[prefix + str(key)] = value
    return out


def same_value(stored: Any, wanted: str) -> bool:
    """Whether a config value equals a command-line value: numbers by value (1e-4 is 0.0001),
    lists and booleans as YAML reads them, anything else as text."""
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        try:
            return float(stored) == float(wanted)
        except ValueError:
            return False
    if isinstance(stored, (list, tuple, bool)) or stored is None:
        try:
            parsed = yaml.safe_load(wanted) if wanted else None
        except yaml.YAMLError:  # not a list, boolean or null: it cannot equal one
            return False
        return json.dumps(list(stored) if isinstance(stored, tuple) else stored) == \
            json.dumps(parsed)
    return str(stored) == wanted


def select(flats: list[dict[str, Any]], where: Mapping[str, str]) -> list[bool]:
    """Which of the runs (as flat configs) match every KEY=VALUE of `where`. A key no run has
    raises SelectError naming the nearest keys; so does a value no run has, naming those seen."""
    for key, wanted in where.items():
        seen = [flat[key] for flat in flats if key in flat]
        if not seen:
            keys = sorted({k for flat in flats for k in flat})
            group = key.split(".")[0] + "."
            near = (difflib.get_close_matches(key, keys, n=3)
                    or [k for k in keys if k.startswith(group)][:12])
            groups = sorted({k.split(".")[0] for k in keys})
            hint = (f" (did you mean {', '.join(near)}?)" if near else
                    f"; the runs' keys begin with {', '.join(groups)} (runs.csv and each run's "
                    "config.yaml list them)")
            raise SelectError(f"--where {key}={wanted}: no run has the key {key}{hint}")
        if not any(same_value(value, wanted) for value in seen):
            values = sorted({json.dumps(v, default=str).strip('"') for v in seen})
            raise SelectError(f"--where {key}={wanted}: no run has that value; the runs have "
                              f"{key} = {', '.join(values)}")
    return [all(k in flat and same_value(flat[k], v) for k, v in where.items())
            for flat in flats]
