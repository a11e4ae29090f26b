"""CNN14 and HTS-AT: training FLOPs and step time per sample at C = 2 and 4 against C = 1, for
the compressions each model takes (Fshift, Avg Pool, Max Pool), at the presets' full size.

A step is forward + BCE loss + backward + AdamW step on a batch of the phase's input (pool
methods pool a full-resolution input inside the step, as c2f's frontend does). Times are
measured round-robin and reported as the median over rounds of (time / the same round's C = 1
time), which cancels most of a shared machine's drift. Features are not included.

    .venv/bin/python -m bench.model_ratios --out bench/results_models.md [--rounds 3]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bench.results_table import cpu_model
from c2f.compression import create_compression
from c2f.models import build_model
from c2f.spec import OptimSpec, build_model_spec
from c2f.train.flops import predicted_flops_per_sample
from c2f.train.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
FRAMES = {"cnn14": 1000, "htsat": 1024}  # the presets' dataset.target_length
METHODS = ("fshift", "pool_avg", "pool_max")


def preset(name: str):
    """The ModelSpec of conf/model/<name>.yaml (a `_global_` preset: its `model` node)."""
    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
    node = node.get("model", node)
    node.pop("defaults", None)
    return build_model_spec(node)


def configs(name: str) -> list[tuple[str, int]]:
    return [("none", 1)] + [(m, c) for m in METHODS for c in (2, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_models.md")
    parser.add_argument("--models", default="cnn14,htsat")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    lines = ["# CNN14 and HTS-AT: FLOPs and step time against C", "",
             f"`python -m bench.model_ratios --rounds {args.rounds} --batch {args.batch}` on "
             f"{cpu_model()}, {torch.get_num_threads()} threads, fp32; the presets' full-size "
             "models (conf/model/cnn14.yaml, htsat.yaml), 10 s inputs, 527 classes.", ""]
    for name in args.models.split(","):
        spec = preset(name)
        mel, frames = spec.features.num_mel_bins, FRAMES[name]
        runs = {}
        for method, c in configs(name):
            model_frames = frames // c
            def factory(model_frames=model_frames, c=c, spec=spec, mel=mel):
                return build_model(spec, num_classes=527, num_mel_bins=mel,
                                   frames=model_frames, patch=(16, 16), c=c)
            model = factory()
            optimizer = make_optimizer(OptimSpec(name="adamw"), model.parameters())
            steps_input = frames if method.startswith("pool") else model_frames
            runs[(method, c)] = dict(
                flops=predicted_flops_per_sample(factory, model_frames, mel), model=model,
                optimizer=optimizer, input=torch.randn(args.batch, steps_input, mel),
                compression=create_compression(method), c=c)

        def step(run) -> float:
            start = time.perf_counter()
            x = run["compression"].transform(run["input"], run["c"])
            logits = run["model"](x)
            loss = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
            loss.backward()
            run["optimizer"].step()
            run["optimizer"].zero_grad(set_to_none=True)
            return time.perf_counter() - start

        for run in runs.values():  # warm-up
            step(run)
        ratios: dict[tuple, list[float]] = {k: [] for k in runs}
        base_times = []
        for _ in range(args.rounds):
            order = list(runs)
            random.shuffle(order)
            times = {k: step(runs[k]) for k in order}
            base_times.append(times[("none", 1)])
            for k in runs:
                ratios[k].append(times[k] / times[("none", 1)])
        base = runs[("none", 1)]["flops"]
        lines += [f"## {name}", "",
                  f"C = 1: {base / 1e9:.1f} GFLOPs per training sample, "
                  f"{statistics.median(base_times) / args.batch:.2f} s per sample.", "",
                  "| method | C | GFLOPs/sample | FLOPs ratio | time ratio (median) |",
                  "|---|---|---|---|---|"]
        for (method, c), run in runs.items():
            if c == 1:
                continue
            ratio = statistics.median(ratios[(method, c)])
            lines.append(f"| {method} | {c} | {run['flops'] / 1e9:.1f} | "
                         f"{run['flops'] / base:.3f} | {ratio:.3f} |")
        lines.append("")
        print("\n".join(lines[-12:]), flush=True)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
