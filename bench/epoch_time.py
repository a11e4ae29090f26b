"""Epoch-level speed on CPU (`make bench`, second part) -> bench/results_epoch.md.

1. Epoch time ratio against the FLOPs ratio for every method at C = 2 and 4, through c2f's
   real phase loop (data loading included, evaluation excluded), on the `make run` default
   and on the DeiT-tiny / 512-frame setting of issue 9; interleaved rounds.
2. Frontend throughput in clips/s on one core: per clip in a worker (kaldi) against batched
   on the device, from decoded audio.
3. AST's waveform mixup mixed on the host against on the device -> `--mixup-out`
   (bench/results_mixup.md; `--mixup-only` runs just that).
4. Samples/s of this loop against earlier commits' (`--baselines`: 3d6a4ab, c2f when issue 9
   was filed, and d8e4ac6, just before the speed work), all run as `run.py` subprocesses at
   identical settings, interleaved; and this loop with `trainer.precision=bf16` and with
   `trainer.compile=true` -> `--loop-out` (bench/results_loop.md).

    .venv/bin/python -m bench.epoch_time --out bench/results_epoch.md [--quick] [--loop-only]
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

from bench.harness import EpochBench, scratch_dir
from bench.results_table import cpu_model
from c2f.data.dataset import SpectrogramDataset, collate_skipping
from c2f.data.frontend import Frontend

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["fshift", "pool_avg", "pool_max", "patch_bl", "patch_pi"]
# issue 9's setting: DeiT-tiny-sized AST (dim 192, 12 blocks, 3 heads, cls + dist tokens),
# 16 x 16 patches, 512 frames, batch 12, 2 workers, 240-odd four-second clips, multi-label BCE
DEIT_TINY_512 = ["dataset=builtin_multilabel", "dataset.builtin.clip_seconds=4.0",
                 "dataset.builtin.train_per_class=22", "dataset.builtin.eval_per_class=2",
                 "dataset.target_length=512", "dataset.batch_size=12", "model.embed_dim=192",
                 "model.depth=12", "model.num_heads=3", "model.dist_token=true",
                 "trainer.num_workers=2"]
PRESETS = {"make_run": ("make run default (ast_tiny, 256 frames, batch 32)", []),
           "deit_tiny_512": ("DeiT-tiny, 512 frames, batch 12", DEIT_TINY_512)}


def common(data_dir: Path) -> list[str]:
    return [f"paths.data_dir={data_dir}", "trainer.progress=false", "logger.mode=disabled",
            "schedule=baseline"]


def epoch_ratios(bench: EpochBench, base: list[str], rounds: int, out: list[str]) -> None:
    configs = {"none C=1": [*base, "compression=none"],
               "none C=1, worker frontend": [*base, "compression=none", "trainer.frontend=worker"],
               "none C=1, worker frontend, no cache": [
                   *base, "compression=none", "trainer.frontend=worker",
                   "trainer.cache_audio=false"]}
    for method in METHODS:
        for c in (2, 4):
            configs[f"{method} C={c}"] = [*base, f"compression={method}", f"schedule.c={c}"]
    sessions = {name: bench.session(overrides) for name, overrides in configs.items()}
    for session in sessions.values():
        session.epoch()  # warm-up: first batches, allocator, thread pools
    stats = {name: [] for name in configs}
    for _ in range(rounds):
        for name, session in sessions.items():
            stats[name].append(session.epoch())
    full = stats["none C=1"]
    out += ["| config | FLOPs ratio | samples/s | epoch time ratio [min-max] | time / FLOPs |",
            "|---|--:|--:|--:|--:|"]
    for name, session in sessions.items():
        ratios = [r["seconds"] / f["seconds"] for r, f in zip(stats[name], full)]
        flops = session.flops_per_sample / sessions["none C=1"].flops_per_sample
        rate = statistics.median(r["samples"] / r["seconds"] for r in stats[name])
        ratio = statistics.median(ratios)
        out.append(f"| {name} | {flops:.3f} | {rate:.1f} | {ratio:.3f} [{min(ratios):.3f}-"
                   f"{max(ratios):.3f}] | {ratio / flops:.2f} |")
    out.append("")


def mixup_paths(bench: EpochBench, base: list[str], rounds: int, out: list[str]) -> None:
    """AST's waveform mixup (dataset.mixup=0.5) mixed by the host, clip by clip, against the
    clips kept on the training device and mixed there as a batch (trainer.cache_features=true,
    c2f/data/device_waves.py), interleaved; and an evaluation pass reading waveforms against
    one reading feature tables (which a mixup recipe now keeps for evaluation)."""
    mixed = [*base, "dataset.mixup=0.5"]
    shapes = {"C=1": ["compression=none"], "fshift C=4": ["compression=fshift", "schedule.c=4"]}
    paths = {"host mix": "false", "device mix": "true"}
    sessions = {f"{shape}, {path}": bench.session([*mixed, *overrides,
                                                   f"trainer.cache_features={setting}"])
                for shape, overrides in shapes.items() for path, setting in paths.items()}
    for session in sessions.values():
        session.epoch()
    stats = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            stats[name].append(session.epoch())
    out += ["| config | samples/s | epoch time ratio vs C = 1 (same path) | train loss, first "
            "timed epoch | evaluation pass (s) |", "|---|--:|--:|--:|--:|"]
    for name, session in sessions.items():
        shape, path = name.split(", ")
        full = stats[f"C=1, {path}"]
        ratio = statistics.median(r["seconds"] / f["seconds"] for r, f in zip(stats[name], full))
        session.evaluate()
        start = time.perf_counter()
        session.evaluate()
        rate = statistics.median(r["samples"] / r["seconds"] for r in stats[name])
        out.append(f"| {name} | {rate:.1f} | {ratio:.3f} | {stats[name][0]['train_loss']:.6f} | "
                   f"{time.perf_counter() - start:.2f} |")
    out += ["", "Host mix: evaluation fbanks each clip every pass (`cache_features=false`); device "
            "mix: evaluation reads a table (as `auto` does on CPU, where it mixes on the host).",
            ""]


def frontend_throughput(bench: EpochBench, base: list[str], out: list[str]) -> None:
    """Clips/s on one thread from decoded audio: worker (kaldi per clip) vs device (batched)."""
    session = bench.session([*base, "compression=none"])
    data = session.loop.data
    phase = session.loop.plan.phases[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out += ["| frontend | clips/s on one core (train items: fbank, masks; batch of 12) |",
            "|---|--:|"]
    for on_device in (False, True):
        frontend = Frontend(data.settings, phase.input, session.loop.compression, 1, on_device)
        dataset = SpectrogramDataset(data.train, frontend, True, 0, data.waves["train"])
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < 5.0:
            items = collate_skipping([dataset[0, 0, i % len(dataset)]
                                      for i in range(count, count + 12)])
            frontend.batch(items["input"], items["length"], items["offset"], items["masks"])
            count += 12
        rate = count / (time.perf_counter() - start)
        out.append(f"| {'device (batched fbank)' if on_device else 'worker (kaldi per clip)'} "
                   f"| {rate:.0f} |")
    torch.set_num_threads(threads)
    out.append("")


def run_samples_per_s(tree: Path, overrides: list[str], epochs: int) -> float:
    """A fresh `run.py` run in `tree`; samples/s of its epochs after the first."""
    with tempfile.TemporaryDirectory() as runs:
        subprocess.run([sys.executable, "run.py", *overrides, f"paths.runs_dir={runs}",
                        f"dataset.epochs={epochs}"], cwd=tree, check=True,
                       capture_output=True, text=True)
        metrics = next(Path(runs).rglob("metrics.jsonl")).read_text().splitlines()
    records = [json.loads(line) for line in metrics][1:]
    return sum(r["samples"] for r in records) / sum(r["seconds"] for r in records)


def model_step_samples_per_s(overrides: list[str], steps: int) -> float:
    """The model's step alone (bench/model_step.py), in a fresh process like the runs."""
    done = subprocess.run([sys.executable, "-m", "bench.model_step", *overrides, "--steps",
                           str(steps)], cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])["samples_per_s"]


def loop_against(baselines: list[str], data_dir: Path, rounds: int, steps: int,
                 out: list[str]) -> None:
    trees = {rev: Path(tempfile.mkdtemp(prefix=f"c2f-{rev}-")) for rev in baselines}
    for rev, tree in trees.items():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), rev], cwd=ROOT,
                       check=True, capture_output=True)
    settings = [*DEIT_TINY_512, *common(data_dir), f"trainer.max_steps_per_epoch={steps}"]
    variants = {f"c2f at {rev}": (tree, settings) for rev, tree in trees.items()}
    variants |= {"this c2f": (ROOT, settings),
                 "this c2f, trainer.precision=bf16": (ROOT, [*settings, "trainer.precision=bf16"]),
                 "this c2f, trainer.compile=true": (ROOT, [*settings, "trainer.compile=true"])}
    ceiling = "the model's step alone: no data, no loop (bench/model_step.py)"
    rates = {name: [] for name in [*variants, ceiling]}
    try:
        for _ in range(rounds):
            for name, (where, overrides) in variants.items():
                rates[name].append(run_samples_per_s(where, overrides, epochs=3))
            rates[ceiling].append(model_step_samples_per_s(DEIT_TINY_512, 2 * steps))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)
    old = statistics.median(rates[f"c2f at {baselines[0]}"])
    out += [f"DeiT-tiny, 512 frames, batch 12, C = 1, `trainer.num_workers=2`; each run 3 epochs "
            f"of {steps} steps, samples/s over epochs 2-3; {rounds} interleaved rounds.", "",
            f"| loop | samples/s per round | median | vs {baselines[0]} |", "|---|---|--:|--:|"]
    for name, values in rates.items():
        med = statistics.median(values)
        out.append(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {med:.1f} | "
                   f"{med / old:.2f}x |")
    out += ["", "The last row is the ceiling of any fp32 loop on this machine: the same model's "
            "forward, loss, backward and Adam step on one fixed batch.", ""]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_epoch.md")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baselines", default="3d6a4ab,d8e4ac6")
    parser.add_argument("--loop-out", type=Path, default=ROOT / "bench" / "results_loop.md")
    parser.add_argument("--loop-only", action="store_true")
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch, loop comparison")
    parser.add_argument("--quick", action="store_true", help="one round, no loop comparison")
    parser.add_argument("--mixup-out", type=Path, default=ROOT / "bench" / "results_mixup.md")
    parser.add_argument("--mixup-only", action="store_true",
                        help="only the waveform-mixup comparison (make run default)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data_dir = ROOT / "data"
    bench = EpochBench(scratch_dir())
    header = [f"- command: `{shlex.join([sys.executable, '-m', 'bench.epoch_time', *argv])}`",
              f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; CPU: {cpu_model()}, "
              f"{len(os.sched_getaffinity(0))} usable CPUs, torch {torch.__version__}", ""]
    rounds = 1 if args.quick else args.rounds
    if not args.loop_only:
        mixup = ["# AST's waveform mixup on CPU: host vs device mixing", "", *header,
                 "## make run default (ast_tiny, 256 frames, batch 32), dataset.mixup=0.5", "",
                 f"One warm-up epoch per config, then {rounds} interleaved round(s).", ""]
        mixup_paths(bench, [*PRESETS["make_run"][1], *common(data_dir)], rounds, mixup)
        args.mixup_out.write_text("\n".join(mixup) + "\n")
        print("\n".join(mixup))
    if args.mixup_only:
        return
    if not (args.quick or args.skip_loop):
        loop = ["# This loop against earlier ones (CPU)", "", *header]
        loop_against(args.baselines.split(","), data_dir, rounds, args.steps, loop)
        args.loop_out.write_text("\n".join(loop) + "\n")
        print("\n".join(loop))
    if args.loop_only:
        return
    out = ["# Epoch-level speed on CPU", "", *header]
    for title, preset in [PRESETS[name] for name in args.presets.split(",")]:
        base = [*preset, *common(data_dir)]
        out += [f"## Epoch time vs FLOPs: {title}", "",
                f"One warm-up epoch per config, then {rounds} interleaved round(s); trainer "
                "defaults (device frontend, audio cached) unless the row says otherwise.", ""]
        epoch_ratios(bench, base, rounds, out)
        args.out.write_text("\n".join(out) + "\n")
    out += ["## Frontend throughput (DeiT-tiny setting: 4 s clips, 512 frames)", ""]
    frontend_throughput(bench, [*DEIT_TINY_512, *common(data_dir)], out)
    args.out.write_text("\n".join(out) + "\n")
    out.append(f"Total: {time.perf_counter() - start:.0f} s.")
    args.out.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
