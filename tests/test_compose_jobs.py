"""A sweep's jobs composed in forked processes (hydra_plugins/c2f_plugins/compose.py) are the
jobs Hydra composes one by one: the same configs in the same order, the sweep folder's
${now:...} resolved as the launcher's own, and Hydra's own error for a job that cannot be."""
from __future__ import annotations

import itertools
import os
import threading
import time

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from hydra_plugins.c2f_plugins import compose as composing
from tests.conftest import ROOT


def sweep(name: str) -> tuple:
    """Hydra's loader, the launcher's config (with `hydra.*`) and every job's overrides."""
    master = compose(name, return_hydra_config=True)
    choices = [[f"{key}={value}" for value in str(values).split(",")]
               for key, values in master.hydra.sweeper.params.items()]
    return GlobalHydra.instance().config_loader(), master, list(itertools.product(*choices))


def resolved(configs) -> list[tuple]:
    """Each job as written (interpolations unresolved), its task config resolved and its
    sweep folder resolved (`${now:...}`: resolved once by the launcher, for every job)."""
    return [(OmegaConf.to_container(c),
             OmegaConf.to_container(OmegaConf.masked_copy(c, [k for k in c if k != "hydra"]),
                                    resolve=True),
             c.hydra.sweep.dir) for c in configs]


def test_forked_composition_is_hydras_one_by_one(monkeypatch):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        loader, master, jobs = sweep("table4")
        jobs = jobs[::2]  # 9 of the 18: 5 in one process, 4 in the other
        launched = master.hydra.sweep.dir  # ${now:...} resolved when the sweep is launched
        time.sleep(1.1)  # the seconds in the folder's name differ from now on
        monkeypatch.setattr(composing, "processes_for", lambda jobs: 2)
        forked = resolved(composing.compose_jobs(loader, master, jobs))
        monkeypatch.setattr(composing, "processes_for", lambda jobs: 1)
        one_by_one = resolved(composing.compose_jobs(loader, master, jobs))
    assert len(forked) == len(jobs)
    assert forked == one_by_one
    assert {folder for _, _, folder in forked} == {launched}
    assert [c["hydra"]["overrides"]["task"] for c, _, _ in forked] == [list(j) for j in jobs]


def test_a_job_that_cannot_be_composed_raises_hydras_error(monkeypatch):
    monkeypatch.setattr(composing, "processes_for", lambda jobs: 2)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        loader, master, jobs = sweep("table4")
        jobs = jobs[:4]
        jobs[3] = (*jobs[3], "compression=no_such_method")
        with pytest.raises(MissingConfigException, match="no_such_method"):
            composing.compose_jobs(loader, master, jobs)


def test_processes_one_per_cpu_and_eight_jobs_none_while_another_thread_runs(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # as in run.py's launcher
    assert [composing.processes_for(jobs) for jobs in (7, 16, 18, 44, 1000)] == [1, 2, 2, 4, 4]
    monkeypatch.undo()  # pytest-xdist's own threads run in this process
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:  # forking now could copy a lock that the other thread holds
        assert composing.processes_for(100) == 1
    finally:
        stop.set()
        waiting.join()
