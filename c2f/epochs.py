"""Which of a run's metric records speak for the model it delivers: those of its final phase
(predict, evaluate and export use the last phase's input). One rule for the run's summary, the
report's budget and convergence criteria, and pretraining."""
from __future__ import annotations


def final_phase(records: list[dict]) -> list[dict]:
    """The records of the final phase, in order; a record that does not say (hand-made, or
    from before the key existed) counts as final."""
    return [r for r in records if r.get("final_phase", True)]
