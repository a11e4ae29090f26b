"""Read run directories (config.yaml, plan.json, metrics.jsonl, summary.json) into `Run`s."""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from c2f.epochs import defined, scored
from c2f.report.select import SelectError, flat_config, select
from c2f.report.variants import data_versions, flat_setting, name_variants
from c2f.run_refs import config_phases
from c2f.spec import semantic_config
from c2f.track import RunDir, RunLock


class ReportError(Exception):
    """Unusable input: no run at all, or an unreadable directory."""


# A method's name in tables and plots: the title its class declares (Compression.title, kept in
# each run's plan.json), learned from the runs as they load; the paper's names for runs from
# before that record.
METHOD_TITLES = {"none": "Baseline", "fshift": "Fshift", "pool_avg": "Avg Pool",
                 "pool_max": "Max Pool", "patch_bl": "Patch BL", "patch_pi": "Patch PI"}


@dataclass
class Run:
    """One run directory as the report sees it."""

    path: Path
    dataset: str
    model: str
    method: str
    seed: int
    budget: int
    phases: tuple[int, ...]
    metric: str
    records: list[dict]  # one per epoch
    finished: bool
    warnings: list[str] = field(default_factory=list)
    average: dict | None = None  # the weight-averaged model's record, when the run has one
    # cross-validation fold (ESC-50): folds average like seeds, each scored at the epoch best on
    # their averaged curve (savings.py fold_epochs)
    fold: int | None = None
    pretrain: bool = False  # a self-supervised pretraining run (records of kind "pretrain")
    pretrained_from: str | None = None  # a fine-tuning run: its pretraining run's phases, "4-1"
    pretrained_run: str | None = None  # and that run's id, where known (pretraining_run_of)
    switches: list[dict] = field(default_factory=list)  # adaptive: each phase's switch decision
    adaptive: str = ""  # schedule=adaptive: the switching rule (plateau, budget); "" if fixed
    diverged: str | None = None  # why its loss stopped being finite (diverged.json), if it did
    setting: dict[str, str] = field(default_factory=dict)  # report/variants.py: flat_setting
    config: dict = field(default_factory=dict, repr=False)  # the whole config.yaml

    @property
    def arch(self) -> str | None:
        """The model's architecture (`model.arch`: ast, cnn14, htsat, one's own)."""
        return (self.config.get("model") or {}).get("arch")

    @property
    def replicate(self) -> tuple[int, int | None]:
        """(seed, fold): what tells apart the runs of one table cell."""
        return (self.seed, self.fold)

    @property
    def schedule(self) -> str:
        """The paper's notation: "4-1", "4-2-1", "1" for the baseline; "4~1:plateau" when the
        phase lengths were decided while training (schedule=adaptive), with its rule."""
        if self.adaptive:
            return "~".join(str(c) for c in self.phases) + f":{self.adaptive}"
        return "-".join(str(c) for c in self.phases)

    @property
    def switched(self) -> str:
        """Where an adaptive run switched: "C=4: 3 epochs (plateau)", "" otherwise."""
        return "; ".join(
            f"C={s['C']}: " + (f"{s['epochs']} epochs" if "epochs" in s else f"{s['steps']} steps")
            + f" ({s['reason'].split(':')[0]})" for s in self.switches)

    @property
    def is_baseline(self) -> bool:
        """The single-phase C = 1 run (of classification: pretraining runs pair elsewhere)."""
        return self.phases == (1,) and not self.pretrain

    @property
    def cell(self) -> tuple[str, str, int, str, str]:
        """(dataset, model, budget, method, schedule): the seeds of one table cell."""
        return (self.dataset, self.model, self.budget, self.method, self.schedule)

    @property
    def status(self) -> str:
        """finished, diverged (stopped at a non-finite loss), or unfinished (running or
        crashed)."""
        return "finished" if self.finished else "diverged" if self.diverged else "unfinished"


def _read_json(path: Path) -> dict | None:
    """A JSON file, or None when it is absent."""
    return json.loads(path.read_text()) if path.exists() else None


def _phases(plan: dict | None, config: dict, records: list[dict]) -> tuple[int, ...]:
    """C of each phase: from plan.json, else from the records, else from the config."""
    if plan and plan.get("phases"):
        return tuple(int(p["c"]) for p in plan["phases"])
    seen: list[int] = []
    for record in records:
        if not seen or seen[-1] != record["C"]:
            seen.append(int(record["C"]))
    if seen:
        return tuple(seen)
    schedule = config.get("schedule", {})
    return tuple(schedule.get("phases") or [schedule.get("c", 1)])


def load_run(path: Path) -> Run:
    """One run directory; raises ReportError when it cannot be read at all."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        plan = _read_json(path / "plan.json")
        summary = _read_json(path / "summary.json")
        diverged = _read_json(path / "diverged.json")
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ReportError(f"{path}: unreadable run directory ({err})") from err
    warnings: list[str] = []
    records = RunDir(path).read_metrics(warnings.append, lenient=True)
    averaged = [r for r in records if r.get("kind") == "average"]
    pretrain = "pretrain" in config
    records = [r for r in records if r.get("kind", "epoch") == ("pretrain" if pretrain
                                                                else "epoch")]
    dataset = config.get("dataset", {})
    method = str(config.get("compression", {}).get("name", "?"))
    if (plan or {}).get("method_title"):
        METHOD_TITLES[method] = str(plan["method_title"])
    budget = dataset.get("epochs") or sum(p["epochs"] for p in (plan or {}).get("phases", []))
    if pretrain:
        budget = sum(int(p.get("steps") or 0) for p in (plan or {}).get("phases", []))
    finished = bool(summary and summary.get("status") == "finished")
    why = str(diverged.get("message", diverged)).split(";")[0] if diverged else None
    if not finished:
        warnings.append(f"{path}: {why} (diverged.json), " if why else
                        f"{path}: no finished summary.json ({unfinished_state(path)}), ")
        warnings[-1] += f"{len(records)}/{budget} epochs"
    elif records and not scored(records):
        metric = dataset.get("metric") or records[0].get("metric", "metric")
        warnings.append(f"{path}: finished, but no epoch has a defined {metric} (no class of "
                        "the eval set has both positives and negatives: summary.json's "
                        "classes_left_out lists them); it is in no comparison")
    phases = _phases(plan, config, records)
    for record in records:  # hand-made or foreign records may lack it: their last phase's
        record.setdefault("final_phase", record.get("phase", len(phases) - 1) == len(phases) - 1)
    return Run(path=path, dataset=str(dataset.get("name", "?")),
               model=str(config.get("model", {}).get("name", "?")),
               method=method,
               seed=int(config.get("seed", 0)), budget=int(budget),
               phases=phases,
               metric=str(dataset.get("metric") or (records[0]["metric"] if records else "acc")),
               records=records, finished=finished, warnings=warnings,
               # an averaged model without a defined metric can be no reference or result
               average=averaged[-1] if averaged and defined(averaged[-1]["value"]) else None,
               fold=None if dataset.get("fold") is None else int(dataset["fold"]),
               pretrain=pretrain,
               pretrained_from=pretrained_from(config.get("model", {}).get("pretrained")),
               pretrained_run=pretraining_run_of(config.get("model", {}).get("pretrained"),
                                                 plan),
               switches=list((plan or {}).get("switches", [])),
               adaptive=str((config.get("schedule", {}).get("switch") or {}).get("rule", "")),
               diverged=why, setting=flat_setting(semantic_config(config)), config=config)


def unfinished_state(path: Path) -> str:
    """Why a run without a finished summary has none, as far as its folder tells: a live
    process holds its lock (running), or none does and its checkpoint is there (stopped:
    signalled, killed or crashed; the same command resumes it), else running elsewhere (a
    lock another machine holds is not seen) or crashed before its first checkpoint."""
    try:
        holder = RunLock(path).held_by()
    except OSError:
        holder = None
    if holder:
        return f"running: held by {holder}"
    elsewhere = _last_holder_elsewhere(path)
    if (path / "ckpt" / "last.pt").exists():
        return "stopped: no process holds it, and ckpt/last.pt is there: the same command " \
            "resumes it" + (f"; or still running on {elsewhere}, whose lock this machine "
                            "may not see (a filesystem without shared locks)" if elsewhere else "")
    return "running or crashed"


def _last_holder_elsewhere(path: Path) -> str | None:
    """The host and pid of the run's last holder, from its lock's note, when that is another
    machine than this one; None otherwise (no note: released cleanly)."""
    try:
        note = json.loads(RunLock(path).path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    host = note.get("host")
    if not host or host == socket.gethostname():
        return None
    return f"host {host} (pid {note.get('pid')}, since {note.get('since')})"


def run_key(run: Run) -> str:
    """`<group>/<id>`: how a fine-tuning run's plan.json names its pretraining run."""
    return f"{run.path.parent.name}/{run.path.name}"


def pretraining_run_of(value: str | None, plan: dict | None) -> str | None:
    """`<group>/<id>` of the pretraining run a fine-tuning run loaded: as its plan.json records
    it, or the run folder its checkpoint path lies in; None when not known (`pretrain:<phases>`
    in a run from before that record)."""
    if (plan or {}).get("pretrained_run"):
        return str(plan["pretrained_run"])
    folder = _run_folder(value)
    return None if folder is None else f"{folder.parent.name}/{folder.name}"


def _run_folder(value: str | None) -> Path | None:
    """The run folder a `model.pretrained` path lies in (the folder, or its ckpt/ file)."""
    if not value or str(value).startswith("pretrain:"):
        return None
    path = Path(str(value)).expanduser()
    return next((f for f in (path, *path.parents[:2]) if (f / "config.yaml").is_file()), None)


def pretrained_from(value: str | None) -> str | None:
    """The phases ("4-1") of the pretraining run a fine-tuning run started from: named as
    `pretrain:<phases>`, or by a path inside that run's directory; None otherwise."""
    if not value:
        return None
    if str(value).startswith("pretrain:"):
        return str(value).removeprefix("pretrain:")
    folder = _run_folder(value)
    cfg = (yaml.safe_load((folder / "config.yaml").read_text()) or {}) if folder else {}
    return config_phases(cfg) if "pretrain" in cfg else None


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories (config.yaml next to plan.json or metrics.jsonl) at or below `paths`."""
    found: set[Path] = set()
    for root in paths:
        if not root.is_dir():
            raise ReportError(f"{root}: not a directory")
        for config in [root / "config.yaml", *root.rglob("config.yaml")]:
            run = config.parent
            if config.is_file() and ((run / "plan.json").exists()
                                     or (run / "metrics.jsonl").exists()):
                found.add(run)
    return sorted(found)


def load_runs(paths: list[Path], where: dict[str, str] | None = None
              ) -> tuple[list[Run], list[str]]:
    """All runs below `paths` (those whose config matches every KEY=VALUE of `where`:
    report/select.py) and the warnings met; ReportError when there is none."""
    runs, unreadable = [], []
    for path in find_run_dirs(paths):
        try:
            runs.append(load_run(path))
        except ReportError as err:
            unreadable.append(str(err))
    if not runs:
        raise ReportError("no run directory found under " + ", ".join(map(str, paths))
                          + " (a run directory holds config.yaml and plan.json)")
    if where:
        try:
            kept = select([flat_config(run.config) for run in runs], where)
        except SelectError as err:
            raise ReportError(str(err)) from err
        runs = [run for run, keep in zip(runs, kept) if keep]
        if not runs:
            raise ReportError("no run matches every --where " + " ".join(
                f"{k}={v}" for k, v in where.items()) + " at once")
    pretrainings = {run_key(r): r for r in runs if r.pretrain}
    for run in runs:  # named by id or path: its pretraining run's phases, once it is loaded
        if run.pretrained_from is None and run.pretrained_run in pretrainings:
            run.pretrained_from = pretrainings[run.pretrained_run].schedule
    name_variants(runs)
    return runs, unreadable + [w for run in runs for w in run.warnings] + data_versions(runs)
