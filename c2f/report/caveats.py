"""Warnings about numbers that are right but may mislead: a baseline whose best epoch came
early (every coarse-to-fine run is judged against that early peak) or whose averaged model
falls well below its epochs, and time savings from epochs whose duration varied within a
phase (a shared or throttled machine)."""
from __future__ import annotations

import statistics

from c2f.epochs import best_record, final_phase, scored
from c2f.report.runs import Run

EARLY = 0.25  # a baseline's best epoch within this share of its epochs is an early peak
MIN_EPOCHS = 4  # shorter baselines peak where they peak
SPREAD = 0.3  # spread of a phase's epoch times about their trend, over the median epoch
MIN_SECONDS = 0.5  # a smaller spread in seconds is no evidence of load
WEAK_AVERAGE = 0.02  # an averaged model this far (2 points) below its run's best epoch is odd


def early_reference(baseline: Run, epoch: int, averaged: bool) -> str | None:
    """A warning when a finished baseline's M_B comes from its first epochs (`epoch`, the
    reference's; an averaged model is the run's end, never early)."""
    epochs = len(baseline.records)
    if averaged or epochs < MIN_EPOCHS or epoch > EARLY * epochs:
        return None
    return (f"{baseline.path}: the baseline's best epoch is {epoch} of {epochs} (M_B is an "
            "early peak its metric fell from): every coarse-to-fine run of its cell is judged "
            "against it, so its savings say little; a lower optim.lr, a longer warmup or a "
            "larger eval set give a steadier M_B")


def weak_average(baseline: Run, averaged: float | None) -> str | None:
    """A warning when a baseline's weight-averaged model (its reference, `averaged`) scores
    more than WEAK_AVERAGE below its own best epoch: M_B is then low, and runs reach it early."""
    best = best_record(scored(final_phase(baseline.records)))
    if averaged is None or best is None or best["value"] - averaged <= WEAK_AVERAGE:
        return None
    return (f"{baseline.path}: the baseline's weight-averaged model, its reference M_B, scores "
            f"{100 * averaged:.2f} where its epoch {best['epoch']} reached "
            f"{100 * best['value']:.2f}: every coarse-to-fine run of its cell is judged against "
            "that weaker model, so their savings look larger than the training gives; check "
            "its averaging window (average.start/end/k) or compare with average=none")


def phase_spread(run: Run) -> float:
    """The largest spread of epoch times within one of the run's phases: (largest - smallest
    departure from the phase's falling trend) over its median epoch, each phase's first epoch
    left out (it builds the phase's caches): a steady warm-up is a trend, not noise, a
    slow-down is not discounted; spreads under MIN_SECONDS (epochs too short to time) count as
    none; 0 without 3 epochs."""
    phases: dict[int, list[float]] = {}
    for record in run.records:
        phases.setdefault(record["phase"], []).append(record["seconds"])
    spreads = [0.0]
    for times in phases.values():
        times = times[1:]
        if len(times) < 3 or min(times) <= 0:
            continue
        slope = statistics.linear_regression(range(len(times)), times).slope
        # a falling trend is a warm-up, discounted; a rising one is a slow-down: it counts
        residuals = [y - min(slope, 0.0) * x for x, y in enumerate(times)]
        width = max(residuals) - min(residuals)
        if width >= MIN_SECONDS:
            spreads.append(width / statistics.median(times))
    return max(spreads)


def noisy_times(runs: list[Run]) -> list[str]:
    """One warning naming the runs whose epoch times varied by more than SPREAD within a
    phase: their time savings measure the machine's load as much as the method."""
    noisy = sorted(((phase_spread(run), str(run.path)) for run in runs), reverse=True)
    noisy = [(spread, path) for spread, path in noisy if spread > SPREAD]
    if not noisy:
        return []
    worst = ", ".join(f"{path} ({100 * spread:.0f}%)" for spread, path in noisy[:3])
    more = f" and {len(noisy) - 3} more" if len(noisy) > 3 else ""
    return [f"time savings may be noise: in {len(noisy)} run(s) the epochs of one phase took "
            f"times more than {100 * SPREAD:.0f}% apart about their trend (over the median; "
            f"each phase's first epoch left out): {worst}{more}; a shared or throttled machine "
            "does that. FLOPs savings do not depend on it; time savings are best measured "
            "with the runs side by side on one otherwise idle machine (bench/)"]
