"""Pretrained weights load from a local timm checkpoint; never from the network."""
from __future__ import annotations

import pytest
import timm
import torch

from c2f.models import AST
from c2f.models.build import load_pretrained


def test_timm_vit_checkpoint_loads_into_a_one_channel_audio_grid(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model = AST(num_mel_bins=128, frames=256, patch=(16, 16), num_classes=5, embed_dim=192,
                depth=12, num_heads=3)
    left = load_pretrained(model, path)
    assert left == ["head.0.bias", "head.0.weight", "head.1.bias", "head.1.weight"]
    torch.testing.assert_close(model.vit.patch_embed.proj.weight,
                               vit.patch_embed.proj.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.vit.blocks[3].mlp.fc1.weight, vit.blocks[3].mlp.fc1.weight)
    assert model.vit.pos_embed.shape == (1, 1 + 8 * 16, 192)
    torch.testing.assert_close(model.vit.pos_embed[:, 0], vit.pos_embed[:, 0])


def test_missing_checkpoint_says_nothing_is_downloaded(tmp_path):
    model = AST(num_mel_bins=32, frames=32, patch=(16, 16), num_classes=2, embed_dim=16,
                depth=1, num_heads=2)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_pretrained(model, tmp_path / "nope.pth")
