"""The phase loop: per phase rebuild the model, move weights, fresh optimizer; train, evaluate,
record and checkpoint every epoch. Resumes from the run directory by itself."""
from __future__ import annotations

import functools
import time

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from c2f.compression import create_compression
from c2f.data.dataset import item_seed
from c2f.data.frontend import Frontend
from c2f.data.sampling import train_draw
from c2f.epochs import metric_text
from c2f.files import atomic_torch_save
from c2f.models import build_model, model_family
from c2f.models.mixup import BatchMix, draw_batch_mix, loaded_per_step
from c2f.plan import Phase, PhasePlan, at_full_resolution
from c2f.spec import RunSpec
from c2f.track import RunDir
from c2f.tracker import Tracker
from c2f.train import stopping
from c2f.train.averaging import WeightAverager
from c2f.train.checkpoint import Checkpoint, TrainState, load_checkpoint, save_checkpoint
from c2f.train.distributed import World, all_sum, device_for, gather_objects, settled_clock
from c2f.train.evaluation import evaluate_epoch
from c2f.train.failures import explain_failure
from c2f.train.flops import batch_flops_per_sample
from c2f.train.graphs import GraphedModel, eval_model, graph_obstacle, use_graphs
from c2f.train.initial_weights import load_initial_weights
from c2f.train.metrics import classification_loss, json_scores
from c2f.train.optim import lr_at, make_optimizer, set_lr
from c2f.train.phase_data import DataBundle, PhaseData, build_phase_data, frontend_on_device
from c2f.train.precision import Precision, for_evaluation
from c2f.train.progress import MidEpoch
from c2f.train.records import average_record, averaged_record, epoch_record
from c2f.train.step import check_finite, forward_backward, micro_slices, split_note
from c2f.train.switching import adapted_phase, decide_after_epoch


class PhaseLoop:
    """Runs a PhasePlan for one RunSpec inside one run directory."""

    def __init__(self, spec: RunSpec, plan: PhasePlan, data: DataBundle, run: RunDir,
                 tracker: Tracker, log=print, world: World | None = None):
        self.spec, self.plan, self.data, self.run_dir, self.tracker, self.log = (
            spec, plan, data, run, tracker, log)
        self.world = world or World()
        self.compression = create_compression(spec.compression.name, spec.compression.options)
        self.skipped: dict[str, str] = {}
        self.silent: dict[str, set[int]] = {"train": set(), "eval": set()}
        self.device = device_for(self.world, spec.trainer.device)
        self.batch_size = spec.dataset.batch_size // self.world.size  # the global batch is split
        sampler = spec.dataset.balanced_sampler  # false: a plain shuffle (draw None)
        self.draw = train_draw(sampler, data.train) if sampler else None
        self.averager = WeightAverager(spec.average, sum(p.epochs for p in plan.phases),
                                       run.ckpt_dir / "top")
        self.precision = Precision(spec.trainer.precision, self.device)
        self.eval_precision = Precision(for_evaluation(spec.trainer.precision,
                                                       spec.trainer.eval_precision), self.device)
        # rows a step loads, and at most per forward (trainer.micro_batch, c2f/train/step.py)
        self.rows = loaded_per_step(spec.model.batch_mixup, self.batch_size)
        self.micro_rows = loaded_per_step(spec.model.batch_mixup, spec.trainer.micro_batch) \
            if spec.trainer.micro_batch else None
        self.split = len(micro_slices(self.rows, self.micro_rows)) > 1
        self.split_noted = False
        self.mid_epoch = MidEpoch(spec.trainer.checkpoint_minutes, self.world, self.device)
        self.trained_epoch: dict | None = None  # the progress of an epoch trained, evaluating
        self.evaluating: torch.nn.Module | None = None  # the phase's evaluable (_offer_part)

    # -- building blocks -------------------------------------------------------------------
    def _model(self, phase: Phase) -> torch.nn.Module:
        torch.manual_seed(item_seed(self.spec.seed, phase.index, -3))
        model = build_model(self.spec.model, num_classes=self.spec.dataset.num_classes,
                            num_mel_bins=self.spec.num_mel_bins, frames=phase.input.model_frames,
                            patch=phase.input.patch, c=phase.c)
        return model.to(self.device)

    def _phase_data(self, phase: Phase) -> PhaseData:
        frontend = Frontend(self.data.settings, phase.input, self.compression, phase.c,
                            frontend_on_device(self.spec.trainer.frontend))
        d, t = self.spec.dataset, self.spec.trainer
        return build_phase_data(frontend, self.data, seed=self.spec.seed, world=self.world,
                                device=self.device, batch_size=self.rows,
                                eval_batch_size=d.eval_batch_size, num_workers=t.num_workers,
                                draw=self.draw, cache_features=t.cache_features)

    def trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the training step calls: DDP-wrapped when distributed, compiled on request
        (`trainer.compile`), replayed as CUDA graphs (`trainer.cuda_graphs`, graphs.py)."""
        if self.world.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":  # batch statistics over all GPUs, as HTS-AT's
                # main.py trains (sync_batchnorm=True); NCCL only, and a no-op without BN (AST)
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = DistributedDataParallel(model, device_ids=ids)
        t = self.spec.trainer
        if self.split and not self.split_noted:  # once a run
            self.log(split_note(model, self.batch_size, t.micro_batch,
                                self.spec.model.batch_mixup is not None))
            self.split_noted = True
        if t.compile is not False:  # `default` under c2f's graphs: fused kernels, one launch
            model = torch.compile(model, mode=None if t.compile is True else t.compile)
        if use_graphs(t.cuda_graphs, graph_obstacle(self.device, self.world.active, t.compile,
                                                    self.split)):
            return GraphedModel(model, lambda: self.precision.autocast(cache=False), self.log,
                                strict=t.cuda_graphs is True, rows=self.rows)
        return model

    def evaluable(self, model: torch.nn.Module) -> torch.nn.Module:
        """What evaluation calls (c2f/train/graphs.py `eval_model`)."""
        return eval_model(model, self.spec.trainer, self.device, self.world.active,
                          self.eval_precision, self.spec.dataset.eval_batch_size, self.log)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return classification_loss(self.spec.dataset.loss, logits, target)

    def _mix(self, rows: int, *step: int) -> BatchMix | None:
        """The in-model mixup of one training step (`model.batch_mixup`), seeded by the step
        (phase, epoch, index) and this process's rank; None without one."""
        mixup = self.spec.model.batch_mixup
        if mixup is None:
            return None
        return draw_batch_mix(mixup, rows, item_seed(self.spec.seed, *step, -4, self.world.rank))

    def _note(self, batch: dict, split: str) -> int:
        """Remember skipped and silent clips of a batch; returns how many were skipped."""
        for clip in batch["skipped"]:
            self.skipped[clip.path] = clip.reason
        if batch["size"]:
            self.silent[split].update(batch["index"][batch["silent"]].tolist())
        return len(batch["skipped"])

    # -- one epoch -----------------------------------------------------------------------------
    def _offer_part(self, i, steps, phase: Phase, state: TrainState, model, trainable, data,
                    optimizer, progress) -> float:
        """After step i of `steps`: a top-k candidate from inside the epoch where one is due
        (average.evals_per_epoch), evaluated; the seconds that took (the epoch's time,
        training's, leaves them out). The RNG is as it was: the eval loader's first iterator
        draws a seed from it, and a resumed epoch must draw as the straight one did. A stop
        signal during it saves `progress()` (the training so far), the part redone on resume."""
        final = phase.index == len(self.plan.phases) - 1
        part = self.averager.parts_due(i, steps, state.epoch + 1, final)
        if part is None:
            return 0.0
        began, rng = settled_clock(self.device), torch.get_rng_state()
        self.trained_epoch = progress() | {"part": part}  # a collective under DDP
        value = json_scores(self._evaluate(self.evaluating, data, functools.partial(
            self._stop_in_evaluation, state, model, optimizer, data)))[self.spec.dataset.metric]
        self.trained_epoch = None
        self.averager.update(state.epoch + 1, value, model, final, self.world.is_main, part)
        trainable.train()
        torch.set_rng_state(rng)
        return settled_clock(self.device) - began

    def _train_epoch(self, phase: Phase, epoch: int, model, trainable, optimizer,
                     data: PhaseData, state: TrainState) -> dict:
        """One epoch of `trainable`; checkpoints save `model`, which it wraps (DDP, ...)."""
        spec = self.spec
        torch.manual_seed(item_seed(spec.seed, phase.index, epoch, -1))
        data.order.set_seed(item_seed(spec.seed, phase.index, epoch, -2))
        data.train_keys.set_epoch(phase.index, epoch)
        steps_per_epoch = min(len(data.train), spec.trainer.max_steps_per_epoch or len(data.train))
        total_steps = steps_per_epoch * phase.epochs
        trainable.train()
        # a resumed epoch: its consumed batches skipped, its sums and RNG states as they were;
        # untrained: good clips of steps skipped under DDP (World.skips)
        done, loss_sum, samples, skipped, before = self.mid_epoch.restore(state.progress)
        data.order.skip = done * self.rows
        if done:
            self.log(f"resuming phase {phase.index}'s epoch {epoch + 1} after {done} steps"
                     f"{' (all: evaluating it)' if state.progress.get('trained') else ''}")
        # the first step whose loss is not finite, found on the device; the host looks every
        # step on CPU (free there, and before the optimizer applies it) and every 10 on CUDA
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        counter = torch.full((), state.step, dtype=torch.long, device=self.device)
        eager, untrained = self.device.type != "cuda", state.progress.get("untrained", 0)
        lr = state.progress.get("lr", 0.0)  # saved after the epoch's last step: no step runs
        start = time.perf_counter() - before
        # one iterator (tqdm.auto would make a second: a persistent loader's prefetch lost)
        bar = tqdm(iter(data.train), total=steps_per_epoch, initial=done, leave=False,
                   disable=not (spec.trainer.progress and self.world.is_main),
                   desc=f"phase {phase.index} C={phase.c} epoch {epoch + 1}/{phase.epochs}")
        def progress(i: int) -> dict:  # the training so far, as a stop in a part saves it
            check_finite(first_bad, loss_sum, phase, epoch, self.world)  # never a bad step
            return self.mid_epoch.snapshot(i + 1, loss_sum, samples, skipped,
                                           time.perf_counter() - start, untrained)
        def offer_part(i: int) -> float:
            return self._offer_part(i, steps_per_epoch, phase, state, model, trainable, data,
                                    optimizer, functools.partial(progress, i))
        for i, batch in enumerate(bar, start=done):
            if done and i == done:
                self.mid_epoch.restore_rng(state.progress)
                if state.progress.get("part"):  # stopped in the evaluation after step done-1
                    start += offer_part(done - 1)
            if i >= steps_per_epoch:
                break
            skipped += self._note(batch, "train")
            skip, lost = self.world.skips(batch["size"], spec.dataset.on_bad_audio == "skip")
            if skip:
                untrained += lost
                start += offer_part(i)  # a part due after a skipped step is still due
                continue
            lr = lr_at(spec.optim, state.step, epoch, total_steps)
            set_lr(optimizer, lr)
            inputs = data.inputs(batch, train=True)
            target = batch["target"].to(self.device, non_blocking=self.device.type == "cuda")
            mix = self._mix(batch["size"], phase.index, epoch, i)
            optimizer.zero_grad(set_to_none=True)
            loss = forward_backward(trainable, inputs, target, mix, self._loss, self.precision,
                                    self.micro_rows)
            first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), counter, first_bad)
            counter += 1
            if eager or i % 10 == 9:
                check_finite(first_bad, loss, phase, epoch, self.world)
            self.precision.apply(optimizer, trainable.parameters(), spec.optim.grad_clip)
            samples += batch["size"]
            if self.tracker.wants_step(state.step):
                self.tracker.log_step({"loss": float(loss), "lr": lr},
                                      state.samples_cum + samples * self.world.size,
                                      phase_start=phase.c if state.step == 0 else None)
            state.step += 1
            loss_sum += loss.double() * batch["size"]
            if not bar.disable and i % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / samples:.3f}")
            start += offer_part(i)
            if i + 1 < steps_per_epoch and self.mid_epoch.due(i):
                check_finite(first_bad, loss, phase, epoch, self.world)  # never save a bad step
                state.progress = self.mid_epoch.snapshot(i + 1, loss_sum, samples, skipped,
                                                         time.perf_counter() - start, untrained)
                self._checkpoint(state, model, optimizer)
                stopping.after_checkpoint(self.mid_epoch.settled(self.mid_epoch.stop_agreed))
        if done and done >= steps_per_epoch:  # resumed after the last step: none was drawn
            self.mid_epoch.restore_rng(state.progress)
        seconds = settled_clock(self.device) - start  # the epoch's last steps done
        data.order.skip, state.progress = 0, {}
        # what a stop signal during the evaluation saves (a collective under DDP)
        self.trained_epoch = self.mid_epoch.snapshot(
            steps_per_epoch, loss_sum, samples, skipped, seconds, untrained) | {
                "lr": lr, "trained": True}
        check_finite(first_bad, loss_sum, phase, epoch, self.world)
        loss_sum, samples, skipped = all_sum([float(loss_sum), samples, skipped], self.world)
        return {"train_loss": loss_sum / max(samples, 1), "samples": int(samples),
                "seconds": seconds, "skipped": int(skipped), "lr": lr, "untrained": untrained}

    def _evaluate(self, model, data: PhaseData, before_batch=None) -> dict:
        return evaluate_epoch(model, data, world=self.world, precision=self.eval_precision,
                              num_classes=self.spec.dataset.num_classes,
                              multilabel=self.spec.dataset.multilabel, loss=self._loss,
                              note=self._note, before_batch=before_batch)

    def _stop_in_evaluation(self, state: TrainState, model, optimizer, data: PhaseData,
                            batch: int) -> None:
        """A stop signal during an evaluation saves the epoch's training, then acts."""
        if self.trained_epoch is None or not self.mid_epoch.stops_evaluation(
                batch, data.eval_batches_everywhere):
            return
        state.progress, self.trained_epoch = self.trained_epoch, None
        self._checkpoint(state, model, optimizer)
        state.progress = stopping.after_checkpoint(self.mid_epoch.settled(True)) or {}

    # -- the loop ------------------------------------------------------------------------------
    def _enter_phase(self, phase, previous_model, resumed: Checkpoint | None):
        """Model and optimizer for `phase`: from the checkpoint, or moved from the last phase."""
        model = self._model(phase)
        optimizer = make_optimizer(self.spec.optim, model.parameters())
        if resumed is not None:
            resumed.load_model(model, self.spec.model.arch, self.run_dir.path)
            optimizer.load_state_dict(resumed.optimizer)
            self.precision.load_state_dict(resumed.scaler)
        elif previous_model is not None:
            model_family(self.spec.model.arch).transfer(previous_model, model, self.compression)
        elif self.spec.model.pretrained:  # placed at full resolution, moved to this phase
            full, run = at_full_resolution(self.spec, phase), self.run_dir
            load_initial_weights(model, self.spec.model, self.compression, self.log,
                                 None if phase.c == 1 else lambda: self._model(full),
                                 run.record_initial_weights if self.world.is_main else None)
        return model, optimizer

    def _advance(self, phase: Phase, epoch: int, state: TrainState, stats: dict,
                 scores: dict) -> dict:
        """Advance the running totals by one epoch and return its metrics.jsonl record."""
        flops = state.flops_per_sample[phase.index] * stats["samples"]
        state.epoch += 1
        state.phase_epochs_done = epoch + 1
        state.flops_cum += flops
        state.seconds_cum += stats["seconds"]
        state.samples_cum += stats["samples"]
        final = phase.index == len(self.plan.phases) - 1
        return epoch_record(self.spec, phase, epoch, state, final, stats, scores, flops)

    def _save(self, records: list[dict], state: TrainState, model, optimizer) -> bool | None:
        """Metrics first, then the checkpoint: a crash between the two only repeats an epoch.
        Whether the ranks of a DDP run stop after it (MidEpoch.agree_to_stop)."""
        if self.world.is_main:
            self.run_dir.write_metrics(records)
        self._checkpoint(state, model, optimizer, self.spec.trainer.keep_checkpoints == "all")
        if self.world.is_main:
            self.averager.after_checkpoint()
            self.tracker.log(records[-1])
        return self.mid_epoch.agree_to_stop()  # under DDP also a barrier

    def _checkpoint(self, state: TrainState, model, optimizer, keep_all: bool = False) -> None:
        """last.pt (and epochNNNN.pt with keep_all), by rank 0; at an epoch's end or inside
        one (`state.progress`, c2f/train/progress.py)."""
        if self.world.is_main:
            with stopping.saving():  # a stop signal's grace time waits for the write
                save_checkpoint(self.run_dir.ckpt_dir, state, model, optimizer,
                                keep_all=keep_all, average=self.averager.state_dict(),
                                scaler=self.precision.state_dict())
        self.mid_epoch.restart_clock()

    def _note_silent(self, before: int) -> None:
        counts = {split: len(ids) for split, ids in self.silent.items()}
        if sum(counts.values()) > before:
            self.log(f"note: silent clips so far (where heard): {counts['train']} training, "
                     f"{counts['eval']} eval (silence is valid audio: kept)")

    def _average(self, records: list[dict], state: TrainState, phase: Phase, model, evaluable,
                 data: PhaseData) -> None:
        """Evaluate the averaged model once and record it; a resumed run finds it done."""
        if not self.averager.enabled or average_record(records) is not None:
            return
        averaged = self.averager.average()
        if averaged is None:
            self.log(self.averager.nothing_averaged(self.spec.dataset.metric))
            return
        model.load_state_dict(averaged)
        epochs = self.averager.averaged_epochs()
        record = averaged_record(self.spec, phase, state, epochs,
                                 self._evaluate(evaluable, data))
        records.append(record)
        if self.world.is_main:
            atomic_torch_save(averaged, self.run_dir.ckpt_dir / "average.pt")
            self.run_dir.write_metrics(records)

    def run(self) -> list[dict]:
        """Train every phase not yet done; returns all records."""
        loaded = load_checkpoint(self.run_dir.ckpt_dir, self.log)
        state = loaded.state if loaded else TrainState()
        self.averager.load_state_dict(loaded.average if loaded else None)
        records = self.run_dir.trained_records(state.epoch, self.log) if loaded else []
        self.tracker.replay(records)  # the epochs a killed attempt's W&B may not have written
        model = evaluable = data = phase = None
        epochs_bar = tqdm(total=sum(p.epochs for p in self.plan.phases), initial=state.epoch,
                          desc="epochs", disable=not (self.spec.trainer.progress
                                                      and self.world.is_main))
        for phase in self.plan.phases[state.phase:]:
            resumed = loaded if loaded and phase.index == state.phase else None
            model, optimizer = self._enter_phase(phase, model, resumed)
            if resumed is None:
                state.phase, state.phase_epochs_done, state.step = phase.index, 0, 0
            phase = adapted_phase(self.spec, self.plan, phase, state)
            loaded = None
            trainable, evaluable = self.trainable(model), self.evaluable(model)
            self.evaluating = evaluable  # also inside an epoch: _offer_part
            data = self._phase_data(phase)
            if phase.index not in state.flops_per_sample:
                state.flops_per_sample[phase.index] = batch_flops_per_sample(
                    model, data, lambda rows: self._mix(rows, -1, -1, 0))
            for epoch in range(state.phase_epochs_done, phase.epochs):
                silent_before = sum(len(ids) for ids in self.silent.values())
                try:
                    where = "training"
                    stats = self._train_epoch(phase, epoch, model, trainable, optimizer, data,
                                              state)
                    where = "evaluation"
                    scores = self._evaluate(evaluable, data, functools.partial(
                        self._stop_in_evaluation, state, model, optimizer, data))
                    self.trained_epoch = None
                except RuntimeError as err:  # out of device or shared memory: what to change
                    explain_failure(err, device=self.device.type, where=where,
                                    phase=phase.index, c=phase.c, batch=self.batch_size,
                                    micro=self.spec.trainer.micro_batch,
                                    workers=data.train.num_workers, epochs_done=state.epoch)
                    raise
                records.append(self._advance(phase, epoch, state, stats, scores))
                self.averager.update(state.epoch, records[-1]["value"], model,
                                     records[-1]["final_phase"], write_files=self.world.is_main)
                decide_after_epoch(self.spec, self.plan, phase, records, state, self.log,
                                   self.run_dir.record_switch if self.world.is_main else None)
                stopping.after_checkpoint(self._save(records, state, model, optimizer))
                self._note_silent(silent_before)
                epochs_bar.update(1)
                epochs_bar.set_postfix({records[-1]["metric"]: metric_text(records[-1]["value"])})
                if phase.index in state.switches:
                    break
        epochs_bar.close()
        self._average(records, state, phase, model, evaluable, data)
        for part in gather_objects(self.skipped, self.world):
            self.skipped.update(part)
        for split in self.silent:
            for part in gather_objects(self.silent[split], self.world):
                self.silent[split] |= part
        return records

