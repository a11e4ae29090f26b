"""Patch: rectangular p x Cp patches on the full-resolution input.

Between phases the patch-embedding kernel is resized by bilinear interpolation (BL) or by
FlexiViT's PI-resize (PI, timm's `resample_patch_embed`), as the authors' resizing helper does
(FlexiAST_INTERSPEECH23, src/utilities/resizing_helper.py: `vanilla_resample_patch_embed`,
bilinear with antialias=True, "Google uses True"; `resample_patch_embed`, PI with
antialias=False). Without antialiasing, a bilinear downscale by an integer factor picks taps
that make BL exactly 1/C of PI, so the two would measure the same thing.
"""
import torch
import torch.nn.functional as F
from timm.layers import resample_patch_embed

from c2f.compression import register
from c2f.compression.base import BaseInput, Compression, PhaseInput


class _WidePatch(Compression):
    reshapes_patches = True

    def phase_input(self, base: BaseInput, c: int) -> PhaseInput:
        freq, time = base.patch
        return PhaseInput(base.frame_shift_ms, base.target_length, base.target_length,
                          (freq, time * c), base.time_mask)  # full-resolution input: the mask too


@register("patch_bl")
class PatchBilinear(_WidePatch):
    title = "Patch BL"  # the paper's name

    def resize_patch_embed(self, weight: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(weight, size=tuple(new_size), mode="bilinear", align_corners=False,
                             antialias=True)


@register("patch_pi")
class PatchPI(_WidePatch):
    title = "Patch PI"

    def resize_patch_embed(self, weight: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        return resample_patch_embed(weight, list(new_size), interpolation="bilinear",
                                    antialias=False)
