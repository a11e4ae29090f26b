"""Registry of model families: `@register_model("name")`, `model_family`, `list_models`.

A family says how to build a phase's model for an input shape, which compression methods and
factors C it takes (an unsupported pair fails at plan time, naming both), what a phase
transition moves (positional tables, patch kernels, or nothing), how published checkpoints
load, and, when it has its own, its feature settings. Every module of `c2f/models/` is
imported on first use, so a new model is one file there plus `conf/model/<preset>.yaml`.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from torch import nn

from c2f.compression import Compression, PhaseInput
from c2f.spec import ConfigError, ModelSpec

_REGISTRY: dict[str, type[ModelFamily]] = {}
_LOADED = False


class ModelFamily:
    """One architecture. Subclasses set `name` (by the decorator) and implement `build`."""

    name: str = ""
    compressions: tuple[str, ...] | None = None  # the methods it takes; None: all of them
    moves: str = "nothing"  # what a phase transition moves, in words (plan and docs)
    patches: bool = False  # tokenizes the input into patches (the plan shows grid and tokens)

    def check(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
              c: int) -> None:
        """ConfigError when this model cannot take `compression` at C = c or these shapes."""
        if self.compressions is not None and compression not in self.compressions \
                and not (compression == "none" and c == 1):
            raise ConfigError(
                f"`model.arch={self.name}` does not support `compression={compression}` "
                f"(C = {c}); it takes {', '.join(self.compressions)}")

    def build(self, spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
              patch: tuple[int, int], c: int = 1) -> nn.Module:
        """The model of one phase: input [batch, frames, mel], output logits."""
        raise NotImplementedError

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
        """Load `spec.pretrained` into `model`; the parameter names left at init."""
        raise ConfigError(f"`model.arch={self.name}` cannot load pretrained weights")


def register_model(name: str):
    """Class decorator: make a ModelFamily available as `model.arch=<name>`."""

    def wrap(cls: type[ModelFamily]) -> type[ModelFamily]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model `{name}` is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        package = importlib.import_module("c2f.models")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"c2f.models.{module.name}")
        _LOADED = True


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_family(arch: str) -> ModelFamily:
    """The family registered as `arch`; ConfigError naming the ones there are."""
    _load_all()
    if arch not in _REGISTRY:
        raise ConfigError(f"`model.arch`: unknown model {arch!r}; available: "
                          f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[arch]()
