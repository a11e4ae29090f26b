"""Optimizer and the per-phase learning-rate schedule (warmup, then multistep/cosine/constant)."""
from __future__ import annotations

import math

import torch

from c2f.spec import OptimSpec


def make_optimizer(spec: OptimSpec, params) -> torch.optim.Optimizer:
    """A fresh optimizer; each phase gets a new one. The fused kernel (CPU and CUDA) takes a
    fixed ~80 ms per AST-Base step down to ~23 ms on 2 CPU cores (bench/results.md): a cost
    that does not shrink with C and would otherwise blunt the coarse phases' savings."""
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=tuple(spec.betas),
               eps=spec.eps, amsgrad=spec.amsgrad, fused=True)


def lr_at(spec: OptimSpec, step: int, epoch: int, total_steps: int) -> float:
    """Learning rate at `step` (0-based, within the phase) of phase epoch `epoch` (0-based)."""
    warm = _warmup(spec, step)
    if spec.scheduler == "multistep":
        passed = 0 if epoch < spec.milestones_start else \
            1 + (epoch - spec.milestones_start) // spec.milestones_step
        decay = spec.gamma ** passed
    elif spec.scheduler == "epoch_scales":
        decay = spec.scales[min(epoch, len(spec.scales) - 1)]
    elif spec.scheduler == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
    else:
        decay = 1.0
    return spec.lr * warm * decay


def _warmup(spec: OptimSpec, step: int) -> float:
    """The warm-up factor at `step`: (step + 1) / warmup_steps, or with `warmup_stairs` N the
    stairs of AST and SSAST (src/traintest.py, src/traintest_mask.py: at every step g <= 1000
    with g % 50 == 0, lr = g / 1000 * lr, so 0 for the first 50 steps of a phase)."""
    if not spec.warmup_steps:
        return 1.0
    if spec.warmup_stairs:
        return min(1.0, (step * spec.warmup_stairs // spec.warmup_steps) / spec.warmup_stairs)
    return min(1.0, (step + 1) / spec.warmup_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
