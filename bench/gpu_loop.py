"""`make bench-gpu`, the loop sections: c2f's real phase loop timed epoch by epoch on the GPU
(precisions, CUDA graphs against eager steps and torch.compile, a profile of a C = 4 epoch).
Configs are interleaved round by round, so the ratios pair epochs run side by side."""
from __future__ import annotations

import datetime
import gc
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.harness import EpochBench
from c2f.train.graphs import GraphedModel


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


def warm_up(session) -> float | None:
    """The first epoch of a session; on CUDA, the GiB it needed at its peak beyond what was
    allocated before it (the model, its optimizer and, with graphs, their pools stay)."""
    if session.loop.device.type != "cuda":
        session.epoch()
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    session.epoch()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**30


def interleaved(report: Report, bench: EpochBench, configs: dict[str, list[str]], rounds: int,
                budget_s: float, count_flops: bool = False) -> dict[str, list[dict]]:
    """One warm-up epoch per config, then `rounds` rounds of one epoch each (budget allowing).
    Each epoch's stats carry the plan's FLOPs (and, with count_flops, those counted)."""
    sessions = {name: bench.session(overrides) for name, overrides in configs.items()}
    counted = {name: s.counted_flops() for name, s in sessions.items()} if count_flops else {}
    peaks = {name: warm_up(session) for name, session in sessions.items()}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for done in range(rounds):
        if done and report.elapsed > budget_s:  # a section always gets one timed round
            break
        for name, session in sessions.items():
            sync(session.loop.device)
            results[name].append(session.epoch())
    for name, session in sessions.items():
        graphed = isinstance(session.model, GraphedModel) and session.model.shape is not None \
            and not session.model.eager  # its capture held
        results[name] = [dict(r, flops=session.flops_per_sample, counted=counted.get(name),
                              peak_gib=peaks[name], graphed=graphed) for r in results[name]]
    del sessions
    gc.collect()  # graphed sessions are reference cycles; their graphs hold device memory
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def samples_per_s(stats: list[dict]) -> float:
    return statistics.median(r["samples"] / r["seconds"] for r in stats)


def kernel_seconds(events) -> float:
    """Device time of a profile's kernels. Each kernel's time shows twice in key_averages(): on
    the kernel's own row and as the self device time of the op that launched it; the ops'
    rows (device_type CPU) count each kernel once."""
    from torch.autograd import DeviceType

    return sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CPU) / 1e6


def profile_section(report: Report, bench: EpochBench, base: list[str],
                    device: torch.device) -> None:
    """Where an epoch's time goes: host (CPU) vs device (CUDA) time per op, fshift C = 4."""
    from torch.profiler import ProfilerActivity, profile

    session = bench.session([*base, "compression=fshift", "schedule.c=4",
                             "trainer.precision=bf16"])
    session.epoch()
    plain = session.epoch()["seconds"]  # the profiler slows the host: time an epoch without
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        session.epoch()
        sync(device)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48)
    busy = kernel_seconds(events)
    busy_line = (f"its kernels took {busy:.2f} s, {100 * busy / plain:.0f}% of an unprofiled "
                 f"epoch ({plain:.2f} s): the rest of that time the GPU waits for the host"
                 if device.type == "cuda" else "no GPU")
    report.add("## 6. Where a C = 4 epoch goes (torch.profiler, fshift C = 4, bf16)", "",
               f"wall {wall:.2f} s profiled; {busy_line}.", "",
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
            "graphs (first timed epoch) | first epoch's peak GiB, eager vs graphs |",
            "|---|--:|--:|--:|--:|--:|"]
    for shape in shapes:
        eager, graphs = runs[f"eager {shape}"], runs[f"graphs {shape}"]
        peaks = " vs ".join("-" if r[0]["peak_gib"] is None else f"{r[0]['peak_gib']:.1f}"
                            for r in (eager, graphs))
        rows.append(f"| {shape} | {samples_per_s(eager):.0f} | {samples_per_s(graphs):.0f} | "
                    f"{samples_per_s(graphs) / samples_per_s(eager):.2f} | "
                    f"{eager[0]['train_loss']:.6f} vs {graphs[0]['train_loss']:.6f} | {peaks} |")
    ratios = {mode: samples_per_s(runs[f"{mode} C=1"]) / samples_per_s(runs[f"{mode} fshift C=4"])
              for mode in ("eager", "graphs")}
    report.add("## 2c. CUDA graphs in the loop (`trainer.cuda_graphs`), bf16", "", *rows, "",
               f"fshift C = 4 epoch time ratio: {ratios['eager']:.3f} eager, "
               f"{ratios['graphs']:.3f} with graphs (FLOPs ratio 0.234).", "")


COMPILE_MODES = {  # --compile-modes name: (row, overrides)
    "graphs": ("cuda_graphs", []),
    "default+graphs": ("compile=default + c2f's graphs", ["trainer.compile=default"]),
    "reduce-overhead": ("compile=reduce-overhead", ["trainer.compile=reduce-overhead"]),
    "default": ("compile=default", ["trainer.compile=default", "trainer.cuda_graphs=false"])}


def compile_section(report: Report, bench: EpochBench, base: list[str], batch: int,
                    names: tuple[str, ...] = tuple(COMPILE_MODES)) -> None:
    """torch.compile (inductor's fused kernels, and CUDA graphs in reduce-overhead mode)
    against c2f's own CUDA graphs, C = 1 and fshift C = 4; one line per config as it ends."""
    report.add(f"## 7. torch.compile vs `trainer.cuda_graphs`, bf16, batch {batch}", "",
               "Each config: a first epoch (compiles or captures), then one timed epoch.", "")
    shapes = {"C=1": ["compression=none"], "fshift C=4": ["compression=fshift", "schedule.c=4"]}
    for mode, extra in (COMPILE_MODES[name] for name in names):
        rates = {}
        for shape, overrides in shapes.items():
            session = bench.session([*base, *overrides, "trainer.precision=bf16", *extra])
            start = time.perf_counter()
            try:
                session.epoch()
            except Exception as err:  # an experiment: say how it failed, go on
                report.add(f"- {mode}, {shape}: failed ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200] if str(err) else ''})")
                break
            first = time.perf_counter() - start
            rates[shape] = samples_per_s([session.epoch()])
            graphed = session.model if isinstance(session.model, GraphedModel) else None
            fell_back = " (the capture failed: trained eagerly)" if graphed and graphed.eager \
                else ""
            report.add(f"- {mode}, {shape}: first epoch {first:.0f} s, then "
                       f"{rates[shape]:.0f} samples/s{fell_back}")
            del session
        if len(rates) == len(shapes):
            ratio = rates["C=1"] / rates["fshift C=4"]
            report.add(f"- {mode}: fshift C = 4 epoch time ratio {ratio:.3f} (FLOPs ratio "
                       "0.234)", "")


def eval_section(report: Report, bench: EpochBench, base: list[str]) -> None:
    """Evaluation after each epoch, beside the epoch's training, at C = 1 and fshift C = 4:
    the same weights evaluated with an eager forward and with the forward replayed as a CUDA
    graph (trainer.cuda_graphs, GraphedEval), both in fp32 (trainer.eval_precision's default,
    as AST's validate), and eagerly in the bf16 the run trains in (`eval_precision=train`: its
    cost). A coarse phase's evaluation is launch-bound like its training; the graphed and
    eager passes' scores must agree (the same kernels)."""
    rows = ["| input | train epoch (s) | evaluation, eager (s) | evaluation, graphs (s) | "
            "eager / graphs | eval loss, eager vs graphs | eager in bf16 (s) |",
            "|---|--:|--:|--:|--:|--:|--:|"]
    seconds: dict[tuple[str, str], float] = {}
    for name, overrides in (("C=1", ["compression=none"]),
                            ("fshift C=4", ["compression=fshift", "schedule.c=4"])):
        session = bench.session([*base, *overrides, "trainer.precision=bf16"])
        session.epoch()
        train = session.epoch()["seconds"]
        losses = {}
        for mode, model in (("eager", session.base_model), ("graphs", session.evaluable)):
            session.loop._evaluate(model, session.data)  # warm-up; captures the graph
            sync(session.loop.device)
            start = time.perf_counter()
            losses[mode] = session.loop._evaluate(model, session.data)["eval_loss"]
            sync(session.loop.device)
            seconds[name, mode] = time.perf_counter() - start
        eager, graphed = seconds[name, "eager"], seconds[name, "graphs"]
        session.loop.eval_precision = session.loop.precision  # trainer.eval_precision=train
        start = time.perf_counter()
        session.loop._evaluate(session.base_model, session.data)
        sync(session.loop.device)
        in_bf16 = time.perf_counter() - start
        fell_back = " (not graphed here)" if session.evaluable is session.base_model else \
            " (the capture failed: eager)" if session.evaluable.graph is None else ""
        rows.append(f"| {name} | {train:.2f} | {eager:.2f} | {graphed:.2f}{fell_back} | "
                    f"{eager / graphed:.2f} | {losses['eager']:.5f} vs {losses['graphs']:.5f} | "
                    f"{in_bf16:.2f} |")
        del session
    ratio = {mode: seconds["fshift C=4", mode] / seconds["C=1", mode]
             for mode in ("eager", "graphs")}
    report.add("## 4d. Evaluation beside training (bf16): eager and graphed forward passes in "
               "fp32, and eager in bf16", "",
               *rows, "",
               f"fshift C = 4 evaluation takes {ratio['eager']:.3f} of a full one eagerly, "
               f"{ratio['graphs']:.3f} with graphs (forward FLOPs ratio about 0.23).", "")


def mixup_section(report: Report, bench: EpochBench, base: list[str], budget_s: float) -> None:
    """AST's AudioSet recipe mixes waveforms (dataset.mixup=0.5, ast egs/audioset/run.sh), so
    its training fbanks are made every step, never read from feature tables: with the clips
    kept on the GPU and mixed there (`trainer.cache_features=auto`, c2f/data/device_waves.py)
    and mixed by the host, which sends the waveforms (`false`), beside the same runs without
    mixup (feature tables), C = 1 and fshift C = 4."""
    shapes = {"C=1": ["compression=none"], "fshift C=4": ["compression=fshift", "schedule.c=4"]}
    modes = {"none": ["dataset.mixup=0.0"], "device": ["dataset.mixup=0.5"],
             "host": ["dataset.mixup=0.5", "trainer.cache_features=false"]}
    configs = {f"{shape} {mode}": [*base, *overrides, "trainer.precision=bf16", *extra]
               for shape, overrides in shapes.items() for mode, extra in modes.items()}
    runs = interleaved(report, bench, configs, 2, budget_s)
    rate = {name: samples_per_s(stats) for name, stats in runs.items()}
    rows = ["| input | samples/s, no mixup (feature tables) | mixup 0.5 mixed on the GPU | "
            "mixup 0.5 mixed by the host | GPU mix / host mix | train loss, GPU vs host mix |",
            "|---|--:|--:|--:|--:|--:|"]
    for shape in shapes:
        none, device, host = (rate[f"{shape} {mode}"] for mode in modes)
        losses = " vs ".join(f"{runs[f'{shape} {mode}'][0]['train_loss']:.6f}"
                             for mode in ("device", "host"))
        rows.append(f"| {shape} | {none:.0f} | {device:.0f} | {host:.0f} | {device / host:.2f} "
                    f"| {losses} |")
    ratio = {mode: rate[f"C=1 {mode}"] / rate[f"fshift C=4 {mode}"] for mode in modes}
    report.add("## 4c. Waveform mixup (AST's AudioSet recipe), bf16, CUDA graphs on a GPU", "",
               *rows, "",
               f"fshift C = 4 epochs take {ratio['none']:.3f} of a full one without mixup, "
               f"{ratio['device']:.3f} with mixup on the GPU, {ratio['host']:.3f} with mixup by "
               "the host (FLOPs ratio 0.234).", "")


def models_section(report: Report, bench: EpochBench, base: list[str], budget_s: float,
                   models: tuple[str, ...] = ("cnn14", "htsat")) -> None:
    """CNN14 and HTS-AT as their presets train (batch norm, DropStripes and in-model mixup
    inside the model; conf/model/cnn14.yaml, htsat.yaml), eager and replayed as CUDA graphs,
    at C = 1 and pool_avg C = 4 (Table 1's "Pool2" for CNN14): speed, whether the capture
    held, and the first timed epoch's loss each way."""
    kept = [o for o in base if not o.startswith(("model=", "dataset.timem=", "dataset.freqm=",
                                                 "dataset.batch_size="))]
    shapes = {"C=1": ["compression=none"], "pool_avg C=4": ["compression=pool_avg",
                                                           "schedule.c=4"]}
    rows = ["| model | input | eager samples/s | graphs samples/s | speed-up | captured | "
            "train loss, eager vs graphs |", "|---|---|--:|--:|--:|---|--:|"]
    ratios, modes = [], {"eager": "false", "graphs": "auto"}  # auto: what users get
    for arch in models:  # presets: their target_length and batch (conf/model/<arch>.yaml)
        if report.elapsed > budget_s:
            break
        # average=none: no top-k candidates evaluated inside the epoch (HTS-AT's ten an epoch,
        # average.evals_per_epoch), which an epoch's time leaves out but the bench would wait on
        configs = {f"{mode} {shape}": [*kept, f"model={arch}", "average=none", "dataset.timem=0",
                                       "dataset.freqm=0", *overrides,
                                       "trainer.precision=bf16",
                                       f"trainer.cuda_graphs={modes[mode]}"]
                   for shape, overrides in shapes.items() for mode in modes}
        runs = interleaved(report, bench, configs, 2, budget_s)
        for shape in shapes:
            eager, graphs = runs[f"eager {shape}"], runs[f"graphs {shape}"]
            rows.append(f"| {arch} | {shape} | {samples_per_s(eager):.0f} | "
                        f"{samples_per_s(graphs):.0f} | "
                        f"{samples_per_s(graphs) / samples_per_s(eager):.2f} | "
                        f"{'yes' if graphs[0]['graphed'] else 'NO'} | "
                        f"{eager[0]['train_loss']:.6f} vs {graphs[0]['train_loss']:.6f} |")
        for mode in ("eager", "graphs"):
            full, coarse = runs[f"{mode} C=1"], runs[f"{mode} pool_avg C=4"]
            ratios.append(f"{arch} {mode} {samples_per_s(full) / samples_per_s(coarse):.3f} "
                          f"(FLOPs {coarse[0]['flops'] / full[0]['flops']:.3f})")
    report.add("## 4e. CNN14 and HTS-AT (their presets), eager vs CUDA graphs, bf16", "",
               *rows, "", "pool_avg C = 4 epoch time ratio: " + "; ".join(ratios) + ".", "")


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
