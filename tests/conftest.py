"""Shared fixtures: a tiny built-in dataset (rendered once per session) and the real CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tiny but real: a one-block AST on 1.28 s clips, and a small built-in SoundFont dataset.
# Tests add `logger=...` themselves.
TINY_TRAINING = [
    "dataset.target_length=128", "dataset.timem=24", "dataset.batch_size=11",
    "dataset.epochs=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "optim.warmup_steps=2", "trainer.progress=false",
]
TINY = ["dataset.builtin.train_per_class=4", "dataset.builtin.eval_per_class=2",
        "dataset.builtin.clip_seconds=1.28", *TINY_TRAINING]


@pytest.fixture(scope="session", autouse=True)
def flops_cache(tmp_path_factory) -> Path:
    """The on-disk FLOPs cache in a folder of this session (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["C2F_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session: the built-in dataset is rendered once."""
    return tmp_path_factory.mktemp("data")


def run_cli(args: list[str], runs_dir: Path, data_dir: Path, *, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in a subprocess, as a user types it."""
    cmd = [sys.executable, str(ROOT / "run.py"), *args, f"paths.runs_dir={runs_dir}",
           f"paths.data_dir={data_dir}", f"paths.root={runs_dir.parent}"]
    full_env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
                "HYDRA_FULL_ERROR": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=full_env,
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p.parent for p in runs_dir.glob("*/*/config.yaml"))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def kill_after_records(args: list[str], lines: int, runs: Path, data_dir: Path) -> None:
    """Start `run.py ARGS` and SIGKILL it once metrics.jsonl has `lines` records."""
    cmd = [sys.executable, str(ROOT / "run.py"), *args,
           f"paths.runs_dir={runs}", f"paths.data_dir={data_dir}", f"paths.root={runs.parent}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= lines:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"run ended before the kill: {proc.stderr.read()}"
