"""Pretrained weights from a local file (never the network): timm ViT/DeiT, AST, c2f checkpoints.

ImageNet and AST checkpoints are placed on the (frequency, time) grid the way AST's
`src/models/ast_models.py` does it: the time axis, then the frequency axis, is cut from the
middle when the new grid is smaller and interpolated bilinearly when it is larger. c2f's own
checkpoints (keys `vit.*`) are resampled bilinearly on the whole grid, as between phases.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import resample_patch_embed

from c2f.models.ast import AST
from c2f.models.transfer import PATCH_KEY, POS_KEY, resample_pos_embed
from c2f.models.weights_file import LeftAtInit, looks_like, read_state_dict, take_usable
from c2f.spec import ConfigError, ModelSpec

# AST's AudioSet checkpoints (audioset_10_10_0.4593.pth, ...): 16x16 patches with stride 10
# on 128 x 1024 frames give a 12 x 101 grid (ast_models.py, the audioset_pretrain branch).
AST_AUDIOSET_GRID = (12, 101)
DEIT_SIZES = {192: "tiny", 384: "small", 768: "base"}


def expected_checkpoints(model: ModelSpec) -> list[str]:
    """The timm models whose ImageNet weights fit this model, AST's choice first."""
    size = DEIT_SIZES.get(model.embed_dim)
    if size is None or model.depth != 12:
        return []
    distilled = "_distilled" if model.dist_token else ""
    names = [f"deit_{size}{distilled}_patch16_224"]
    if size == "base" and distilled:  # AST's default is base384 (src/run.py: 'base384')
        names.insert(0, "deit_base_distilled_patch16_384")
    elif size == "base":  # the FlexiAST scripts' ViT-224 (model=ast_vit224)
        names.insert(0, "vit_base_patch16_224")
    return names


def _expected(model: ModelSpec) -> str:
    names = expected_checkpoints(model)
    if not names:
        return f"a timm ViT with embed_dim {model.embed_dim} and {model.depth} blocks"
    return " or ".join(f"timm's `{n}`" for n in names)


def check_pretrained(model: ModelSpec) -> None:
    """Fail before training when a required checkpoint is missing or names no file."""
    names = expected_checkpoints(model)
    name = names[0] if names else "deit_base_distilled_patch16_384"
    how = ("c2f never downloads weights; on a machine with internet access run\n"
           "  python -c \"import timm, torch; torch.save(timm.create_model("
           f"'{name}', pretrained=True).state_dict(), '{name}.pth')\"\n") if names else (
        f"no ImageNet checkpoint has this model's shape ({model.embed_dim} wide, {model.depth} "
        "blocks): the paper's is model=ast_base, from timm's deit_base_distilled_patch16_384; ")
    if model.pretrained:
        path = Path(model.pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"`model.pretrained`={model.pretrained}: no such file. Expected "
                              f"{_expected(model)} state dict there; {how}or fix the path.")
        _check_width(read_state_dict(path, ("state_dict", "model"), WHAT), path,
                     model.embed_dim, model.depth)
        return
    if model.require_pretrained and model.name.startswith("ssast"):
        raise ConfigError(
            "`model.pretrained` is required here: fine-tuning starts from SSAST's "
            "self-supervised weights. Give the official SSAST-Base-Patch-400.pth (a local file; "
            "c2f never downloads weights) or a finished c2f pretraining run (`python run.py -cn "
            "pretrain`) by its directory, its id or `pretrain:<phases>`, e.g. "
            "`model.pretrained=pretrain:4-1`.")
    if model.require_pretrained:
        raise ConfigError(
            "`model.pretrained` is required here: the paper trains AST from ImageNet weights, "
            f"as AST's official setup does. Expected: {_expected(model)} state dict in a local "
            f"file. {how}then add `model.pretrained=/path/to/{name}.pth` (AST's own "
            "checkpoints, such as audioset_10_10_0.4593.pth, load too). To train from random "
            "weights on purpose, add `model.require_pretrained=false`.")


def ast_fit_pos_grid(grid: torch.Tensor, new_grid: tuple[int, int]) -> torch.Tensor:
    """[1, D, F, T] positional grid -> [1, D, f, t] as AST does: time, then frequency, each
    cut from the middle (start int(T/2) - int(t/2)) or interpolated bilinearly."""
    old_f, old_t = grid.shape[-2:]
    f, t = new_grid
    if t <= old_t:
        start = old_t // 2 - t // 2
        grid = grid[..., start:start + t]
    else:
        grid = F.interpolate(grid, size=(old_f, t), mode="bilinear", align_corners=False)
    if f <= old_f:
        start = old_f // 2 - f // 2
        grid = grid[..., start:start + f, :]
    else:
        grid = F.interpolate(grid, size=(f, t), mode="bilinear", align_corners=False)
    return grid


def _canonical_key(key: str) -> str:
    """timm (ViT/DeiT), AST, SSAST and c2f pretraining checkpoint names -> this model's names
    (SSAST's heads and mask embedding keep names this model does not have)."""
    for prefix in ("module.", "model.", "encoder."):
        key = key.removeprefix(prefix)
    if key.split(".")[0] in ("cpredlayer", "gpredlayer", "mask_embed", "p_input_fdim",
                             "p_input_tdim"):
        return "ssast." + key  # SSAST's pretraining parts: not loaded into a classifier
    if key.startswith("v."):
        key = "vit." + key[2:]
    elif key.startswith("mlp_head."):
        key = "head." + key[len("mlp_head."):]
    elif not key.startswith(("vit.", "head.")):
        key = "vit." + key
    return key.replace("vit.dist_token", "vit.reg_token")


def _is_c2f(raw: dict) -> bool:
    return any(k.removeprefix("module.").removeprefix("encoder.").startswith("vit.")
               for k in raw)


def _recorded_grid(path: Path) -> tuple[int, int] | None:
    """The token grid a c2f run's checkpoint (RUN/ckpt/last.pt) was trained at: its last
    phase's, from the run's plan.json; None for another file."""
    try:
        grid = json.loads((path.parent.parent / "plan.json").read_text())["phases"][-1]["grid"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return tuple(grid) if isinstance(grid, list) and len(grid) == 2 else None


def _old_grid(path: Path, tokens: int, given: tuple[int, int] | None, c2f: bool
              ) -> tuple[int, int]:
    recorded = _recorded_grid(path) if c2f else None
    if recorded is not None and recorded[0] * recorded[1] == tokens:
        return recorded  # a c2f pretraining run's own grid, over a preset's default
    if given is not None:
        if given[0] * given[1] != tokens:
            raise ConfigError(f"{path}: model.pretrained_grid={list(given)} holds "
                              f"{given[0] * given[1]} tokens, the checkpoint {tokens}; give "
                              "the (freq, time) patch grid it was trained at")
        return tuple(given)
    side = math.isqrt(tokens)
    if side * side == tokens:
        return side, side
    if not c2f and tokens == AST_AUDIOSET_GRID[0] * AST_AUDIOSET_GRID[1]:
        return AST_AUDIOSET_GRID
    ast_like = "" if c2f or tokens % 12 else (
        f" (AST's 128 mel bins at its stride 10 give 12 rows: [12,{tokens // 12}])")
    raise ConfigError(f"{path}: positional grid of {tokens} tokens is not square; pass its "
                      f"(freq, time) grid as model.pretrained_grid=[F,T]{ast_like}")


def _fit_pos_embed(pos: torch.Tensor, prefix: int, old_grid: tuple[int, int], model: AST,
                   c2f: bool) -> torch.Tensor:
    """The checkpoint's table on the model's grid; prefix rows it lacks keep their init."""
    if c2f:
        table = resample_pos_embed(pos, old_grid, model.grid, prefix)[:, prefix:]
    else:
        dim = pos.shape[-1]
        grid = pos[:, prefix:].transpose(1, 2).reshape(1, dim, *old_grid)
        table = ast_fit_pos_grid(grid, model.grid).reshape(1, dim, -1).transpose(1, 2)
    own = model.vit.pos_embed.detach()[:, : model.num_prefix_tokens].clone()
    shared = min(prefix, model.num_prefix_tokens)
    own[:, :shared] = pos[:, :shared]
    return torch.cat([own, table], dim=1)


WHAT = "a timm ViT/DeiT, AST, SSAST or c2f state dict"


def _ssast_grid(state: dict, path: Path, patch: tuple[int, int]) -> tuple[int, int] | None:
    """An SSAST file's pretraining grid, from the input size it records (`p_input_fdim`,
    `p_input_tdim`) and its kernel (SSAST pretrains without overlap); None for another file.
    SSAST fine-tunes with the pretraining patch shape only (its ast_models.py raises "The
    patch shape of pretraining and fine-tuning is not consistant"): another one is refused."""
    fdim, tdim = state.get("ssast.p_input_fdim"), state.get("ssast.p_input_tdim")
    if fdim is None or tdim is None or PATCH_KEY not in state:
        return None
    kernel = tuple(state[PATCH_KEY].shape[-2:])
    if kernel != tuple(patch):
        frame = " (SSAST's frame model)" if kernel[0] == int(fdim) else ""
        raise ConfigError(
            f"`model.pretrained`={path}: SSAST pretrained it on {kernel[0]} x {kernel[1]} "
            f"patches{frame}, this model has {patch[0]} x {patch[1]}; SSAST fine-tunes with the "
            f"pretraining patch shape: set model.patch=[{kernel[0]},{kernel[1]}], or use the "
            "patch model (SSAST-Base-Patch-400.pth) for model=ssast_base")
    return int(fdim) // kernel[0], int(tdim) // kernel[1]


def _resized(kernel: torch.Tensor, patch: tuple[int, int], resize: Callable | None
             ) -> torch.Tensor:
    """A checkpoint's kernel of another size on this model's patch: by the run's method where
    it moves kernels (patch_pi, patch_bl), else by PI-resize (FlexiViT's, timm's)."""
    if resize is not None:
        try:
            return resize(kernel, patch)
        except ValueError:  # a method that keeps its patches (fshift, pool_*) moves none
            pass
    return resample_patch_embed(kernel, list(patch), interpolation="bilinear", antialias=False)


def checkpoint_shape(state: dict[str, torch.Tensor]) -> tuple[int | None, int]:
    """(width, blocks) of a ViT state dict by its key names (timm's, AST's, SSAST's, c2f's);
    width None when it has no positional table."""
    names = [_canonical_key(k) for k in state]
    blocks = {name.split(".")[2] for name in names if name.startswith("vit.blocks.")}
    pos = next((v for k, v in state.items() if _canonical_key(k) == POS_KEY), None)
    return (None if pos is None else int(pos.shape[-1])), len(blocks)


def _check_width(state: dict[str, torch.Tensor], path: Path, width: int, depth: int) -> None:
    """A checkpoint of another width (a ViT-Base file for a small model) or with more blocks
    than the model fails naming both shapes; one with fewer blocks would leave the rest at
    init, and fails too."""
    have, blocks = checkpoint_shape(state)
    if have is None or (have, blocks) == (width, depth):
        return
    raise ConfigError(
        f"`model.pretrained`={path}: a ViT {have} wide with {blocks} blocks, but this model is "
        f"{width} wide with {depth} blocks. Pick the model of its size (model=ast_base for "
        "DeiT-Base and AST's checkpoints; model.embed_dim, model.depth and model.num_heads "
        "for others, e.g. 192, 12 and 3 for DeiT-Tiny), or train from random weights (leave "
        "model.pretrained out)")


def load_pretrained(model: AST, path: str | Path, old_grid: tuple[int, int] | None = None,
                    resize_patch: Callable | None = None) -> LeftAtInit:
    """Load a timm ViT/DeiT, AST or c2f checkpoint into `model`; returns the keys left at init
    and the file's tensors not used (a reg token this model has no place for, a head).

    RGB patch kernels are summed to one channel (AST); a kernel of another size is moved by
    `resize_patch` (the phase's compression method; default PI-resize); a head of another
    size is left at init."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"`model.pretrained`={path}: no such file. c2f never downloads weights: save a "
            "timm or AST checkpoint locally and point model.pretrained at it")
    raw = read_state_dict(path, ("state_dict", "model"), WHAT)
    _check_width(raw, path, model.vit.pos_embed.shape[-1], len(model.vit.blocks))
    c2f = _is_c2f(raw)
    state = {_canonical_key(k): v for k, v in raw.items()}
    ssast_grid = _ssast_grid(state, path, model.patch)
    adapted = []  # what was changed to fit, for the run's log (weights_file.loaded_note)
    if PATCH_KEY in state:
        kernel = state[PATCH_KEY].sum(dim=1, keepdim=True)
        if state[PATCH_KEY].shape[1] > 1:
            adapted.append(f"the {state[PATCH_KEY].shape[1]}-channel patch kernel summed to one")
        if tuple(kernel.shape[-2:]) != model.patch:
            adapted.append("the patch kernel resized from {} x {} to {} x {}".format(
                *kernel.shape[-2:], *model.patch))
            kernel = _resized(kernel, model.patch, resize_patch)
        state[PATCH_KEY] = kernel
    if POS_KEY in state:
        pos = state[POS_KEY]
        reg = state.get("vit.reg_token")
        prefix = 1 + (0 if reg is None else reg.shape[1])
        grid = ssast_grid or _old_grid(path, pos.shape[1] - prefix, old_grid, c2f)
        state[POS_KEY] = _fit_pos_embed(pos, prefix, grid, model, c2f)
        if tuple(grid) != tuple(model.grid):
            how = "resampled bilinearly" if c2f else "by AST's rule (each axis cut from the " \
                "middle when smaller, interpolated when larger)"
            adapted.append(f"the positional table moved from {grid[0]} x {grid[1]} to "
                           f"{model.grid[0]} x {model.grid[1]} tokens {how}")
    usable, left = take_usable(state, model)
    left.adapted = adapted
    if not any(k.startswith("vit.blocks.") for k in usable):
        raise ConfigError(f"`model.pretrained`={path}: none of its transformer blocks fit this "
                          f"model; expected {WHAT}{looks_like(raw)}")
    model.load_state_dict(usable, strict=False)
    return left
