"""`make bench-gpu`, the step alone: is AST-Base's coarse step bound by the GPU or by the host?

Times one training step (forward, BCE, backward, fused Adam; bf16 autocast) on a batch that
never changes, at full resolution (1024 frames) and at fshift C = 4 (256 frames), eagerly and
as CUDA graphs (`torch.cuda.make_graphed_callables`: the forward and backward replayed as two
graphs, no compiler), beside the host's cost of one kernel launch. When the eager C = 4 step
costs what the graphed one does, the GPU bounds it; when it costs launches x launch time, the
host does, and only fewer launches (graphs, fused kernels) bring its time to its FLOPs.
"""
from __future__ import annotations

import time

import torch

from bench.harness import compose_spec
from c2f.models import build_model
from c2f.train.metrics import classification_loss
from c2f.train.optim import make_optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def launch_us(device: torch.device, launches: int = 2000) -> float:
    """Host microseconds per launch of a tiny kernel, measured back to back."""
    x = torch.zeros(8, device=device)
    for _ in range(100):
        x.add_(1)
    _sync(device)
    start = time.perf_counter()
    for _ in range(launches):
        x.add_(1)
    _sync(device)
    return 1e6 * (time.perf_counter() - start) / launches


def _training_step(overrides: list[str], frames: int, device: torch.device, graphed: bool):
    """One training step of the run's model at `frames` frames, on a batch that never changes."""
    spec = compose_spec(overrides)
    d = spec.dataset
    torch.manual_seed(0)
    model = build_model(spec.model, num_classes=d.num_classes, num_mel_bins=spec.num_mel_bins,
                        frames=frames, patch=tuple(spec.model.patch), c=1).to(device)
    optimizer = make_optimizer(spec.optim, model.parameters())
    inputs = torch.randn(d.batch_size, frames, spec.num_mel_bins, device=device)
    target = torch.rand(d.batch_size, d.num_classes, device=device).round()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    model.train()
    forward = model
    if graphed:
        with autocast:
            forward = torch.cuda.make_graphed_callables(model, (inputs,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(inputs)
        classification_loss("bce", logits.float(), target).backward()
        optimizer.step()
    for _ in range(3):
        step()
    _sync(device)
    return step


def step_ms(overrides: list[str], frames: int, device: torch.device, graphed: bool,
            steps: int = 20) -> float:
    """Milliseconds per training step of the run's model at `frames` frames."""
    step = _training_step(overrides, frames, device, graphed)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return 1e3 * (time.perf_counter() - start) / steps


def op_ms(overrides: list[str], frames: int, device: torch.device, steps: int = 5) -> dict:
    """Milliseconds per eager step spent in each op on the device (on CPU: its own time)."""
    from torch.profiler import ProfilerActivity, profile

    step = _training_step(overrides, frames, device, False)
    cuda = device.type == "cuda"
    # the CPU activity records the ops, the CUDA one their kernels' device time
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) \
            as prof:
        for _ in range(steps):
            step()
        _sync(device)
    from torch.autograd import DeviceType

    # ops only (device_type CPU): a kernel's own row would count its time a second time
    return {e.key: (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e3 / steps
            for e in prof.key_averages() if e.device_type == DeviceType.CPU}


def op_rows(overrides: list[str], device: torch.device, top: int = 14) -> list[str]:
    """Where a step's device time goes at 1024 and 256 frames, op by op: the ops whose time
    shrinks less than the FLOPs (0.234) are what keeps a C = 4 epoch above its FLOPs ratio."""
    full, coarse = op_ms(overrides, 1024, device), op_ms(overrides, 256, device)
    rows = ["| op | ms/step at 1024 | ms/step at 256 | ratio | excess at 256 over 0.234 x "
            "(ms) |", "|---|--:|--:|--:|--:|"]
    names = sorted(full, key=lambda k: coarse.get(k, 0) - 0.234 * full[k], reverse=True)
    for name in [*names[:top], "all ops"]:
        a = sum(full.values()) if name == "all ops" else full[name]
        b = sum(coarse.values()) if name == "all ops" else coarse.get(name, 0.0)
        rows.append(f"| {name[:60]} | {a:.2f} | {b:.2f} | {b / a if a else 0:.3f} | "
                    f"{b - 0.234 * a:+.2f} |")
    return rows


def step_section(report, base: list[str], device: torch.device) -> None:
    launch = launch_us(device)
    modes = [("eager", False)] + ([("CUDA graphs", True)] if device.type == "cuda" else [])
    rows = ["| step | ms/step at 1024 frames | ms/step at 256 (fshift C = 4) | time ratio |",
            "|---|--:|--:|--:|"]
    for name, graphed in modes:
        full = step_ms(base, 1024, device, graphed)
        coarse = step_ms(base, 256, device, graphed)
        rows.append(f"| {name} | {full:.1f} | {coarse:.1f} | {coarse / full:.3f} |")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report.add("## 2b. The training step alone (AST-Base, bf16, no data, no loop)", "",
               f"One kernel launch costs the host {launch:.1f} us here. Same batch every step; "
               "fused Adam; the FLOPs ratio of 256 to 1024 frames is 0.234.", "", *rows, "",
               "Eager steps profiled op by op (torch.profiler, "
               f"{'device' if device.type == 'cuda' else 'CPU'} time), the ops furthest above "
               "the FLOPs ratio first:", "", *op_rows(base, device), "")
