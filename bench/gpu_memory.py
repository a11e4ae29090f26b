"""`make bench-gpu`, memory: what `trainer.micro_batch` buys on a GPU too small for the batch.

AST-Base's training step at 1024 frames (bf16 autocast, BCE, fused Adam) through c2f's own
step (c2f/train/step.py `forward_backward`, c2f/train/precision.py `apply`), the whole batch
in one forward and in parts of batch/4 and batch/12: peak GPU memory
(`torch.cuda.max_memory_allocated`) and milliseconds per step. On CPU (a smoke test) only the
time is measured.
"""
from __future__ import annotations

import time

import torch

from bench.gpu_loop import sync
from bench.harness import compose_spec
from c2f.models import build_model
from c2f.train.metrics import classification_loss
from c2f.train.optim import make_optimizer
from c2f.train.precision import Precision
from c2f.train.step import forward_backward


def step_cost(overrides: list[str], micro: int | None, device: torch.device,
              steps: int = 6) -> tuple[float, float | None]:
    """(ms per step, peak GiB or None on CPU) of the run's model at its full input."""
    spec = compose_spec(overrides)
    d = spec.dataset
    torch.manual_seed(0)
    model = build_model(spec.model, num_classes=d.num_classes, num_mel_bins=spec.num_mel_bins,
                        frames=d.target_length, patch=tuple(spec.model.patch), c=1).to(device)
    model.train()
    optimizer = make_optimizer(spec.optim, model.parameters())
    precision = Precision("bf16" if device.type == "cuda" else "fp32", device)
    inputs = torch.randn(d.batch_size, d.target_length, spec.num_mel_bins, device=device)
    target = torch.rand(d.batch_size, d.num_classes, device=device).round()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(model, inputs, target, None,
                         lambda y, t: classification_loss("bce", y, t), precision, micro)
        precision.apply(optimizer, model.parameters(), None)
    step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    ms = 1e3 * (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return ms, peak  # the model and its optimizer go with this frame


def memory_section(report, base: list[str], device: torch.device, batch: int) -> None:
    rows = ["| examples per forward | peak GiB | ms/step | time vs whole batch |",
            "|--:|--:|--:|--:|"]
    whole = None
    for micro in (None, max(1, batch // 4), max(1, batch // 12)):
        ms, peak = step_cost(base, micro, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        whole = whole or ms
        rows.append(f"| {micro or batch}{' (whole)' if micro is None else ''} | "
                    f"{'n/a' if peak is None else f'{peak:.2f}'} | {ms:.1f} | {ms / whole:.2f} |")
    report.add(f"## 8. Memory: `trainer.micro_batch` (batch {batch}, full input, "
               f"{'bf16' if device.type == 'cuda' else 'fp32'}; weights, Adam state and "
               "gradients included)", "", *rows, "")
