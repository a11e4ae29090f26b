"""A table cell's status for each criterion, from the outcomes of its seeds
(savings.Outcome)."""
from __future__ import annotations

JUDGED = ("reached", "not reached")  # the seeds a cell's budget numbers average


def budget_status(outcomes: list) -> str:
    """The cell's budget status from its seeds: over the judged ones "reached", "k/n reached"
    or "not reached" (with how many of them reached before their run stopped: "reached (1
    unfinished run)"), then how many are not judged and why ("reached, 1 pending"); without a
    judged seed, its one reason, or each reason with its count ("1 diverged, 1 pending")."""
    counts = {s: sum(o.status == s for o in outcomes) for s in {o.status for o in outcomes}}
    reached, judged = counts.get("reached", 0), sum(counts.get(s, 0) for s in JUDGED)
    if not judged:  # one reason, or each with its count ("1 diverged, 1 pending")
        return next(iter(counts)) if len(counts) == 1 else ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items()))
    core = "reached" if reached == judged else "not reached" if not reached else \
        f"{reached}/{judged} reached"
    unfinished = sum(o.status in JUDGED and not o.run.finished for o in outcomes)
    if unfinished:  # reached before it stopped: its numbers stand, its run did not end
        core += f" ({unfinished} unfinished run{'s' if unfinished > 1 else ''})"
    others = sorted((s, n) for s, n in counts.items() if s not in JUDGED)
    return ", ".join([core, *(f"{n} {s}" for s, n in others)])


def best_status(outcomes: list) -> str:
    """The cell's convergence status: "finished" when every seed's best is compared with its
    baseline's, else how many are and why the others are not ("finished, 1 unfinished"); a
    seed's best is known once its run finished (Outcome.best_diff)."""
    def reason(o) -> str:
        if o.best_diff is not None:
            return "finished"
        if o.run.diverged:  # (a diverged run may have reached before: still no best)
            return "diverged"
        if o.status in ("no baseline", "unfinished baseline", "no data"):
            return o.status
        return "unfinished"
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[reason(outcome)] = counts.get(reason(outcome), 0) + 1
    if "finished" not in counts:
        return next(iter(counts)) if len(counts) == 1 else ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items()))
    return ", ".join(["finished", *(f"{n} {s}" for s, n in sorted(counts.items())
                                    if s != "finished")])
