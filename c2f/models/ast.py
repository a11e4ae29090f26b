"""AST: an audio spectrogram transformer on timm's VisionTransformer, any grid and patch.

Between phases the positional table is resampled bilinearly on the (frequency, time) grid and a
patch kernel of another shape is moved by the compression method (BL or PI for the patch
methods); pretrained timm ViT/DeiT, AST and c2f checkpoints load by their key names
(`c2f/models/pretrained.py`)."""
from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from c2f.compression import Compression, PhaseInput
from c2f.models.registry import ModelFamily, register_model
from c2f.spec import ConfigError, ModelSpec


class AST(nn.Module):
    """ViT over a [batch, frames, mel] spectrogram; logits from the mean of the prefix tokens.

    With `dist_token` there are two prefix tokens (cls and distillation, as in DeiT and AST)
    and the head sees their average, as AST does; with `pool="tokens"` it sees the mean of the
    patch tokens instead (SSAST's fine-tuning of patch-based models, `ft_avgtok` in its
    src/models/ast_models.py).
    """

    def __init__(self, *, num_mel_bins: int, frames: int, patch: tuple[int, int],
                 num_classes: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, dist_token: bool = False, drop_path: float = 0.0,
                 pool: str = "prefix"):
        super().__init__()
        self.pool = pool
        self.input_size = (num_mel_bins, frames)
        self.patch = tuple(patch)
        self.vit = VisionTransformer(
            img_size=self.input_size, patch_size=self.patch, in_chans=1, num_classes=0,
            global_pool="", embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, reg_tokens=1 if dist_token else 0, drop_path_rate=drop_path,
        )
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, num_classes))

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.vit.patch_embed.grid_size)

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # [B, frames, mel] -> image [B, 1, mel, frames]: frequency is the height, time the width
        image = spec.transpose(1, 2).unsqueeze(1)
        tokens = self.vit.forward_features(image)
        prefix = self.num_prefix_tokens
        pooled = tokens[:, prefix:].mean(dim=1) if self.pool == "tokens" else \
            tokens[:, :prefix].mean(dim=1)
        return self.head(pooled)


@register_model("ast")
class ASTFamily(ModelFamily):
    """AST: every compression method, any C that the patch grid tiles."""

    moves = "positional table (bilinear on the grid), patch kernel (by the method)"
    patches = True
    reshapable_patches = True  # rectangular patches, the kernel resized between phases
    reads = frozenset({"patch", "embed_dim", "depth", "num_heads", "mlp_ratio", "dist_token",
                       "drop_path", "pretrained_grid", "pool"})

    def check(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
              c: int) -> None:
        (patch_f, patch_t), frames = phase.patch, phase.model_frames
        where = f"compression={compression}, C = {c}"
        if num_mel_bins % patch_f:
            raise ConfigError(f"`model.patch`: {num_mel_bins} mel bins are not a multiple of "
                              f"the frequency patch {patch_f} ({where})")
        if patch_t > frames or frames % patch_t:
            raise ConfigError(
                f"`dataset.target_length`: the model sees {frames} frames, which the time "
                f"patch {patch_t} does not tile ({where}); pick a target_length that is a "
                f"multiple of {spec.patch[1] * c} or a smaller schedule.c")

    def build(self, spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
              patch: tuple[int, int], c: int = 1) -> AST:
        return AST(num_mel_bins=num_mel_bins, frames=frames, patch=patch,
                   num_classes=num_classes, embed_dim=spec.embed_dim, depth=spec.depth,
                   num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio,
                   dist_token=spec.dist_token, drop_path=spec.drop_path, pool=spec.pool)

    def transfer(self, old: AST, new: AST, compression: Compression) -> None:
        from c2f.models.transfer import transfer_weights

        transfer_weights(old, new, compression.resize_patch_embed)

    def check_pretrained(self, spec: ModelSpec) -> None:
        from c2f.models.pretrained import check_pretrained

        check_pretrained(spec)

    def load_pretrained(self, model: AST, spec: ModelSpec, compression: Compression
                        ) -> list[str]:
        from c2f.models.pretrained import load_pretrained

        return load_pretrained(model, spec.pretrained, spec.pretrained_grid,
                               compression.resize_patch_embed)
