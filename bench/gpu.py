"""`make bench-gpu`: c2f on one GPU in under 5 minutes -> bench/results_gpu.md.

AST-Base (the paper's model, 128 mel x 1024 frames, 527 classes) through c2f's real phase
loop with the device frontend and an in-memory audio cache:
1. the batched fbank on the GPU against kaldi's per-clip fbank (CPU), after normalization;
   CNN14's and HTS-AT's in-model mixup on the device, eager and as CUDA graphs
   (bench/gpu_mixup.py, seconds);
2. training FLOPs counted on the GPU (its attention kernels) against the meta prediction;
   the training step alone, eager and as CUDA graphs, beside one kernel launch (gpu_step.py),
   and the loop with and without CUDA graphs (trainer.cuda_graphs);
3. samples/s per precision (fp32 = TF32, bf16, fp16 + GradScaler) at C = 1;
4. per method at C = 2, 4: epoch time ratio against the FLOPs ratio (bf16), interleaved rounds;
   at AST's batch of 12; with AST's waveform mixup (no feature tables); evaluation's time;
   CNN14 and HTS-AT as their presets train, eager and as CUDA graphs; a profiled C = 4 epoch;
5. NCCL DDP on 2 processes against 1, when 2 GPUs exist (gpu_ddp.py: run.py via torchrun);
6. a finished run's model (c2f.trained, as predict/evaluate load it) evaluated on the GPU
   against the same model on the CPU;
7. with --compile: torch.compile against c2f's CUDA graphs;
8. peak memory and step time with `trainer.micro_batch` (gpu_memory.py).
The loop sections live in bench/gpu_loop.py. Sections stop being added when the time budget
runs short (`main` says which may start when); the file is rewritten after each, and a section
that fails is said in it while the others run on. `--only` names the sections to run (after the
checks of 1), so a short GPU session can spend its minutes on what is not yet measured.

    python -m bench.gpu --out bench/results_gpu.md [--budget-s 200] [--clips 2048]
        [--only step,graphs,precision,methods,batch12,mixup,eval,models,profile,compile,trained,ddp,
                memory]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.gpu_ddp import ddp_section
from bench.gpu_loop import (
    COMPILE_MODES,
    Report,
    compile_section,
    eval_section,
    graphs_section,
    interleaved,
    mixup_section,
    models_section,
    precision_section,
    profile_section,
    samples_per_s,
    sync,
)
from bench.gpu_memory import memory_section
from bench.gpu_mixup import graphed_mixup_check, mixup_check
from bench.gpu_step import step_section
from bench.harness import EpochBench, noise_manifest, scratch_dir
from c2f.compression import BaseInput, create_compression
from c2f.data.frontend import FeatureSettings, Frontend

METHODS = ["fshift", "pool_avg", "pool_max", "patch_bl", "patch_pi"]
SECTIONS = ["step", "graphs", "precision", "methods", "batch12", "mixup", "eval", "models",
            "profile", "compile", "trained", "ddp", "memory"]
AUDIOSET_NORM = ["dataset.norm_mean=-4.2677393", "dataset.norm_std=4.5689974"]  # AST run.py


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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results_gpu.md"))
    parser.add_argument("--budget-s", type=float, default=200.0)
    parser.add_argument("--clips", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="ast_base", help="ast_tiny for a CPU smoke test")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--bn-models", default="cnn14,htsat", help="section models: presets "
                        "with batch norm (cnn14_tiny,htsat_tiny for a CPU smoke test)")
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="also time trainer.compile=reduce-overhead (compiling AST-Base "
                        "takes minutes: past the 5-minute budget)")
    parser.add_argument("--compile-modes", type=lambda text: tuple(text.split(",")),
                        default=tuple(COMPILE_MODES), help="section compile's configs: "
                        f"{','.join(COMPILE_MODES)}")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=None,
                        help=f"comma-separated sections to run after the checks: "
                        f"{','.join(SECTIONS)} (default: all but compile, unless --compile)")
    parser.add_argument("--ddp", action="store_true", help="with --device cpu: smoke-test the "
                        "DDP section on 2 gloo processes (on CUDA it runs when 2 GPUs exist)")
    parser.add_argument("--device", default="cuda", help="cpu for a smoke test")
    args = parser.parse_args(argv)
    if not set(args.compile_modes) <= set(COMPILE_MODES):
        parser.error(f"--compile-modes: choose from {','.join(COMPILE_MODES)}")
    if args.only is not None and not args.only <= set(SECTIONS):
        parser.error(f"--only: unknown section(s) {','.join(sorted(args.only - set(SECTIONS)))}"
                     f"; choose from {','.join(SECTIONS)}")
    run = args.only or set(SECTIONS) - ({"compile"} if not args.compile else set())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("make bench-gpu needs a CUDA device; on CPU run `make bench`")
    report = Report(args.out, argv)
    device = torch.device(args.device)
    fbank_check(report, device)
    mixup_check(report, device)
    if device.type == "cuda":
        graphed_mixup_check(report, device)

    folder = scratch_dir()
    data = noise_manifest(folder / "data", args.clips, 10.24, 527)
    bench = EpochBench(folder / "runs")
    base = base_overrides(data, args)
    report.add(f"Data: {args.clips} noise clips of 10.24 s (16 kHz WAV), decoded once into "
               f"memory (`trainer.cache_audio=true`; with the device frontend c2f then loads "
               f"in the main process, whatever `trainer.num_workers` says; without mixup "
               f"the prepared fbanks then live on the device, `trainer.cache_features=auto`, "
               f"and with waveform mixup the clips, mixed there, so a step sends clip "
               f"indices, mix draws and masks, not waveforms), batch "
               f"{args.batch}, AST-Base with the dist token, Adam fused=True, device frontend, "
               f"training steps replayed as CUDA graphs on CUDA (`trainer.cuda_graphs=auto`). "
               f"Setup took {report.elapsed:.0f} s.", "")

    budget = args.budget_s
    # (name, when it may start, what it runs). When: "always", "budget" (while report.elapsed
    # is under --budget-s), "late" (up to 60 s past it: short, and measured nowhere else), or
    # "skip". Each section is isolated: one that fails is said in the report and the next
    # runs, so a scarce GPU session is not lost to it.
    sections = [
        ("step", "always", lambda: step_section(report, base, device)),
        ("graphs", "always" if device.type == "cuda" else "skip",
         lambda: graphs_section(report, bench, base, budget)),
        ("precision", "skip" if args.skip_precision else "always",
         lambda: precision_section(report, bench, base, budget)),
        ("methods", "always", lambda: methods_section(report, bench, base, args)),
        ("batch12", "budget", lambda: batch12_section(report, bench, base_overrides(
            data, argparse.Namespace(**{**vars(args), "batch": 12})), budget)),
        ("mixup", "budget", lambda: mixup_section(report, bench, base, budget)),
        ("eval", "budget", lambda: eval_section(report, bench, base)),
        ("models", "budget", lambda: models_section(report, bench, base, budget,
                                                    tuple(args.bn_models.split(",")))),
        ("profile", "budget", lambda: profile_section(report, bench, base, device)),
        ("compile", "always", lambda: compile_section(report, bench, base, args.batch,
                                                       args.compile_modes)),
        ("trained", "late", lambda: trained_check(report, device, folder)),
        # always: the only NCCL check, and it runs only where 2 GPUs are
        ("ddp", "always", lambda: ddp_or_not(report, base, folder, device, args.ddp)),
        ("memory", "late", lambda: memory_section(report, base, device, args.batch)),
    ]
    limit = {"always": float("inf"), "budget": budget, "late": budget + 60, "skip": -1.0}
    for name, when, section in sections:
        if name not in run or when == "skip":
            continue
        if report.elapsed > limit[when]:
            report.add(f"(section {name} not run: {report.elapsed:.0f} s, past --budget-s "
                       f"{budget:.0f})", "")
            continue
        try:
            section()
        except Exception as err:  # noqa: BLE001 - said in the report; the next section runs
            first = str(err).splitlines()[0] if str(err) else ""
            report.add(f"## Section {name} failed", "", f"`{type(err).__name__}: {first}` "
                       f"after {report.elapsed:.0f} s; the other sections ran on.", "")
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    report.add(f"Total: {report.elapsed:.0f} s.")


def ddp_or_not(report: Report, base: list[str], folder: Path, device: torch.device,
               cpu_smoke: bool) -> None:
    """Section 5 where 2 GPUs exist (or 2 gloo processes on request, on CPU)."""
    if torch.cuda.device_count() >= 2 or (cpu_smoke and device.type == "cpu"):
        ddp_section(report, base, folder, device.type)
    else:
        report.add("## 5. DDP", "", f"{torch.cuda.device_count()} GPU(s): NCCL DDP on 2 "
                   "processes needs 2; not measured.", "")


def methods_section(report: Report, bench: EpochBench, base: list[str], args) -> None:
    """Sections 2 and 4: FLOPs counted vs predicted, and epoch time vs FLOPs, per method."""
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


def batch12_section(report: Report, bench: EpochBench, small: list[str], budget_s: float) -> None:
    """Section 4b: AST's own batch size, fshift C = 4 against C = 1."""
    runs = interleaved(report, bench, {
        "none C=1": [*small, "compression=none", "trainer.precision=bf16"],
        "fshift C=4": [*small, "compression=fshift", "schedule.c=4",
                       "trainer.precision=bf16"]}, 2, budget_s)
    full, coarse = runs["none C=1"], runs["fshift C=4"]
    ratios = [r["seconds"] / f["seconds"] for r, f in zip(coarse, full)]
    report.add("## 4b. AST's batch size (12): fshift C = 4 vs C = 1, bf16", "",
               f"samples/s {samples_per_s(full):.0f} (C = 1), {samples_per_s(coarse):.0f} "
               f"(C = 4); epoch time ratio {statistics.median(ratios):.3f} for a FLOPs ratio "
               f"of {coarse[0]['flops'] / full[0]['flops']:.3f}.", "")


if __name__ == "__main__":
    main()
