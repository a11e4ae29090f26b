"""Turn the step-time measurements of bench/step_time.py into rows and a Markdown table."""
from __future__ import annotations

import platform
import statistics
from pathlib import Path


def summarize(preset, configs: list, info: dict, feats: dict) -> list[dict]:
    """One row per configuration: FLOPs and time ratios against the C = 1 reference."""
    ref = next(cfg for cfg in configs if cfg.c == 1)
    ref_flops = info[ref.shape_key]["flops"]
    per = preset.batch * preset.steps
    rows = []
    for cfg in configs:
        flops = info[cfg.shape_key]["flops"]
        ratios = [a / b for a, b in zip(cfg.step_s, ref.step_s)]
        fb_ratios = [a / b for a, b in zip(cfg.fwdbwd_s, ref.fwdbwd_s)]
        time_ratio = statistics.median(ratios)
        feat = feats[cfg.feature_key]
        total = [(a / per + feat) / (b / per + feats[ref.feature_key])
                 for a, b in zip(cfg.step_s, ref.step_s)]
        rows.append({
            "method": cfg.method, "c": cfg.c, "frame_shift_ms": cfg.frame_shift_ms,
            "fbank_frames": cfg.fbank_frames, "model_frames": cfg.model_frames,
            "patch": list(cfg.patch), "tokens": info[cfg.shape_key]["tokens"],
            "gflops_per_sample": flops / 1e9, "flops_ratio": flops / ref_flops,
            "step_ms_per_sample": 1e3 * statistics.median(cfg.step_s) / per,
            "fwdbwd_ms_per_sample": 1e3 * statistics.median(cfg.fwdbwd_s) / per,
            "adam_ms_per_step": 1e3 * statistics.median(cfg.opt_s) / preset.steps,
            "time_ratio": time_ratio, "time_ratio_min": min(ratios),
            "time_ratio_max": max(ratios),
            "fwdbwd_ratio": statistics.median(fb_ratios),
            "fastest_ratio": min(cfg.step_s) / min(ref.step_s),
            "efficiency": time_ratio / (flops / ref_flops),
            "feature_ms_per_sample": 1e3 * feat,
            "time_ratio_with_features": statistics.median(total),
            "raw_step_s": cfg.step_s, "raw_fwdbwd_s": cfg.fwdbwd_s, "raw_adam_s": cfg.opt_s,
        })
    return rows


def table(preset, rows: list[dict], methods: list[str], cs: list[int]) -> list[str]:
    """The Markdown table of one preset."""
    lines = [
        ("| method | C | model input (frames, patch) | tokens | GFLOPs/sample | FLOPs ratio "
         "| step ms/sample | time ratio [min-max] | time / FLOPs | ratio of fastest "
         "| fwd+bwd ratio | Adam ms/step | feature ms/sample | ratio incl. features |"),
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ref = next(r for r in rows if r["c"] == 1)
    for method in methods:
        if method == "none":
            continue
        for c in cs:
            row = ref if c == 1 else next(
                (r for r in rows if r["method"] == method and r["c"] == c), None)
            if row is None:
                continue
            mark = " *" if c == 1 else ""
            lines.append(
                f"| {method} | {c}{mark} | {row['model_frames']}, "
                f"{row['patch'][0]}x{row['patch'][1]} | {row['tokens']} "
                f"| {row['gflops_per_sample']:.2f} | {row['flops_ratio']:.3f} "
                f"| {row['step_ms_per_sample']:.1f} | {row['time_ratio']:.3f} "
                f"[{row['time_ratio_min']:.2f}-{row['time_ratio_max']:.2f}] "
                f"| {row['efficiency']:.2f} | {row['fastest_ratio']:.3f} "
                f"| {row['fwdbwd_ratio']:.3f} "
                f"| {row['adam_ms_per_step']:.0f} | {row['feature_ms_per_sample']:.2f} "
                f"| {row['time_ratio_with_features']:.3f} |")
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
