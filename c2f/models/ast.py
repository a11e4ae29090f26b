"""AST: an audio spectrogram transformer on timm's VisionTransformer, any grid and patch."""
from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class AST(nn.Module):
    """ViT over a [batch, frames, mel] spectrogram; logits from the mean of the prefix tokens.

    With `dist_token` there are two prefix tokens (cls and distillation, as in DeiT and AST)
    and the head sees their average, as AST does.
    """

    def __init__(self, *, num_mel_bins: int, frames: int, patch: tuple[int, int],
                 num_classes: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, dist_token: bool = False, drop_path: float = 0.0):
        super().__init__()
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
        pooled = tokens[:, : self.num_prefix_tokens].mean(dim=1)
        return self.head(pooled)
