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


def step_ms(overrides: list[str], frames: int, device: torch.device, graphed: bool,
            steps: int = 20) -> float:
    """Milliseconds per training step of the run's model at `frames` frames."""
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
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return 1e3 * (time.perf_counter() - start) / steps


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
               "fused Adam; the FLOPs ratio of 256 to 1024 frames is 0.234.", "", *rows, "")
