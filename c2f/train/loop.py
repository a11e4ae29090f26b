"""The phase loop: per phase rebuild the model, move weights, fresh optimizer; train, evaluate,
record and checkpoint every epoch. Resumes from the run directory by itself."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from c2f.compression import create_compression
from c2f.data.dataset import FeatureSettings, SpectrogramDataset, collate_skipping, item_seed
from c2f.data.manifest import Manifest
from c2f.models import build_model, transfer_weights
from c2f.models.build import load_pretrained
from c2f.plan import Phase, PhasePlan
from c2f.spec import RunSpec
from c2f.track import RunDir, Tracker
from c2f.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from c2f.train.flops import training_flops
from c2f.train.metrics import evaluate_scores
from c2f.train.optim import lr_at, make_optimizer, set_lr


@dataclass(frozen=True)
class DataBundle:
    train: Manifest
    eval: Manifest
    settings: FeatureSettings


class PhaseLoop:
    """Runs a PhasePlan for one RunSpec inside one run directory."""

    def __init__(self, spec: RunSpec, plan: PhasePlan, data: DataBundle, run: RunDir,
                 tracker: Tracker, log=print):
        self.spec, self.plan, self.data, self.run_dir, self.tracker, self.log = (
            spec, plan, data, run, tracker, log)
        self.compression = create_compression(spec.compression.name)
        self.skipped: dict[str, str] = {}
        device = spec.trainer.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)

    # -- building blocks -------------------------------------------------------------------
    def _model(self, phase: Phase) -> torch.nn.Module:
        torch.manual_seed(item_seed(self.spec.seed, phase.index, -3))
        d = self.spec.dataset
        model = build_model(self.spec.model, num_classes=d.num_classes,
                            num_mel_bins=d.num_mel_bins, frames=phase.input.model_frames,
                            patch=phase.input.patch)
        return model.to(self.device)

    def _dataset(self, phase: Phase, train: bool) -> SpectrogramDataset:
        manifest = self.data.train if train else self.data.eval
        return SpectrogramDataset(manifest, self.data.settings, phase.input, self.compression,
                                  phase.c, train=train, seed=self.spec.seed)

    def _loader(self, dataset, batch_size: int, shuffle_seed: int | None) -> DataLoader:
        generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle_seed is not None,
                          generator=generator, collate_fn=collate_skipping,
                          num_workers=self.spec.trainer.num_workers)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.spec.dataset.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, target)  # soft targets are fine (mixup)

    def _note_skipped(self, batch: dict) -> int:
        for clip in batch["skipped"]:
            self.skipped[clip.path] = clip.reason
        return len(batch["skipped"])

    # -- one epoch -----------------------------------------------------------------------------
    def _measure_flops(self, model, dataset) -> int:
        """FLOPs per sample from one real batch of this phase's shape (not timed)."""
        batch = collate_skipping([dataset[i] for i in range(min(len(dataset), 4))])
        if batch["size"] == 0:
            raise RuntimeError("the first training clips are all bad; cannot count FLOPs")
        return training_flops(model, batch["spec"].to(self.device)) // batch["size"]

    def _train_epoch(self, phase: Phase, epoch: int, model, optimizer, dataset,
                     state: TrainState) -> dict:
        spec = self.spec
        dataset.set_epoch(phase.index, epoch)
        torch.manual_seed(item_seed(spec.seed, phase.index, epoch, -1))
        loader = self._loader(dataset, spec.dataset.batch_size,
                              item_seed(spec.seed, phase.index, epoch, -2))
        steps_per_epoch = len(loader) if spec.trainer.max_steps_per_epoch is None else min(
            len(loader), spec.trainer.max_steps_per_epoch)
        total_steps = steps_per_epoch * phase.epochs
        model.train()
        loss_sum, samples, skipped, lr = 0.0, 0, 0, 0.0
        start = time.perf_counter()
        bar = tqdm(loader, total=steps_per_epoch, leave=False, disable=not spec.trainer.progress,
                   desc=f"phase {phase.index} C={phase.c} epoch {epoch + 1}/{phase.epochs}")
        for i, batch in enumerate(bar):
            if i >= steps_per_epoch:
                break
            skipped += self._note_skipped(batch)
            if batch["size"] == 0:
                continue
            lr = lr_at(spec.optim, state.step, epoch, total_steps)
            set_lr(optimizer, lr)
            spec_in, target = batch["spec"].to(self.device), batch["target"].to(self.device)
            loss = self._loss(model(spec_in), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
            optimizer.step()
            state.step += 1
            samples += batch["size"]
            loss_sum += loss.item() * batch["size"]
            bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds = time.perf_counter() - start
        return {"train_loss": loss_sum / max(samples, 1), "samples": samples,
                "seconds": seconds, "skipped": skipped, "lr": lr}

    @torch.no_grad()
    def _evaluate(self, model, dataset) -> dict:
        model.eval()
        logits, targets, skipped = [], [], 0
        for batch in self._loader(dataset, self.spec.dataset.eval_batch_size, None):
            skipped += self._note_skipped(batch)
            if batch["size"]:
                logits.append(model(batch["spec"].to(self.device)).float().cpu())
                targets.append(batch["target"])
        if not logits:
            raise RuntimeError("no usable clip in the eval set")
        logits_t, targets_t = torch.cat(logits), torch.cat(targets)
        scores = evaluate_scores(logits_t.numpy(), targets_t.numpy(), self.spec.dataset.multilabel)
        scores["eval_loss"] = float(self._loss(logits_t, targets_t))
        scores["eval_skipped"] = skipped
        return scores

    # -- the loop ------------------------------------------------------------------------------
    def _enter_phase(self, phase, previous_model, resumed):
        """Model and optimizer for `phase`: from the checkpoint, or moved from the last phase."""
        model = self._model(phase)
        optimizer = make_optimizer(self.spec.optim, model.parameters())
        if resumed is not None:
            model.load_state_dict(resumed[0])
            optimizer.load_state_dict(resumed[1])
        elif previous_model is not None:
            transfer_weights(previous_model, model, self.compression.resize_patch_embed)
        elif self.spec.model.pretrained:
            m = self.spec.model
            left = load_pretrained(model, m.pretrained, m.pretrained_grid)
            self.log(f"loaded {m.pretrained}; left at init: {', '.join(left) or '-'}")
        return model, optimizer

    def run(self) -> list[dict]:
        """Train every phase not yet done; returns all epoch records."""
        loaded = load_checkpoint(self.run_dir.ckpt_dir)
        state = loaded[0] if loaded else TrainState()
        records = [r for r in self.run_dir.read_metrics() if r["epoch"] <= state.epoch]
        metric = self.spec.dataset.metric
        model = None
        total_epochs = sum(p.epochs for p in self.plan.phases)
        epochs_bar = tqdm(total=total_epochs, initial=state.epoch, desc="epochs",
                          disable=not self.spec.trainer.progress)
        for phase in self.plan.phases[state.phase:]:
            resumed = loaded[1:] if loaded and phase.index == state.phase else None
            model, optimizer = self._enter_phase(phase, model, resumed)
            if resumed is None:
                state.phase, state.phase_epochs_done, state.step = phase.index, 0, 0
            loaded = None
            train_set, eval_set = self._dataset(phase, True), self._dataset(phase, False)
            if phase.index not in state.flops_per_sample:
                state.flops_per_sample[phase.index] = self._measure_flops(model, train_set)
            for epoch in range(state.phase_epochs_done, phase.epochs):
                stats = self._train_epoch(phase, epoch, model, optimizer, train_set, state)
                scores = self._evaluate(model, eval_set)
                flops = state.flops_per_sample[phase.index] * stats["samples"]
                state.epoch += 1
                state.phase_epochs_done = epoch + 1
                state.flops_cum += flops
                state.seconds_cum += stats["seconds"]
                state.samples_cum += stats["samples"]
                record = {
                    "run": self.spec.run_id, "dataset": self.spec.dataset.name,
                    "model": self.spec.model.name, "method": self.spec.compression.name,
                    "schedule": self.spec.schedule.name, "seed": self.spec.seed,
                    "C": phase.c, "phase": phase.index, "phase_epoch": epoch + 1,
                    "epoch": state.epoch, "final_phase": phase.index == len(self.plan.phases) - 1,
                    "metric": metric, "value": scores[metric], **scores,
                    "train_loss": stats["train_loss"], "lr": stats["lr"],
                    "flops": flops, "flops_cum": state.flops_cum,
                    "seconds": stats["seconds"], "seconds_cum": state.seconds_cum,
                    "samples": stats["samples"], "samples_cum": state.samples_cum,
                    "skipped": stats["skipped"],
                }
                records.append(record)
                self.run_dir.write_metrics(records)  # metrics first: a crash between the two
                save_checkpoint(self.run_dir.ckpt_dir, state, model, optimizer,  # only repeats
                                keep_all=self.spec.trainer.keep_checkpoints == "all")  # an epoch
                self.tracker.log(record)
                epochs_bar.update(1)
                epochs_bar.set_postfix({metric: f"{scores[metric]:.4f}"})
        epochs_bar.close()
        return records


def summarize(spec: RunSpec, plan: PhasePlan, records: list[dict], skipped: dict) -> dict:
    """Headline numbers of a finished run."""
    metric = spec.dataset.metric
    best = max(records, key=lambda r: (r["value"], -r["epoch"]))
    last = records[-1]
    return {
        "run": spec.run_id, "status": "finished", "dataset": spec.dataset.name,
        "model": spec.model.name, "method": spec.compression.name,
        "schedule": spec.schedule.name, "phases": [p.c for p in plan.phases], "seed": spec.seed,
        "metric": metric, "best": best["value"], "best_epoch": best["epoch"],
        "final": last["value"], "epochs": last["epoch"], "flops": last["flops_cum"],
        "seconds": last["seconds_cum"], "skipped_clips": len(skipped),
        "per_phase": [asdict(p.input) | {"c": p.c, "epochs": p.epochs} for p in plan.phases],
        "chance": float(np.round(1.0 / spec.dataset.num_classes, 4)),
    }
