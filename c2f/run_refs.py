"""Naming a run from another run's config: `model.pretrained` as a pretraining run (by its
directory, id or `pretrain:<phases>`), resolved to its final checkpoint."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from c2f.spec import ConfigError


def config_phases(cfg: dict) -> str:
    """A stored config's phases in the paper's notation: "4-1", "1"."""
    schedule = cfg.get("schedule", {})
    return "-".join(map(str, schedule.get("phases") or [schedule.get("c", 1)]))


def pretraining_runs(runs_dir: Path, phases: str) -> list[Path]:
    """Run directories under runs_dir of pretraining runs whose phases are `phases` ("4-1")."""
    found = []
    for config in sorted(runs_dir.glob("*/*/config.yaml")):
        cfg = yaml.safe_load(config.read_text()) or {}
        if "pretrain" in cfg and config_phases(cfg) == phases:
            found.append(config.parent)
    return found


def resolve_pretrained(value: str | None, runs_dir: Path, strict: bool = True) -> str | None:
    """`model.pretrained` as a file: a checkpoint file as it is; a pretraining run, named by its
    directory, its id, or `pretrain:<phases>` (the one pretraining run in runs_dir with those
    phases, e.g. `pretrain:4-1`), as its final checkpoint once it has finished. Not `strict`: a
    reference that cannot be resolved yet stays as it is (the plan then says why)."""
    if value is None:
        return None
    if not strict:
        try:
            return resolve_pretrained(value, runs_dir)
        except ConfigError:
            return value
    if value.startswith("pretrain:"):
        found = pretraining_runs(runs_dir, value.removeprefix("pretrain:"))
        if len(found) != 1:
            listed = ", ".join(map(str, found)) or "none"
            raise ConfigError(f"`model.pretrained`={value}: {len(found)} pretraining runs with "
                              f"those phases under {runs_dir} ({listed}); " + (
                                  "name the one meant by its directory" if found else
                                  "launch the pretraining first (sweeps/table6_ssast_pretrain"
                                  ".yaml) or name the run by its directory or id"))
        value = str(found[0])
    path = Path(value).expanduser()
    if not path.exists() and re.fullmatch(r"[0-9a-f]{10}", value):
        found = sorted(runs_dir.glob(f"*/{value}"))
        if not found:
            raise ConfigError(f"`model.pretrained`={value}: no file, and no run {value} under "
                              f"{runs_dir}; give a checkpoint file, a run directory or an id")
        done = [p for p in found if _status(p) == "finished"]  # one config in two groups
        if len(done) > 1:
            raise ConfigError(f"`model.pretrained`={value}: finished in {len(done)} groups "
                              f"({', '.join(map(str, done))}); name the run by its directory")
        path = (done or found)[0]
    if not path.is_dir():
        return value
    status = _status(path)
    if status != "finished":
        raise ConfigError(f"`model.pretrained`={value}: the run {path} has not finished "
                          f"({status}); fine-tune once it has (a run killed meanwhile resumes "
                          "when its command is launched again), or point at a checkpoint file")
    return str(path / "ckpt" / "last.pt")


def _status(run: Path) -> str:
    """A run folder's summary status; "running or killed" without a summary."""
    summary = run / "summary.json"
    try:
        return json.loads(summary.read_text()).get("status") or "unknown status"
    except (OSError, ValueError, AttributeError):
        return "running or killed" if not summary.exists() else "unreadable summary.json"
