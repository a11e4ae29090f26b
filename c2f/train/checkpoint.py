"""Checkpoints of the phase loop, written atomically every epoch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from c2f.track import atomic_torch_save

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


class Checkpoint(NamedTuple):
    state: TrainState
    model: dict
    optimizer: dict
    average: dict | None  # the weight averager's state (its running sum)
    scaler: dict | None  # fp16's GradScaler; absent when the run was saved in another precision


def save_checkpoint(ckpt_dir: Path, state: TrainState, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, keep_all: bool = False,
                    average: dict | None = None, scaler: dict | None = None) -> Path:
    """Write last.pt atomically (temp file, then rename); optionally keep one per epoch.

    `average` and `scaler` are saved with the epoch they belong to."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    payload = {"state": asdict(state), "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "average": average, "scaler": scaler}
    target = ckpt_dir / LAST
    atomic_torch_save(payload, target)
    if keep_all:
        torch.save(payload, ckpt_dir / f"epoch{state.epoch:04d}.pt")
    return target


def load_checkpoint(ckpt_dir: Path) -> Checkpoint | None:
    """The last checkpoint, if any."""
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
    return Checkpoint(state, payload["model"], payload["optimizer"], payload.get("average"),
                      payload.get("scaler"))
