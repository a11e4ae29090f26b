"""How a launched sweep stands, said while the launching process waits for it (hours, on a
busy cluster): a line whenever the count of ended (and failed), running or waiting jobs
changes, or why SLURM keeps jobs waiting; and, when the wait is interrupted (Ctrl-C), which
jobs go on without it."""
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)
RUNNING = ("RUNNING", "COMPLETING")  # SLURM's and submitit's local states of a running job
# squeue's pending reasons that no amount of waiting clears: the job asks for more than the
# partition, its nodes or the account may ever give
NEVER = {"PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints",
         "InvalidAccount", "InvalidQOS", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob",
         "QOSMaxMemoryPerJob", "QOSMaxWallDurationPerJobLimit"}
REASON_EVERY_S = 30.0
STOP_GRACE_S = 15.0  # for local jobs the same Ctrl-C reached to save and stop


def _failed(job: Any) -> bool:
    """Whether an ended job failed (its Hydra job's status, or no result at all)."""
    try:
        ret = job.results()[0]
    except Exception:  # noqa: BLE001 - died outside Python: killed, out of memory
        return True
    held = type(getattr(ret, "_return_value", None)).__name__ == "RunHeld"  # trained elsewhere
    return getattr(getattr(ret, "status", None), "name", "") == "FAILED" and not held


def pending_reasons(jobs: Mapping[int, Any], waiting: list[int]) -> dict[str, list[int]]:
    """squeue's reason for each waiting SLURM job: {reason: [sweep indices]} (none where
    there is no squeue: a local sweep)."""
    if not waiting or shutil.which("squeue") is None:
        return {}
    ids = {str(jobs[i].job_id): i for i in waiting}
    try:
        # -r: a job array's pending tasks one per line (12345_3), not folded (12345_[0-17])
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %r", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    reasons: dict[str, list[int]] = {}
    for line in out.splitlines():
        job_id, _, reason = line.strip().partition(" ")
        if job_id in ids and reason and reason != "None":
            reasons.setdefault(reason, []).append(ids[job_id])
    return reasons


def _say_reasons(reasons: dict[str, list[int]], jobs: Mapping[int, Any]) -> None:
    for reason, indices in sorted(reasons.items()):
        shown = ", ".join(f"#{i}" for i in sorted(indices)[:6])
        line = f"sweep: {len(indices)} job(s) waiting because of {reason} ({shown})"
        if reason in NEVER:
            line += (": SLURM will not start them as asked; lower what they ask "
                     "(hydra.launcher.cpus_per_task, mem_gb, gpus_per_node, timeout_min) or "
                     "choose another partition, and `scancel "
                     f"{' '.join(str(jobs[i].job_id) for i in indices[:6])}` stops them")
            log.warning(line)
        else:
            log.info(line)


def wait_reporting(jobs: Mapping[int, Any], poll_s: float = 1.0) -> None:
    """Wait until every submitit job (sweep index -> job) has ended, logging the counts."""
    said, failed, reasons_said, asked = None, {}, None, 0.0
    try:
        while True:
            ended = [index for index, job in jobs.items() if job.done()]
            for index in ended:
                if index not in failed:
                    failed[index] = _failed(jobs[index])
            states = {index: (jobs[index].state.split() or [""])[0]
                      for index in jobs if index not in failed}
            running = sum(state in RUNNING for state in states.values())
            waiting = [index for index, state in states.items() if state not in RUNNING]
            bad = sorted(index for index, is_bad in failed.items() if is_bad)
            counts = (len(ended), len(bad), running, len(waiting))
            if counts != said:
                failures = f" ({len(bad)} failed: {', '.join(f'#{i}' for i in bad[:8])})" \
                    if bad else ""
                log.info(f"sweep: {counts[0]} of {len(jobs)} job(s) ended{failures}, "
                         f"{counts[2]} running, {counts[3]} waiting")
                said = counts
            if len(ended) == len(jobs):
                return
            if waiting and time.monotonic() - asked > REASON_EVERY_S:
                asked = time.monotonic()
                reasons = pending_reasons(jobs, waiting)
                if reasons and reasons != reasons_said:
                    _say_reasons(reasons, jobs)
                    reasons_said = reasons
            time.sleep(poll_s)
    except KeyboardInterrupt:
        raise SweepInterrupted(_interrupted(jobs)) from None


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C while the launching process waited for submitit's jobs: its text says which jobs
    ended with it and which go on, and how to stop those: run.py's last line, as is. (Hydra
    loads plugin modules anew, so run.py cannot test its class: it reads the attribute.)"""

    says_what_the_jobs_do = True


def _interrupted(jobs: Mapping[int, Any]) -> str:
    """What became of the jobs after a Ctrl-C. Local jobs share the terminal's process group,
    so the same Ctrl-C reached them: they get a moment to save and stop; jobs it did not reach
    (SLURM's, or a SIGINT sent to this process alone) go on."""
    going = [index for index, job in jobs.items() if not job.done()]
    local = [i for i in going if _in_this_process_group(jobs[i])]
    deadline = time.monotonic() + STOP_GRACE_S
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: no more waiting
        while any(not jobs[i].done() for i in local) and time.monotonic() < deadline:
            time.sleep(0.2)
    stopped = [i for i in going if jobs[i].done()]
    going = [i for i in going if i not in stopped]
    said = "interrupted"
    if stopped:
        said += (f": {len(stopped)} running job(s) ended with this process (a Ctrl-C in its "
                 "terminal reaches local jobs too; each keeps its last checkpoint)")
    if going:
        ids = " ".join(str(jobs[i].job_id) for i in going)
        stop = f"`scancel {ids}`" if all(i not in local for i in going) else f"`kill -INT {ids}`"
        said += (f"{';' if stopped else ':'} {len(going)} job(s) go on without this process "
                 f"(scheduler ids {ids}); {stop} stops them")
    if not stopped and not going:
        said += ": every job of the sweep had ended"
    return said + ("; launching the same sweep again " + (
        "waits for the jobs that go on, then trains only what is left" if going else
        "trains only what is left") + " (finished runs are kept)")


def _in_this_process_group(job: Any) -> bool:
    """Whether a job's process is in this process's group (a local job: its id is its pid)."""
    try:
        return os.getpgid(int(job.job_id)) == os.getpgrp()
    except (ValueError, OSError):  # a SLURM id (12345_3), or a process already gone
        return False
