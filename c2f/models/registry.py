"""Registry of model families: `@register_model("name")`, `model_family`, `list_models`.

A family says how to build a phase's model for an input shape, which compression methods and
factors C it takes (an unsupported pair fails at plan time, naming both), what a phase
transition moves (positional tables, patch kernels, or nothing), how published checkpoints
load, and, when it has its own, its feature settings. Every module of `c2f/models/` is
imported on first use, so a new model is one file there plus `conf/model/<preset>.yaml`.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch import nn

from c2f.compression import Compression, PhaseInput, compression_class, list_compressions
from c2f.registry import Registry
from c2f.spec import ConfigError, ModelSpec
from c2f.spec_types import own_options

# ModelSpec's keys that describe one built-in architecture (c2f/spec.py); each family lists in
# `reads` those its `build` reads. A new family's own hyperparameters go in `options`.
ARCHITECTURE_KEYS = frozenset({"patch", "embed_dim", "depth", "num_heads", "mlp_ratio",
                               "dist_token", "drop_path", "pretrained_grid", "pool", "channels",
                               "depths", "heads", "chunk"})


class ModelFamily:
    """One architecture. Subclasses set `name` (by the decorator) and implement `build`."""

    name: str = ""
    # takes the methods that reshape its patches (patch_bl, patch_pi); every model takes the
    # methods that only compress its input features (fshift, pool_avg, pool_max, a new one)
    reshapable_patches: bool = False
    moves: str = "nothing"  # what a phase transition moves, in words (plan and docs)
    patches: bool = False  # tokenizes the input into patches (the plan shows grid and tokens)
    batch_mixup: bool = False  # its forward takes `mix` (c2f/models/mixup.py): model.batch_mixup
    # a frozen dataclass of the model's own keys, with defaults (`model.options.<key>` in its
    # preset or on the command line); `own_options(spec)` reads them; None: it has none
    options: type | None = None
    reads: frozenset[str] = frozenset()  # the ARCHITECTURE_KEYS its `build` reads

    def validate(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
                 c: int) -> None:
        """ConfigError when this model cannot take `compression` at C = c or these shapes: the
        checks every family gets (the method pairing, its options, in-model mixup), then the
        family's own `check`. The plan calls this; a family overrides `check` only."""
        if type(self).build is ModelFamily.build:
            raise ConfigError(self._no_build())
        if not self.takes(compression):
            raise ConfigError(
                f"`model.arch={self.name}` does not support `compression={compression}` "
                f"(C = {c}): the method reshapes the patches, and {self.name} takes only "
                f"methods that compress its input features: {', '.join(self.methods())}")
        if compression_class(compression).reshapes_patches and not self.patches:
            raise ConfigError(
                f"`model.arch={self.name}` sets reshapable_patches = True but not patches = "
                f"True: `compression={compression}` reshapes the patches the model tokenizes "
                "its input into (`build`'s `patch`), and this one has none, so its coarse "
                "phase would train at full cost; remove reshapable_patches (it then takes the "
                "methods that compress the features), or build the patches from `patch` and "
                "set patches = True")
        self.own_options(spec)  # names unknown or mistyped keys before anything is built
        if spec.batch_mixup is not None and not self.batch_mixup:
            raise ConfigError(f"`model.batch_mixup`: `model.arch={self.name}` does not mix "
                              "inside the model; remove it (AST mixes waveforms: dataset.mixup)")
        self.check(spec, compression, phase, num_mel_bins, c)

    def check(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
              c: int) -> None:
        """The family's own refusals (ConfigError) of shapes or settings it cannot take, such
        as a patch that does not tile the input; none by default. The pairing with methods
        and the options are checked before it (`validate`)."""

    def own_options(self, spec: ModelSpec) -> Any:
        """`model.options` as this family's `options` dataclass (None when it has none)."""
        return own_options(self.options, spec.options, "model", f"`model.arch={self.name}`",
                           spec.name)

    def takes(self, compression: str) -> bool:
        """Whether this model trains with the compression method registered as `compression`."""
        return self.reshapable_patches or not compression_class(compression).reshapes_patches

    def methods(self) -> list[str]:
        """The registered compression methods this model takes."""
        return [name for name in list_compressions() if self.takes(name)]

    def build(self, spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
              patch: tuple[int, int], c: int = 1) -> nn.Module:
        """The model of one phase: input [batch, frames, mel], output logits."""
        raise ConfigError(self._no_build())

    def _no_build(self) -> str:
        cls = type(self)
        return (f"`model.arch={self.name}`: {cls.__name__} ({inspect.getsourcefile(cls)}) does "
                "not define `build` (a misspelled name counts as none), which returns the "
                "phase's model: `def build(self, spec, *, num_classes, num_mel_bins, frames, "
                "patch, c=1)`, as the README's \"Adding a model\" describes")

    def transfer(self, old: nn.Module, new: nn.Module, compression: Compression) -> None:
        """Move the weights of the previous phase's model into `new` (default: every tensor
        as it is, for models whose parameters do not depend on the input's length)."""
        new.load_state_dict({k: v.detach().clone() for k, v in old.state_dict().items()},
                            strict=True)

    def check_pretrained(self, spec: ModelSpec) -> None:
        """Fail before training when `model.pretrained` names no file."""
        if spec.pretrained and not Path(spec.pretrained).expanduser().is_file():
            raise ConfigError(f"`model.pretrained`={spec.pretrained}: no such file; c2f never "
                              "downloads weights: save the checkpoint locally and fix the path")
        if spec.require_pretrained and not spec.pretrained:
            raise ConfigError(f"`model.pretrained` is required for `model={spec.name}`; give a "
                              "local checkpoint or add `model.require_pretrained=false`")

    def load_pretrained(self, model: nn.Module, spec: ModelSpec,
                        compression: Compression) -> list[str]:
        """Load `spec.pretrained` into `model`; the parameter names left at init (a list, or
        weights_file.LeftAtInit, which also says which of the file's tensors were not used)."""
        raise ConfigError(f"`model.arch={self.name}` cannot load pretrained weights")


_REGISTRY = Registry("c2f.models", "model", ModelFamily,
                     own=("ast", "cnn14", "htsat"))
register_model = _REGISTRY.register  # class decorator: `model.arch=<name>`


def list_models() -> list[str]:
    return _REGISTRY.names()


def model_family(arch: str) -> ModelFamily:
    """The family registered as `arch`; ConfigError naming the ones there are."""
    cls = _REGISTRY.get(arch)
    if cls is None:
        raise ConfigError(f"`model.arch`: {_REGISTRY.unknown(arch)}")
    return cls()


def refuse_unread_overrides(arch: str, overrides) -> None:
    """ConfigError for a command-line `model.<key>=...` of an architecture key (ARCHITECTURE_KEYS)
    that `arch`'s family does not read: it would change the run's id and its report row, not its
    model (`model=cnn14 model.depth=4`). Keys set by presets are not checked: `model.arch=<new>`
    on the default ast_tiny preset keeps AST's keys, unread."""
    family = model_family(arch)
    for text in overrides:
        key, assigned, _ = text.lstrip("+").partition("=")
        name = key.removeprefix("model.")
        if not assigned or name == key or name not in ARCHITECTURE_KEYS or name in \
                family.reads or (name == "patch" and family.patches):  # build's `patch`
            continue
        readers = [m for m in list_models() if name in model_family(m).reads]
        reads = ", ".join(f"model.{k}" for k in sorted(family.reads)) or "none of these keys"
        own = family.options
        where = f"{arch} reads {reads}" + (
            f"; its own keys go under model.options ({', '.join(own.__dataclass_fields__)})"
            if own is not None else "")
        raise ConfigError(f"`{text}`: model.arch={arch} does not read model.{name} (a key of "
                          f"{', '.join(readers) or 'no model'}): it would change the run's id, "
                          f"not its model; remove it ({where})")


def load_by_names(model: nn.Module, path: str, wrappers: tuple[str, ...],
                  prefixes: tuple[str, ...], expected: str, heads: tuple[str, ...] = (),
                  preset: str = "", inputs: tuple[str, ...] = ()) -> list[str]:
    """Load a checkpoint file into `model` by parameter names: the state dict is unwrapped
    from the first of `wrappers` present ({"model": ...}, {"state_dict": ...}), `prefixes` are
    stripped from its keys, tensors of another shape are skipped; the names left at init (with
    the file's tensors not used: weights_file.LeftAtInit).
    ConfigError when no parameter matches (`expected`: the names it should have), or when one
    outside the classifier (`heads`, name prefixes: a head of another class count stays at
    init) and the layers sized by the input (`inputs`: CNN14's and HTS-AT's bn0, one weight
    per mel bin, stays at init for another mel count) has another shape: a checkpoint of
    another size (`preset`: the model it fits)."""
    from c2f.models.weights_file import looks_like, read_state_dict, take_usable

    raw = read_state_dict(path, wrappers, expected)
    state = {}
    for key, value in raw.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        state[key] = value
    usable, left = take_usable(state, model)
    if not usable:
        raise ConfigError(f"`model.pretrained`={path}: no parameter of this model found "
                          f"(expected {expected}){looks_like(raw)}")
    other = [f"{key} {why}" for key, why in sorted(left.unused.items())
             if why.startswith("shape") and not key.startswith(heads + inputs)]
    if other:
        raise ConfigError(
            f"`model.pretrained`={path}: a model of another size: {len(other)} of its tensors "
            f"have this model's names but other shapes ({'; '.join(other[:3])}); pick the "
            f"preset of its size{f' ({preset})' if preset else ''} or the model.* widths it "
            "was trained with, or train from random weights (leave model.pretrained out)")
    model.load_state_dict(usable, strict=False)
    return left
