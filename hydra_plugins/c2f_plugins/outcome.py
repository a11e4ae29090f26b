"""How a sweep ended, said once its jobs have: the failed jobs with why and where their logs
are (then exit status 1), or where the runs are and the command that reports them. Runs held
by another process (found at launch or when their job starts) are skipped, not failed."""
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

log = logging.getLogger(__name__)


class SweepFailed(SystemExit):
    """Jobs of a sweep failed: listed by `report_failures`; exit status 1."""


def job_log(ret: JobReturn) -> Path | None:
    """The job's own log file (Hydra writes it into the job's output folder)."""
    if ret.hydra_cfg is None:
        return None
    hydra = ret.hydra_cfg.hydra
    path = Path(str(hydra.runtime.output_dir)) / f"{hydra.job.name}.log"
    return path if path.exists() else None


def report_failures(returns: Sequence[JobReturn], extra_logs: Sequence[Sequence[Path]],
                    states: Sequence[str] = ()) -> None:
    """Log which jobs failed, why (with the scheduler's state of a job that did not end as
    completed: cancelled, timeout, out of memory), and where their logs are; then end the
    sweep with exit status 1 and that list alone (Hydra would add the first failure's
    traceback through its own launcher code)."""
    failed = [(i, r, x) for i, (r, x) in enumerate(zip(returns, extra_logs))
              if r.status == JobStatus.FAILED]
    held = [(i, r) for i, r, _ in failed if is_held(r)]
    if held:  # another process trains these runs: skipped, not failed
        lines = [f"{len(held)} run(s) skipped, held by other processes:"]
        for index, ret in held:
            lines += [f"  #{index}: {' '.join(filter_overrides(ret.overrides or []))}",
                      f"      {str(ret._return_value).splitlines()[0]}"]
        log.warning("\n".join(lines))
    failed = [(i, r, x) for i, r, x in failed if (i, r) not in held]
    if not failed:
        return
    lines = [f"{len(failed)} of {len(returns)} job(s) failed:"]
    for index, ret, extra in failed:
        err = ret._return_value
        message = (str(err).strip().splitlines() or [""])[0]
        logs = [str(p) for p in (job_log(ret), *extra) if p is not None and Path(p).exists()]
        state = states[index] if index < len(states) else ""
        lines += [f"  #{index}: {' '.join(filter_overrides(ret.overrides or []))}",
                  f"      {type(err).__name__}: {message}"
                  + (f" (scheduler: {state})" if state and not state.startswith("COMPLETED")
                     else ""),
                  f"      log: {', '.join(logs) or 'none written'}"]
    lines.append("Finished runs are kept; launch the same sweep again to retry only these.")
    log.error("\n".join(lines))
    raise SweepFailed(1)


def is_held(ret: JobReturn) -> bool:
    """Whether the job found its run trained by another process (c2f.track.RunHeld)."""
    return ret.status == JobStatus.FAILED and type(ret._return_value).__name__ == "RunHeld"


def skip_held(returns: Sequence[JobReturn]) -> list[JobReturn]:
    """The returns with each held job's (listed by `report_failures`) made completed with no
    value: Hydra's sweeper re-raises a failed job's error, a traceback and exit status 1 for a
    run that is not failing but trained elsewhere."""
    return [JobReturn(overrides=r.overrides, cfg=r.cfg, hydra_cfg=r.hydra_cfg,
                      working_dir=r.working_dir, task_name=r.task_name,
                      status=JobStatus.COMPLETED, _return_value=None) if is_held(r) else r
            for r in returns]


def scheduler_state(job: Any) -> str:
    """The scheduler's final state of a job ("CANCELLED by 0", "TIMEOUT", "COMPLETED")."""
    try:
        return str(job.state)
    except Exception:  # noqa: BLE001 - sacct unavailable: the Python error stands alone
        return ""


def finished_note(specs: Sequence, returns: Sequence[JobReturn]) -> None:
    """Where the sweep's runs are and the command that reports them."""
    folders = sorted({str(spec.run_dir.parent) for spec in specs})
    ended = sum(r.status == JobStatus.COMPLETED for r in returns)
    log.info(f"sweep: {ended} of {len(returns)} job(s) done; runs in {', '.join(folders)}; "
             f"report: python -m c2f.report {' '.join(folders)}")
