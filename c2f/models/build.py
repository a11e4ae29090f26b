"""Build a phase's model, and load pretrained weights from a local file (never the network)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from timm.layers import resample_patch_embed

from c2f.models.ast import AST
from c2f.models.transfer import PATCH_KEY, POS_KEY, resample_pos_embed


def build_model(model_spec, *, num_classes: int, num_mel_bins: int, frames: int,
                patch: tuple[int, int]) -> AST:
    """The model for one phase's input shape."""
    if model_spec.arch != "ast":
        raise ValueError(f"model.arch={model_spec.arch!r}: only `ast` is implemented so far")
    return AST(num_mel_bins=num_mel_bins, frames=frames, patch=patch, num_classes=num_classes,
               embed_dim=model_spec.embed_dim, depth=model_spec.depth,
               num_heads=model_spec.num_heads, mlp_ratio=model_spec.mlp_ratio,
               dist_token=model_spec.dist_token, drop_path=model_spec.drop_path)


def _canonical_key(key: str) -> str:
    """timm (ViT/DeiT) and AST checkpoint names -> this model's names."""
    for prefix in ("module.", "model."):
        key = key.removeprefix(prefix)
    if key.startswith("v."):
        key = "vit." + key[2:]
    elif key.startswith("mlp_head."):
        key = "head." + key[len("mlp_head."):]
    elif not key.startswith(("vit.", "head.")):
        key = "vit." + key
    return key.replace("vit.dist_token", "vit.reg_token")


def load_pretrained(model: AST, path: str | Path, old_grid: tuple[int, int] | None = None
                    ) -> list[str]:
    """Load a timm ViT/DeiT or AST checkpoint into `model`; returns the keys left at init.

    RGB patch kernels are summed to one channel, the kernel and the positional grid are
    resampled to this model's patch and grid, and a head of another size is left at init.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained={path}: no such file. c2f never downloads weights: save a "
            "timm or AST checkpoint locally and point model.pretrained at it")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(raw, dict) and wrapper in raw and isinstance(raw[wrapper], dict):
            raw = raw[wrapper]
    state = {_canonical_key(k): v for k, v in raw.items()}
    target = model.state_dict()
    if PATCH_KEY in state:
        kernel = state[PATCH_KEY].sum(dim=1, keepdim=True)
        if tuple(kernel.shape[-2:]) != model.patch:
            kernel = resample_patch_embed(kernel, list(model.patch), interpolation="bilinear",
                                          antialias=False)
        state[PATCH_KEY] = kernel
    if POS_KEY in state:
        pos = state[POS_KEY]
        tokens = pos.shape[1] - model.num_prefix_tokens
        if old_grid is None:
            side = math.isqrt(tokens)
            if side * side != tokens:
                raise ValueError(f"{path}: positional grid of {tokens} tokens is not square; "
                                 "pass its (freq, time) grid as model.pretrained_grid")
            old_grid = (side, side)
        state[POS_KEY] = resample_pos_embed(pos, old_grid, model.grid, model.num_prefix_tokens)
    usable = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(target) - set(usable))
