"""libgomp's wait policy on CPU (an experiment, not part of `make bench`) -> bench/results_omp.md.

PyTorch's CPU kernels run on libgomp threads. By default a thread that finds no work spins
briefly, then sleeps on a futex, and waking it costs the next op tens of microseconds on a VM.
A coarse phase's ops are short, so that wake-up weighs more at C = 4 than at C = 1.
`OMP_WAIT_POLICY=ACTIVE` keeps the threads spinning between ops. It is read once, when torch
loads, so it cannot be set from a config: each run here is its own `run.py` process.

The runs are `make run` itself (the built-in dataset, Fshift C = 4 for 3 epochs, then C = 1
for 9; trainer defaults: clips cached, no loader workers), alternating the two policies. Per
run: wall time, mean epoch seconds per phase from metrics.jsonl (the first epoch of each phase
makes the phase's fbank table, as in any run), their ratio, and the best accuracy.

    .venv/bin/python -m bench.omp_wait --out bench/results_omp.md [--pairs 2]

Answer on 2 cores (2026-11-28, 4 pairs): no gain. ACTIVE's median wall time was 120 s against
109 s, and the C = 4 epochs' time / FLOPs 1.19 against 1.13; c2f leaves the policy alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.results_table import cpu_model

ROOT = Path(__file__).resolve().parents[1]
MAKE_RUN = ["compression=fshift", "schedule=2phase", "schedule.c=4"]  # the Makefile's `run`
POLICIES = {"libgomp default": None, "OMP_WAIT_POLICY=ACTIVE": "ACTIVE"}


def make_run(policy: str | None, runs: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run([sys.executable, "run.py", *MAKE_RUN, f"paths.runs_dir={runs}",
                    "trainer.progress=false", "logger.mode=disabled"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    [metrics] = runs.glob("*/*/metrics.jsonl")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    epochs = [r for r in records if r.get("kind", "epoch") == "epoch" and "seconds" in r]
    seconds = {c: statistics.mean(r["seconds"] for r in epochs if r["C"] == c) for c in (4, 1)}
    flops = {c: next(r["flops"] / r["samples"] for r in epochs if r["C"] == c) for c in (4, 1)}
    return {"wall": wall, "c4": seconds[4], "c1": seconds[1], "ratio": seconds[4] / seconds[1],
            "flops_ratio": flops[4] / flops[1], "acc": max(r["value"] for r in epochs)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_omp.md")
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {name: [] for name in POLICIES}
    with tempfile.TemporaryDirectory(prefix="c2f-bench-omp-") as scratch:
        for pair in range(args.pairs):
            for i, (name, policy) in enumerate(POLICIES.items()):
                results[name].append(make_run(policy, Path(scratch) / f"{pair}-{i}"))
                print(name, results[name][-1], flush=True)
    flops_ratio = results["libgomp default"][0]["flops_ratio"]
    out = ["# libgomp's wait policy on CPU: `make run` both ways", "",
           f"- command: `{shlex.join([sys.executable, '-m', 'bench.omp_wait', *argv])}`",
           f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; CPU: {cpu_model()}, "
           f"{len(os.sched_getaffinity(0))} usable CPUs, torch {torch.__version__}", "",
           f"{args.pairs} pair(s) of `make run` (run.py {' '.join(MAKE_RUN)}), the two policies "
           "alternating. Epoch seconds are means over each phase's epochs in metrics.jsonl "
           f"(evaluation excluded); C = 4 / C = 1 FLOPs ratio {flops_ratio:.3f}.", "",
           "| policy | run | wall (s) | C = 4 epoch (s) | C = 1 epoch (s) | C = 4 / C = 1 | "
           "time / FLOPs | best acc |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, runs in results.items():
        for i, r in enumerate(runs):
            out.append(f"| {name} | {i + 1} | {r['wall']:.0f} | {r['c4']:.2f} | {r['c1']:.2f} | "
                       f"{r['ratio']:.3f} | {r['ratio'] / flops_ratio:.2f} | {r['acc']:.4f} |")
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in ("wall", "ratio")}
               for name, runs in results.items()}
    default, active = medians["libgomp default"], medians["OMP_WAIT_POLICY=ACTIVE"]
    out += ["", f"Medians: wall {default['wall']:.0f} s -> {active['wall']:.0f} s with ACTIVE; "
            f"C = 4 epoch time / FLOPs ratio {default['ratio'] / flops_ratio:.2f} -> "
            f"{active['ratio'] / flops_ratio:.2f}.", ""]
    args.out.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
