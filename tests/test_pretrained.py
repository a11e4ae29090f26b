"""Pretrained weights load from local timm, AST and c2f checkpoints; never from the network."""
from __future__ import annotations

import pytest
import timm
import torch

from c2f.models import AST
from c2f.models.pretrained import ast_fit_pos_grid, check_pretrained, load_pretrained
from c2f.spec import ConfigError, ModelSpec


def _grid(rows: int, cols: int) -> torch.Tensor:
    """A [1, 1, rows, cols] grid holding 10 * row + col."""
    values = [[10.0 * r + c for c in range(cols)] for r in range(rows)]
    return torch.tensor(values).reshape(1, 1, rows, cols)


def test_ast_rule_cuts_both_axes_from_the_middle():
    # 5 x 5 -> 3 x 2: time starts at int(5/2) - int(2/2) = 1, frequency at 2 - 1 = 1
    out = ast_fit_pos_grid(_grid(5, 5), (3, 2))
    assert out.reshape(3, 2).tolist() == [[11, 12], [21, 22], [31, 32]]


def test_ast_rule_interpolates_time_then_cuts_frequency():
    # 4 x 4 -> 2 x 6: time 4 -> 6 by bilinear (align_corners=False): source x = (j + .5) * 4/6 - .5
    # = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6, clamped at the edges; frequency cut from row 2 - 1 = 1
    out = ast_fit_pos_grid(_grid(4, 4), (2, 6)).reshape(2, 6)
    time = [0.0, 0.5, 7 / 6, 11 / 6, 2.5, 3.0]
    expected = torch.tensor([[10.0 * r + x for x in time] for r in (1, 2)])
    torch.testing.assert_close(out, expected)


def test_ast_rule_cuts_time_then_interpolates_frequency():
    # 4 x 4 -> 6 x 3: time cut from 2 - 1 = 1 (columns 1..3), frequency 4 -> 6 interpolated
    out = ast_fit_pos_grid(_grid(4, 4), (6, 3)).reshape(6, 3)
    freq = [0.0, 0.5, 7 / 6, 11 / 6, 2.5, 3.0]
    expected = torch.tensor([[10.0 * y + c for c in (1, 2, 3)] for y in freq])
    torch.testing.assert_close(out, expected)


def _ast(frames: int, classes: int = 5, dist: bool = True, dim: int = 192) -> AST:
    return AST(num_mel_bins=128, frames=frames, patch=(16, 16), num_classes=classes,
               embed_dim=dim, depth=12, num_heads=3, dist_token=dist)


def test_deit_distilled_checkpoint_lands_on_the_audio_grid_as_ast_places_it(tmp_path):
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    path = tmp_path / "deit.pth"
    torch.save(deit.state_dict(), path)
    model = _ast(frames=1024)  # grid 8 x 64 from ImageNet's 14 x 14
    left = load_pretrained(model, path)
    assert left == ["head.0.bias", "head.0.weight", "head.1.bias", "head.1.weight"]
    assert left.adapted == [  # said in the run's log
        "the 3-channel patch kernel summed to one",
        "the positional table moved from 14 x 14 to 8 x 64 tokens by AST's rule (each axis cut "
        "from the middle when smaller, interpolated when larger)"]
    torch.testing.assert_close(model.vit.patch_embed.proj.weight,
                               deit.patch_embed.proj.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.vit.reg_token, deit.dist_token)
    pos = deit.pos_embed.detach()
    torch.testing.assert_close(model.vit.pos_embed[:, :2], pos[:, :2])  # cls and dist
    grid = pos[:, 2:].transpose(1, 2).reshape(1, 192, 14, 14)
    stretched = torch.nn.functional.interpolate(grid, size=(14, 64), mode="bilinear")
    expected = stretched[:, :, 3:11].reshape(1, 192, 8 * 64).transpose(1, 2)  # rows 7-4..7+4
    torch.testing.assert_close(model.vit.pos_embed[:, 2:], expected)


def test_a_short_clips_grid_cuts_imagenet_time_from_the_middle(tmp_path):
    """AST's rule for a shorter input (a coarse phase's model is never loaded directly:
    test_a_coarse_first_phase_gets_the_checkpoint_at_full_resolution_then_resampled)."""
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    path = tmp_path / "deit.pth"
    torch.save(deit.state_dict(), path)
    model = _ast(frames=128)  # 128 frames: grid 8 x 8, both cut from 14 x 14
    load_pretrained(model, path)
    grid = deit.pos_embed.detach()[:, 2:].reshape(1, 14, 14, 192)
    expected = grid[:, 3:11, 3:11].reshape(1, 64, 192)
    torch.testing.assert_close(model.vit.pos_embed[:, 2:], expected)


def _ast_audioset_checkpoint(path, classes: int = 527) -> dict:
    """A checkpoint in AST's naming (DataParallel's module.v.*, mlp_head), 12 x 101 grid."""
    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    state = {f"module.v.{k}": v for k, v in deit.state_dict().items()}
    state["module.v.pos_embed"] = torch.randn(1, 2 + 12 * 101, 192)
    state["module.v.patch_embed.proj.weight"] = torch.randn(192, 1, 16, 16)
    state["module.mlp_head.0.weight"] = torch.randn(192)
    state["module.mlp_head.0.bias"] = torch.randn(192)
    state["module.mlp_head.1.weight"] = torch.randn(classes, 192)
    state["module.mlp_head.1.bias"] = torch.randn(classes)
    torch.save(state, path)
    return state


def test_ast_audioset_checkpoint_loads_for_fine_tuning(tmp_path):
    path = tmp_path / "audioset_10_10_0.4593.pth"
    state = _ast_audioset_checkpoint(path)
    model = _ast(frames=1024, classes=527)  # 8 x 64: time cut at 50 - 32, frequency at 6 - 4
    assert load_pretrained(model, path) == []
    grid = state["module.v.pos_embed"][:, 2:].reshape(1, 12, 101, 192)
    torch.testing.assert_close(model.vit.pos_embed[:, 2:],
                               grid[:, 2:10, 18:82].reshape(1, 8 * 64, 192))
    torch.testing.assert_close(model.vit.pos_embed[:, :2], state["module.v.pos_embed"][:, :2])
    torch.testing.assert_close(model.head[1].weight, state["module.mlp_head.1.weight"])
    torch.testing.assert_close(model.vit.patch_embed.proj.weight,
                               state["module.v.patch_embed.proj.weight"])
    other = _ast(frames=1024, classes=10)  # another label set: the head stays at init
    left = load_pretrained(other, path)
    assert left == ["head.1.bias", "head.1.weight"]
    # the file's head is said to be unused, with both shapes, in the run's log line, and
    # so are the DeiT heads AST's checkpoints carry inside `v` (AST classifies by mlp_head)
    assert left.unused == {"head.1.weight": "shape [527, 192], this model's [10, 192]",
                           "head.1.bias": "shape [527], this model's [10]",
                           **{f"vit.{head}.{p}": "not in this model"
                              for head in ("head", "head_dist") for p in ("weight", "bias")}}
    from c2f.models import loaded_note
    assert loaded_note(str(path), left).startswith(
        f"loaded {path}; left at init: head.1.bias, head.1.weight; not used from the file: "
        "head.1.bias (shape [527], this model's [10]), head.1.weight (shape [527, 192], this "
        "model's [10, 192]), vit.head.bias (not in this model), ")


def test_c2f_checkpoint_is_resampled_bilinearly_like_a_phase_transition(tmp_path):
    source = _ast(frames=256, dim=192)  # 8 x 16
    path = tmp_path / "c2f.pt"
    torch.save({"model": source.state_dict()}, path)
    target = _ast(frames=1024, dim=192)  # 8 x 64
    with pytest.raises(ValueError, match="model.pretrained_grid"):
        load_pretrained(target, path)  # 8 x 16 is not square: the grid must be given
    load_pretrained(target, path, old_grid=(8, 16))
    from c2f.models.transfer import resample_pos_embed

    torch.testing.assert_close(target.vit.pos_embed,
                               resample_pos_embed(source.vit.pos_embed, (8, 16), (8, 64), 2))


def test_vit_without_distillation_token_leaves_the_second_prefix_at_init(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model = _ast(frames=256)
    before = model.vit.pos_embed[:, 1].detach().clone()
    left = load_pretrained(model, path)
    assert "vit.reg_token" in left
    torch.testing.assert_close(model.vit.pos_embed[:, 0], vit.pos_embed[:, 0])
    torch.testing.assert_close(model.vit.pos_embed[:, 1], before)
    torch.testing.assert_close(model.vit.blocks[3].mlp.fc1.weight, vit.blocks[3].mlp.fc1.weight)


def test_missing_checkpoint_says_nothing_is_downloaded(tmp_path):
    model = AST(num_mel_bins=32, frames=32, patch=(16, 16), num_classes=2, embed_dim=16,
                depth=1, num_heads=2)
    with pytest.raises(ConfigError, match="never downloads"):
        load_pretrained(model, tmp_path / "nope.pth")


def test_required_checkpoint_names_the_expected_file_and_how_to_make_it(tmp_path):
    base = ModelSpec(name="ast_base", embed_dim=768, depth=12, num_heads=12, dist_token=True,
                     require_pretrained=True)
    with pytest.raises(ConfigError) as err:
        check_pretrained(base)
    text = str(err.value)
    assert "`model.pretrained` is required" in text
    assert "deit_base_distilled_patch16_384" in text and "deit_base_distilled_patch16_224" in text
    assert "never downloads" in text and "model.pretrained=/path/to/" in text
    with pytest.raises(ConfigError, match="no such file"):
        check_pretrained(ModelSpec(name="b", pretrained=str(tmp_path / "missing.pth")))
    small = ModelSpec(name="ast_tiny", embed_dim=128, depth=3, num_heads=4,
                      require_pretrained=True)
    with pytest.raises(ConfigError) as err:  # no ImageNet model has this shape: not named
        check_pretrained(small)
    assert "no ImageNet checkpoint has this model's shape (128 wide, 3 blocks)" in str(err.value)
    assert "vit_base_patch16_224" not in str(err.value)


@pytest.mark.parametrize("content, says", [
    (b"x", "a text file, not a checkpoint: it starts 'x'"),
    (b"<html><body>404 Not Found</body></html>", "it starts '<html><body>404 Not Found"),
    (b"\x00\x01binary", "UnpicklingError"),
    ("truncated", "the file ends before its data does"),  # a reason, not torch's advice
])
def test_a_file_that_is_no_checkpoint_fails_before_training_naming_it(tmp_path, content, says):
    """A text file, a half-downloaded file: named, with what it should hold; at plan time
    (check_pretrained, which the dry run calls) and at load time alike."""
    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save(_ast(frames=128).state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content)
    spec = ModelSpec(name="ast_tiny", embed_dim=192, depth=12, num_heads=3,
                     pretrained=str(path))
    for attempt in (lambda: check_pretrained(spec),
                    lambda: load_pretrained(_ast(frames=128), path)):
        with pytest.raises(ConfigError) as err:
            attempt()
        assert str(err.value).startswith(f"`model.pretrained`={path}: not a PyTorch checkpoint")
        assert says in str(err.value) and "weights_only" not in str(err.value)
        assert "download it again if it was cut short, or fix model.pretrained" in str(err.value)


def test_a_checkpoint_of_another_size_fails_naming_both_shapes(tmp_path):
    """A DeiT-Tiny file (192 wide, 12 blocks) given to a 128-wide, 3-block model: refused at
    plan time and at load time, instead of a shape error inside the positional table's
    resampling; the right size passes."""
    path = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
               .state_dict(), path)
    small = ModelSpec(name="ast_tiny", embed_dim=128, depth=3, num_heads=4, pretrained=str(path))
    with pytest.raises(ConfigError, match="a ViT 192 wide with 12 blocks, but this model is "
                                          "128 wide with 3 blocks"):
        check_pretrained(small)
    with pytest.raises(ConfigError, match="192 wide with 12 blocks"):
        load_pretrained(AST(num_mel_bins=128, frames=128, patch=(16, 16), num_classes=5,
                            embed_dim=128, depth=3, num_heads=4), path)
    check_pretrained(ModelSpec(name="deit_tiny", embed_dim=192, depth=12, num_heads=3,
                               dist_token=True, pretrained=str(path)))


def test_a_coarse_first_phase_gets_the_checkpoint_at_full_resolution_then_resampled(tmp_path):
    """fshift 4 -> 1 on 1024 frames from AST's AudioSet checkpoint (12 x 101 grid): the table
    is placed on the last phase's 8 x 64 grid by AST's rule, then resampled bilinearly to the
    coarse 8 x 16 as a phase transition moves it; not cut to the middle 16 of 101 columns,
    which would read the whole clip as a 1.6 s one. Building the full model leaves the run's
    RNG where it was."""
    from c2f.compression import create_compression
    from c2f.models.transfer import resample_pos_embed
    from c2f.train.initial_weights import load_initial_weights

    path = tmp_path / "audioset_10_10_0.4593.pth"
    _ast_audioset_checkpoint(path)
    spec = ModelSpec(name="ast", pretrained=str(path), embed_dim=192, num_heads=3,
                     dist_token=True)
    full = _ast(frames=1024, classes=527)
    load_pretrained(full, path)
    expected = resample_pos_embed(full.vit.pos_embed.detach(), (8, 64), (8, 16), 2)
    coarse, logs = _ast(frames=256, classes=527), []
    before = torch.get_rng_state()
    load_initial_weights(coarse, spec, create_compression("fshift"), logs.append,
                         lambda: _ast(frames=1024, classes=527))
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(coarse.vit.pos_embed, expected)
    torch.testing.assert_close(coarse.head[1].weight, full.head[1].weight)
    cut = _ast(frames=256, classes=527)
    load_pretrained(cut, path)  # the checkpoint fitted to the coarse grid directly
    assert not torch.allclose(cut.vit.pos_embed[:, 2:], coarse.vit.pos_embed[:, 2:])
    assert logs[0].startswith(f"loaded {path}; left at init: -") and \
        "placed on the model of the input at full resolution" in logs[0]


def test_an_ast_grid_of_12_rows_is_suggested_and_kernels_move_whatever_the_method(tmp_path):
    """AST's ESC-50 checkpoints (stride 10 on 512 frames: 12 x 50 tokens) are not square: the
    error suggests [12, 50]. A kernel of another size moves by PI-resize when the run's
    method moves no kernels (fshift), instead of that method's refusal."""
    from c2f.compression import create_compression

    path = tmp_path / "esc50_ast.pth"
    state = _ast_audioset_checkpoint(path)
    state["module.v.pos_embed"] = torch.randn(1, 2 + 12 * 50, 192)
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"model.pretrained_grid=\[F,T\] \(AST's 128 mel bins "
                                          r"at its stride 10 give 12 rows: \[12,50\]\)"):
        load_pretrained(_ast(frames=512), path)
    narrow = AST(num_mel_bins=128, frames=512, patch=(16, 8), num_classes=5, embed_dim=192,
                 depth=12, num_heads=3, dist_token=True)
    load_pretrained(narrow, path, old_grid=(12, 50),
                    resize_patch=create_compression("fshift").resize_patch_embed)
    assert narrow.vit.patch_embed.proj.weight.shape[-2:] == (16, 8)


def test_a_single_coarse_phase_gets_the_checkpoint_at_full_resolution_too(tmp_path, data_dir):
    """Table 1's Pool2 (schedule=baseline schedule.c=2) is its own last phase, but coarse:
    the checkpoint goes through the full-resolution model, through the real CLI."""
    from tests.conftest import TINY, run_cli

    model = AST(num_mel_bins=128, frames=128, patch=(16, 16), num_classes=5, embed_dim=32,
                depth=1, num_heads=2)
    torch.save({"model": model.state_dict()}, tmp_path / "c2f_ast.pth")
    proc = run_cli([*TINY, "logger=disabled", "compression=pool_max", "schedule=baseline",
                    "schedule.c=2", "dataset.epochs=1", "trainer.max_steps_per_epoch=1",
                    f"model.pretrained={tmp_path / 'c2f_ast.pth'}"], tmp_path / "runs", data_dir)
    assert "(placed on the model of the input at full resolution, then moved to this phase's" \
        in proc.stdout
    import json

    from tests.conftest import run_dirs
    [run] = run_dirs(tmp_path / "runs")
    loaded = json.loads((run / "plan.json").read_text())["initial_weights"]  # kept with the run
    assert loaded["file"] == str(tmp_path / "c2f_ast.pth") and loaded["via_full_resolution"]
    assert set(loaded) == {"file", "left_at_init", "not_used", "adapted", "via_full_resolution"}


def test_a_cnn14_file_given_to_ast_says_what_it_looks_like(tmp_path):
    path = tmp_path / "Cnn14.pth"
    torch.save({"model": {"conv_block1.conv1.weight": torch.zeros(4, 1, 3, 3),
                          "fc_audioset.bias": torch.zeros(527)}}, path)
    with pytest.raises(ConfigError, match=r"none of its transformer blocks fit this model; "
                                          r".*; it looks like PANNs' CNN14"):
        load_pretrained(_ast(frames=128), path)
