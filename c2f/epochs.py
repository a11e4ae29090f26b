"""Which of a run's metric records speak for the model it delivers: those of its final phase
(predict, evaluate and export use the last phase's input), and of them the best one with a
metric. One rule for the run's summary, the report's budget and convergence criteria,
adaptive switching, weight averaging and pretraining."""
from __future__ import annotations

import math


def final_phase(records: list[dict]) -> list[dict]:
    """The records of the final phase, in order; a record that does not say (hand-made, or
    from before the key existed) counts as final."""
    return [r for r in records if r.get("final_phase", True)]


def defined(value) -> bool:
    """Whether a metric is a number: undefined ones (the mAP of an eval set where no class has
    both positives and negatives) are null in metrics.jsonl, NaN in runs written before."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def scored(records: list[dict]) -> list[dict]:
    """The records whose metric is defined: an undefined one ranks nowhere (a NaN would win
    or lose a comparison depending on where it stands)."""
    return [r for r in records if defined(r.get("value"))]


def best_record(records: list[dict]) -> dict | None:
    """The best epoch: highest defined metric, the earliest on ties; None where none has one."""
    return max(scored(records), key=lambda r: (r["value"], -r["epoch"]), default=None)


def metric_text(value) -> str:
    """A metric as runs print it: four decimals; `inf`/`-inf` for an infinite one (d' where the
    AUC is 1 or 0); `undefined` for NaN or None (no class to score)."""
    if isinstance(value, (int, float)) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if defined(value) else "undefined"
