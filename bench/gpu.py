"""`make bench-gpu`: c2f on one GPU in under 5 minutes -> bench/results_gpu.md.

AST-Base (the paper's model, 128 mel x 1024 frames, 527 classes) through c2f's real phase
loop with the device frontend and an in-memory audio cache:
1. the batched fbank on the GPU against kaldi's per-clip fbank (CPU), after normalization;
   CNN14's and HTS-AT's in-model mixup on the device (bench/gpu_mixup.py, seconds);
2. training FLOPs counted on the GPU (its attention kernels) against the meta prediction;
   the training step alone, eager and as CUDA graphs, beside one kernel launch (gpu_step.py),
   and the loop with and without CUDA graphs (trainer.cuda_graphs);
3. samples/s per precision (fp32 = TF32, bf16, fp16 + GradScaler) at C = 1;
4. per method at C = 2, 4: epoch time ratio against the FLOPs ratio (bf16), interleaved rounds;
5. NCCL DDP on 2 processes, when 2 GPUs exist;
6. a finished run's model (c2f.trained, as predict/evaluate load it) evaluated on the GPU
   against the same model on the CPU.
Sections stop being added when the time budget runs short; the file is rewritten after each.

    python -m bench.gpu --out bench/results_gpu.md [--budget-s 270] [--clips 2048]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.gpu_mixup import mixup_check
from bench.gpu_step import step_section
from bench.harness import EpochBench, noise_manifest, scratch_dir
from c2f.compression import BaseInput, create_compression
from c2f.data.frontend import FeatureSettings, Frontend

METHODS = ["fshift", "pool_avg", "pool_max", "patch_bl", "patch_pi"]
AUDIOSET_NORM = ["dataset.norm_mean=-4.2677393", "dataset.norm_std=4.5689974"]  # AST run.py


class Report:
    def __init__(self, out: Path, argv: list[str]):
        self.out, self.lines, self.start = out, [], time.perf_counter()
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        self.add("# c2f on one GPU: `make bench-gpu`", "",
                 f"- command: `{shlex.join([sys.executable, '-m', 'bench.gpu', *argv])}`",
                 f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat()}",
                 f"- device: {gpu}; torch {torch.__version__}, python {platform.python_version()}",
                 "")

    def add(self, *lines: str) -> None:
        self.lines += lines
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(self.lines) + "\n")
        print("\n".join(lines), flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fbank_check(report: Report, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    waves = [torch.randn(1, 163840, generator=gen) * 0.1 for _ in range(16)]
    settings = FeatureSettings(16000, 128, -4.2677393, 4.5689974)
    none = create_compression("none")
    rows = ["| C (frame shift) | max abs diff vs kaldi float32 | vs kaldi float64 | kaldi float32 "
            "vs float64 | kaldi per clip, 1 CPU thread (clips/s) | batched on the GPU (clips/s) |",
            "|--:|--:|--:|--:|--:|--:|"]
    threads = torch.get_num_threads()
    for c in (1, 2, 4):
        phase = none.phase_input(BaseInput(10.0 * c, 1024 // c, (16, 16), 0), 1)
        worker = Frontend(settings, phase, none, 1, on_device=False)
        gpu = Frontend(settings, phase, none, 1, on_device=True)
        torch.set_num_threads(1)
        start = time.perf_counter()
        expected = torch.stack([worker.clip(w, None)[0] for w in waves])
        cpu_rate = len(waves) / (time.perf_counter() - start)
        exact = torch.stack([worker.clip(w.double(), None)[0] for w in waves])
        torch.set_num_threads(threads)
        batch = torch.stack([gpu.clip(w, None)[0] for w in waves]).to(device)
        offsets = torch.tensor([gpu.clip(w, None)[1] for w in waves], device=device)
        lengths = torch.tensor([gpu.valid_samples(w) for w in waves], device=device)
        got = gpu.batch(batch, lengths, offsets, None)
        big, big_lengths, big_offsets = batch.repeat(4, 1), lengths.repeat(4), offsets.repeat(4)
        sync(device)
        start = time.perf_counter()
        for _ in range(10):
            gpu.batch(big, big_lengths, big_offsets, None)
        sync(device)
        gpu_rate = 10 * len(big) / (time.perf_counter() - start)
        def diff(a, b):
            return float((a.cpu().double() - b.double()).abs().max())
        rows.append(f"| {c} ({10 * c} ms) | {diff(got, expected):.2e} | {diff(got, exact):.2e} | "
                    f"{diff(expected, exact):.2e} | {cpu_rate:.0f} | {gpu_rate:.0f} |")
    report.add("## 1. Batched fbank on the GPU vs kaldi (AST's arguments)", "",
               "16 noise clips of 10.24 s; differences after AST's normalization (mean -4.27, "
               "std 4.57). The device path runs in float64 on CUDA.", "", *rows, "")


def trained_check(report: Report, device: torch.device, folder: Path) -> None:
    """A tiny run trained on the CPU (run.py), then evaluated by c2f.trained on `device` and on
    the CPU: the same accuracy, the loss to float rounding."""
    import subprocess

    from c2f.data.manifest import load_manifest
    from c2f.evaluate import default_data
    from c2f.trained import load_trained

    runs = folder / "trained" / "runs"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "run.py"), "logger=disabled",
         "trainer.progress=false", "trainer.device=cpu", "dataset.builtin.train_per_class=4",
         "dataset.builtin.eval_per_class=4", "dataset.builtin.clip_seconds=1.28",
         "dataset.target_length=128", "dataset.timem=24", "dataset.epochs=2",
         f"paths.runs_dir={runs}", f"paths.data_dir={folder / 'trained' / 'data'}",
         f"paths.root={folder / 'trained'}"], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        report.add("## 6. A trained model on the device (c2f.trained)", "",
                   f"Not measured: the CPU training run exited {done.returncode} ({last}).", "")
        return
    [run] = [p.parent for p in runs.glob("*/*/summary.json")]
    own = default_data(run)
    manifest = load_manifest(own["manifest"], own["labels"])
    cpu = load_trained(run, device="cpu").evaluate(manifest)
    dev = load_trained(run, device=str(device)).evaluate(manifest)
    report.add(f"## 6. A trained model on {device} (c2f.trained, as predict and evaluate load "
               "it)", "", f"A tiny built-in run trained on the CPU, evaluated on {cpu['clips']} "
               f"clips: acc {cpu['acc']:.4f} on the CPU, {dev['acc']:.4f} on {device}; eval "
               f"loss {cpu['eval_loss']:.6f} vs {dev['eval_loss']:.6f}.", "")


def base_overrides(data: dict[str, str], args) -> list[str]:
    return ["dataset=manifest", f"model={args.model}", *[f"{k}={v}" for k, v in data.items()],
            *AUDIOSET_NORM, "dataset.multilabel=true", "dataset.loss=bce", "dataset.metric=mAP",
            "dataset.timem=192", "dataset.freqm=48", f"dataset.batch_size={args.batch}",
            f"trainer.device={args.device}", f"trainer.num_workers={args.workers}",
            "trainer.progress=false",
            "trainer.cache_audio=true", "logger.mode=disabled", "schedule=baseline"]


def interleaved(report: Report, bench: EpochBench, configs: dict[str, list[str]], rounds: int,
                budget_s: float, count_flops: bool = False) -> dict[str, list[dict]]:
    """One warm-up epoch per config, then `rounds` rounds of one epoch each (budget allowing).
    Each epoch's stats carry the plan's FLOPs (and, with count_flops, those counted)."""
    sessions = {name: bench.session(overrides) for name, overrides in configs.items()}
    counted = {name: s.counted_flops() for name, s in sessions.items()} if count_flops else {}
    for session in sessions.values():
        session.epoch()
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for done in range(rounds):
        if done and report.elapsed > budget_s:  # a section always gets one timed round
            break
        for name, session in sessions.items():
            sync(session.loop.device)
            results[name].append(session.epoch())
    for name, session in sessions.items():
        results[name] = [dict(r, flops=session.flops_per_sample, counted=counted.get(name))
                         for r in results[name]]
    del sessions
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def samples_per_s(stats: list[dict]) -> float:
    return statistics.median(r["samples"] / r["seconds"] for r in stats)


def profile_section(report: Report, bench: EpochBench, base: list[str],
                    device: torch.device) -> None:
    """Where an epoch's time goes: host (CPU) vs device (CUDA) time per op, fshift C = 4."""
    from torch.profiler import ProfilerActivity, profile

    session = bench.session([*base, "compression=fshift", "schedule.c=4",
                             "trainer.precision=bf16"])
    session.epoch()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        session.epoch()
        sync(device)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    busy = sum(e.self_device_time_total for e in events) / 1e6 if device.type == "cuda" else 0
    table = events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48)
    busy_line = (f"GPU busy {busy:.2f} s ({100 * busy / wall:.0f}%): the rest of the time "
                 "the GPU waits for the host" if device.type == "cuda" else "no GPU")
    report.add("## 6. Where a C = 4 epoch goes (torch.profiler, fshift C = 4, bf16)", "",
               f"wall {wall:.2f} s (profiled); {busy_line}.", "",
               "```", *table.splitlines(), "```", "")


def graphs_section(report: Report, bench: EpochBench, base: list[str], budget_s: float) -> None:
    """The real loop with and without CUDA graphs (trainer.cuda_graphs), C = 1 and fshift C = 4:
    speed, and the same seeded epochs' training loss (graphs replay the same kernels)."""
    shapes = {"C=1": ["compression=none"], "fshift C=4": ["compression=fshift", "schedule.c=4"]}
    configs = {f"{mode} {shape}": [*base, *overrides, "trainer.precision=bf16",
                                   f"trainer.cuda_graphs={str(mode == 'graphs').lower()}"]
               for shape, overrides in shapes.items() for mode in ("eager", "graphs")}
    runs = interleaved(report, bench, configs, 2, budget_s)
    rows = ["| input | eager samples/s | graphs samples/s | speed-up | train loss, eager vs "
            "graphs (first timed epoch) |", "|---|--:|--:|--:|--:|"]
    for shape in shapes:
        eager, graphs = runs[f"eager {shape}"], runs[f"graphs {shape}"]
        rows.append(f"| {shape} | {samples_per_s(eager):.0f} | {samples_per_s(graphs):.0f} | "
                    f"{samples_per_s(graphs) / samples_per_s(eager):.2f} | "
                    f"{eager[0]['train_loss']:.6f} vs {graphs[0]['train_loss']:.6f} |")
    ratios = {mode: samples_per_s(runs[f"{mode} C=1"]) / samples_per_s(runs[f"{mode} fshift C=4"])
              for mode in ("eager", "graphs")}
    report.add("## 2c. CUDA graphs in the loop (`trainer.cuda_graphs`), bf16", "", *rows, "",
               f"fshift C = 4 epoch time ratio: {ratios['eager']:.3f} eager, "
               f"{ratios['graphs']:.3f} with graphs (FLOPs ratio 0.234).", "")


def compile_section(report: Report, bench: EpochBench, base: list[str], batch: int) -> None:
    """torch.compile (inductor's fused kernels, and CUDA graphs in reduce-overhead mode)
    against c2f's own CUDA graphs, C = 1 and fshift C = 4; one line per config as it ends."""
    report.add(f"## 7. torch.compile vs `trainer.cuda_graphs`, bf16, batch {batch}", "",
               "Each config: a first epoch (compiles or captures), then one timed epoch.", "")
    shapes = {"C=1": ["compression=none"], "fshift C=4": ["compression=fshift", "schedule.c=4"]}
    modes = {"cuda_graphs": [], "compile=reduce-overhead": ["trainer.compile=reduce-overhead"],
             "compile=default": ["trainer.compile=default"]}
    for mode, extra in modes.items():
        rates = {}
        for shape, overrides in shapes.items():
            session = bench.session([*base, *overrides, "trainer.precision=bf16", *extra])
            start = time.perf_counter()
            session.epoch()
            first = time.perf_counter() - start
            rates[shape] = samples_per_s([session.epoch()])
            report.add(f"- {mode}, {shape}: first epoch {first:.0f} s, then "
                       f"{rates[shape]:.0f} samples/s")
            del session
        ratio = rates["C=1"] / rates["fshift C=4"]
        report.add(f"- {mode}: fshift C = 4 epoch time ratio {ratio:.3f} (FLOPs ratio 0.234)", "")


def precision_section(report: Report, bench: EpochBench, base: list[str],
                      budget_s: float) -> None:
    precisions = {p: [*base, "compression=none", f"trainer.precision={p}"]
                  for p in ("fp32", "bf16", "fp16")}
    runs = interleaved(report, bench, precisions, 1, budget_s)
    rows = ["| precision | samples/s (C = 1) | vs fp32 |", "|---|--:|--:|"]
    fp32 = samples_per_s(runs["fp32"])
    for name, stats in runs.items():
        rate = samples_per_s(stats)
        rows.append(f"| {name} | {rate:.0f} | {rate / fp32:.2f} |")
    report.add("## 3. Samples/s per precision, AST-Base at C = 1 (epoch level)", "", *rows, "")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results_gpu.md"))
    parser.add_argument("--budget-s", type=float, default=270.0)
    parser.add_argument("--clips", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="ast_base", help="ast_tiny for a CPU smoke test")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="also time trainer.compile=reduce-overhead (compiling AST-Base "
                        "takes minutes: past the 5-minute budget)")
    parser.add_argument("--compile-only", action="store_true", help="after the checks, only "
                        "the torch.compile section")
    parser.add_argument("--device", default="cuda", help="cpu for a smoke test")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("make bench-gpu needs a CUDA device; on CPU run `make bench`")
    report = Report(args.out, argv)
    device = torch.device(args.device)
    fbank_check(report, device)
    mixup_check(report, device)

    folder = scratch_dir()
    data = noise_manifest(folder / "data", args.clips, 10.24, 527)
    bench = EpochBench(folder / "runs")
    base = base_overrides(data, args)
    report.add(f"Data: {args.clips} noise clips of 10.24 s (16 kHz WAV), decoded once into "
               f"memory (`trainer.cache_audio=true`; with the device frontend c2f then loads "
               f"in the main process, whatever `trainer.num_workers` says; without mixup "
               f"the prepared fbanks then live on the device, `trainer.cache_features=auto`, "
               f"so a step sends clip indices and masks, not waveforms), batch "
               f"{args.batch}, AST-Base with the dist token, Adam fused=True, device frontend, "
               f"training steps replayed as CUDA graphs on CUDA (`trainer.cuda_graphs=auto`). "
               f"Setup took {report.elapsed:.0f} s.", "")

    if args.compile_only:
        compile_section(report, bench, base, args.batch)
        return
    step_section(report, base, device)
    if device.type == "cuda":
        graphs_section(report, bench, base, args.budget_s)
    if not args.skip_precision:
        precision_section(report, bench, base, args.budget_s)

    configs = {"none C=1": [*base, "compression=none", "trainer.precision=bf16"]}
    for method in args.methods.split(","):
        for c in (2, 4):
            configs[f"{method} C={c}"] = [*base, f"compression={method}", f"schedule.c={c}",
                                          "trainer.precision=bf16"]
    runs = interleaved(report, bench, configs, args.rounds, args.budget_s, count_flops=True)
    full = runs["none C=1"]
    rows = ["| method | C | predicted on meta (GFLOPs/sample) | counted on the device | equal |",
            "|---|--:|--:|--:|---|"]
    for name, stats in runs.items():
        method, c = name.split(" C=")
        predicted, counted = stats[0]["flops"], stats[0]["counted"]
        rows.append(f"| {method} | {c} | {predicted / 1e9:.3f} | {counted / 1e9:.3f} | "
                    f"{'yes' if predicted == counted else 'NO'} |")
    report.add(f"## 2. Training FLOPs counted on {args.device} (FlopCounterMode, bf16 autocast "
               "off) vs the meta-device prediction", "", *rows, "")
    rows = ["| method | C | GFLOPs/sample | FLOPs ratio | samples/s | epoch time ratio [min-max] "
            "| time / FLOPs |", "|---|--:|--:|--:|--:|--:|--:|"]
    for name, stats in runs.items():
        method, c = name.split(" C=")
        ratios = [r["seconds"] / f["seconds"] for r, f in zip(stats, full)]
        flops_ratio = stats[0]["flops"] / full[0]["flops"]
        ratio = statistics.median(ratios)
        rows.append(f"| {method} | {c} | {stats[0]['flops'] / 1e9:.1f} | {flops_ratio:.3f} | "
                    f"{samples_per_s(stats):.0f} | {ratio:.3f} [{min(ratios):.3f}-"
                    f"{max(ratios):.3f}] | {ratio / flops_ratio:.2f} |")
    report.add("## 4. Epoch time ratio vs FLOPs ratio per method (bf16, device frontend)", "",
               f"{len(full)} timed round(s) after a warm-up epoch; an epoch = {args.clips} clips, "
               "evaluation excluded; ratios paired within a round.", "", *rows, "")
    small = base_overrides(data, argparse.Namespace(**{**vars(args), "batch": 12}))
    if report.elapsed < args.budget_s:
        runs = interleaved(report, bench, {
            "none C=1": [*small, "compression=none", "trainer.precision=bf16"],
            "fshift C=4": [*small, "compression=fshift", "schedule.c=4",
                           "trainer.precision=bf16"]}, 2, args.budget_s)
        full, coarse = runs["none C=1"], runs["fshift C=4"]
        ratios = [r["seconds"] / f["seconds"] for r, f in zip(coarse, full)]
        report.add("## 4b. AST's batch size (12): fshift C = 4 vs C = 1, bf16", "",
                   f"samples/s {samples_per_s(full):.0f} (C = 1), {samples_per_s(coarse):.0f} "
                   f"(C = 4); epoch time ratio {statistics.median(ratios):.3f} for a FLOPs ratio "
                   f"of {coarse[0]['flops'] / full[0]['flops']:.3f}.", "")
    if report.elapsed < args.budget_s:
        profile_section(report, bench, base, device)
    if args.compile:
        compile_section(report, bench, base, args.batch)
    if report.elapsed < args.budget_s + 60:
        trained_check(report, device, folder)
    report.add("## 5. DDP", "", f"{torch.cuda.device_count()} GPU(s): NCCL DDP on 2 processes "
               "needs 2; not measured." if torch.cuda.device_count() < 2 else
               "2+ GPUs: run `torchrun --nproc_per_node 2 run.py trainer.device=cuda ...`", "")
    report.add(f"Total: {report.elapsed:.0f} s.")


if __name__ == "__main__":
    main()
