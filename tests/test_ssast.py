"""SSAST's masked patch modeling: SSAST's masks, its joint objective, a tiny pretrainer whose
loss falls on the built-in audio, and the move of the pretrainer between phases."""
from __future__ import annotations

import pytest
import torch

from c2f import features
from c2f.compression import create_compression
from c2f.data.audio import load_waveform
from c2f.data.builtin import BuiltinParams, ensure_builtin
from c2f.data.manifest import load_manifest
from c2f.models.ast import AST
from c2f.models.ssast import SSASTPretrainer, cluster_mask, frame_mask, masked_count
from c2f.models.transfer import transfer_weights


def tiny(frames: int = 128) -> SSASTPretrainer:
    encoder = AST(num_mel_bins=128, frames=frames, patch=(16, 16), num_classes=1, embed_dim=64,
                  depth=2, num_heads=2, dist_token=True)
    return SSASTPretrainer(encoder)


def test_masked_count_is_ssasts_fraction():
    assert masked_count(512) == 400  # run_mask_patch.sh: 400 of AudioSet's 8 x 64 patches
    assert masked_count(128) == 100  # C = 4: 8 x 16 patches


@pytest.mark.parametrize("seed", range(5))
def test_cluster_mask_draws_clusters_of_distinct_patches(seed):
    grid, count = (8, 64), 400
    mask = cluster_mask(torch.Generator().manual_seed(seed), grid, count)
    assert mask.shape == (count,) and mask.unique().numel() == count
    assert 0 < int(mask.min()) and int(mask.max()) < 512  # patch 0 is never masked (as SSAST)
    again = cluster_mask(torch.Generator().manual_seed(seed), grid, count)
    assert torch.equal(mask, again)
    # clusters: almost every masked patch has a masked neighbour to its right or below
    chosen = set(mask.tolist())
    neighbours = sum((i + 1 in chosen) or (i + 64 in chosen) or (i - 1 in chosen)
                     or (i - 64 in chosen) for i in chosen)
    assert neighbours / count > 0.9
    frames = frame_mask(torch.Generator().manual_seed(seed), 64, 30)
    assert frames.unique().numel() == 30


def test_joint_objective_at_init_is_chance():
    model = tiny()
    generator = torch.Generator().manual_seed(0)
    masks = [torch.stack([cluster_mask(generator, model.grid, 40) for _ in range(2)])
             for _ in range(2)]
    out = model.objective(torch.randn(2, 128, 128), *masks)
    assert set(out) == {"loss", "acc", "nce", "mse"}
    assert out["nce"].item() == pytest.approx(torch.log(torch.tensor(40.0)).item(), abs=0.7)
    assert out["loss"].item() == pytest.approx(out["nce"].item() + 10 * out["mse"].item(), rel=1e-5)


def builtin_features(tmp_path, clips: int = 48) -> torch.Tensor:
    """Normalized 128 x 128 fbanks of built-in recordings."""
    params = BuiltinParams(train_per_class=5, eval_per_class=1, clip_seconds=1.28)
    paths = ensure_builtin(tmp_path, params)
    manifest = load_manifest(paths["train"], paths["labels"])
    specs = []
    for clip in manifest.clips[:clips]:
        spec = features.fbank(load_waveform(clip.path, 16000), 16000, 128, 10.0)
        specs.append(features.pad_or_crop_frames(spec, 128))
    stacked = torch.stack(specs)
    return (stacked - stacked.mean()) / (2 * stacked.std())


def test_tiny_ssast_learns_on_builtin_audio(tmp_path):
    """Masked patch modeling on real recordings: after 150 steps the joint loss and InfoNCE
    are well below where they started, and masked patches are told apart above chance."""
    torch.manual_seed(0)
    data = builtin_features(tmp_path)
    model = tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    count = masked_count(model.grid[0] * model.grid[1])  # 50 of 64 patches
    history = []
    for _ in range(150):
        batch = data[torch.randint(0, len(data), (8,), generator=generator)]
        masks = [torch.stack([cluster_mask(generator, model.grid, count) for _ in range(8)])
                 for _ in range(2)]
        out = model.objective(batch, *masks)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in out.items()})
    first = {k: sum(h[k] for h in history[:15]) / 15 for k in history[0]}
    last = {k: sum(h[k] for h in history[-15:]) / 15 for k in history[0]}
    assert last["loss"] < 0.9 * first["loss"]
    assert last["nce"] < first["nce"] - 0.3
    assert last["acc"] > 3 / count  # chance is 1 / count


def test_pretrainer_moves_to_the_fine_phase_with_fewer_masked_patches_at_c4():
    """Fshift 4 -> 1: the encoder moves as AST's (positional table resampled on the grid), the
    mask embedding and both heads as they are (they act per patch)."""
    coarse, fine = tiny(frames=32), tiny(frames=128)
    assert coarse.grid == (8, 2) and fine.grid == (8, 8)
    assert masked_count(16, base_patches=64, base_count=50) == 12
    transfer_weights(coarse.encoder, fine.encoder, create_compression("fshift").resize_patch_embed)
    for name in ("mask_embed", "cpredlayer.0.weight", "gpredlayer.2.bias"):
        fine.get_parameter(name).data.copy_(coarse.get_parameter(name))
    assert torch.equal(fine.encoder.vit.blocks[0].attn.qkv.weight,
                       coarse.encoder.vit.blocks[0].attn.qkv.weight)
    generator = torch.Generator().manual_seed(0)
    masks = [cluster_mask(generator, fine.grid, 50)[None] for _ in range(2)]
    assert torch.isfinite(fine(torch.randn(1, 128, 128), *masks))


def official_names(model: SSASTPretrainer) -> dict:
    """The pretrainer's weights under SSAST's names (a DataParallel-wrapped ast_models.ASTModel:
    module.v.* with dist_token, module.cpredlayer.*, module.mask_embed, module.p_input_*)."""
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("encoder.vit.", "v.").replace("v.reg_token", "v.dist_token")
        state[f"module.{key}"] = value.clone()
    state["module.p_input_fdim"] = torch.tensor(128)
    state["module.p_input_tdim"] = torch.tensor(128)
    return state


@pytest.mark.parametrize("layout", ["official", "c2f"])
def test_finetuning_loads_ssast_weights_into_ast(tmp_path, layout):
    """SSAST-Base-Patch-400.pth's names, or a c2f pretraining checkpoint: the encoder (with
    its two prefix tokens and the pretraining grid) lands in AST; the heads stay behind."""
    from c2f.models.pretrained import load_pretrained

    torch.manual_seed(0)
    pretrainer = tiny()
    path = tmp_path / "pretrained.pth"
    torch.save(official_names(pretrainer) if layout == "official" else
               {"model": pretrainer.state_dict()}, path)
    classifier = AST(num_mel_bins=128, frames=128, patch=(16, 16), num_classes=11,
                     embed_dim=64, depth=2, num_heads=2, dist_token=True, pool="tokens")
    left = load_pretrained(classifier, path, old_grid=(8, 8))
    assert left == ["head.0.bias", "head.0.weight", "head.1.bias", "head.1.weight"]
    # the pretraining heads are named as not used; the encoder's every tensor is taken
    assert left.unused and not any(key.startswith("vit.") for key in left.unused)
    one_token = AST(num_mel_bins=128, frames=128, patch=(16, 16), num_classes=11,
                    embed_dim=64, depth=2, num_heads=2, dist_token=False)
    dropped = load_pretrained(one_token, path, old_grid=(8, 8)).unused
    assert dropped["vit.reg_token"] == "not in this model"  # SSAST's second token: said
    source = pretrainer.encoder.vit.state_dict()
    for key, value in classifier.vit.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_an_ssast_files_grid_is_read_from_it_and_another_patch_shape_is_refused(tmp_path):
    """SSAST files record their pretraining input size (p_input_fdim/tdim): the grid comes
    from it, over a preset's pretrained_grid of the same token count (ssast_base's [8, 64]
    for a frame model's 1 x 512); a frame model's 128 x 2 kernel is refused for 16 x 16
    patches, as SSAST's ast_models.py refuses it, naming both shapes."""
    from c2f.models.pretrained import load_pretrained
    from c2f.spec import ConfigError

    torch.manual_seed(0)
    pretrainer = tiny()
    path = tmp_path / "SSAST-Tiny-Patch.pth"
    torch.save(official_names(pretrainer), path)
    classifier = AST(num_mel_bins=128, frames=128, patch=(16, 16), num_classes=11,
                     embed_dim=64, depth=2, num_heads=2, dist_token=True, pool="tokens")
    load_pretrained(classifier, path, old_grid=(4, 16))  # 64 tokens too, but not the file's
    torch.testing.assert_close(classifier.vit.pos_embed, pretrainer.encoder.vit.pos_embed)
    frame = official_names(pretrainer)
    frame["module.v.patch_embed.proj.weight"] = torch.randn(64, 1, 128, 2)
    torch.save(frame, tmp_path / "SSAST-Tiny-Frame.pth")
    with pytest.raises(ConfigError, match=r"SSAST pretrained it on 128 x 2 patches \(SSAST's "
                                          r"frame model\), this model has 16 x 16.*"
                                          r"model.patch=\[128,2\]"):
        load_pretrained(classifier, tmp_path / "SSAST-Tiny-Frame.pth", old_grid=(8, 8))


def test_pretrained_names_a_finished_run_by_path_or_id(tmp_path):
    from c2f.run_refs import resolve_pretrained
    from c2f.spec import ConfigError

    run = tmp_path / "runs" / "pretrain" / "0123456789"
    (run / "ckpt").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"has not finished \(running or killed\)"):
        resolve_pretrained(str(run), tmp_path / "runs")
    # the same config killed in a group sorted first: the id names the finished run
    (tmp_path / "runs" / "killed" / "0123456789" / "ckpt").mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "finished"}')
    assert resolve_pretrained("0123456789", tmp_path / "runs") == str(run / "ckpt" / "last.pt")
    assert resolve_pretrained(str(run), tmp_path / "runs") == str(run / "ckpt" / "last.pt")
    (tmp_path / "runs" / "killed" / "0123456789" / "summary.json").write_text(
        '{"status": "finished"}')  # finished in two groups: which is meant is not known
    with pytest.raises(ConfigError, match="finished in 2 groups .*; name the run by its "
                                          "directory"):
        resolve_pretrained("0123456789", tmp_path / "runs")
    with pytest.raises(ConfigError, match="no run abcdefabcd"):
        resolve_pretrained("abcdefabcd", tmp_path / "runs")
    assert resolve_pretrained("weights.pth", tmp_path / "runs") == "weights.pth"  # a file name


def test_plan_predicts_the_pretraining_flops_a_real_batch_costs():
    from torch.utils.flop_counter import FlopCounterMode

    from c2f.models.ssast import pretrainer
    from c2f.spec import ModelSpec, PretrainSpec
    from c2f.train.flops import predicted_flops_per_sample

    spec = ModelSpec(name="t", arch="ast", embed_dim=32, depth=1, num_heads=2, dist_token=True)
    for frames in (32, 128):
        def factory(frames=frames):
            return pretrainer(spec, PretrainSpec(), num_mel_bins=128, frames=frames,
                              patch=(16, 16))
        model = factory()
        generator = torch.Generator().manual_seed(frames)
        masks = [torch.stack([cluster_mask(generator, model.grid, model.masked)
                              for _ in range(3)]) for _ in range(2)]
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.randn(3, frames, 128), *masks).backward()
        assert predicted_flops_per_sample(factory, frames, 128) * 3 == \
            counter.get_total_flops()


def test_pretrained_names_a_pretraining_run_by_its_phases(tmp_path):
    from c2f.run_refs import resolve_pretrained
    from c2f.spec import ConfigError

    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="0 pretraining runs.*launch the pretraining first"):
        resolve_pretrained("pretrain:4-1", runs)
    assert resolve_pretrained("pretrain:4-1", runs, strict=False) == "pretrain:4-1"
    for run_id, phases in (("aaaaaaaaaa", [1]), ("bbbbbbbbbb", [4, 1])):
        run = runs / "paper" / run_id
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"pretrain: {{objective: ssast}}\n"
                                         f"schedule: {{phases: {phases}}}\n")
        (run / "summary.json").write_text('{"status": "finished"}')
    classifier = runs / "paper" / "cccccccccc"  # a classification run with the same phases
    classifier.mkdir()
    (classifier / "config.yaml").write_text("schedule: {phases: [4, 1]}\n")
    assert resolve_pretrained("pretrain:4-1", runs) == str(runs / "paper" / "bbbbbbbbbb" /
                                                            "ckpt" / "last.pt")
    assert resolve_pretrained("pretrain:1", runs).endswith("aaaaaaaaaa/ckpt/last.pt")
    # the run it resolves to is part of a fine-tuning run's identity: pretraining anew (the
    # old 4-1 run moved away) makes the same command a new run, not "already finished"
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from c2f.spec import build_spec
    from tests.conftest import ROOT

    def fine_tuning():
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["model=ssast_base", f"paths.runs_dir={runs}",
                                               "model.pretrained=pretrain:4-1"])
        return cfg, build_spec(OmegaConf.to_container(cfg, resolve=True))
    cfg, spec = fine_tuning()
    # its folder, as a job makes it, is its own on a relaunch (a requeue, a kill): the stored
    # config hashes to its id with the pretraining run plan.json recorded
    from c2f.track import RunDir
    from c2f.train.job import _check_drift, _pretraining_run

    (runs / "paper" / "bbbbbbbbbb" / "plan.json").write_text("{}")
    assert _pretraining_run(spec) == "paper/bbbbbbbbbb"
    folder = RunDir(spec.run_dir)
    folder.create(OmegaConf.to_yaml(cfg), {"pretrained_run": _pretraining_run(spec)})
    _check_drift(fine_tuning()[1], folder)  # no "written by another version" refusal
    (runs / "paper" / "bbbbbbbbbb").rename(runs / "paper" / "dddddddddd")
    assert fine_tuning()[1].run_id != spec.run_id
