"""Move weights from one phase's model to the next phase's grid."""
from __future__ import annotations

from collections.abc import Callable

import torch
from timm.layers import resample_abs_pos_embed

from c2f.models.ast import AST

POS_KEY = "vit.pos_embed"
PATCH_KEY = "vit.patch_embed.proj.weight"


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int],
                       new_grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """Bilinear on the (freq, time) grid; prefix tokens kept as they are."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(new_grid), old_size=list(old_grid),
                                  num_prefix_tokens=num_prefix_tokens,
                                  interpolation="bilinear", antialias=False)


def transfer_weights(old: AST, new: AST,
                     resize_patch_embed: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
                     ) -> None:
    """Load `old`'s weights into `new`, resampling pos-embed and (if needed) patch-embed."""
    state = {k: v.detach().clone() for k, v in old.state_dict().items()}
    state[POS_KEY] = resample_pos_embed(state[POS_KEY], old.grid, new.grid,
                                        old.num_prefix_tokens)
    if tuple(state[PATCH_KEY].shape[-2:]) != tuple(new.patch):
        state[PATCH_KEY] = resize_patch_embed(state[PATCH_KEY], new.patch)
    new.load_state_dict(state, strict=True)
