"""The savings rules: baseline reference, budget and convergence criteria, seed aggregation."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from c2f.report.runs import Run


@dataclass(frozen=True)
class Reference:
    """The baseline's best epoch B: metric M_B, cumulative FLOPs F_B and seconds T_B."""

    epoch: int
    metric: float
    flops: int
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """One coarse-to-fine run against its baseline (one seed of a cell)."""

    run: Run
    ref: Reference | None
    status: str  # reached | not reached | pending | no baseline | baseline unfinished | no data
    epoch: int | None = None  # budget: earliest final-phase epoch with metric >= M_B
    metric: float | None = None  # budget: metric there, or the best final-phase one if not reached
    flops_save: float | None = None
    time_save: float | None = None
    best: float | None = None  # convergence: best metric of the finished run

    @property
    def gap(self) -> float | None:
        """Budget metric minus M_B (negative when not reached)."""
        return None if self.metric is None or self.ref is None else self.metric - self.ref.metric

    @property
    def best_diff(self) -> float | None:
        """Convergence: best metric minus M_B."""
        return None if self.best is None or self.ref is None else self.best - self.ref.metric


def best_record(records: list[dict]) -> dict:
    """The best epoch: highest metric, the earliest on ties (as the trainer's summary)."""
    return max(records, key=lambda r: (r["value"], -r["epoch"]))


def reference(baseline: Run) -> Reference | None:
    """The baseline's reference, or None when it has no epoch."""
    if not baseline.records:
        return None
    best = best_record(baseline.records)
    return Reference(best["epoch"], best["value"], best["flops_cum"], best["seconds_cum"])


def evaluate(run: Run, baseline: Run | None) -> Outcome:
    """Budget and convergence criteria of `run` against `baseline` (same dataset, model, seed)."""
    if baseline is None:
        return Outcome(run, None, "no baseline")
    if not baseline.finished:
        return Outcome(run, None, "baseline unfinished")
    ref = reference(baseline)
    if ref is None:
        return Outcome(run, None, "no data")
    best = best_record(run.records)["value"] if run.finished and run.records else None
    final = [r for r in run.records if r.get("final_phase")]
    for record in final:
        if record["value"] >= ref.metric:
            return Outcome(run, ref, "reached", record["epoch"], record["value"],
                           1 - record["flops_cum"] / ref.flops,
                           1 - record["seconds_cum"] / ref.seconds, best)
    top = max((r["value"] for r in final), default=None)
    return Outcome(run, ref, "not reached" if run.finished else "pending", metric=top, best=best)


def pair(runs: list[Run]) -> tuple[dict[tuple, Run], list[Outcome], list[str]]:
    """Baselines by (dataset, model, budget, seed), the outcome of every other run, warnings."""
    warnings: list[str] = []
    chosen: dict[tuple, Run] = {}
    for run in runs:  # one run per cell and seed: the finished one, then the longest
        key = (*run.cell, run.seed)
        if key in chosen:
            kept = max(chosen[key], run, key=lambda r: (r.finished, len(r.records)))
            dropped = run if kept is chosen[key] else chosen[key]
            warnings.append(f"duplicate run for {'/'.join(map(str, key))}: "
                            f"using {kept.path}, ignoring {dropped.path}")
            chosen[key] = kept
        else:
            chosen[key] = run
    baselines = {(r.dataset, r.model, r.budget, r.seed): r
                 for r in chosen.values() if r.is_baseline}
    outcomes = []
    for run in chosen.values():
        if run.is_baseline:
            continue
        outcome = evaluate(run, baselines.get((run.dataset, run.model, run.budget, run.seed)))
        if outcome.status in ("no baseline", "baseline unfinished"):
            warnings.append(f"{run.path}: {outcome.status} for {run.dataset}/{run.model} "
                            f"seed {run.seed}, budget {run.budget} epochs")
        outcomes.append(outcome)
    return baselines, outcomes, warnings


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation (0 for one value) and count over seeds."""

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
    status: str  # reached | k/n reached | not reached | pending | no baseline | baseline
    value: Stat | None = None  # budget metric (or best final-phase one when not reached)
    diff: Stat | None = None
    flops_save: Stat | None = None
    time_save: Stat | None = None
    best: Stat | None = None  # convergence
    best_diff: Stat | None = None


def _status(outcomes: list[Outcome]) -> str:
    """The cell's budget status from its seeds."""
    counts = {s: sum(o.status == s for o in outcomes) for s in {o.status for o in outcomes}}
    reached, judged = counts.get("reached", 0), counts.get("reached", 0) + counts.get(
        "not reached", 0)
    if reached and reached == len(outcomes):
        return "reached"
    if reached:
        return f"{reached}/{len(outcomes)} reached"
    if judged:
        return "not reached"
    return max(counts, key=counts.get)


def aggregate(runs: list[Run]) -> list[Cell]:
    """Every cell: baselines (their M_B) and coarse-to-fine runs (both criteria)."""
    baselines, outcomes, _ = pair(runs)
    cells = []
    groups: dict[tuple, list] = {}
    for base in baselines.values():
        groups.setdefault(base.cell, []).append(base)
    for outcome in outcomes:
        groups.setdefault(outcome.run.cell, []).append(outcome)
    for (dataset, model, budget, method, schedule), members in groups.items():
        metric = (members[0] if isinstance(members[0], Run) else members[0].run).metric
        if isinstance(members[0], Run):
            done = [reference(b) for b in members if b.finished]
            refs = Stat.of([r.metric for r in done if r is not None])
            status = "baseline" if len(done) == len(members) else "baseline unfinished"
            cells.append(Cell(dataset, model, budget, method, schedule, metric, len(members),
                              status, value=refs, best=refs))
            continue
        reached = [o for o in members if o.status == "reached"]
        shown = reached or [o for o in members
                            if o.status == "not reached" and o.metric is not None]
        cells.append(Cell(
            dataset, model, budget, method, schedule, metric, len(members), _status(members),
            value=Stat.of([o.metric for o in shown]), diff=Stat.of([o.gap for o in shown]),
            flops_save=Stat.of([o.flops_save for o in reached]),
            time_save=Stat.of([o.time_save for o in reached]),
            best=Stat.of([o.best for o in members if o.best_diff is not None]),
            best_diff=Stat.of([o.best_diff for o in members if o.best_diff is not None])))
    return cells
