"""The jobs of a sweep that need not start, found before any job does.

A relaunched sweep starts only what is left: a run that finished is not trained again, a run
that diverged before would only diverge again, and a run that another live process trains now
would only find it held. On SLURM each of them would wait in the queue and take a node only to
say so. They are listed when the sweep is launched and get their return at once (finished:
completed; diverged: failed, listed with the failures; held: skipped, listed as such).

A dry run's jobs (`trainer.dry_run=true`) print their plans where the sweep is launched, by the
code of a single run's dry run, and are never submitted: on SLURM a dry run would otherwise
queue one array task per job just to print a plan."""

import logging
from collections.abc import Collection, Sequence

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

log = logging.getLogger(__name__)
SHOWN = 8  # runs listed per kind; the rest are counted


def varying_overrides(job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Each job's overrides that not every job of the sweep shares, as one string."""
    shared = set.intersection(*(set(o) for o in job_overrides)) if job_overrides else set()
    return [" ".join(o for o in filter_overrides(overrides) if o not in shared)
            for overrides in job_overrides]


def _listed(title: str, rows: dict[int, str]) -> str:
    """The title, then "#<job> <row>" for the first SHOWN jobs, then how many more."""
    lines = [title] + [f"  #{index} {row}" for index, row in list(rows.items())[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append(f"  and {len(rows) - SHOWN} more")
    return "\n".join(lines)


def _where(varying: str, path: str) -> str:
    """A job's row: what tells it apart in the sweep, and its run's folder (or file)."""
    return f"{varying} -> {path}" if varying else f"-> {path}"


def duplicate_jobs(specs: Sequence, job_overrides: Sequence[Sequence[str]],
                   settled: Collection[int] = ()) -> dict[int, int]:
    """Jobs that are the same run as an earlier job of the sweep (their overrides differ only
    in keys outside a run's identity, `NON_SEMANTIC` in c2f/spec.py: precision, workers,
    compile, ...), mapped to that job: each run is trained once; listed in the log. Settled
    jobs (`settled_jobs`) have their returns already and are left out."""
    first: dict[str, int] = {}
    same = {}
    for index, spec in enumerate(specs):
        if index in settled:
            continue
        same_as = first.setdefault(str(spec.run_dir), index)
        if same_as != index:
            same[index] = same_as
    if not same:
        return {}
    rows = {}
    for index, same_as in same.items():
        differ = [o for o in filter_overrides(job_overrides[index])
                  if o not in set(job_overrides[same_as])]
        rows[index] = (f"= #{same_as} ({' '.join(differ) or 'the same overrides'}) -> "
                       f"{specs[index].run_dir}")
    log.warning(_listed(
        f"{len(same)} job(s) are the same run as an earlier job of this sweep, trained once: "
        "their overrides differ only in keys that do not change a run's results, so they share "
        "its folder (to train each, give each its own folder: for a sweep over "
        "trainer.precision, add 'group=mine-${trainer.precision}', quoted for the shell):", rows))
    return same


def same_return(first: JobReturn, overrides: Sequence[str]) -> JobReturn:
    """A duplicate job's return: its run's, under its own overrides."""
    return JobReturn(overrides=list(overrides), status=first.status,
                     _return_value=first._return_value, hydra_cfg=first.hydra_cfg,
                     working_dir=first.working_dir, task_name=first.task_name)


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
    finished, diverged, held = ({i: _where(varying[i], path) for i, path in kind.items()}
                                for kind in (finished, diverged, held))
    if finished:
        log.info(_listed(f"{len(finished)} of {total} run(s) already finished, not started "
                         "again (delete a run's folder to train it anew):", finished))
    if diverged:
        log.warning(_listed(
            f"{len(diverged)} of {total} run(s) diverged before, not started again (the same "
            "config would diverge again: change optim.lr or optim.grad_clip, or delete the "
            "run's diverged.json to retry it as it is):", diverged))
    if held:
        log.warning(_listed(f"{len(held)} of {total} run(s) are being trained by other "
                            "processes, not started (trainer.wait_for_lock=true queues them "
                            "to wait instead):", held))
    return returns


def dry_run(spec, overrides: Sequence[str], num: int) -> JobReturn:
    """Print job `num`'s plan and recipe (c2f/train/job.py's dry run); its return holds the
    job's predicted training FLOPs (None where its data is not here to count)."""
    from c2f.plan import build_plan
    from c2f.train.job import print_dry_run

    log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
    plan = print_dry_run(spec, build_plan(spec))  # finished runs were settled before
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                     _return_value=plan.predicted_flops())


def dry_run_total(planned: Sequence[JobReturn]) -> str:
    """The sweep's predicted training compute, summed over its dry-run jobs."""
    from c2f.plan import flops_text

    known = [r._return_value for r in planned if r._return_value is not None]
    if not known:
        return "no job's data is here to count its predicted compute"
    rest = len(planned) - len(known)
    return (f"predicted training compute {flops_text(sum(known))} over {len(known)} job(s)"
            + (f"; {rest} more whose data is not here to count" if rest else ""))
