"""The phase loop: per phase rebuild the model, move weights, fresh optimizer; train, evaluate,
record and checkpoint every epoch. Resumes from the run directory by itself."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
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
from c2f.train.distributed import (
    ShardedShuffle,
    World,
    all_gather,
    all_sum,
    barrier,
    device_for,
    eval_indices,
    gather_objects,
)
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
                 tracker: Tracker, log=print, world: World | None = None):
        self.spec, self.plan, self.data, self.run_dir, self.tracker, self.log = (
            spec, plan, data, run, tracker, log)
        self.world = world or World()
        self.compression = create_compression(spec.compression.name)
        self.skipped: dict[str, str] = {}
        self.device = device_for(self.world, spec.trainer.device)
        self.batch_size = spec.dataset.batch_size // self.world.size  # the global batch is split
        self.sample_weights = balanced_weights(data.train) if spec.dataset.balanced_sampler \
            else None

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

    def _loader(self, dataset, batch_size: int, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          collate_fn=collate_skipping, num_workers=self.spec.trainer.num_workers)

    def _parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.world.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

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
        sampler = ShardedShuffle(len(dataset), item_seed(spec.seed, phase.index, epoch, -2),
                                 self.world, self.sample_weights)
        loader = self._loader(dataset, self.batch_size, sampler)
        steps_per_epoch = len(loader) if spec.trainer.max_steps_per_epoch is None else min(
            len(loader), spec.trainer.max_steps_per_epoch)
        total_steps = steps_per_epoch * phase.epochs
        model.train()
        loss_sum, samples, skipped, lr = 0.0, 0, 0, 0.0
        start = time.perf_counter()
        bar = tqdm(loader, total=steps_per_epoch, leave=False,
                   disable=not (spec.trainer.progress and self.world.is_main),
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
        loss_sum, samples, skipped = all_sum([loss_sum, samples, skipped], self.world)
        return {"train_loss": loss_sum / max(samples, 1), "samples": int(samples),
                "seconds": seconds, "skipped": int(skipped), "lr": lr}

    @torch.no_grad()
    def _evaluate(self, model, dataset) -> dict:
        model.eval()
        logits, targets, skipped = [], [], 0
        shard = Subset(dataset, eval_indices(len(dataset), self.world))
        for batch in self._loader(shard, self.spec.dataset.eval_batch_size):
            skipped += self._note_skipped(batch)
            if batch["size"]:
                logits.append(model(batch["spec"].to(self.device)).float().cpu())
                targets.append(batch["target"])
        classes = self.spec.dataset.num_classes
        logits_np = all_gather(torch.cat(logits).numpy() if logits else np.zeros((0, classes),
                                                                                  np.float32),
                               self.world)
        targets_np = all_gather(torch.cat(targets).numpy() if targets else np.zeros((0, classes),
                                                                                    np.float32),
                                self.world)
        if not len(logits_np):
            raise RuntimeError("no usable clip in the eval set")
        logits_t, targets_t = torch.from_numpy(logits_np), torch.from_numpy(targets_np)
        scores = evaluate_scores(logits_t.numpy(), targets_t.numpy(), self.spec.dataset.multilabel)
        scores["eval_loss"] = float(self._loss(logits_t, targets_t))
        scores["eval_skipped"] = int(all_sum([skipped], self.world)[0])
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

    def _record(self, phase: Phase, epoch: int, state: TrainState, stats: dict,
                scores: dict) -> dict:
        """Advance the running totals by one epoch and return its metrics.jsonl record."""
        flops = state.flops_per_sample[phase.index] * stats["samples"]
        state.epoch += 1
        state.phase_epochs_done = epoch + 1
        state.flops_cum += flops
        state.seconds_cum += stats["seconds"]
        state.samples_cum += stats["samples"]
        spec, metric = self.spec, self.spec.dataset.metric
        return {
            "run": spec.run_id, "dataset": spec.dataset.name, "model": spec.model.name,
            "method": spec.compression.name, "schedule": spec.schedule.name, "seed": spec.seed,
            "C": phase.c, "phase": phase.index, "phase_epoch": epoch + 1, "epoch": state.epoch,
            "final_phase": phase.index == len(self.plan.phases) - 1,
            "metric": metric, "value": scores[metric], **scores,
            "train_loss": stats["train_loss"], "lr": stats["lr"],
            "flops": flops, "flops_cum": state.flops_cum,
            "seconds": stats["seconds"], "seconds_cum": state.seconds_cum,
            "samples": stats["samples"], "samples_cum": state.samples_cum,
            "skipped": stats["skipped"],
        }

    def _save(self, records: list[dict], state: TrainState, model, optimizer) -> None:
        """Metrics first, then the checkpoint: a crash between the two only repeats an epoch."""
        if self.world.is_main:
            self.run_dir.write_metrics(records)
            save_checkpoint(self.run_dir.ckpt_dir, state, model, optimizer,
                            keep_all=self.spec.trainer.keep_checkpoints == "all")
            self.tracker.log(records[-1])
        barrier(self.world)

    def run(self) -> list[dict]:
        """Train every phase not yet done; returns all epoch records."""
        loaded = load_checkpoint(self.run_dir.ckpt_dir)
        state = loaded[0] if loaded else TrainState()
        records = [r for r in self.run_dir.read_metrics() if r["epoch"] <= state.epoch]
        model = None
        epochs_bar = tqdm(total=sum(p.epochs for p in self.plan.phases), initial=state.epoch,
                          desc="epochs", disable=not (self.spec.trainer.progress
                                                      and self.world.is_main))
        for phase in self.plan.phases[state.phase:]:
            resumed = loaded[1:] if loaded and phase.index == state.phase else None
            model, optimizer = self._enter_phase(phase, model, resumed)
            if resumed is None:
                state.phase, state.phase_epochs_done, state.step = phase.index, 0, 0
            loaded = None
            trainable = self._parallel(model)
            train_set, eval_set = self._dataset(phase, True), self._dataset(phase, False)
            if phase.index not in state.flops_per_sample:
                state.flops_per_sample[phase.index] = self._measure_flops(model, train_set)
            for epoch in range(state.phase_epochs_done, phase.epochs):
                stats = self._train_epoch(phase, epoch, trainable, optimizer, train_set, state)
                scores = self._evaluate(model, eval_set)
                records.append(self._record(phase, epoch, state, stats, scores))
                self._save(records, state, model, optimizer)
                epochs_bar.update(1)
                epochs_bar.set_postfix({records[-1]["metric"]: f"{records[-1]['value']:.4f}"})
        epochs_bar.close()
        for part in gather_objects(self.skipped, self.world):
            self.skipped.update(part)
        return records


def balanced_weights(manifest: Manifest) -> torch.Tensor:
    """AST's balanced sampling: class weight 1000 / (count + 0.01); a clip sums its labels'."""
    counts = np.zeros(manifest.num_classes)
    for clip in manifest.clips:
        counts[list(clip.label_ids)] += 1
    class_weight = 1000.0 / (counts + 0.01)
    return torch.tensor([class_weight[list(c.label_ids)].sum() for c in manifest.clips])


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
