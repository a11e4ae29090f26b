"""A rehearsal of a run's phases before any data is read: what a method's `transform` makes of
each phase's features, what each phase's model returns, and the weight transfer from phase to
phase, on the meta device (no memory, no compute; about half a second for AST-Base, and cached
on disk with the FLOPs predictions, c2f/flops_cache.py).

Without it, a method whose `transform` does not give the frames its `phase_input` promised, a
model whose parameters depend on the input length but that keeps the default `transfer`, or a
patch method without `resize_patch_embed`, would pass the plan and fail (or, for a model that
takes any length, silently train a "coarse" phase at full resolution) only after the first
phase has trained.
"""
from __future__ import annotations

import dataclasses

import torch

from c2f.compression import Compression, PhaseInput, create_compression
from c2f.flops_cache import cache_key, cached, code_version
from c2f.models import build_model, model_family
from c2f.models.mixup import draw_batch_mix
from c2f.registry import raised_at
from c2f.spec import ConfigError, RunSpec
from c2f.train.flops import meta_limit

ROWS = 2  # clips in the rehearsal's batch


def rehearse(spec: RunSpec, phases: list[tuple[int, PhaseInput]]) -> None:
    """ConfigError naming the method or the model, the phase and the hook to fix when one of
    `phases` ((C, input) in order) would fail or train other than planned."""
    compression = create_compression(spec.compression.name, spec.compression.options)
    for index, (c, phase) in enumerate(phases):
        _check_transform(spec, compression, index, c, phase)
    if spec.pretrain is not None:  # SSAST's pretrainer moves its weights in its own way
        return
    model = {k: v for k, v in dataclasses.asdict(spec.model).items() if k != "name"}
    key = cache_key(code_version(spec.compression.name, spec.model.arch), "rehearsal", model,
                    spec.dataset.num_classes, spec.num_mel_bins,
                    spec.compression.name, spec.compression.options,
                    [(c, p.model_frames, p.patch) for c, p in phases])
    try:
        cached(key, lambda: _rehearse_models(spec, compression, phases, "meta"))
    except _MetaLimit:  # a forward that reads a value: on a batch of zeros on the CPU
        cached(key, lambda: _rehearse_models(spec, compression, phases, "cpu"))


def _check_transform(spec: RunSpec, compression: Compression, index: int, c: int,
                     phase: PhaseInput) -> None:
    """The method's `transform` turns the phase's features into what `phase_input` says the
    model sees (on zeros: a transform is cheap, and may use what the meta device lacks)."""
    mel = spec.num_mel_bins
    where = f"`compression={spec.compression.name}` at C = {c} (phase {index})"
    try:
        out = compression.transform(torch.zeros(ROWS, phase.fbank_frames, mel), c)
    except Exception as err:  # a plugin's code: any error, named
        raise ConfigError(f"{where}: transform fails on features [{ROWS}, {phase.fbank_frames}, "
                          f"{mel}]: {_said(err)}{raised_at(err)}") from None
    want = (ROWS, phase.model_frames, mel)
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) == 3 and shape[-1] != mel:
        raise ConfigError(f"{where}: transform turned features [{ROWS}, {phase.fbank_frames}, "
                          f"{mel}] into {list(shape)}: it changed the mel axis ({mel} bins, "
                          "dataset.num_mel_bins), which a compression method keeps; compress "
                          f"time only (the frames axis, to {phase.model_frames})")
    if shape != want:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where}: transform turned features [{ROWS}, {phase.fbank_frames}, "
                          f"{mel}] into {got}, but its phase_input says the model sees "
                          f"{phase.model_frames} frames; make transform return [..., "
                          f"{phase.model_frames}, {mel}] or phase_input say what it returns")
    probe = torch.randn(ROWS, phase.fbank_frames, mel, generator=torch.Generator().manual_seed(0))
    if c == 1 and not torch.equal(compression.transform(probe, 1), probe):
        raise ConfigError(f"{where}: transform changes the features at C = 1, where every "
                          "method leaves them as they are (the full-resolution phase; a "
                          "trained model is used without its method's code); return them "
                          "unchanged when c == 1")


def _rehearse_models(spec: RunSpec, compression: Compression,
                     phases: list[tuple[int, PhaseInput]], device: str) -> int:
    """Build each phase's model on `device` (meta, or the CPU for a model the meta device
    cannot run), run its forward, move the previous phase's weights into it; 1 when all went
    well (the value the cache keeps)."""
    family, mel = model_family(spec.model.arch), spec.num_mel_bins
    name = f"`model.arch={spec.model.arch}`"
    previous = None
    for index, (c, phase) in enumerate(phases):
        where = (f"phase {index} (compression={spec.compression.name}, C = {c}, input "
                 f"[{ROWS}, {phase.model_frames}, {mel}])")
        try:
            with torch.device(device):
                model = build_model(spec.model, num_classes=spec.dataset.num_classes,
                                    num_mel_bins=mel, frames=phase.model_frames,
                                    patch=tuple(phase.patch), c=c)
                mix = {} if spec.model.batch_mixup is None else {
                    "mix": draw_batch_mix(spec.model.batch_mixup, ROWS, 0)}
                out = model(torch.zeros(ROWS, phase.model_frames, mel), **mix)
        except Exception as err:
            if device == "meta" and meta_limit(err):
                raise _MetaLimit from err
            raise ConfigError(f"{name} fails on {where}: {_said(err)}{raised_at(err)}; "
                              f"{_fix(err)}") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or \
                out.shape[1] != spec.dataset.num_classes:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"{name}: forward returns {got} on {where}; it must return "
                              f"logits [batch, {spec.dataset.num_classes}] (dataset.num_classes)")
        if previous is not None:
            try:
                family.transfer(previous, model, compression)
            except Exception as err:
                if device == "meta" and meta_limit(err):
                    raise _MetaLimit from err
                raise ConfigError(
                    f"{name}: moving phase {index - 1}'s weights into {where} fails: "
                    f"{_said(err)}. A model whose parameters depend on the input "
                    "length overrides ModelFamily.transfer (as c2f/models/ast.py does); a method "
                    "that reshapes patches overrides Compression.resize_patch_embed (as "
                    "c2f/compression/patch.py does)") from None
        previous = model
    return 1


def check_cheaper(spec: RunSpec, phases: list) -> None:
    """ConfigError when a coarse phase (plan.Phase, C above the finest phase's) is not
    predicted cheaper than the finest phase: the model ignores what the method changes, and
    the "coarse" phase would train at full cost."""
    finest = min(phases, key=lambda phase: phase.c)
    for phase in phases:
        if phase.c > finest.c and phase.flops_per_sample >= finest.flops_per_sample:
            raise ConfigError(
                f"`model.arch={spec.model.arch}` with `compression={spec.compression.name}`: "
                f"phase {phase.index} at C = {phase.c} is predicted to cost "
                f"{phase.flops_per_sample:,} FLOPs per sample, as much as phase "
                f"{finest.index} at C = {finest.c}: the model ignores what the method changes "
                f"(it sees {phase.input.model_frames} frames instead of "
                f"{finest.input.model_frames}, patch {tuple(phase.input.patch)} instead of "
                f"{tuple(finest.input.patch)}); a model must build its layers for `build`'s "
                "`frames` and `patch` (reshapable_patches = True: its patch embedding from "
                "`patch`), not resize its input to a fixed size")


class _MetaLimit(Exception):
    """The rehearsal met what the meta device cannot run (c2f/train/flops.py, meta_limit)."""


SHAPE_WORDS = ("size", "shape", "dimension", "mat1", "kernel", "divisible", "tile")


def _fix(err: Exception) -> str:
    """What to do about a model that fails on a phase's input: a shape it cannot take is
    refused in its check; any other error is a mistake in its code."""
    if isinstance(err, (RuntimeError, ValueError, IndexError)) and any(
            word in str(err).lower() for word in SHAPE_WORDS):
        return "refuse such shapes in its check (ModelFamily.check)"
    return "fix the model's build or forward there"


def _said(err: Exception) -> str:
    """An error on one line: its type and message, without a closing period."""
    return f"{type(err).__name__}: {' '.join(str(err).split()).rstrip('.')}"
