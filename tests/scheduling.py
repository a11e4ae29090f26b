"""Which test file starts when, under `make test` (`-n 2 --dist loadfile`).

xdist hands out whole files, those with the most tests first. The files that take longest
have few tests (the SLURM load test is one test of ~105 s), so they started last and one
worker waited for the other at the end. Here the slowest files start first and the rest follow
as xdist orders them. The two SLURM files are one unit, run one after the other on one worker:
they share the test cluster's 2 CPUs and its queue.
"""
from __future__ import annotations

from collections import Counter

import pytest

# Seconds each took in a full run on 2 cores (`pytest -n 2 --dist loadfile --durations=0`),
# slowest first: test_slurm.py ~295 + test_slurm_load.py ~120, test_reliability.py ~120,
# test_sweeps.py ~95, test_local_sweep.py ~75, test_prepare.py ~70, test_models.py ~60,
# test_pretrain.py ~55 (the CLI tests' commands forked from a warm interpreter:
# tests/warm_python.py).
SLOWEST_FILES = ("test_slurm.py", "test_slurm_load.py", "test_reliability.py", "test_sweeps.py",
                 "test_local_sweep.py", "test_prepare.py", "test_models.py", "test_pretrain.py")
SLURM_UNIT = "tests/test_slurm"  # the scope of both SLURM files


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first, then the rest by their number of tests (xdist's order)."""
    counts = Counter(_file(item.nodeid) for item in items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = _file(item.nodeid)
        name = path.rsplit("/", 1)[-1]
        first = SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)
        return first, -counts[path]

    items.sort(key=rank)  # stable: a file's tests keep their order


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """loadfile in the collection's order, with the two SLURM files as one unit; None (xdist's
    own scheduler) for the other `--dist` modes."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SlowestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SLURM_UNIT if scope.startswith(SLURM_UNIT) else scope

    config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems
    return SlowestFirst(config, log)
