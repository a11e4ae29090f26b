"""Build a phase's model through the registry."""
from __future__ import annotations

from torch import nn

from c2f.models.registry import model_family
from c2f.spec import ModelSpec


def build_model(model_spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
                patch: tuple[int, int], c: int = 1) -> nn.Module:
    """The model for one phase's input shape."""
    return model_family(model_spec.arch).build(model_spec, num_classes=num_classes,
                                               num_mel_bins=num_mel_bins, frames=frames,
                                               patch=patch, c=c)
