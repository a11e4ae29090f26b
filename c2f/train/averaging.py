"""Weight averaging of epoch checkpoints, as AST and HTS-AT report their models.

- `epochs` (AST, src/traintest.py `validate_wa`): the mean of the models of epochs
  start..end, kept as a running sum (never every checkpoint).
- `top_k` (HTS-AT, main.py `weight_average`): the mean of the k models with the best eval
  metric among epochs start..end; the k candidates are kept as files, a worse one is deleted
  once a better one has replaced it in a checkpoint. With `evals_per_epoch` n > 1 (HTS-AT
  evaluates every 0.1 epoch: 10) the candidates are the models after each n-th of an epoch's
  steps (part j of n; part n is the epoch's end), ranked by an evaluation of their own.

Epochs are global and 1-based, as AST's wa_start/wa_end; only final-phase epochs count (the
models of earlier phases have other grids). The state is saved with every checkpoint, so a
resumed run averages the same models.
"""
from __future__ import annotations

from pathlib import Path

import torch

from c2f.epochs import defined
from c2f.files import atomic_torch_save
from c2f.spec import AverageSpec


class WeightAverager:
    """Collects the models to average, epoch by epoch; `average()` gives the mean state dict."""

    def __init__(self, spec: AverageSpec, last_epoch: int, folder: Path):
        self.spec, self.folder = spec, Path(folder)
        self.end = min(spec.end or last_epoch, last_epoch)
        self.epochs: list[int] = []  # epochs in the running sum (mode `epochs`)
        self.sum: dict[str, torch.Tensor] | None = None
        self.per = spec.evals_per_epoch  # candidates per epoch (top_k): parts 1..per
        self.kept: list[tuple[float, int, int]] = []  # (metric, epoch, part) of the top-k files
        self.undefined: list[int] = []  # epochs in range whose metric was undefined (top_k)
        self.evicted: list[tuple[int, int]] = []  # files to delete after the next checkpoint

    @property
    def enabled(self) -> bool:
        return self.spec.mode != "none"

    def wants(self, epoch: int, final_phase: bool) -> bool:
        return self.enabled and final_phase and self.spec.start <= epoch <= self.end

    def file(self, epoch: int, part: int | None = None) -> Path:
        inside = "" if part in (None, self.per) else f"_{part:02d}of{self.per:02d}"
        return self.folder / f"epoch{epoch:04d}{inside}.pt"

    def parts_due(self, step: int, steps: int, epoch: int, final_phase: bool) -> int | None:
        """The part (1..per-1) whose candidate the model is after step `step` (0-based) of
        `steps` of epoch `epoch` (global, 1-based): after steps*j//per steps, in an epoch the
        averaging takes; None elsewhere (and at the epoch's end, which `update` takes)."""
        if self.spec.mode != "top_k" or self.per == 1 or step + 1 >= steps or \
                not self.wants(epoch, final_phase):
            return None
        return next((j for j in range(1, self.per) if step + 1 == steps * j // self.per), None)

    def update(self, epoch: int, value: float, model: torch.nn.Module, final_phase: bool,
               write_files: bool = True, part: int | None = None) -> None:
        """Take epoch `epoch`'s model (eval metric `value`) if the averaging asks for it;
        `part`: a candidate from inside the epoch (`parts_due`), not its end."""
        if not self.wants(epoch, final_phase):
            return
        part = self.per if part is None else part
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if self.spec.mode == "epochs":
            if self.sum is None:
                self.sum = {k: v.clone() for k, v in state.items()}
            else:
                for key, tensor in state.items():
                    if tensor.is_floating_point():
                        self.sum[key] += tensor
                    else:  # integer buffers are not averaged: keep the latest
                        self.sum[key] = tensor.clone()
            self.epochs.append(epoch)
            return
        if not defined(value):  # an undefined metric ranks nowhere (c2f/epochs.py)
            self.undefined = sorted({*self.undefined, epoch})
            return
        new = (value, epoch, part)
        ranked = sorted([*self.kept, new], key=lambda vep: (-vep[0], vep[1], vep[2]))
        self.kept, dropped = ranked[: self.spec.k], ranked[self.spec.k:]
        if new in self.kept and write_files:
            atomic_torch_save(state, self.file(epoch, part))
        self.evicted += [(e, p) for _, e, p in dropped if (e, p) != (epoch, part)]

    def after_checkpoint(self) -> None:
        """Delete the top-k files that the checkpoint just written no longer lists."""
        for epoch, part in self.evicted:
            self.file(epoch, part).unlink(missing_ok=True)
        self.evicted = []

    def averaged_epochs(self) -> list[int | float]:
        """The epochs averaged; a candidate from inside an epoch as the epochs trained by then
        (part 3 of 10 of epoch 13: 12.3)."""
        if self.spec.mode == "epochs":
            return sorted(self.epochs)
        return sorted(e if p == self.per else round(e - 1 + p / self.per, 3)
                      for _, e, p in self.kept)

    def average(self) -> dict[str, torch.Tensor] | None:
        """The mean state dict, or None when no epoch was taken."""
        if self.spec.mode == "epochs":
            if self.sum is None:
                return None
            count = float(len(self.epochs))
            return {k: v / count if v.is_floating_point() else v for k, v in self.sum.items()}
        if not self.kept:
            return None
        total: dict[str, torch.Tensor] | None = None
        for _, epoch, part in sorted(self.kept, key=lambda vep: vep[1:]):
            state = torch.load(self.file(epoch, part), map_location="cpu", weights_only=True)
            if total is None:
                total = state
            else:
                for key, tensor in state.items():
                    total[key] = total[key] + tensor if tensor.is_floating_point() else tensor
        return {k: v / float(len(self.kept)) if v.is_floating_point() else v
                for k, v in total.items()}

    def nothing_averaged(self, metric: str) -> str:
        """Why `average()` is None: no final-phase epoch in range, or (top_k) none with a
        defined metric (an eval set where no class has both positives and negatives)."""
        span = f"{self.spec.start}..{self.end}"
        if self.undefined:
            return (f"average={self.spec.mode}: no final-phase epoch in {span} has a defined "
                    f"{metric} (epochs {', '.join(map(str, self.undefined))}: no class of the "
                    "eval set has both positives and negatives); nothing averaged")
        return f"average={self.spec.mode}: no final-phase epoch in {span}; nothing averaged"

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs), "sum": self.sum,
                "kept": [list(pair) for pair in self.kept], "undefined": list(self.undefined)}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore from a checkpoint; drop top-k files written after it (a crash in between)."""
        state = state or {}
        self.epochs = list(state.get("epochs", []))
        self.sum = state.get("sum")
        # (metric, epoch) in checkpoints written before evals_per_epoch: the epoch's end
        self.kept = [(float(v), int(e), int(p[0]) if p else self.per)
                     for v, e, *p in state.get("kept", [])]
        self.undefined = [int(e) for e in state.get("undefined", [])]
        if self.folder.is_dir():
            listed = {self.file(e, p).name for _, e, p in self.kept}
            for path in self.folder.glob("epoch*.pt"):
                if path.name not in listed:
                    path.unlink(missing_ok=True)
