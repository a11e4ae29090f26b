"""Checkpoints of the phase loop, written atomically every epoch."""
from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from c2f.files import atomic_torch_save
from c2f.models.weights_file import weights_differ
from c2f.spec import ConfigError
from c2f.track import RunFileError

LAST = "last.pt"
# the names training's wrappers put before a model's own: DDP, torch.compile, c2f's CUDA graphs
WRAPPERS = ("module.", "_orig_mod.", "step.model.")


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
    switches: dict[int, int] = field(default_factory=dict)  # adaptive: phase -> epochs it ran
    progress: dict = field(default_factory=dict)  # a checkpoint inside an epoch: how far it
    #                                               got (c2f/train/progress.py); else empty


class Checkpoint(NamedTuple):
    state: TrainState
    model: dict
    optimizer: dict
    average: dict | None  # the weight averager's state (its running sum)
    scaler: dict | None  # fp16's GradScaler; absent when the run was saved in another precision

    def load_model(self, model: torch.nn.Module, arch: str, run_dir: Path) -> None:
        """Its weights into `model`; ConfigError, in one line, when the model's code changed
        since they were saved (a layer renamed or resized)."""
        differ = weights_differ(model, self.model, arch)
        if differ:
            raise ConfigError(f"run {run_dir.name}: {differ}restore the code it was trained "
                              f"with, or train it anew: delete {run_dir} or add group=<name>")
        model.load_state_dict(self.model)


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
    if keep_all:  # whole or absent too: load_checkpoint falls back on these
        atomic_torch_save(payload, ckpt_dir / f"epoch{state.epoch:04d}.pt")
    return target


def saved_state(ckpt_dir: Path) -> dict | None:
    """last.pt's state (the phase loop's TrainState or pretraining's), read without loading
    its tensors (mmap); None without a readable one."""
    if not (ckpt_dir / LAST).is_file():
        return None
    for mmap in (True, False):  # a file system that cannot map files: read it whole
        try:
            state = torch.load(ckpt_dir / LAST, map_location="cpu", weights_only=True,
                               mmap=mmap)["state"]
            return state if isinstance(state, dict) else None
        except Exception:  # noqa: BLE001 - damaged (load_checkpoint says how), or no mmap
            continue
    return None


def saved_position(ckpt_dir: Path) -> str | None:
    """What last.pt holds, in words: epochs (and the steps of a checkpoint inside an epoch),
    or pretraining steps; None without a readable one."""
    state = saved_state(ckpt_dir)
    if state is None:
        return None
    if "epoch" in state:
        progress = state.get("progress") or {}
        steps, epoch = progress.get("steps"), state["epoch"] + 1
        inside = f" and {steps} step(s) of epoch {epoch}" if steps else ""
        if progress.get("trained"):  # saved while the epoch was evaluated
            inside = f" and the training of epoch {epoch} ({steps} steps; evaluated on resume)"
        elif progress.get("part"):  # saved during an evaluation inside the epoch
            inside = (f" and {steps} step(s) of epoch {epoch} (its evaluation after them "
                      "redone on resume)")
        return f"{state['epoch']} epoch(s){inside}"
    return f"{state['global_step']} pretraining step(s)" if "global_step" in state else None


def load_checkpoint(ckpt_dir: Path, log=print) -> Checkpoint | None:
    """The last checkpoint, if any. When last.pt cannot be read (a node died mid-write on a
    filesystem without atomic rename, a disk filled), the newest readable per-epoch checkpoint
    kept by `trainer.keep_checkpoints=all` takes its place, and the loop trims metrics.jsonl to
    it; without one, the error says what to do."""
    last = ckpt_dir / LAST
    kept = sorted(ckpt_dir.glob("epoch[0-9][0-9][0-9][0-9].pt"), reverse=True)
    if not last.exists() and not kept:
        return None
    failures = []
    for path in ([last] if last.exists() else []) + kept:
        read = read_checkpoint(path, TrainState)
        if read is None:  # truncated, empty, or not a checkpoint at all
            failures.append(path)
            continue
        state, payload = read
        if failures:
            log(f"WARNING: checkpoint(s) unreadable: {_damage(failures)}; resuming from an "
                "earlier one")
        log(f"resuming from {path} ({state.epoch} epoch(s) done)")
        state.flops_per_sample = {int(k): v for k, v in state.flops_per_sample.items()}
        state.switches = {int(k): v for k, v in state.switches.items()}
        return Checkpoint(state, own_names(payload["model"]), payload["optimizer"],
                          payload.get("average"), payload.get("scaler"))
    raise unreadable(ckpt_dir, failures, "epoch 1", ". To survive this next time, keep one "
                     "checkpoint per epoch with trainer.keep_checkpoints=all")


def read_checkpoint(path: Path, state_type: type) -> tuple | None:
    """(state, payload) of a checkpoint file, its `state` as `state_type` (TrainState, or
    pretraining's PretrainState); None when it cannot be read: `unreadable` says why."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return state_type(**payload["state"]), payload
    except Exception:  # noqa: BLE001 - truncated, empty, or not a checkpoint at all
        return None


def unreadable(ckpt_dir: Path, failures: list[Path], start: str, after: str = "") -> RunFileError:
    """The error for checkpoint files none of which could be read: each named damaged, and
    that deleting them trains the run again from `start` in its folder."""
    listed = " ".join(str(path) for path in failures)
    return RunFileError(
        f"no readable checkpoint in {ckpt_dir}: {_damage(failures)}. To train this run again "
        f"from {start} in its folder, delete {'it' if len(failures) == 1 else 'them'} (rm "
        f"{listed}): metrics.jsonl is then written anew from {start}, and plan.json, the "
        f"W&B run and its logs are kept{after}")


def _damage(paths: list[Path]) -> str:
    """What is wrong with checkpoint files torch could not load, in the user's words (torch's
    own text is about its zip reader, and suggests weights_only=False, wrong for a bad file)."""
    def what(path: Path) -> str:
        size = path.stat().st_size if path.exists() else 0
        if size == 0:
            return "empty"
        if not zipfile.is_zipfile(path):
            return f"damaged ({size} bytes: truncated, or not a checkpoint)"
        return "not a c2f checkpoint (a complete archive without a training state it can load)"
    return "; ".join(f"{path.name} is {what(path)}" for path in paths)


def own_names(model: dict) -> dict:
    """A model's weights under its own names. Checkpoints written inside an epoch by c2f before
    2026-11-29 saved the model as training wrapped it (`module.vit...` under DDP): those
    resume too."""
    wrapped = True
    while wrapped:
        wrapped = next((p for p in WRAPPERS if model and all(k.startswith(p) for k in model)),
                       None)
        if wrapped:
            model = {k[len(wrapped):]: v for k, v in model.items()}
    return model
