"""How a launched sweep stands, said while the launching process waits for it (hours, on a
busy cluster): a line whenever the count of ended, running or waiting jobs changes."""
import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)
RUNNING = ("RUNNING", "COMPLETING")  # SLURM's and submitit's local states of a running job


def wait_reporting(jobs: Mapping[int, Any], poll_s: float = 1.0) -> None:
    """Wait until every submitit job (sweep index -> job) has ended, logging the counts."""
    said = None
    while True:
        ended = [index for index, job in jobs.items() if job.done()]
        running = sum((jobs[index].state.split() or [""])[0] in RUNNING
                      for index in jobs if index not in ended)
        counts = (len(ended), running, len(jobs) - len(ended) - running)
        if counts != said:
            log.info(f"sweep: {counts[0]} of {len(jobs)} job(s) ended, {counts[1]} running, "
                     f"{counts[2]} waiting")
            said = counts
        if len(ended) == len(jobs):
            return
        time.sleep(poll_s)
