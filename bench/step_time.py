"""Per-sample training-step time against FLOPs, for every compression method at C = 1, 2, 4.

One training step = [pooling transform for pool methods] + forward + loss + backward + Adam step
on a batch of the phase's model input (fshift: T / C frames; pool: T frames pooled to T / C inside
the step; patch: T frames with a p x Cp patch). Times are measured round-robin: every round runs
each configuration once, in a fresh random order, and a configuration's time ratio is the median
over rounds of (its time / the C = 1 time of the same round), which cancels most of the drift of a
shared machine. C = 1 is identity for every method, so it is measured once per preset.

Features (kaldi fbank at the phase's frame shift + `compression.transform`) are timed apart, per
sample, and reported in their own column.

    .venv/bin/python -m bench.step_time --out bench/results.md [--quick] [--presets ast_tiny]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.results_table import cpu_model, summarize, table
from c2f.compression import BaseInput, create_compression, list_compressions
from c2f.features import fbank, pad_or_crop_frames
from c2f.models.ast import AST
from c2f.spec import OptimSpec
from c2f.train.flops import predicted_flops_per_sample
from c2f.train.optim import make_optimizer

PAPER_C4 = {"time": 0.30, "flops": 0.234}  # the paper's epoch at C = 4 vs a full-resolution one


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    mel: int
    frames: int
    patch: tuple[int, int]
    classes: int
    multilabel: bool
    embed_dim: int
    depth: int
    heads: int
    dist_token: bool
    sample_rate: int
    time_mask: int
    batch: int
    steps: int  # training steps per timed measurement (more for small models: timer resolution)
    min_rounds: int
    max_rounds: int  # extra rounds only while the time budget allows


PRESETS = {
    # conf/model/ast_tiny.yaml on conf/dataset/builtin.yaml (the CPU default), its batch size 32
    "ast_tiny": Preset("ast_tiny", "CPU default: ast_tiny, 128 mel x 256 frames, 11 classes",
                       128, 256, (16, 16), 11, False, 128, 3, 4, False, 16000, 48,
                       batch=32, steps=2, min_rounds=10, max_rounds=10),
    # AST-Base on AudioSet shapes (10.24 s at 10 ms); batch 2 keeps it to seconds per step on CPU
    "ast_base": Preset("ast_base", "AST-Base: 128 mel x 1024 frames, 527 classes",
                       128, 1024, (16, 16), 527, True, 768, 12, 12, True, 16000, 192,
                       batch=2, steps=1, min_rounds=3, max_rounds=8),
}


@dataclass
class Config:
    method: str
    c: int
    frame_shift_ms: float
    fbank_frames: int
    model_frames: int
    patch: tuple[int, int]
    shape_key: tuple  # configurations with equal keys run the same model
    feature_key: tuple  # configurations with equal keys compute the same features
    step_s: list[float] = field(default_factory=list)  # per round, whole step, per batch
    fwdbwd_s: list[float] = field(default_factory=list)  # per round, transform+fwd+loss+bwd
    opt_s: list[float] = field(default_factory=list)  # per round, Adam step


def build_configs(preset: Preset, methods: list[str], cs: list[int]) -> list[Config]:
    base = BaseInput(10.0, preset.frames, preset.patch, preset.time_mask)
    configs = []
    for method in methods:
        comp = create_compression(method)
        for c in cs:
            if c == 1 and method != "none":
                continue  # identical to `none` at C = 1
            if c != 1 and method == "none":
                continue
            p = comp.phase_input(base, c)
            configs.append(Config(
                method, c, p.frame_shift_ms, p.fbank_frames, p.model_frames, tuple(p.patch),
                shape_key=(p.model_frames, tuple(p.patch)),
                feature_key=(p.frame_shift_ms, p.fbank_frames, p.model_frames,
                             method if p.model_frames != p.fbank_frames else "")))
    return configs


def make_factory(preset: Preset, frames: int, patch: tuple[int, int]):
    return lambda: AST(num_mel_bins=preset.mel, frames=frames, patch=patch,
                       num_classes=preset.classes, embed_dim=preset.embed_dim,
                       depth=preset.depth, num_heads=preset.heads, dist_token=preset.dist_token)


def share_trunk(model: torch.nn.Module, trunk: torch.nn.Module) -> None:
    """Make `model` use `trunk`'s parameters wherever names and shapes agree (all but the
    position embedding and, for wider patches, the patch kernel). Same compute per step, a
    fraction of the memory: AST-Base plus its Adam state is 1.4 GB per copy."""
    theirs = dict(trunk.named_parameters())
    for module_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            full = f"{module_name}.{name}" if module_name else name
            other = theirs.get(full)
            if param is not None and other is not None and other.shape == param.shape:
                module._parameters[name] = other


def tokens_of(model: AST) -> int:
    f, t = model.grid
    return f * t + model.num_prefix_tokens


def time_features(preset: Preset, configs: list[Config], reps: int) -> dict[tuple, float]:
    """Median seconds per sample of fbank + pad/crop + transform, interleaved over configs."""
    seconds_of_audio = preset.frames * 10.0 / 1000.0
    wave = torch.randn(1, int(seconds_of_audio * preset.sample_rate),
                       generator=torch.Generator().manual_seed(0)) * 0.1
    unique = {cfg.feature_key: cfg for cfg in configs}
    times: dict[tuple, list[float]] = {key: [] for key in unique}
    order = list(unique)
    rng = random.Random(1)
    for rep in range(reps + 1):  # the first rep warms up
        rng.shuffle(order)
        for key in order:
            cfg = unique[key]
            comp = create_compression(cfg.method)
            start = time.perf_counter()
            spec = fbank(wave, preset.sample_rate, preset.mel, cfg.frame_shift_ms)
            spec = pad_or_crop_frames(spec, cfg.fbank_frames)
            spec = comp.transform(spec.unsqueeze(0), cfg.c)[0]
            elapsed = time.perf_counter() - start
            assert spec.shape == (cfg.model_frames, preset.mel), spec.shape
            if rep:
                times[key].append(elapsed)
    return {key: statistics.median(v) for key, v in times.items()}


def bench_preset(preset: Preset, configs: list[Config], deadline: float, log) -> dict:
    torch.manual_seed(0)
    # one model per input shape; all of them share the trunk and one Adam
    models: dict[tuple, AST] = {}
    info: dict[tuple, dict] = {}
    for cfg in configs:
        if cfg.shape_key in models:
            continue
        factory = make_factory(preset, cfg.model_frames, cfg.patch)
        flops = predicted_flops_per_sample(factory, cfg.model_frames, preset.mel)
        model = factory()
        if models:
            share_trunk(model, next(iter(models.values())))
        model.train()
        models[cfg.shape_key] = model
        info[cfg.shape_key] = {"flops": flops, "tokens": tokens_of(model)}
        log(f"  model frames={cfg.model_frames} patch={cfg.patch}: {info[cfg.shape_key]}")
    params = {id(p): p for m in models.values() for p in m.parameters()}
    # conf/optim/ast_recipe.yaml's Adam, built by the trainer's own factory
    optimizer = make_optimizer(OptimSpec(lr=1e-5), list(params.values()))

    gen = torch.Generator().manual_seed(0)
    inputs = {}
    for cfg in configs:
        if (cfg.fbank_frames, cfg.shape_key) not in inputs:
            inputs[(cfg.fbank_frames, cfg.shape_key)] = torch.randn(
                preset.batch, cfg.fbank_frames, preset.mel, generator=gen)
    if preset.multilabel:
        target = (torch.rand(preset.batch, preset.classes, generator=gen) < 0.1).float()
    else:
        target = torch.randint(0, preset.classes, (preset.batch,), generator=gen)
    comps = {cfg.method: create_compression(cfg.method) for cfg in configs}

    def step(cfg: Config) -> tuple[float, float]:
        model, comp = models[cfg.shape_key], comps[cfg.method]
        batch = inputs[(cfg.fbank_frames, cfg.shape_key)]
        fb = opt = 0.0
        for _ in range(preset.steps):
            start = time.perf_counter()
            spec = comp.transform(batch, cfg.c)
            logits = model(spec)
            if preset.multilabel:
                loss = F.binary_cross_entropy_with_logits(logits, target)
            else:
                loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            middle = time.perf_counter()
            optimizer.step()
            loss.item()
            end = time.perf_counter()
            fb, opt = fb + middle - start, opt + end - middle
        return fb, opt

    rng = random.Random(0)
    order = list(configs)
    started = time.perf_counter()
    rounds, round_s = 0, []
    while True:
        warm = rounds == 0
        if not warm and rounds > preset.min_rounds and (
                rounds > preset.max_rounds
                or time.perf_counter() + statistics.median(round_s[1:]) > deadline):
            break
        rng.shuffle(order)
        t0 = time.perf_counter()
        for cfg in order:
            fb, opt = step(cfg)
            if not warm:
                cfg.step_s.append(fb + opt)
                cfg.fwdbwd_s.append(fb)
                cfg.opt_s.append(opt)
        round_s.append(time.perf_counter() - t0)
        log(f"  round {rounds}{' (warmup)' if warm else ''}: {round_s[-1]:.1f} s")
        rounds += 1
    return {"info": info, "timed_rounds": rounds - 1, "round_s": round_s,
            "seconds": time.perf_counter() - started}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results.md"),
                        help="Markdown table; a .json with the raw numbers is written beside it")
    parser.add_argument("--presets", default="ast_tiny,ast_base",
                        help=f"comma-separated, from {', '.join(PRESETS)}")
    parser.add_argument("--methods", default=",".join(list_compressions()))
    parser.add_argument("--cs", default="1,2,4", help="compression factors; must include 1")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: the CPUs this process may use)")
    parser.add_argument("--quick", action="store_true", help="one timed round per preset")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="timed rounds beyond each preset's minimum stop at this many "
                             "seconds after start")
    parser.add_argument("--batch", type=int, default=None, help="override every preset's batch")
    args = parser.parse_args(argv)

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    presets = [PRESETS[name] for name in args.presets.split(",") if name]
    methods = [m for m in args.methods.split(",") if m]
    cs = sorted({int(c) for c in args.cs.split(",")})
    if 1 not in cs:
        parser.error("--cs must include 1, the reference")
    if "none" not in methods:
        methods = ["none", *methods]
    presets = [
        Preset(**{**p.__dict__,
                  **({"min_rounds": 1, "max_rounds": 1} if args.quick else {}),
                  **({"batch": args.batch} if args.batch else {})})
        for p in presets]

    start = time.perf_counter()
    deadline = start + args.budget_s
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command, "cwd": os.getcwd(),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "loadavg_start": list(os.getloadavg()),
    }

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = []
    for preset in presets:
        log(f"{preset.name}: batch {preset.batch}")
        configs = build_configs(preset, methods, cs)
        feats = time_features(preset, configs, reps=3 if args.quick else 15)
        run = bench_preset(preset, configs, deadline, log)
        rows = summarize(preset, configs, run["info"], feats)
        results.append({"preset": preset.__dict__, "timed_rounds": run["timed_rounds"],
                        "round_s": run["round_s"], "rows": rows})
    meta["loadavg_end"] = list(os.getloadavg())
    meta["seconds"] = time.perf_counter() - start

    md = [
        "# Training-step time vs FLOPs, per compression method and C",
        "",
        f"- command: `{command}`",
        f"- date: {meta['date']}; {meta['seconds']:.0f} s",
        f"- torch {meta['torch']} (CPU, {meta['cpu_capability']}), python {meta['python']}",
        (f"- CPU: {meta['cpu']}; {meta['cpus_usable']} usable CPUs; torch threads "
         f"{meta['torch_threads']} (interop {meta['torch_interop_threads']})"),
        (f"- load average (1, 5, 15 min) at start "
         f"{[round(x, 2) for x in meta['loadavg_start']]}, "
         f"at end {[round(x, 2) for x in meta['loadavg_end']]}"),
        "",
        ("A step is [pool transform] + forward + loss + backward + Adam on one batch of the "
        "phase's model input. Rounds run every configuration once in a fresh random order; "
        "**time ratio** is the median over rounds of step time / the same round's C = 1 step "
        "time (range in brackets), **time / FLOPs** is time ratio / FLOPs ratio (1.00: time "
        "tracks FLOPs exactly; the paper's C = 4 epoch was 0.30 / 0.234 = "
        f"{PAPER_C4['time'] / PAPER_C4['flops']:.2f}). FLOPs: fwd + bwd per sample from "
        "`predicted_flops_per_sample` (backward = 2 x forward, attention included; Adam and "
        "pooling not counted). **fwd+bwd ratio** leaves out the Adam step, whose cost is per "
        "step, not per sample, and does not shrink with C. **feature ms/sample**: kaldi fbank at "
        "the phase's frame shift + pad/crop + `transform`, one clip, median; **ratio incl. "
        "features** adds it to the per-sample step time on both sides. * C = 1 is identity for "
        "every method: one shared measurement (`none`), listed under each method. **ratio of "
        "fastest**: fastest step of the configuration / fastest C = 1 step (the machine's "
        "noise only adds time, so this is a second, independent estimate)."),
    ]
    for preset, res in zip(presets, results):
        md += ["", f"## {preset.title}", "",
               (f"embed {preset.embed_dim}, depth {preset.depth}, heads {preset.heads}, "
               f"{'dist token, ' if preset.dist_token else ''}patch {preset.patch}, batch "
               f"{preset.batch} x {preset.steps} step(s) per measurement, "
               f"{res['timed_rounds']} timed rounds after 1 warmup round "
               f"(round seconds: {', '.join(f'{s:.1f}' for s in res['round_s'])})"), ""]
        md += table(preset, res["rows"], methods, cs)
    text = "\n".join(md) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "results": results}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
