"""Adaptive phase switching (schedule=adaptive): whether a non-final phase ends after its
latest epoch, and why.

- `plateau`: the phase's eval metric has not beaten its best by more than `min_delta` for
  `patience` epochs.
- `budget`: the phase's recent gain per FLOP (the metric's slope over the last `patience`
  epochs, divided by this phase's FLOPs per epoch) has fallen below the gain per FLOP the next
  phase is predicted to give: the phase's mean gain per epoch so far (how fast the model learns
  when a phase is fresh), at the next phase's cost per epoch from the plan. Equivalently: the
  recent slope is below the mean slope times the cost ratio of the two phases (about 1/C).

Epochs whose metric is undefined (null: c2f/epochs.py) do not count. Either way a phase
trains at least `min_epochs` and at most its cap (the plan's epochs). The
decision depends only on the epoch records, which a resumed run reproduces bitwise on CPU, and
it is kept in the checkpoint (TrainState.switches), so a run killed at any moment decides the
same way.
"""
from __future__ import annotations

import dataclasses

from c2f.epochs import defined, scored
from c2f.plan import Phase, PhasePlan
from c2f.spec import RunSpec, SwitchSpec
from c2f.train.records import epoch_records


def phase_decision(switch: SwitchSpec | None, plan: PhasePlan, index: int, records: list[dict],
                   done: int, cap: int, unit: str) -> dict | None:
    """The decision to end phase `index` after its latest evaluation, or None to go on (or
    when the phase is the last, or the schedule fixed). `records`: the run's evaluation
    records so far; `done`: the phase's epochs or steps (`unit`) so far, `cap` their most.
    The decision: {"phase", "C", "<unit>s": done, "reason"}."""
    if switch is None or index == len(plan.phases) - 1:
        return None
    phase, following = plan.phases[index], plan.phases[index + 1]
    ours = [r for r in records if r["phase"] == index]
    # defined metrics, with their place in the phase (undefined epochs take one too)
    placed = [(k, r["value"]) for k, r in enumerate(ours, start=1) if defined(r["value"])]
    at, mine = [k for k, _ in placed], [value for _, value in placed]
    earlier = [r["value"] for r in scored(records) if r["phase"] < index]
    reason = switch_reason(switch, mine, phase.flops_per_sample / following.flops_per_sample,
                           earlier[-1] if earlier else None,
                           "epoch" if unit == "epoch" else "evaluation", at)
    if reason is None and done < cap:
        return None
    never = f" (no {unit} of the phase had a defined {ours[-1].get('metric', 'metric')}: " \
        "the rule was never checked)" if ours and not mine else ""
    return {"phase": index, "C": phase.c, f"{unit}s": done,
            "reason": reason or f"cap: {cap} {unit}s{never}"}


def switch_reason(switch: SwitchSpec, values: list[float], cost_ratio: float,
                  before: float | None = None, unit: str = "epoch",
                  at: list[int] | None = None) -> str | None:
    """Why the phase ends after its latest evaluation (`values`: its eval metric per epoch,
    or per evaluation of a step-based phase: `unit`; higher is better), or None to go on.
    `cost_ratio`: this phase's FLOPs per sample over the next phase's. `before`: the metric
    before the phase began (the previous phase's last), if any. `at`: each value's epoch in
    the phase (1-based; default 1..n), which undefined epochs left out of `values` shift."""
    n = len(values)
    if n == 0 or n < switch.min_epochs:
        return None
    if switch.rule == "plateau":
        return _plateau(switch, values, unit, at or list(range(1, n + 1)))
    return _budget(switch, values, cost_ratio, before, unit)


def _plateau(switch: SwitchSpec, values: list[float], unit: str, at: list[int]) -> str | None:
    best, best_at = values[0], 0
    for i, value in enumerate(values[1:], start=1):
        if value > best + switch.min_delta:
            best, best_at = value, i
    waited = len(values) - 1 - best_at
    if waited < switch.patience:
        return None
    return (f"plateau: no gain over {switch.min_delta:g} for {waited} {unit}(s) (best "
            f"{best:.4f} at {unit} {at[best_at]} of the phase)")


def _budget(switch: SwitchSpec, values: list[float], cost_ratio: float,
            before: float | None, unit: str) -> str | None:
    start = values[0] if before is None else before
    epochs = len(values) - (1 if before is None else 0)  # epochs the mean gain spans
    if len(values) <= switch.patience or epochs < 1:
        return None
    recent = (values[-1] - values[-1 - switch.patience]) / switch.patience
    mean = (values[-1] - start) / epochs
    threshold = max(mean * cost_ratio, switch.min_delta)
    if recent >= threshold and mean > 0:
        return None
    return (f"budget: recent gain {recent:+.4f}/{unit} is below {threshold:.4f}/{unit}, the "
            f"phase's mean gain ({mean:+.4f}/{unit}) at the next phase's cost (x{cost_ratio:.3f})")


def decide_after_epoch(spec: RunSpec, plan: PhasePlan, phase: Phase, records: list[dict],
                       state, log, record=None) -> None:
    """After an epoch of a non-final adaptive phase: end the phase if its rule says so; the
    decision goes to the epoch's record, the checkpoint's state (TrainState.switches), the
    log, and `record` (RunDir.record_switch: plan.json; rank 0's)."""
    done = state.phase_epochs_done
    decision = phase_decision(spec.schedule.switch, plan, phase.index, epoch_records(records),
                              done, phase.epochs, "epoch")
    if decision is None:
        return
    state.switches[phase.index] = done
    decision |= {"epoch": state.epoch, "flops_cum": state.flops_cum}
    records[-1]["switch"] = decision
    log(f"phase {phase.index} (C = {phase.c}) ends after {done} epoch(s): {decision['reason']}")
    if record is not None:
        record(decision, spec.dataset.epochs)


def adapted_phase(spec: RunSpec, plan: PhasePlan, phase: Phase, state) -> Phase:
    """The phase with the epochs it trains (`state`: the loop's TrainState): a switched phase
    the epochs it ran, the final phase of an adaptive run what the earlier phases left of the
    budget; any other phase as planned."""
    if spec.schedule.switch is None:
        return phase
    if phase.index in state.switches:
        return dataclasses.replace(phase, epochs=state.switches[phase.index])
    if phase.index == len(plan.phases) - 1:
        used = state.epoch - state.phase_epochs_done  # epochs of the earlier phases
        return dataclasses.replace(phase, epochs=spec.dataset.epochs - used)
    return phase
