"""Compression methods: token counts, feature equivalences, weight moves between phases."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchaudio.compliance import kaldi

from c2f.compression import BaseInput, create_compression, list_compressions
from c2f.models import AST
from c2f.models.transfer import resample_pos_embed, transfer_weights

AST_BASE_INPUT = BaseInput(frame_shift_ms=10.0, target_length=1024, patch=(16, 16), time_mask=192)
METHODS = ["fshift", "pool_avg", "pool_max", "patch_bl", "patch_pi"]


def tokens(method: str, c: int, mel: int = 128) -> int:
    phase = create_compression(method).phase_input(AST_BASE_INPUT, c)
    return (mel // phase.patch[0]) * (phase.model_frames // phase.patch[1])


def test_registry_lists_every_shipped_method():
    assert {"none", *METHODS} <= set(list_compressions())  # and a user's new one besides
    with pytest.raises(ValueError, match="unknown compression 'foo' .available: .*fshift.*"
                                         "c2f.plugins"):
        create_compression("foo")
    with pytest.raises(ValueError, match="unknown compression 'fshfit'; did you mean 'fshift'"):
        create_compression("fshfit")


def test_a_baseline_asked_for_a_coarse_phase_says_how_a_baseline_is_trained():
    with pytest.raises(ValueError, match=r"compression `none` supports only C = 1, got C = 4; "
                                         r"the baseline is compression=none schedule=baseline"):
        create_compression("none").phase_input(AST_BASE_INPUT, 4)


def test_a_module_that_registers_nothing_is_named_with_the_decorator_it_lacks(tmp_path,
                                                                                monkeypatch):
    """A new file in the folder whose class lost its decorator: the name asked for is the
    file's, so the message points at the file, not at plugins."""
    from c2f.registry import Registry

    package = tmp_path / "scratch_methods"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from c2f.registry import Registry\n\n\nclass Method:\n    pass\n\n\n"
        "REGISTRY = Registry(__name__, 'compression', Method)\nregister = REGISTRY.register\n")
    (package / "stride.py").write_text(
        "from scratch_methods import Method, register\n\n\n@register('stride')\n"
        "class Stride(Method):\n    pass\n")
    (package / "blur.py").write_text(
        "from scratch_methods import Method\n\n\nclass Blur(Method):\n    pass\n")
    (package / "helpers.py").write_text("def smooth(x):\n    return x\n")  # defines no method
    monkeypatch.syspath_prepend(str(tmp_path))
    import scratch_methods

    registry: Registry = scratch_methods.REGISTRY
    assert registry.names() == ["stride"]
    assert registry.unknown("blur") == (
        f"unknown compression 'blur'; {package / 'blur.py'} defines Blur but registers nothing: "
        "decorate its class with @register('blur') (available: stride)")
    assert registry.unknown("strid").startswith(  # and where a plugin's would come from
        "unknown compression 'strid'; did you mean 'stride'? (available: stride) (a method or "
        "model of a package of your own needs that package installed")
    assert "registers nothing" not in registry.unknown("helpers")  # not a method's module
    # c2f's own helper modules are not blamed either (ssast.py is SSAST's pretrainer, base.py
    # the methods' base)
    from c2f.compression import _REGISTRY as METHODS_REGISTRY
    from c2f.models.registry import _REGISTRY as MODELS_REGISTRY

    assert "registers nothing" not in METHODS_REGISTRY.unknown("base")
    assert "registers nothing" not in MODELS_REGISTRY.unknown("ssast")


@pytest.mark.parametrize("method", METHODS)
def test_token_counts_match_the_paper(method):
    assert [tokens(method, c) for c in (1, 2, 4)] == [512, 256, 128]


def test_none_refuses_compression():
    with pytest.raises(ValueError, match="only C = 1"):
        create_compression("none").phase_input(AST_BASE_INPUT, 2)


def test_fshift_and_pool_scale_time_mask_patch_keeps_it():
    assert create_compression("fshift").phase_input(AST_BASE_INPUT, 4).time_mask == 48
    assert create_compression("pool_max").phase_input(AST_BASE_INPUT, 4).time_mask == 48
    assert create_compression("patch_pi").phase_input(AST_BASE_INPUT, 4).time_mask == 192


def test_fshift_shift_and_frames():
    phase = create_compression("fshift").phase_input(AST_BASE_INPUT, 8)
    assert (phase.frame_shift_ms, phase.fbank_frames, phase.model_frames) == (80.0, 128, 128)


@pytest.mark.parametrize("method,reduce", [("pool_avg", torch.mean), ("pool_max", torch.amax)])
def test_pooling_is_one_by_c_over_time(method, reduce):
    fbank = torch.randn(2, 12, 5)  # [batch, frames, mel]
    pooled = create_compression(method).transform(fbank, 3)
    expected = reduce(fbank.reshape(2, 4, 3, 5), dim=2)
    torch.testing.assert_close(pooled, expected)


def _one_patch_embedding(kernel: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    return (kernel * patch).sum(dim=(1, 2, 3))


def test_pi_resize_preserves_embeddings_of_stretched_input_and_bilinear_does_not():
    torch.manual_seed(0)
    kernel = torch.randn(8, 1, 16, 16)
    patch = torch.randn(1, 1, 16, 16)
    c = 4
    stretched = F.interpolate(patch, size=(16, 16 * c), mode="bilinear", align_corners=False)
    pi = create_compression("patch_pi").resize_patch_embed(kernel, (16, 16 * c))
    bl = create_compression("patch_bl").resize_patch_embed(kernel, (16, 16 * c))
    original = _one_patch_embedding(kernel, patch)
    torch.testing.assert_close(_one_patch_embedding(pi, stretched), original,
                               atol=1e-3, rtol=1e-3)
    assert not torch.allclose(_one_patch_embedding(bl, stretched), original, atol=1e-1)


def test_pos_embed_resample_keeps_prefix_and_constant_field():
    prefix = torch.randn(1, 2, 6)
    constant = torch.full((1, 8 * 16, 6), 0.5)
    pos = torch.cat([prefix, constant], dim=1)
    out = resample_pos_embed(pos, (8, 16), (8, 64), num_prefix_tokens=2)
    assert out.shape == (1, 2 + 8 * 64, 6)
    torch.testing.assert_close(out[:, :2], prefix)
    torch.testing.assert_close(out[:, 2:], torch.full((1, 8 * 64, 6), 0.5))


def test_pos_embed_resample_uses_the_frequency_axis_for_frequency():
    """A field that varies along frequency only must stay constant along time (SSAST's bug)."""
    freq_ramp = torch.arange(8.0).repeat_interleave(4).reshape(1, 32, 1)  # grid (8 freq, 4 time)
    out = resample_pos_embed(freq_ramp, (8, 4), (8, 16), num_prefix_tokens=0).reshape(8, 16)
    torch.testing.assert_close(out, torch.arange(8.0).unsqueeze(1).expand(8, 16))


def test_fshift_features_equal_kaldi_fbank_at_the_larger_shift():
    from c2f.features import fbank

    torch.manual_seed(0)
    wave = torch.randn(1, 16000)
    for c in (1, 2, 4):
        phase = create_compression("fshift").phase_input(AST_BASE_INPUT, c)
        ours = fbank(wave, 16000, 128, phase.frame_shift_ms)
        theirs = kaldi.fbank(wave - wave.mean(), htk_compat=True, sample_frequency=16000,
                             use_energy=False, window_type="hanning", num_mel_bins=128,
                             dither=0.0, frame_shift=10.0 * c)
        torch.testing.assert_close(ours, theirs)
        assert ours.shape[0] == 1 + (16000 - 400) // (160 * c)


def _tiny(frames: int, patch: tuple[int, int], dist: bool = True) -> AST:
    return AST(num_mel_bins=32, frames=frames, patch=patch, num_classes=3, embed_dim=16,
               depth=1, num_heads=2, dist_token=dist)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("c", [2, 4])
def test_every_method_moves_weights_into_the_next_phase(method, c):
    compression = create_compression(method)
    base = BaseInput(10.0, 64, (16, 16), 8)
    coarse_in, fine_in = compression.phase_input(base, c), compression.phase_input(base, 1)
    coarse = _tiny(coarse_in.model_frames, coarse_in.patch)
    fine = _tiny(fine_in.model_frames, fine_in.patch)
    transfer_weights(coarse, fine, compression.resize_patch_embed)
    old, new = coarse.state_dict(), fine.state_dict()
    for key in new:
        if key not in ("vit.pos_embed", "vit.patch_embed.proj.weight"):
            torch.testing.assert_close(new[key], old[key], msg=key)
    torch.testing.assert_close(new["vit.pos_embed"][:, :2], old["vit.pos_embed"][:, :2])
    assert fine(torch.randn(2, 64, 32)).shape == (2, 3)


@pytest.mark.parametrize("c", [2, 4])
def test_patch_bl_and_pi_are_different_resizes_not_scalar_multiples(c):
    """Without antialiasing, bilinear downscaling by 2 picks taps that make BL exactly PI / 2,
    and the paper's BL and PI rows would measure one method twice."""
    torch.manual_seed(0)
    wide = torch.randn(8, 1, 16, 16 * c)  # the coarse phase's kernel, moved to 16 x 16
    bl = create_compression("patch_bl").resize_patch_embed(wide, (16, 16))
    pi = create_compression("patch_pi").resize_patch_embed(wide, (16, 16))
    scale = float((bl * pi).sum() / (pi * pi).sum())  # least-squares bl ~ scale * pi
    residual = (bl - scale * pi).norm() / bl.norm()
    assert residual > 0.1
    # BL is the authors' helper: bilinear with antialiasing (resizing_helper.py)
    torch.testing.assert_close(bl, F.interpolate(wide, size=(16, 16), mode="bilinear",
                                                 antialias=True))
    assert not torch.allclose(bl, F.interpolate(wide, size=(16, 16), mode="bilinear"))
