"""Shared fixtures: a tiny built-in dataset (rendered once per session) and the real CLI."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scheduling import (  # noqa: F401  (hooks: the slowest test files start first)
    pytest_collection_modifyitems,
    pytest_xdist_make_scheduler,
)
from tests.warm_python import run_python

ROOT = Path(__file__).resolve().parents[1]
SLURM_CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
SLURM_STATE = Path(os.environ.get("C2F_SLURM_STATE", "/tmp/c2f-slurm"))

# Tiny but real: a one-block AST on 1.28 s clips, and a small built-in SoundFont dataset.
# Tests add `logger=...` themselves.
TINY_TRAINING = [
    "dataset.target_length=128", "dataset.timem=24", "dataset.batch_size=11",
    "dataset.epochs=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "optim.warmup_steps=2", "trainer.progress=false",
]
TINY = ["dataset.builtin.train_per_class=4", "dataset.builtin.eval_per_class=2",
        "dataset.builtin.clip_seconds=1.28", *TINY_TRAINING]


# Data-parallel runs (torchrun, SLURM tasks) against one process: a batch that splits in two.
DDP_ARGS = [*TINY, "dataset.batch_size=10", "compression=pool_avg", "schedule=2phase",
            "schedule.c=2", "logger=disabled"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_worker() -> None:
    """Each xdist worker shares the machine's cores with the other worker and with the
    subprocesses tests start (those get OMP_NUM_THREADS=1): one torch thread each. Two
    threads spin against the other work: the SSAST learning test took 17 s instead of 4 s
    beside one busy process."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def flops_cache(tmp_path_factory) -> Path:
    """The on-disk FLOPs cache in a folder of this session (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["C2F_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(autouse=True)
def no_wandb_service_left_behind():
    """A test that opens W&B in this process leaves its service's address in WANDB_SERVICE,
    which every later subprocess of this worker would inherit and share: shut it after the
    test (test_wandb_replay shares one on purpose)."""
    yield
    if os.environ.get("WANDB_SERVICE") and "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session: the built-in dataset is rendered once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def ddp_reference(tmp_path_factory, data_dir) -> list[dict]:
    """The metrics of DDP_ARGS trained by one process."""
    runs = tmp_path_factory.mktemp("ddp_reference") / "runs"
    run_cli(DDP_ARGS, runs, data_dir)
    return read_metrics(run_dirs(runs)[0])


def assert_matches_one_process(got: list[dict], expected: list[dict]) -> None:
    """Two processes see the single process's batches: the same counts and FLOPs, losses
    equal to float rounding (reductions in another order), accuracy within one clip."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["samples"] == b["samples"] and a["flops"] == b["flops"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-4)
        assert a["acc"] == pytest.approx(b["acc"], abs=1.0 / 22)  # at most one clip flips


@pytest.fixture(scope="session")
def slurm(request) -> dict:
    """The environment that reaches the SLURM test cluster (tests/slurm/cluster.sh). `.ci/run`
    starts it; without one this starts it (root and apt needed), or skips the tests that need
    it with the reason printed. A cluster started here is stopped at the end of the session,
    except under pytest-xdist, whose other workers may still use it (stop it with
    `tests/slurm/cluster.sh stop`)."""
    SLURM_STATE.parent.mkdir(parents=True, exist_ok=True)
    with open(SLURM_STATE.parent / f"{SLURM_STATE.name}.start-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one xdist worker starts it, the others wait
        started = subprocess.run([SLURM_CLUSTER, "status"], capture_output=True).returncode != 0
        if started:
            proc = subprocess.run([SLURM_CLUSTER, "start"], capture_output=True, text=True,
                                  timeout=900)
            if proc.returncode != 0:
                reason = "SLURM cannot be started here: " + (proc.stderr.strip().splitlines()
                                                             or ["no output"])[-1]
                plugins = request.config.pluginmanager
                with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
                    plugins.get_plugin("terminalreporter").write_line(f"\n{__name__}: {reason}")
                pytest.skip(reason)
    yield {"SLURM_CONF": str(SLURM_STATE / "slurm.conf")}
    if started and "PYTEST_XDIST_WORKER" not in os.environ:
        subprocess.run([SLURM_CLUSTER, "stop"], capture_output=True, timeout=120)


def cli_command(args: list[str], runs_dir: Path, data_dir: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), *args, f"paths.runs_dir={runs_dir}",
            f"paths.data_dir={data_dir}", f"paths.root={runs_dir.parent}"]


def cli_env(env: dict | None = None) -> dict:
    return {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
            "HYDRA_FULL_ERROR": "1", **(env or {})}


def run_cli(args: list[str], runs_dir: Path, data_dir: Path, *, check: bool = True,
            env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a process of its own, as a user types it in `cwd` (forked from
    a warm interpreter: tests/warm_python.py)."""
    cmd = cli_command(args, runs_dir, data_dir)
    proc = run_python(cmd[1:], cwd, cli_env(env), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def start_cli(args: list[str], runs_dir: Path, data_dir: Path,
              env: dict | None = None) -> subprocess.Popen:
    """`run.py ARGS` in the background (a second user, a relaunch, a reference run meanwhile)."""
    return subprocess.Popen(cli_command(args, runs_dir, data_dir), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(env))


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for a `start_cli` process; its output, asserting that it succeeded."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{out[-3000:]}\n{err[-4000:]}"
    return out + err


def run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p.parent for p in runs_dir.glob("*/*/config.yaml"))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mid_epoch(runs: Path, epochs: int) -> bool:
    """Whether the run's last.pt was written inside an epoch (trainer.checkpoint_minutes)
    after `epochs` epochs."""
    import torch

    found = list(runs.glob("*/*/ckpt/last.pt"))
    state = torch.load(found[0], weights_only=True)["state"] if found else {}
    return bool(state.get("progress")) and state["epoch"] >= epochs


def kill_after_records(args: list[str], lines: int, runs: Path, data_dir: Path,
                       inside_epoch: bool = False, inside=None) -> None:
    """Start `run.py ARGS` and SIGKILL it once metrics.jsonl has `lines` records (and, with
    `inside_epoch`, once its checkpoint was then written inside the next epoch; `inside`:
    another such test of (runs, lines))."""
    inside = inside or (mid_epoch if inside_epoch else None)
    cmd = [sys.executable, str(ROOT / "run.py"), *args,
           f"paths.runs_dir={runs}", f"paths.data_dir={data_dir}", f"paths.root={runs.parent}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= lines:
            if inside:  # frozen while its checkpoint is read: killed where it was read
                os.killpg(proc.pid, signal.SIGSTOP)
                if not inside(runs, lines):
                    os.killpg(proc.pid, signal.SIGCONT)
                    time.sleep(0.01)
                    continue
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"run ended before the kill: {proc.stderr.read()}"
    assert not list(runs.glob("*/*/summary.json")), "the run finished before the kill landed"
