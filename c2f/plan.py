"""The phase plan: schedule x compression x dataset x model -> phases, validated before training.

Knows nothing about training; counts predicted FLOPs on the meta device.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from c2f.compression import BaseInput, PhaseInput, compression_class, create_compression
from c2f.flops_cache import cache_key, cached, code_version
from c2f.models import build_model, model_family
from c2f.rehearsal import check_cheaper, rehearse
from c2f.run_refs import resolve_pretrained
from c2f.spec import (
    ConfigError,
    ModelSpec,
    PretrainSpec,
    RunSpec,
    ScheduleSpec,
)
from c2f.train.flops import predicted_flops_per_sample


@dataclass(frozen=True)
class Phase:
    index: int
    method: str
    c: int
    epochs: int
    input: PhaseInput
    grid: tuple[int, int] | None  # the patch grid (freq, time); None for models without patches
    flops_per_sample: int  # predicted training FLOPs (forward + backward) of one sample
    steps: int | None = None  # optimizer steps, for phases measured in steps (pretraining)

    @property
    def tokens(self) -> int | None:
        return None if self.grid is None else self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class PhasePlan:
    phases: tuple[Phase, ...]
    train_samples: int | None = None  # samples per epoch, when known
    batch_size: int | None = None  # samples per step (phases measured in steps)

    def samples(self, phase: Phase) -> int | None:
        """Training samples of a phase: its steps x batch, or its epochs x the training set."""
        if phase.steps is not None:
            return None if self.batch_size is None else phase.steps * self.batch_size
        return None if self.train_samples is None else phase.epochs * self.train_samples

    def predicted_flops(self) -> int | None:
        counts = [self.samples(p) for p in self.phases]
        if any(n is None for n in counts):
            return None
        return sum(p.flops_per_sample * n for p, n in zip(self.phases, counts))

    def to_dict(self) -> dict:
        return {"train_samples": self.train_samples, "predicted_flops": self.predicted_flops(),
                "phases": [dataclasses.asdict(p) | {"tokens": p.tokens} for p in self.phases]}


def phase_factors(schedule: ScheduleSpec) -> list[int]:
    """C of each phase, coarse to fine."""
    if schedule.phases:
        factors = list(schedule.phases)
        key = "schedule.phases"
    elif schedule.name == "baseline":
        factors, key = [schedule.c], "schedule.c"
    elif schedule.name in ("2phase", "adaptive"):
        factors, key = [schedule.c, 1], "schedule.c"
        if schedule.c < 2:
            raise ConfigError(f"`schedule.c`: {schedule.name} needs C >= 2 (C -> 1), got "
                              f"{schedule.c}; use schedule=baseline for C = 1")
    elif schedule.name == "3phase":
        factors, key = [schedule.c, schedule.c // 2, 1], "schedule.c"
        if schedule.c < 4 or schedule.c % 2:
            raise ConfigError("`schedule.c`: 3phase (C -> C/2 -> 1) needs an even C >= 4, "
                              f"got {schedule.c}; or give schedule.phases=[...] explicitly")
    else:
        raise ConfigError(f"`schedule.name`: unknown schedule {schedule.name!r}; use baseline, "
                          "2phase, 3phase, adaptive, or give schedule.phases=[C1, C2, ..., 1]")
    if not all(isinstance(c, int) and c >= 1 for c in factors):
        raise ConfigError(f"`{key}`: every C must be an integer >= 1, got {factors}")
    if len(factors) > 1 and (factors[-1] != 1 or any(a <= b for a, b in zip(factors,
                                                                             factors[1:]))):
        raise ConfigError(f"`{key}`: phases go coarse to fine, C falling to 1 at full "
                          f"resolution (e.g. [8, 4, 2, 1]), got {factors}; one phase at C "
                          "alone is schedule=baseline schedule.c=C")
    return factors


def phase_epochs(schedule: ScheduleSpec, budget: int, phases: int) -> list[int]:
    """Initial phases share `initial_fraction` of the budget; the final phase fills it. With
    adaptive switching (schedule.switch) the initial phases get their cap, `max_fraction` of
    the budget: they end earlier when their rule says so, and the final phase fills the rest."""
    if phases == 1:
        return [budget]
    switch = schedule.switch
    fraction = switch.max_fraction if switch else schedule.initial_fraction
    initial = max(1, round(fraction * budget / (phases - 1)))
    if switch:
        _check_switch(switch, initial, budget, phases)
    final = schedule.final_epochs or budget - initial * (phases - 1)
    if final < 1:
        raise ConfigError(
            f"`dataset.epochs`: a budget of {budget} epochs leaves no epoch for the final phase "
            f"after {phases - 1} initial phase(s) of {initial}; raise dataset.epochs or set "
            "schedule.final_epochs")
    return [initial] * (phases - 1) + [final]


def _check_switch(switch, cap: int, budget: int, phases: int) -> None:
    """An adaptive rule that can end a phase before its cap of `cap` epochs: refused when it
    cannot (the run would be a fixed schedule that says it adapts)."""
    share = (f"the cap of {cap} epoch(s) an initial phase may train ({switch.max_fraction:g} "
             f"of {budget} epochs over {phases - 1} initial phase(s))")
    if switch.min_epochs >= cap:
        raise ConfigError(f"`schedule.switch.min_epochs`={switch.min_epochs} is not less than "
                          f"{share}, so every phase would run its cap; lower it, or raise "
                          "schedule.switch.max_fraction or dataset.epochs")
    earliest = max(switch.min_epochs, switch.patience + 1)  # the rule's first chance to end it
    if earliest >= cap:
        raise ConfigError(f"`schedule.switch.patience`={switch.patience}: the {switch.rule} rule "
                          f"can end a phase after {earliest} epochs at the earliest, which is "
                          f"not before {share}, so every phase would run its cap; lower "
                          "patience, or raise schedule.switch.max_fraction or dataset.epochs")


def _check_switch_steps(switch, caps: list[int], eval_every: int) -> None:
    """The step-based counterpart of _check_switch (SSAST pretraining): a rule counts the
    evaluations of a phase (every `eval_every` steps and at its cap, the phase's steps), and
    is refused when none of those before the cap could end it."""
    earliest = max(switch.min_epochs, switch.patience + 1)  # evaluations, as epochs above
    for index, cap in enumerate(caps):
        evaluations = -(-cap // eval_every)  # the last one at the cap
        if earliest >= evaluations:
            raise ConfigError(
                f"`schedule.switch`: the {switch.rule} rule can end a phase after {earliest} "
                f"evaluations at the earliest (min_epochs={switch.min_epochs}, patience="
                f"{switch.patience}), and phase {index} (schedule.steps={cap}, an evaluation "
                f"every pretrain.eval_every={eval_every} steps) has {evaluations}, the last at "
                "its cap, so it would always run its cap; lower schedule.switch.patience or "
                "min_epochs, lower pretrain.eval_every, or raise its schedule.steps")


def at_full_resolution(spec: RunSpec, phase: Phase) -> Phase:
    """`phase` at C = 1, for building its model: the run's input uncompressed (a pretrained
    checkpoint is placed on this model, then moved to a coarse phase's:
    c2f/train/initial_weights.py); its grid and FLOPs stay the phase's."""
    return dataclasses.replace(phase, c=1, input=_phase_input(spec, 1))


def _phase_input(spec: RunSpec, c: int) -> PhaseInput:
    d, m = spec.dataset, spec.model
    base = BaseInput(d.frame_shift_ms, d.target_length, tuple(m.patch), d.timem)
    compression = create_compression(spec.compression.name, spec.compression.options)
    try:
        phase = compression.phase_input(base, c)
    except ValueError as err:
        raise ConfigError(f"`compression={spec.compression.name}` at C = {c}: {err}") from None
    model_family(m.arch).validate(m, spec.compression.name, phase, spec.num_mel_bins, c)
    return phase


def _lengths_that_fit(spec: RunSpec, factors: list[int], error: str) -> str:
    """For an input length that some phase cannot take: the nearest lengths below and above
    that every phase takes (one answer for all of them, where each phase's error names only its
    own multiple)."""
    if "target_length" not in error:
        return ""
    length = spec.dataset.target_length

    def fits(frames: int) -> bool:
        trial = dataclasses.replace(spec, dataset=dataclasses.replace(
            spec.dataset, target_length=frames))
        try:
            return all(_phase_input(trial, c) for c in factors)
        except ConfigError:
            return False
    below = next((t for t in range(length, max(0, length - 2048), -1) if fits(t)), None)
    above = next((t for t in range(max(length, 1), length + 2048) if fits(t)), None)
    found = sorted({t for t in (below, above) if t is not None})
    return "" if not found else (
        f". Every phase of this schedule (C = {', '.join(map(str, factors))}) takes "
        f"dataset.target_length={' or '.join(map(str, found))}, the nearest to {length}")


@functools.lru_cache(maxsize=256)
def _flops_per_sample(model: ModelSpec, num_classes: int, num_mel_bins: int, frames: int,
                      patch: tuple[int, int]) -> int:
    """Predicted training FLOPs of one sample; cached in memory and on disk (a sweep repeats
    few shapes, c2f/flops_cache.py)."""
    def factory():
        return build_model(model, num_classes=num_classes, num_mel_bins=num_mel_bins,
                           frames=frames, patch=patch)
    architecture = {k: v for k, v in dataclasses.asdict(model).items() if k not in (
        "name", "pretrained", "require_pretrained", "pretrained_grid")}
    key = cache_key(code_version(None, model.arch), "training flops per sample", architecture,
                    num_classes, num_mel_bins, frames, patch)
    return cached(key, lambda: predicted_flops_per_sample(factory, frames, num_mel_bins,
                                                          model.batch_mixup))


@functools.lru_cache(maxsize=64)
def _pretrain_flops_per_sample(model: ModelSpec, pretrain: PretrainSpec, num_mel_bins: int,
                               frames: int, patch: tuple[int, int]) -> int:
    """Predicted FLOPs of one sample of SSAST's joint objective (two masked passes)."""
    from c2f.models.ssast import pretrainer

    def factory():
        return pretrainer(model, pretrain, num_mel_bins=num_mel_bins, frames=frames,
                          patch=patch)
    architecture = {k: v for k, v in dataclasses.asdict(model).items() if k not in (
        "name", "pretrained", "require_pretrained", "pretrained_grid")}
    key = cache_key(code_version(None, model.arch), "pretraining flops per sample", architecture,
                    dataclasses.asdict(pretrain), num_mel_bins, frames, patch)
    return cached(key, lambda: predicted_flops_per_sample(factory, frames, num_mel_bins))


def build_plan(spec: RunSpec, train_samples: int | None = None) -> PhasePlan:
    """Build and validate the phase plan; fails before any data is read."""
    try:
        compression_class(spec.compression.name)
    except ValueError as err:
        raise ConfigError(f"`compression.name` (the `name:` of the compression yaml): "
                          f"{err}") from None
    resolve_pretrained(spec.model.pretrained, spec.runs_dir)  # says why a run is not usable
    if not spec.trainer.dry_run:  # a dry run says it as a note (c2f/train/job.py)
        model_family(spec.model.arch).check_pretrained(spec.model)
    factors = phase_factors(spec.schedule)
    steps = [None] * len(factors)
    if spec.pretrain is not None:
        steps = list(spec.schedule.steps)
        if len(steps) != len(factors):
            raise ConfigError(f"`schedule.steps`: {len(steps)} step counts for {len(factors)} "
                              f"phases (C = {factors}); give one per phase")
        epochs = [0] * len(factors)
        if spec.schedule.switch is not None:
            _check_switch_steps(spec.schedule.switch, steps[:-1], spec.pretrain.eval_every)
    else:
        epochs = phase_epochs(spec.schedule, spec.dataset.epochs, len(factors))
        _check_average(spec, epochs)
    try:
        inputs = [(c, _phase_input(spec, c)) for c in factors]
    except ConfigError as err:
        raise ConfigError(f"{err}{_lengths_that_fit(spec, factors, str(err))}") from None
    rehearse(spec, inputs)  # each phase's features, model and weight transfer, on meta
    phases = []
    for index, ((c, phase_input), n_epochs) in enumerate(zip(inputs, epochs)):
        grid = (spec.num_mel_bins // phase_input.patch[0],
                phase_input.model_frames // phase_input.patch[1]) \
            if model_family(spec.model.arch).patches else None
        if spec.pretrain is None:
            flops = _flops_per_sample(spec.model, spec.dataset.num_classes,
                                      spec.num_mel_bins, phase_input.model_frames,
                                      tuple(phase_input.patch))
        else:
            flops = _pretrain_flops_per_sample(spec.model, spec.pretrain, spec.num_mel_bins,
                                               phase_input.model_frames, tuple(phase_input.patch))
        phases.append(Phase(index, spec.compression.name, c, n_epochs, phase_input, grid, flops,
                            steps[index]))
    check_cheaper(spec, phases)
    return PhasePlan(tuple(phases), train_samples,
                     spec.dataset.batch_size if spec.pretrain else None)


def _check_average(spec: RunSpec, epochs: list[int]) -> None:
    """Weight averaging whose epochs (global, 1-based, final phase only: c2f/train/averaging.py)
    fall outside the run would average nothing, which shows only after training."""
    a = spec.average
    if a.mode == "none":
        return
    last, final_first = sum(epochs), sum(epochs) - epochs[-1] + 1
    if a.start > last:
        raise ConfigError(f"`average.start`={a.start} is after the run's last epoch ({last}, "
                          f"dataset.epochs): nothing would be averaged; set average.start <= "
                          f"{last}")
    if a.end is not None and a.end < final_first and spec.schedule.switch is None:
        raise ConfigError(f"`average.end`={a.end} comes before the final phase, which starts at "
                          f"epoch {final_first}: only final-phase epochs are averaged; set "
                          f"average.end >= {final_first} or null (the last epoch)")


# how the recipe line names dataset.balanced_sampler (c2f/data/sampling.py)
SAMPLERS = {False: "off", True: "on (AST's weights)", "classes": "on (class by class)"}
FLOPS_UNITS = ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs"))


def flops_unit(values, largest: str = "TFLOPs") -> tuple[float, str]:
    """The largest unit, `largest` at most (TFLOPs for a run, as the paper counts; GFLOPs per
    sample), in which every nonzero value shows at least 0.01 with three decimals: a tiny
    model's run does not read 0.000."""
    smallest = min((v for v in values if v), default=0)
    units = FLOPS_UNITS[[u for _, u in FLOPS_UNITS].index(largest):]
    return next(((scale, unit) for scale, unit in units if smallest >= 0.01 * scale),
                units[-1] if smallest else units[0])


def flops_text(value: float) -> str:
    """`8.791 TFLOPs`, `12.345 GFLOPs`: in the unit flops_unit picks."""
    scale, unit = flops_unit([value])
    return f"{value / scale:.3f} {unit}"


def format_plan(plan: PhasePlan) -> str:
    """The plan as a table, printed before training."""
    stepped = any(p.steps is not None for p in plan.phases)
    head = ("phase", "method", "C", "steps" if stepped else "epochs", "frames", "shift ms",
            "patch", "grid", "tokens")
    scale, unit = flops_unit((p.flops_per_sample for p in plan.phases), largest="GFLOPs")
    head = (*head, f"{unit}/sample")
    rows = [head]
    for p in plan.phases:
        rows.append((str(p.index), p.method, str(p.c), str(p.steps if stepped else p.epochs),
                     f"{p.input.fbank_frames}->{p.input.model_frames}",
                     f"{p.input.frame_shift_ms:g}",
                     "x".join(map(str, p.input.patch)) if p.grid else "-",
                     "x".join(map(str, p.grid)) if p.grid else "-",
                     str(p.tokens) if p.grid else "-", f"{p.flops_per_sample / scale:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    total = plan.predicted_flops()
    if total is not None and stepped:
        lines.append(f"predicted training compute: {flops_text(total)} over "
                     f"{sum(p.steps for p in plan.phases)} steps of {plan.batch_size} samples")
    elif total is not None:
        lines.append(f"predicted training compute: {flops_text(total)} over "
                     f"{sum(p.epochs for p in plan.phases)} epochs of {plan.train_samples} samples")
    return "\n".join(lines)


def _averaged_epochs(spec: RunSpec) -> str:
    """The global epochs weight averaging takes: `3..6` where a fixed schedule says where its
    final phase starts (only final-phase epochs are averaged), else `1..last, final-phase
    epochs only` (an adaptive schedule, SSAST's steps)."""
    a, phases = spec.average, len(phase_factors(spec.schedule))
    if phases == 1 or spec.schedule.switch is not None or spec.pretrain is not None:
        only = ", final-phase epochs only" if phases > 1 else ""
        return f"{a.start}..{a.end or 'last'}{only}"
    epochs = phase_epochs(spec.schedule, spec.dataset.epochs, phases)
    first = max(a.start, sum(epochs[:-1]) + 1)
    return f"{first}..{a.end or sum(epochs)} (final-phase epochs)"


def format_recipe(spec: RunSpec) -> str:
    """The training recipe in one line, printed with the plan (restarted at every phase)."""
    d, o, a, m = spec.dataset, spec.optim, spec.average, spec.model
    decay = {"multistep": f"x{o.gamma:g} every {o.milestones_step} epoch(s) from epoch "
                          f"{o.milestones_start}", "cosine": "cosine", "constant": "constant",
             "epoch_scales": f"x{list(o.scales or [])} by epoch"}
    average = "none" if a.mode == "none" else (
        f"{a.mode} {_averaged_epochs(spec)}" + (f" (k={a.k}" + (
            f", {a.evals_per_epoch} evaluations per epoch" if a.evals_per_epoch > 1 else "")
            + ")" if a.mode == "top_k" else ""))
    init = m.pretrained or "random"
    if spec.pretrain is not None:
        pre = spec.pretrain
        return (f"recipe: {o.name} lr {o.lr:g}, {_warmup(o)}, then x"
                f"{pre.lr_factor:g} when the eval masked-patch accuracy stalls for "
                f"{pre.lr_patience} evaluations; batch {d.batch_size}; SSAST objective "
                f"(InfoNCE + 10 x MSE), {pre.masked} of 512 patches masked in clusters "
                f"(scaled with C); eval and checkpoint every {pre.eval_every} steps on "
                f"{pre.eval_clips} clips; init {m.pretrained or 'random'}{_switching(spec)}")
    clip = f", gradients clipped at norm {o.grad_clip:g}" if o.grad_clip else ""
    return (f"recipe: {o.name} lr {o.lr:g}, {_warmup(o)}, "
            f"{decay[o.scheduler]}{clip}; batch {d.batch_size}, loss {d.loss}, {_mixup(spec)}, "
            f"masks {d.freqm}/{d.timem}{', noise' if d.noise else ''}, "
            f"balanced sampler {SAMPLERS.get(d.balanced_sampler, d.balanced_sampler)}"
            f"; average {average}; init {init}{_switching(spec)}")


def _mixup(spec: RunSpec) -> str:
    mix = spec.model.batch_mixup
    if mix is None:
        return f"mixup {spec.dataset.mixup:g}"
    loaded = " (2 clips per example)" if mix.pairing == "adjacent" else ""
    return (f"in-model mixup {mix.pairing}{loaded} Beta({mix.alpha:g}), targets "
            f"{'mixed' if mix.mix_targets else 'kept'}")


def _warmup(o) -> str:
    stairs = f" in {o.warmup_stairs} stairs" if o.warmup_stairs and o.warmup_steps else ""
    return f"warmup {o.warmup_steps} steps{stairs}"


def _switching(spec: RunSpec) -> str:
    """schedule=adaptive: the rule that ends the coarse phases (the plan shows their cap)."""
    w = spec.schedule.switch
    if w is None:
        return ""
    unit = "evaluations" if spec.pretrain is not None else "epochs"
    return (f"; coarse phases end by the {w.rule} rule (patience {w.patience} {unit}, min delta "
            f"{w.min_delta:g}, at least {w.min_epochs} {unit}), at most the "
            f"{'steps' if spec.pretrain is not None else 'epochs'} shown")
