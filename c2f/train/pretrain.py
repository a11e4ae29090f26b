"""Self-supervised pretraining in phases measured in optimizer steps (SSAST).

Each phase builds SSAST's pretrainer for its input (c2f/models/ssast.py), moves the previous
phase's weights into it (the encoder as AST moves between phases, the mask embedding and the
heads as they are), and restarts the optimizer, warmup and plateau schedule (paper §2.2). Every
`pretrain.eval_every` steps and at the end of a phase it measures the masked-patch accuracy and
InfoNCE on fixed masks of the eval clips, writes a metrics.jsonl record and a checkpoint; in
between, every `trainer.checkpoint_minutes` and on a stop signal (c2f/train/stopping.py), a
checkpoint that also holds the running sums since the last evaluation. A run killed at any
moment resumes from its last checkpoint mid-phase (mid-pass too: the sampler skips what was
consumed) and ends bitwise equal on CPU: data order, masks and torch's RNG are seeded by
(seed, phase, pass or step).

Recipe (SSAST src/traintest_mask.py): Adam, weight decay 5e-7, betas (0.95, 0.999), a warmup
over the first 1000 steps, then ReduceLROnPlateau (mode max on the eval accuracy, factor 0.5,
patience 2 evaluations).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from c2f.compression import create_compression
from c2f.data.dataset import item_seed
from c2f.data.frontend import Frontend
from c2f.epochs import final_phase
from c2f.files import atomic_torch_save
from c2f.models import model_family
from c2f.models.ssast import SSASTPretrainer, cluster_mask, pretrainer
from c2f.plan import Phase, PhasePlan
from c2f.spec import RunSpec
from c2f.track import RunDir, RunFileError
from c2f.tracker import Tracker
from c2f.train import stopping
from c2f.train.checkpoint import read_checkpoint, unreadable
from c2f.train.distributed import World, all_sum, settled_clock
from c2f.train.optim import lr_at, make_optimizer, set_lr
from c2f.train.phase_data import DataBundle, PhaseData, build_phase_data, frontend_on_device
from c2f.train.precision import Precision, for_evaluation
from c2f.train.progress import MidEpoch
from c2f.train.switching import phase_decision

LAST = "last.pt"
STATS = ("loss", "acc", "nce", "mse")


@dataclass
class PretrainState:
    """Where pretraining stands: the phase, its step, the data pass and the batches of it
    consumed, the plateau schedule, and running totals across phases."""

    phase: int = 0
    step: int = 0  # optimizer steps done in the phase
    passes: int = 0  # completed passes over the training data in the phase
    offset: int = 0  # batches of the current pass already consumed
    global_step: int = 0
    lr_scale: float = 1.0  # ReduceLROnPlateau's factor so far
    best: float = float("-inf")  # best eval accuracy of the phase
    bad: int = 0  # evaluations since the best one
    flops_cum: int = 0
    seconds_cum: float = 0.0
    samples_cum: int = 0
    switches: dict[int, int] = field(default_factory=dict)  # adaptive: phase -> steps it ran
    # a checkpoint between two evaluations (trainer.checkpoint_minutes, a stop signal): the
    # running sums since the last one, over the ranks ({"sums", "samples", "seconds"})
    interval: dict = field(default_factory=dict)


def draw_masks(generator: torch.Generator, model: SSASTPretrainer, batch: int,
               cluster: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent SSAST masks per clip: one for InfoNCE, one for reconstruction."""
    def one() -> torch.Tensor:
        return torch.stack([cluster_mask(generator, model.grid, model.masked, cluster)
                            for _ in range(batch)])
    return one(), one()


class PretrainLoop:
    def __init__(self, spec: RunSpec, plan: PhasePlan, data: DataBundle, run: RunDir,
                 tracker: Tracker, log, world: World, device: torch.device):
        self.spec, self.plan, self.data, self.rundir = spec, plan, data, run
        self.tracker, self.log, self.world, self.device = tracker, log, world, device
        self.compression = create_compression(spec.compression.name, spec.compression.options)
        self.batch_size = spec.dataset.batch_size // world.size
        # SSAST's traintest_mask.py trains under autocast with a GradScaler, as AST does
        self.precision = Precision(spec.trainer.precision, device)
        self.eval_precision = Precision(for_evaluation(spec.trainer.precision,
                                                       spec.trainer.eval_precision), device)
        self.mid = MidEpoch(spec.trainer.checkpoint_minutes, world, device)

    def _model(self, phase: Phase) -> SSASTPretrainer:
        torch.manual_seed(item_seed(self.spec.seed, phase.index, -3))
        return pretrainer(self.spec.model, self.spec.pretrain, num_mel_bins=self.spec.num_mel_bins,
                          frames=phase.input.model_frames, patch=phase.input.patch
                          ).to(self.device)

    def _move(self, old: SSASTPretrainer, new: SSASTPretrainer) -> None:
        """The encoder as AST moves; the mask embedding and the per-patch heads as they are."""
        model_family("ast").transfer(old.encoder, new.encoder, self.compression)
        own = {k: v for k, v in old.state_dict().items() if not k.startswith("encoder.")}
        new.load_state_dict(own, strict=False)

    def _phase_data(self, phase: Phase) -> PhaseData:
        frontend = Frontend(self.data.settings, phase.input, self.compression, phase.c,
                            frontend_on_device(self.spec.trainer.frontend))
        t = self.spec.trainer
        return build_phase_data(frontend, self.data, seed=self.spec.seed, world=self.world,
                                device=self.device, batch_size=self.batch_size,
                                eval_batch_size=self.spec.dataset.eval_batch_size,
                                num_workers=t.num_workers, draw=None,
                                cache_features=t.cache_features)

    @torch.no_grad()
    def _evaluate(self, model: SSASTPretrainer, data: PhaseData) -> dict:
        """Masked-patch accuracy, InfoNCE and MSE on the first eval clips, with masks fixed per
        clip (the same at every evaluation of a phase)."""
        model.eval()
        sums, count = torch.zeros(3, dtype=torch.float64), 0
        for batch in data.eval:
            if count >= self.spec.pretrain.eval_clips:
                break
            if batch["size"] == 0:
                continue
            inputs = data.inputs(batch, train=False)  # features in float, as training's
            masks = [torch.stack([cluster_mask(torch.Generator().manual_seed(
                item_seed(self.spec.seed, int(i), which)), model.grid, model.masked,
                self.spec.pretrain.cluster) for i in batch["index"]]).to(self.device)
                for which in (-6, -7)]
            with self.eval_precision.autocast():
                out = model.objective(inputs, *masks)
            size = batch["size"]
            sums += torch.tensor([float(out["acc"]), float(out["nce"]), float(out["mse"])],
                                 dtype=torch.float64) * size
            count += size
        model.train()
        sums, count = all_sum(sums.tolist(), self.world), all_sum([count], self.world)[0]
        acc, nce, mse = (s / max(count, 1) for s in sums)
        return {"eval_acc": acc, "eval_nce": nce, "eval_mse": mse, "eval_clips": int(count)}

    def _plateau(self, state: PretrainState, value: float) -> None:
        """ReduceLROnPlateau(mode max, factor, patience) on the eval accuracy."""
        pre = self.spec.pretrain
        if value > state.best:
            state.best, state.bad = value, 0
            return
        state.bad += 1
        if state.bad > pre.lr_patience:
            state.lr_scale *= pre.lr_factor
            state.bad = 0

    def _checkpoint(self, state: PretrainState, model, optimizer, records: list[dict]) -> None:
        self.mid.restart_clock()
        if not self.world.is_main:
            return
        self.rundir.write_metrics(records)
        with stopping.saving():  # a stop signal's grace time waits for the write
            atomic_torch_save({"state": asdict(state), "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "precision": self.precision.state_dict()},
                              self.rundir.ckpt_dir / LAST)

    def _resume(self) -> tuple[PretrainState, dict | None]:
        """last.pt's state and payload; one that cannot be read is an error naming it."""
        path = self.rundir.ckpt_dir / LAST
        if not path.exists():
            return PretrainState(), None
        read = read_checkpoint(path, PretrainState)
        if read is None:
            raise unreadable(self.rundir.ckpt_dir, [path], "step 1")
        state, payload = read
        state.switches = {int(k): v for k, v in state.switches.items()}
        return state, payload

    def _trained_records(self, state: PretrainState) -> list[dict]:
        """metrics.jsonl's records of the evaluations the checkpoint has trained (each
        `eval_every` steps of a phase and at its end); refuses (RunFileError) when some are
        missing: the summary would be judged without them."""
        kept = [r for r in self.rundir.read_metrics(self.log)
                if r.get("global_step", 0) <= state.global_step]
        if state.global_step == 0:
            return kept
        expected, offset, every = [], 0, self.spec.pretrain.eval_every
        for phase in self.plan.phases[:state.phase + 1]:
            ran = state.step if phase.index == state.phase else \
                state.switches.get(phase.index, phase.steps)
            between = phase.index == state.phase and state.interval  # not an evaluation
            steps = {*range(every, ran + 1, every), *([] if between else [ran])}
            expected += sorted(offset + step for step in steps)
            offset += ran
        have = {r.get("global_step") for r in kept}
        missing = [step for step in expected if step not in have]
        if not missing:
            return kept
        shown = ", ".join(map(str, missing[:6])) + (", ..." if len(missing) > 6 else "")
        raise RunFileError(
            f"{self.rundir.metrics_path} lacks the record(s) of {len(missing)} of the "
            f"{len(expected)} evaluation(s) the checkpoint in {self.rundir.ckpt_dir} has "
            f"trained (global steps {shown}): the run's results would be judged without them. "
            "Restore the file from a copy and run the same command again, or delete "
            f"{self.rundir.ckpt_dir} to train the run again from step 1")

    # -- adaptive switching (schedule=adaptive): in evaluations, every eval_every steps ------
    def _steps(self, phase: Phase, state: PretrainState) -> int:
        """The steps `phase` trains: its plan's, what a switched phase ran, or for the final
        phase of an adaptive run what the earlier phases left of the total."""
        if self.spec.schedule.switch is None:
            return phase.steps
        if phase.index in state.switches:
            return state.switches[phase.index]
        if phase.index == len(self.plan.phases) - 1:
            total = sum(p.steps for p in self.plan.phases)
            return total - (state.global_step - state.step)
        return phase.steps

    def _decide_switch(self, phase: Phase, state: PretrainState, records: list[dict]) -> bool:
        """After an evaluation of a non-final adaptive phase: whether the phase ends there
        (the rule's patience and minimum count evaluations; the cap is the plan's steps)."""
        decision = phase_decision(self.spec.schedule.switch, self.plan, phase.index, records,
                                  state.step, phase.steps, "step")
        if decision is None:
            return False
        state.switches[phase.index] = state.step
        decision |= {"global_step": state.global_step, "flops_cum": state.flops_cum}
        records[-1]["switch"] = decision
        self.log(f"phase {phase.index} (C = {phase.c}) ends after {state.step} steps: "
                 f"{decision['reason']}")
        if self.world.is_main:
            self.rundir.record_switch(decision, sum(p.steps for p in self.plan.phases))
        return True

    def run(self) -> list[dict]:
        spec = self.spec
        state, payload = self._resume()
        records = self._trained_records(state)
        self.tracker.replay(records)  # the evaluations a killed attempt's W&B may not have
        if payload is not None:
            self.log(f"resuming at phase {state.phase}, step {state.step} "
                     f"({state.global_step} steps done)")
        previous = None
        for phase in self.plan.phases:
            if phase.index < state.phase:
                continue
            model = self._model(phase)
            optimizer = make_optimizer(spec.optim, model.parameters())
            if payload is not None and phase.index == state.phase:
                model.load_state_dict(payload["model"])
                optimizer.load_state_dict(payload["optimizer"])
                self.precision.load_state_dict(payload.get("precision"))
            elif previous is not None:
                self._move(previous, model)
            trainable = model
            if self.world.active:
                ids = [self.device.index] if self.device.type == "cuda" else None
                trainable = DistributedDataParallel(model, device_ids=ids)
            data = self._phase_data(phase)
            self._train_phase(phase, model, trainable, optimizer, data, state, records)
            previous = model
            state = PretrainState(phase=phase.index + 1, global_step=state.global_step,
                                  flops_cum=state.flops_cum, seconds_cum=state.seconds_cum,
                                  samples_cum=state.samples_cum, switches=state.switches)
            payload = None
        return records

    def _train_phase(self, phase: Phase, model: SSASTPretrainer, trainable, optimizer,
                     data: PhaseData, state: PretrainState, records: list[dict]) -> None:
        spec, pre = self.spec, self.spec.pretrain
        # summed on the device, read at evaluations: a read per step would wait for the GPU
        sums = torch.zeros(len(STATS), dtype=torch.float64, device=self.device)
        samples, start = 0, time.perf_counter()
        if state.interval:  # resumed between two evaluations: rank 0 holds the ranks' sums
            if self.world.is_main:
                sums += torch.tensor(state.interval["sums"], dtype=torch.float64,
                                     device=self.device)
                samples = state.interval["samples"]
            start -= state.interval["seconds"]
            state.interval = {}
        steps, ended = self._steps(phase, state), False
        model.train()
        while state.step < steps and not ended:
            data.order.set_seed(item_seed(spec.seed, phase.index, state.passes, -2))
            data.order.skip = state.offset * self.batch_size
            data.train_keys.set_epoch(phase.index, state.passes)
            for batch in data.train:
                state.offset += 1
                if batch["size"] == 0:
                    continue
                torch.manual_seed(item_seed(spec.seed, phase.index, state.step, -1))
                generator = torch.Generator().manual_seed(
                    item_seed(spec.seed, phase.index, state.step, -5))
                mask_c, mask_g = draw_masks(generator, model, batch["size"], pre.cluster)
                lr = lr_at(spec.optim, state.step, 0, steps) * state.lr_scale
                set_lr(optimizer, lr)
                inputs = data.inputs(batch, train=True)
                with self.precision.autocast():
                    loss = trainable(inputs, mask_c.to(self.device), mask_g.to(self.device))
                optimizer.zero_grad(set_to_none=True)
                self.precision.backward(loss.float())
                self.precision.apply(optimizer, model.parameters(), spec.optim.grad_clip)
                last = model.last
                sums += torch.stack([torch.as_tensor(last[k], device=self.device).double()
                                     for k in STATS]) * batch["size"]
                samples += batch["size"]
                state.step += 1
                state.global_step += 1
                if state.step % pre.eval_every == 0 or state.step == steps:
                    seconds = settled_clock(self.device) - start  # the last steps done
                    record = self._record(phase, model, data, state, sums, samples, seconds,
                                          lr)
                    records.append(record)
                    ended = self._decide_switch(phase, state, records)
                    self.tracker.log(record)
                    self._checkpoint(state, model, optimizer, records)
                    stopping.after_checkpoint(self.mid.agree_to_stop())
                    sums.zero_()
                    samples, start = 0, time.perf_counter()
                elif self.mid.due(state.step - 1):  # between evaluations, what a resume needs
                    totals = all_sum([*sums.tolist(), samples], self.world)
                    state.interval = {"sums": totals[:-1], "samples": int(totals[-1]),
                                      "seconds": time.perf_counter() - start}
                    self._checkpoint(state, model, optimizer, records)
                    state.interval = {}
                    stopping.after_checkpoint(self.mid.settled(self.mid.stop_agreed))
                if state.step == steps or ended:
                    break
            else:
                state.passes, state.offset = state.passes + 1, 0
        data.order.skip = 0

    def _record(self, phase: Phase, model, data: PhaseData, state: PretrainState,
                sums: torch.Tensor, samples: int, seconds: float, lr: float) -> dict:
        totals = all_sum([*sums.tolist(), samples], self.world)
        samples = int(totals[-1])
        train = {f"train_{k}": v / max(samples, 1) for k, v in zip(STATS, totals[:-1])}
        flops = phase.flops_per_sample * samples
        state.flops_cum += flops
        state.seconds_cum += seconds
        state.samples_cum += samples
        scores = self._evaluate(model, data)
        self._plateau(state, scores["eval_acc"])
        steps = self._steps(phase, state)
        self.log(f"phase {phase.index} C={phase.c} step {state.step}/{steps}: loss "
                 f"{train['train_loss']:.4f}, masked-patch acc {scores['eval_acc']:.4f} "
                 f"(eval), InfoNCE {scores['eval_nce']:.4f}")
        return {"kind": "pretrain", "run": self.spec.run_id, "dataset": self.spec.dataset.name,
                "model": self.spec.model.name, "method": self.spec.compression.name,
                "C": phase.c, "phase": phase.index, "step": state.step,
                "global_step": state.global_step, "final_phase":
                phase.index == len(self.plan.phases) - 1, "metric": "acc",
                "value": scores["eval_acc"], **train, **scores, "lr": lr,
                "flops": flops, "flops_cum": state.flops_cum, "seconds": seconds,
                "seconds_cum": state.seconds_cum, "samples": samples,
                "samples_cum": state.samples_cum}


def pretrain_summary(spec: RunSpec, records: list[dict]) -> dict:
    """summary.json of a pretraining run: the final and best masked-patch accuracy on the eval
    clips of the final phase (earlier phases mask fewer patches: another task), the compute,
    and where the weights are (for fine-tuning)."""
    last = records[-1]
    final = final_phase(records)
    return {"run": spec.run_id, "status": "finished", "kind": "pretrain", "metric": "acc",
            "best": max(r["value"] for r in final), "final": last["value"],
            "steps": last["global_step"], "flops": last["flops_cum"],
            "seconds": last["seconds_cum"], "samples": last["samples_cum"],
            "checkpoint": "ckpt/last.pt"}
