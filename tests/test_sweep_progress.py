"""What the launcher says while a sweep runs (hydra_plugins/c2f_plugins/sweep_progress.py):
failed jobs as they end, and why SLURM keeps jobs waiting, from a stand-in `squeue` on PATH
that answers as squeue -r does for a job array's tasks."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.c2f_plugins import sweep_progress


@dataclass
class Job:
    """What the progress loop reads of a submitit job."""

    job_id: str
    states: list = field(default_factory=list)  # the state at each poll; "DONE" ends it
    status: JobStatus = JobStatus.COMPLETED

    @property
    def state(self) -> str:  # read once a poll for a job not done: the next poll's is next
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def done(self) -> bool:
        return self.states[0] == "DONE"

    def results(self):
        return [JobReturn(status=self.status)]


def fake_squeue(folder, lines: str, monkeypatch) -> None:
    script = folder / "squeue"
    script.write_text("#!/bin/sh\ncase \"$*\" in *-r*) printf '" + lines + "' ;; esac\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_pending_reasons_per_task_and_the_ones_waiting_cannot_clear(tmp_path, monkeypatch,
                                                                   caplog):
    fake_squeue(tmp_path, "77_0 PartitionConfig\\n77_1 Priority\\n77_2 PartitionConfig\\n",
                monkeypatch)
    jobs = {0: Job("77_0"), 1: Job("77_1"), 2: Job("77_2")}
    reasons = sweep_progress.pending_reasons(jobs, [0, 1, 2])
    assert reasons == {"PartitionConfig": [0, 2], "Priority": [1]}
    with caplog.at_level("INFO"):
        sweep_progress._say_reasons(reasons, jobs)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "2 job(s) waiting because of PartitionConfig (#0, #2)" in \
        warned[0] and "`scancel 77_0 77_2` stops them" in warned[0]
    assert "1 job(s) waiting because of Priority (#1)" in caplog.text  # clears by itself


def test_the_progress_line_counts_failed_jobs_as_they_end(tmp_path, monkeypatch, caplog):
    fake_squeue(tmp_path, "", monkeypatch)
    jobs = {0: Job("5_0", ["RUNNING", "DONE"], JobStatus.FAILED),
            1: Job("5_1", ["PENDING", "RUNNING", "RUNNING", "DONE"])}
    with caplog.at_level("INFO"):
        sweep_progress.wait_reporting(jobs, poll_s=0)
    said = [r.getMessage() for r in caplog.records]
    assert "sweep: 0 of 2 job(s) ended, 1 running, 1 waiting" in said
    assert "sweep: 1 of 2 job(s) ended (1 failed: #0), 1 running, 0 waiting" in said
    assert said[-1] == "sweep: 2 of 2 job(s) ended (1 failed: #0), 0 running, 0 waiting"
