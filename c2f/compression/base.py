"""What a temporal compression method is: how a factor C changes features, tokens and weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from c2f.spec_types import own_options


@dataclass(frozen=True)
class BaseInput:
    """The full-resolution (C = 1) input of a dataset and model."""

    frame_shift_ms: float
    target_length: int  # fbank frames at C = 1
    patch: tuple[int, int]  # (freq, time)
    time_mask: int  # SpecAugment time-mask width at C = 1, in frames


@dataclass(frozen=True)
class PhaseInput:
    """What one phase feeds the model for a given C."""

    frame_shift_ms: float  # kaldi frame shift of the fbank
    fbank_frames: int  # frames extracted, after pad/crop
    model_frames: int  # frames the model sees, after `transform`
    patch: tuple[int, int]
    time_mask: int


class Compression:
    """A compression method. Subclasses override only what they change; C = 1 is always identity.

    Adding a method = one file in this folder with a `@register("name")` class, plus
    `conf/compression/name.yaml`.
    """

    name: str = ""
    # its name in the report's tables, plots and dashboard ("Fshift", "Avg Pool"); None: `name`
    title: str | None = None
    # The method changes the patch shape and moves the patch-embedding kernel between phases
    # (`resize_patch_embed`): only models whose patches can be reshaped take it (AST).
    reshapes_patches: bool = False
    # a frozen dataclass of the method's own keys, with defaults (`compression.options.<key>` in
    # its yaml or on the command line), read as `self.own`; None: it has none
    options: type | None = None

    def __init__(self, options: tuple = ()):
        self.own = own_options(self.options, options, "compression", f"`compression={self.name}`")

    def phase_input(self, base: BaseInput, c: int) -> PhaseInput:
        """Feature and token shapes at compression factor `c`."""
        if c != 1 and type(self).transform is not Compression.transform:
            raise ValueError(
                f"compression `{self.name}` overrides transform but not phase_input, which says "
                f"what the model sees at C > 1 (the base class's takes C = 1 only, got C = {c}):"
                " for a method that only transforms the features, copy _TimePool.phase_input "
                "from c2f/compression/pool.py (the frames divided by C)")
        if c != 1:
            raise ValueError(f"compression `{self.name}` supports only C = 1, got C = {c}" + (
                "; the baseline is compression=none schedule=baseline, a run of its own (or "
                "+row=baseline beside +row=fshift_4to1, ... in a sweep of rows)"
                if self.name == "none" else ""))
        return PhaseInput(base.frame_shift_ms, base.target_length, base.target_length,
                          base.patch, base.time_mask)

    def transform(self, fbank: torch.Tensor, c: int) -> torch.Tensor:
        """Map a normalized fbank [..., frames, mel] to what the model sees (default: as is).
        A deterministic function without parameters: its result is computed once per clip and
        kept (the feature tables, c2f/data/feature_cache.py); a learned or random compression
        belongs in the model."""
        return fbank

    def resize_patch_embed(self, weight: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        """Move the patch-embedding kernel [D, in, pf, pt] to a new patch size between phases."""
        raise ValueError(
            f"compression `{self.name}` cannot move a patch embedding from "
            f"{tuple(weight.shape[-2:])} to {tuple(new_size)}"
        )


def divide_exactly(frames: int, c: int, what: str) -> int:
    """frames / c, or a clear error when C does not divide the frame count."""
    if frames % c:
        raise ValueError(
            f"{what}: {frames} frames are not divisible by C = {c}; "
            f"pick a dataset.target_length that is a multiple of {c}"
        )
    return frames // c
