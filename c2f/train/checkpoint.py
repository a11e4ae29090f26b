"""Checkpoints of the phase loop, written atomically every epoch."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

LAST = "last.pt"


@dataclass
class TrainState:
    """Where the phase loop stands, plus running totals across phases."""

    phase: int = 0
    phase_epochs_done: int = 0
    step: int = 0  # optimizer steps within the phase (drives warmup and the LR schedule)
    epoch: int = 0  # global epochs done
    flops_cum: int = 0
    seconds_cum: float = 0.0
    samples_cum: int = 0
    flops_per_sample: dict[int, int] = field(default_factory=dict)  # measured, per phase index


def save_checkpoint(ckpt_dir: Path, state: TrainState, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, keep_all: bool = False) -> Path:
    """Write last.pt atomically (temp file, then rename); optionally keep one per epoch."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    payload = {"state": asdict(state), "model": model.state_dict(),
               "optimizer": optimizer.state_dict()}
    target = ckpt_dir / LAST
    tmp = ckpt_dir / f".{LAST}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, target)
    if keep_all:
        torch.save(payload, ckpt_dir / f"epoch{state.epoch:04d}.pt")
    return target


def load_checkpoint(ckpt_dir: Path) -> tuple[TrainState, dict, dict] | None:
    """(state, model state dict, optimizer state dict) of the last checkpoint, if any."""
    path = ckpt_dir / LAST
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn file cannot happen with os.replace, but disks fail
        raise RuntimeError(f"checkpoint {path} is unreadable ({err}); delete it to restart "
                           "this run from its previous state, or the run dir to start over"
                           ) from err
    state = TrainState(**payload["state"])
    state.flops_per_sample = {int(k): v for k, v in state.flops_per_sample.items()}
    return state, payload["model"], payload["optimizer"]
