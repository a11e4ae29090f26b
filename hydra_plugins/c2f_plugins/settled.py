"""The jobs of a sweep that need not start, found before any job does.

A relaunched sweep starts only what is left: a run that finished is not trained again, a run
that diverged before would only diverge again, and a run that another live process trains now
would only find it held. On SLURM each of them would wait in the queue and take a node only to
say so. They are listed when the sweep is launched and get their return at once (finished:
completed; diverged: failed, listed with the failures; held: skipped, listed as such)."""

import logging
from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

log = logging.getLogger(__name__)
SHOWN = 8  # runs listed per kind; the rest are counted


def varying_overrides(job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Each job's overrides that not every job of the sweep shares, as one string."""
    shared = set.intersection(*(set(o) for o in job_overrides)) if job_overrides else set()
    return [" ".join(o for o in filter_overrides(overrides) if o not in shared)
            for overrides in job_overrides]


def _listed(title: str, rows: dict[int, str], varying: list[str]) -> str:
    lines = [title]
    for shown, index in enumerate(rows):
        if shown == SHOWN:
            lines.append(f"  and {len(rows) - SHOWN} more")
            break
        lines.append("  " + " ".join(filter(None, [f"#{index}", varying[index], "->",
                                                   rows[index]])))
    return "\n".join(lines)


def settled_jobs(specs: Sequence, job_overrides: Sequence[Sequence[str]]
                 ) -> dict[int, JobReturn]:
    """The jobs not to start, by index, with their returns; each kind listed in the log."""
    from c2f.track import RunDir, RunLock
    from c2f.train.job import diverged_before

    finished, diverged, held, returns = {}, {}, {}, {}
    for index, spec in enumerate(specs):
        run = RunDir(spec.run_dir)
        overrides = list(job_overrides[index])
        summary = run.finished_summary()
        if summary:
            finished[index] = str(run.path)
            returns[index] = JobReturn(overrides=overrides, status=JobStatus.COMPLETED,
                                       _return_value=summary.get("best"))
            continue
        refused = diverged_before(spec, run)
        lock = RunLock(run.path)
        holder = None if refused or spec.trainer.wait_for_lock else lock.held_by()
        if refused:
            diverged[index] = str(run.path / "diverged.json")
        elif holder:
            held[index] = f"{run.path} (by {holder})"
            refused = lock.held_error()
        if refused:
            returns[index] = JobReturn(overrides=overrides, status=JobStatus.FAILED,
                                       _return_value=refused)
    varying, total = varying_overrides(job_overrides), len(specs)
    if finished:
        log.info(_listed(f"{len(finished)} of {total} run(s) already finished, not started "
                         "again (delete a run's folder to train it anew):", finished, varying))
    if diverged:
        log.warning(_listed(
            f"{len(diverged)} of {total} run(s) diverged before, not started again (the same "
            "config would diverge again: change optim.lr or optim.grad_clip, or delete the "
            "run's diverged.json to retry it as it is):", diverged, varying))
    if held:
        log.warning(_listed(f"{len(held)} of {total} run(s) are being trained by other "
                            "processes, not started (trainer.wait_for_lock=true queues them "
                            "to wait instead):", held, varying))
    return returns
