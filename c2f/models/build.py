"""Build a phase's model."""
from __future__ import annotations

from c2f.models.ast import AST


def build_model(model_spec, *, num_classes: int, num_mel_bins: int, frames: int,
                patch: tuple[int, int]) -> AST:
    """The model for one phase's input shape."""
    if model_spec.arch != "ast":
        raise ValueError(f"model.arch={model_spec.arch!r}: only `ast` is implemented so far")
    return AST(num_mel_bins=num_mel_bins, frames=frames, patch=patch, num_classes=num_classes,
               embed_dim=model_spec.embed_dim, depth=model_spec.depth,
               num_heads=model_spec.num_heads, mlp_ratio=model_spec.mlp_ratio,
               dist_token=model_spec.dist_token, drop_path=model_spec.drop_path)
