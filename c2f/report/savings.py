"""The savings rules: baseline reference, budget and convergence criteria, seed aggregation."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from c2f.epochs import best_record, final_phase, scored
from c2f.report.caveats import early_reference, noisy_times, weak_average
from c2f.report.cell_status import JUDGED, best_status, budget_status
from c2f.report.runs import Run, run_key
from c2f.report.variants import base_name, setting_differences


@dataclass(frozen=True)
class Reference:
    """The baseline's best epoch B: metric M_B, cumulative FLOPs F_B and seconds T_B. A run
    with a weight-averaged model is represented by it (AST reports that model), at the cost
    of the whole run."""

    epoch: int
    metric: float
    flops: int
    seconds: float
    averaged: bool = False


@dataclass(frozen=True)
class Outcome:
    """One coarse-to-fine run against its baseline (one seed of a cell)."""

    run: Run
    ref: Reference | None
    status: str  # reached | not reached | pending | no baseline | unfinished baseline | no data
    # budget: the earliest final-phase epoch with metric >= M_B - tolerance; when never reached,
    # the best final-phase epoch (the earliest of ties), its savings flagged as not reached
    epoch: int | None = None
    metric: float | None = None
    flops_save: float | None = None
    time_save: float | None = None
    best: float | None = None  # convergence: best metric of the finished run
    averaged: bool = False  # `metric` is the weight-averaged model's
    best_averaged: bool = False  # `best` is the weight-averaged model's

    @property
    def gap(self) -> float | None:
        """Budget metric minus M_B (negative when not reached)."""
        return None if self.metric is None or self.ref is None else self.metric - self.ref.metric

    @property
    def best_diff(self) -> float | None:
        """Convergence: best metric minus M_B."""
        return None if self.best is None or self.ref is None else self.best - self.ref.metric


def fold_epochs(runs: list[Run]) -> dict[Path, int]:
    """AST's rule for cross-validation folds (egs/esc50/get_esc_result.py): the folds of a row
    are scored at one epoch, the best of their averaged curve, "not the best epoch for each fold
    (which leads to over-optimistic results)". For each row and seed whose folds (two or more)
    have all finished without an averaged model: {run path: that epoch}, among the final-phase
    epochs every fold has, the earliest on ties."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.fold is not None:
            groups.setdefault((*run.cell, run.seed), []).append(run)
    chosen = {}
    for members in groups.values():
        if len({r.fold for r in members}) < 2 or not all(
                r.finished and r.average is None for r in members):
            continue
        curves = [{r["epoch"]: r["value"] for r in scored(final_phase(run.records))}
                  for run in members]
        common = sorted(set.intersection(*(set(curve) for curve in curves)))
        if common:
            epoch = max(common, key=lambda e: (statistics.fmean(c[e] for c in curves), -e))
            chosen |= {run.path: epoch for run in members}
    return chosen


def _at(records: list[dict], epoch: int | None) -> dict | None:
    """The record of `epoch`, or the best one when no epoch is fixed (None: no epoch has a
    defined metric)."""
    return best_record(records) if epoch is None else next(
        r for r in records if r["epoch"] == epoch)


def reference(baseline: Run, epoch: int | None = None) -> Reference | None:
    """The baseline's reference (its averaged model when it has one; at `epoch` when its folds
    are scored at one: fold_epochs), None without an epoch whose metric is defined."""
    best = baseline.average or _at(scored(baseline.records), epoch)
    if best is None:
        return None
    return Reference(best["epoch"], best["value"], best["flops_cum"], best["seconds_cum"],
                     baseline.average is not None)


def _headline(run: Run, epoch: int | None) -> tuple[float | None, bool]:
    """A finished run's convergence value: its averaged model, else its best epoch of the final
    phase (a coarse phase's model is not the one the run delivers), or `epoch` (fold_epochs)."""
    final = final_phase(run.records)
    if not (run.finished and final):
        return None, False
    if run.average is not None:
        return run.average["value"], True
    best = _at(scored(final), epoch)
    return (None if best is None else best["value"]), False


def evaluate(run: Run, baseline: Run | None, tolerance: float = 0.0,
             epochs: dict[Path, int] | None = None) -> Outcome:
    """Budget and convergence criteria of `run` against `baseline` (same dataset, model, seed).

    `tolerance` (a fraction, 0.005 = half a point) lowers the bar of the budget criterion; 0
    counts ties (c2f's reading of the paper's "surpasses"); below 0 (`--strict`) they do not.
    `epochs`: the one epoch each run of cross-validated folds is scored at (fold_epochs)."""
    epochs = epochs or {}
    best, best_averaged = _headline(run, epochs.get(run.path))
    ref = reference(baseline, epochs.get(baseline.path)) \
        if baseline is not None and baseline.finished else None
    if ref is None:  # nothing to compare with: the run's own best is still known
        status = "diverged" if run.diverged else "no baseline" if baseline is None else \
            "unfinished baseline" if not baseline.finished else "no data"
        return Outcome(run, None, status, best=best, best_averaged=best_averaged)
    candidates = scored(final_phase(run.records))
    if run.average is not None:  # available once the last epoch is done
        candidates.append(run.average)

    def at(record: dict, status: str) -> Outcome:
        return Outcome(run, ref, status, record["epoch"], record["value"],
                       1 - record["flops_cum"] / ref.flops, 1 - record["seconds_cum"] / ref.seconds,
                       best, record is run.average, best_averaged)

    for record in candidates:
        if record["value"] >= ref.metric - tolerance:
            return at(record, "reached")
    if not run.finished:  # a diverged run never finishes: no verdict will come
        top = max((r["value"] for r in candidates), default=None)
        return Outcome(run, ref, "diverged" if run.diverged else "pending", metric=top,
                       best=best)
    if not candidates:
        return Outcome(run, ref, "no data", best=best, best_averaged=best_averaged)
    return at(best_record(candidates), "not reached")


def devices(run: Run) -> set[str]:
    """The kinds of device its epochs ran on (records written before c2f noted them: none)."""
    return {r["device"] for r in run.records if r.get("device")}


def _other_devices(run: Run, baseline: Run) -> str | None:
    """A warning when a run's time savings compare epochs on other kinds of device."""
    mine, theirs = devices(run), devices(baseline)
    if not mine or not theirs or (mine == theirs and len(mine) == 1):
        return None
    return (f"{run.path}: trained on {', '.join(sorted(mine))}, its baseline "
            f"({baseline.path}) on {', '.join(sorted(theirs))}: its time savings compare "
            "different machines (its FLOPs savings do not depend on them)")


def pair(runs: list[Run], tolerance: float = 0.0
         ) -> tuple[dict[tuple, Run], list[Outcome], list[str]]:
    """Baselines by (dataset, model, budget, seed, fold), the outcome of every other run
    (against the baseline of its own seed and fold), warnings."""
    warnings: list[str] = []
    chosen: dict[tuple, Run] = {}
    runs = [r for r in runs if not r.pretrain and r.pretrained_from is None]  # pretraining_cells
    for run in runs:  # one run per cell and replicate: the finished one, then the longest
        key = (*run.cell, *run.replicate)
        if key in chosen:
            kept = max(chosen[key], run, key=lambda r: (r.finished, len(r.records)))
            dropped = run if kept is chosen[key] else chosen[key]
            warnings.append(f"duplicate run for {'/'.join(str(k) for k in key if k is not None)}: "
                            f"using {kept.path}, ignoring {dropped.path}")
            chosen[key] = kept
        else:
            chosen[key] = run
    baselines: dict[tuple, Run] = {}
    for run in sorted((r for r in chosen.values() if r.is_baseline),  # finished, then
                      key=lambda r: (not r.finished, r.method.split(" [")[0] != "none",  # none
                                     -len(r.records), str(r.path))):
        key = (run.dataset, run.model, run.budget, *run.replicate)
        if key in baselines:  # C = 1 under another method's name: the same training
            fold = "" if run.fold is None else f" fold {run.fold}"
            warnings.append(f"{run.path}: a second C = 1 run for {run.dataset}/{run.model} "
                            f"seed {run.seed}{fold} (method {run.method}); the baseline is "
                            f"{baselines[key].path}")
        else:
            baselines[key] = run
    outcomes, epochs = [], fold_epochs(list(chosen.values()))
    for base in baselines.values():
        ref = reference(base, epochs.get(base.path)) if base.finished else None
        if ref is not None:
            warnings += [note for note in (early_reference(base, ref.epoch, ref.averaged),
                                           weak_average(base, ref.metric if ref.averaged
                                                        else None)) if note]
    for run in chosen.values():
        if run.is_baseline:
            continue
        baseline = baselines.get((run.dataset, run.model, run.budget, *run.replicate))
        outcome = evaluate(run, baseline, tolerance, epochs)
        if baseline is not None and (mixed := _other_devices(run, baseline)):
            warnings.append(mixed)
        if outcome.status in ("no baseline", "unfinished baseline"):
            fold = "" if run.fold is None else f" fold {run.fold}"
            warnings.append(f"{run.path}: {outcome.status} for {run.dataset}/{run.model} "
                            f"seed {run.seed}{fold}, budget {run.budget} epochs" + (
                                "; train it: the command of this run with compression=none "
                                "schedule=baseline (in a sweep of rows: +row=baseline)"
                                if outcome.status == "no baseline" else "")
                            + _near_baseline(run, baselines.values()))
        outcomes.append(outcome)
    return baselines, outcomes, warnings + noisy_times(list(chosen.values()))


def _near_baseline(run: Run, baselines) -> str:
    """Where a baseline of the run's model preset exists under another label: which it is and
    the settings that tell them apart ("" when there is none)."""
    near = next((b for b in baselines if (b.dataset, base_name(b.model), b.budget, *b.replicate)
                 == (run.dataset, base_name(run.model), run.budget, *run.replicate)), None)
    return "" if near is None or near.model == run.model else (
        f"; {near.path} is the baseline of another setting: {setting_differences(run, near)}")


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (n - 1; 0 for one value) and count over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        """The statistic of `values`, None when empty."""
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class Cell:
    """One row x dataset of a table: seeds aggregated."""

    dataset: str
    model: str
    budget: int
    method: str
    schedule: str
    metric: str
    seeds: int  # seeds of this cell, paired or not
    status: str  # reached | k/n reached | not reached | pending | no baseline | unfinished
    # baseline | no data; the baseline's own rows: baseline | baseline unfinished |
    # baseline: no defined metric
    value: Stat | None = None  # budget metric (or best final-phase one when not reached)
    diff: Stat | None = None
    flops_save: Stat | None = None  # at the budget epoch (the best one when not reached)
    time_save: Stat | None = None
    best: Stat | None = None  # convergence
    best_diff: Stat | None = None
    averaged: bool = False  # the budget value comes from weight-averaged models
    best_averaged: bool = False  # the convergence value does
    best_status: str = ""  # the convergence criterion's status (cell_status.py); "": `status`
    arch: str | None = None  # its runs' model.arch (paper.model_family)

    def status_of(self, criterion: str) -> str:
        """The status of the budget or convergence criterion."""
        return self.best_status or self.status if criterion == "convergence" else self.status


def pretraining_cells(runs: list[Run], tolerance: float = 0.0) -> list[Cell]:
    """Table 6's SSAST rows: the fine-tuning results of models pretrained in one phase (the
    baseline, `pretrain:1`) and coarse to fine, with the savings of the pretraining stage, as
    the paper computes them ("more than a 30% reduction in training FLOPs and time" of the
    pretraining): 1 - the coarse-to-fine pretraining's FLOPs (time) / the baseline's."""
    by_id = {run_key(r): r for r in runs if r.pretrain and r.records}
    by_phases: dict[str, list[Run]] = {}
    for pretraining in by_id.values():
        by_phases.setdefault(pretraining.schedule, []).append(pretraining)

    def source_run(members: list[Run], phases: str) -> Run | None:
        """The pretraining run a row's fine-tuning runs started from: the one they recorded;
        for runs that did not record it, the only one with those phases; else none (the
        savings stay n/a rather than come from another pretraining run)."""
        named = {m.pretrained_run for m in members}
        if len(named) == 1 and None not in named:
            return by_id.get(next(iter(named)))  # "<group>/<id>", as plan.json records it
        found = by_phases.get(phases, [])
        return found[0] if named == {None} and len(found) == 1 else None
    groups: dict[tuple, list[Run]] = {}
    chosen: dict[tuple, Run] = {}  # one run per seed (and fold): a config trained again, in
    for run in runs:  # another group or from another pretraining run, is not a second seed
        if run.pretrained_from is not None:
            key = (run.dataset, run.model, run.budget, run.pretrained_from, *run.replicate)
            best = chosen.get(key)
            if best is None or _preference(run, by_id) > _preference(best, by_id):
                chosen[key] = run
    for run in chosen.values():
        groups.setdefault((run.dataset, run.model, run.budget, run.pretrained_from), []
                          ).append(run)

    def values(members: list[Run]) -> tuple[Stat | None, bool]:
        refs = [r for r in (reference(m) for m in members if m.finished) if r is not None]
        return Stat.of([r.metric for r in refs]), any(r.averaged for r in refs)

    def save(base: Run | None, own: Run | None, key: str) -> Stat | None:
        if not (base and own and base.finished and own.finished):
            return None
        return Stat.of([1 - own.records[-1][key] / base.records[-1][key]])

    cells = []
    for (dataset, model, budget, source), members in groups.items():
        value, averaged = values(members)
        metric = members[0].metric
        if source == "1":
            status = baseline_status(members, [reference(m) for m in members])
            cells.append(Cell(dataset, model, budget, "none", "1", metric, len(members), status,
                              value=value, best=value, averaged=averaged,
                              best_averaged=averaged))
            continue
        baseline_runs = groups.get((dataset, model, budget, "1"), [])
        base, _ = values(baseline_runs)
        base_run, own_run = source_run(baseline_runs, "1"), source_run(members, source)
        diff = None if base is None or value is None else Stat.of([value.mean - base.mean])
        status = "no baseline" if base is None else "pending" if value is None else \
            "reached" if diff.mean >= -tolerance else "not reached"  # --strict: tolerance < 0
        method = own_run.method if own_run is not None else next(
            (r.method for r in by_phases.get(source, [])), "?")
        cells.append(Cell(dataset, model, budget, method, source, metric, len(members), status,
                          value=value, diff=diff,
                          flops_save=save(base_run, own_run, "flops_cum"),
                          time_save=save(base_run, own_run, "seconds_cum"), best=value,
                          best_diff=diff,
                          averaged=averaged, best_averaged=averaged))
    return cells


def baseline_status(members: list[Run], references: list[Reference | None]) -> str:
    """A baseline cell's status: `baseline unfinished` while a seed runs; `baseline: no defined
    metric` when a finished seed has no epoch with a defined metric (its eval set scores no
    class: load_run warns about it); else `baseline`."""
    if not all(m.finished for m in members):
        return "baseline unfinished"
    return "baseline" if all(r is not None for r in references) else \
        "baseline: no defined metric"


def _preference(run: Run, pretrainings: dict[str, Run]) -> tuple:
    """Of two fine-tuning runs of one seed: the one whose pretraining run is here, finished,
    then the longer."""
    return (run.pretrained_run in pretrainings, run.finished, len(run.records))


def aggregate(runs: list[Run], tolerance: float = 0.0) -> list[Cell]:
    """Every cell: baselines (their M_B) and coarse-to-fine runs (both criteria), and the
    fine-tuning rows of pretrained models (pretraining_cells)."""
    baselines, outcomes, _ = pair(runs, tolerance)
    epochs = fold_epochs(list(baselines.values()))
    cells = pretraining_cells(runs, tolerance)
    groups: dict[tuple, list] = {}
    for base in baselines.values():
        groups.setdefault(base.cell, []).append(base)
    for outcome in outcomes:
        groups.setdefault(outcome.run.cell, []).append(outcome)
    for (dataset, model, budget, method, schedule), members in groups.items():
        metric = (members[0] if isinstance(members[0], Run) else members[0].run).metric
        if isinstance(members[0], Run):
            done = [r for r in (reference(b, epochs.get(b.path)) for b in members if b.finished)
                    if r is not None]
            refs = Stat.of([r.metric for r in done])
            status = baseline_status(members, [reference(b, epochs.get(b.path)) for b in members])
            averaged = any(r.averaged for r in done)
            cells.append(Cell(dataset, model, budget, method, schedule, metric, len(members),
                              status, value=refs, best=refs, averaged=averaged,
                              best_averaged=averaged))
            continue
        # every judged seed: at its budget epoch, or at its best final-phase one when it did not
        # reach (the status says how many did); never only the seeds that reached
        shown = [o for o in members if o.status in JUDGED]
        # convergence: the seeds compared with their baseline; without any, each run's own best
        judged = [o for o in members if o.best_diff is not None] or [
            o for o in members if o.best is not None]
        cells.append(Cell(
            dataset, model, budget, method, schedule, metric, len(members), budget_status(members),
            value=Stat.of([o.metric for o in shown]), diff=Stat.of([o.gap for o in shown]),
            flops_save=Stat.of([o.flops_save for o in shown]),
            time_save=Stat.of([o.time_save for o in shown]),
            best=Stat.of([o.best for o in judged]),
            best_diff=Stat.of([o.best_diff for o in judged if o.best_diff is not None]),
            averaged=any(o.averaged for o in shown),
            best_averaged=any(o.best_averaged for o in judged), best_status=best_status(members)))
    archs = {run.model: run.arch for run in runs}
    return [replace(cell, arch=archs.get(cell.model)) for cell in cells]
