"""The phase plan: schedules, epochs, validation messages, and predicted vs counted FLOPs."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.models import AST
from c2f.plan import build_plan, flops_text, flops_unit
from c2f.spec import ConfigError, build_spec
from c2f.train.flops import predicted_flops_per_sample, training_flops
from tests.conftest import ROOT


def spec_for(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return build_spec(OmegaConf.to_container(cfg, resolve=True))


def test_two_phase_plan_follows_the_paper():
    plan = build_plan(spec_for("compression=fshift", "schedule=2phase", "dataset.epochs=20"))
    assert [(p.c, p.epochs, p.tokens) for p in plan.phases] == [(4, 5, 32), (1, 15, 128)]
    assert plan.phases[0].input.frame_shift_ms == 40.0


def test_three_phase_shares_thirty_percent():
    plan = build_plan(spec_for("compression=patch_pi", "schedule=3phase", "dataset.epochs=20"))
    assert [(p.c, p.epochs, p.input.patch) for p in plan.phases] == [
        (4, 3, (16, 64)), (2, 3, (16, 32)), (1, 14, (16, 16))]


@pytest.mark.parametrize("overrides, says", [
    (["schedule=3phase", "dataset.epochs=6"], "average epochs 3..6 (final-phase epochs)"),
    (["schedule=3phase", "dataset.epochs=6", "average.start=5"], "average epochs 5..6 (final"),
    (["schedule=baseline", "dataset.epochs=6"], "average epochs 1..last;"),
    (["schedule=adaptive", "dataset.epochs=20"], "average epochs 1..last, final-phase epochs only"),
])
def test_the_recipe_line_names_the_epochs_averaged(overrides, says):
    """Only final-phase epochs are averaged: the recipe line names them where the schedule
    fixes where its final phase starts (SSAST audit 10)."""
    from c2f.plan import format_recipe

    assert says in format_recipe(spec_for("compression=fshift", "average=epochs", *overrides))


def test_the_recipe_line_names_gradient_clipping_where_the_recipe_clips():
    """HTS-AT's Trainer clips at norm 1.0 (main.py gradient_clip_val=1.0); AST clips nothing."""
    from c2f.plan import format_recipe

    assert ", gradients clipped at norm 1;" in format_recipe(spec_for("model=htsat"))
    # its ten evaluations per epoch serve top_k only: without averaging they are no obstacle
    assert "average none" in format_recipe(spec_for("model=htsat", "average=none"))
    assert "clipped" not in format_recipe(spec_for("compression=fshift"))


def test_explicit_phase_list_and_c8():
    plan = build_plan(spec_for("compression=pool_avg", "schedule=custom",
                               "schedule.phases=[8,4,2,1]", "dataset.epochs=10"))
    assert [p.c for p in plan.phases] == [8, 4, 2, 1]
    assert [p.input.model_frames for p in plan.phases] == [32, 64, 128, 256]
    assert sum(p.epochs for p in plan.phases) == 10


def test_ast_base_flop_ratios_match_the_design_note():
    """AST-Base at 128 x 1024: per-sample cost ratios ~0.234 (C=4) and ~0.477 (C=2)."""
    plan = build_plan(spec_for("model=ast_base", "dataset.target_length=1024",
                               "compression=fshift", "schedule=3phase", "dataset.num_classes=309"))
    full = plan.phases[-1].flops_per_sample
    ratios = [p.flops_per_sample / full for p in plan.phases]
    assert ratios[0] == pytest.approx(0.234, abs=0.002)
    assert ratios[1] == pytest.approx(0.477, abs=0.002)


@pytest.mark.parametrize("overrides,key", [
    (["compression=none", "schedule=2phase"], "compression=none"),
    (["compression=fshift", "schedule=2phase", "schedule.c=3"], "dataset.target_length"),
    (["compression=patch_bl", "schedule=2phase", "schedule.c=32"], "dataset.target_length"),
    (["compression=fshift", "schedule=3phase", "schedule.c=2"], "schedule.c"),
    (["compression=fshift", "schedule=2phase", "schedule.c=1"], "schedule.c"),
    (["compression.name=squash"], "compression.name"),
    (["model.patch=[24,16]"], "model.patch"),
    (["compression=fshift", "schedule=2phase", "dataset.epochs=1"], "dataset.epochs"),
    (["model.num_heads=5"], "model.num_heads"),
    (["+dataset.colour=red"], "dataset.colour"),
    (["dataset.on_bad_audio=ignore"], "dataset.on_bad_audio"),
    (["dataset.loss=focal"], "dataset.loss"),
    (["dataset=builtin_multilabel", "dataset.loss=ce"], "dataset.loss"),
    (["trainer.num_workers=many"], "trainer.num_workers"),
    (["average=epochs", "average.start=4", "average.end=2"], "average.end"),
    (["average=top_k", "average.k=0"], "average.k"),
    (["average=top_k", "average.evals_per_epoch=0"], "average.evals_per_epoch"),
    (["average=epochs", "average.start=13"], "average.start`=13 is after the run's last epoch"),
    (["average=epochs", "compression=fshift", "schedule=2phase", "average.start=1",
      "average.end=2"], "average.end`=2 comes before the final phase, which starts at epoch 4"),
    (["trainer.device=gpu"], "trainer.device"),
    (["dataset.eval_batch_size=0"], "dataset.eval_batch_size"),  # else found after an epoch
    (["dataset.freqm=200"], "dataset.freqm`: a mask width in mel bins, 0..128"),
    (["model=cnn14_tiny", "dataset.freqm=100"], "in mel bins, 0..64"),  # its own mel bins
    (["model.num_heads=0"], "model.depth"),
    (["optim.warmup_steps=-5"], "optim.warmup_steps"),
    (["seed=-1"], "seed"),
    (["model.pretrained=/no/such/deit.pth"], "model.pretrained"),
    (["model.require_pretrained=true"], "model.pretrained"),
])
def test_impossible_configs_fail_before_data_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        build_plan(spec_for(*overrides))


@pytest.mark.parametrize("method, c, multiple", [("fshift", 32, 512), ("pool_avg", 32, 512),
                                                ("patch_pi", 32, 512), ("patch_bl", 64, 1024)])
def test_an_untiled_input_names_the_target_length_that_fits(method, c, multiple):
    """The fix is the same for every method: T a multiple of the base time patch x C (a patch
    method's wider patch on T frames, or the base patch on T / C frames)."""
    with pytest.raises(ConfigError, match=f"a multiple of {multiple} or a smaller schedule.c"):
        build_plan(spec_for(f"compression={method}", "schedule=2phase", f"schedule.c={c}"))
    fixed = spec_for(f"compression={method}", "schedule=2phase", f"schedule.c={c}",
                     f"dataset.target_length={multiple}")
    assert build_plan(fixed).phases[0].c == c


@pytest.mark.parametrize("method, schedule, length, fit", [
    ("fshift", "2phase", 50, "64"),  # its first error names C = 4's multiple, 4
    ("fshift", "2phase", 385, "384 or 448"),
    ("patch_pi", "3phase", 100000, "99968 or 100032"),
    ("pool_max", "custom", 300, "256 or 384"),  # C = 8, 4, 2, 1: multiples of 8 x 16
])
def test_an_input_length_that_some_phase_cannot_take_names_those_that_fit_every_phase(
        method, schedule, length, fit):
    """One answer for all phases, where each phase's error names only its own multiple (the
    user who follows it meets the next phase's)."""
    with pytest.raises(ConfigError, match=f"takes dataset.target_length={fit}, the nearest to "
                                          f"{length}$"):
        build_plan(spec_for(f"compression={method}", f"schedule={schedule}",
                            f"dataset.target_length={length}"))
    for each in fit.split(" or "):
        assert build_plan(spec_for(f"compression={method}", f"schedule={schedule}",
                                   f"dataset.target_length={each}", "dataset.timem=16"))


@pytest.mark.parametrize("override, says", [
    ("optim.lr=abc", "`optim.lr`: takes a number, got 'abc'"),
    ("dataset.epochs=true", "`dataset.epochs`: takes an integer, got True"),
    ("dataset.batch_size=1.5", "`dataset.batch_size`: takes an integer, got 1.5"),
    ("model.patch=[16]", "`model.patch`: takes a list of 2 integers, got [16]"),
    ("dataset.mixup=[0.5]", "`dataset.mixup`: takes a number, got [0.5]"),
    ("trainer.threads=two", "`trainer.threads`: takes an integer or null, got 'two'"),
    ("dataset.noise=1", "`dataset.noise`: takes true or false, got 1"),
    ("+model.batch_mixup=adjacent", "`model.batch_mixup`: takes a mapping or null"),
    ("seed=1.5", "`seed`: takes an integer, got 1.5"),
])
def test_values_of_the_wrong_kind_fail_naming_the_key_and_what_it_takes(override, says):
    """Not as a TypeError in a later comparison (`'abc' > 0`)."""
    with pytest.raises(ConfigError) as raised:
        spec_for(override)
    assert str(raised.value).startswith(says)


def test_integers_stand_for_numbers_and_lists_for_tuples():
    """Every preset and sweep job passes the same checks (tests/test_configs.py,
    tests/test_sweeps.py build their specs)."""
    spec = spec_for("optim.lr=1", "model.patch=[16,16]", "trainer.num_workers=auto")
    assert spec.optim.lr == 1 and spec.model.patch == (16, 16)


def test_predicted_flops_equal_flops_counted_on_a_real_batch():
    def factory():
        return AST(num_mel_bins=64, frames=96, patch=(16, 16), num_classes=5, embed_dim=32,
                   depth=2, num_heads=2, dist_token=True)

    predicted = predicted_flops_per_sample(factory, 96, 64)
    counted = training_flops(factory(), torch.randn(3, 96, 64))
    assert counted == 3 * predicted


def test_run_identity_ignores_paths_and_logger_but_not_semantics():
    a = spec_for("paths.runs_dir=/tmp/a", "logger=disabled", "trainer.progress=false")
    b = spec_for("paths.runs_dir=/tmp/b")
    c = spec_for("seed=1")
    assert a.run_id == b.run_id != c.run_id
    assert a.run_dir.parent.name == "default"
    moved = [spec_for("dataset=vggsound", f"paths.data_dir={root}") for root in ("/x", "/y")]
    assert moved[0].run_id == moved[1].run_id != spec_for("dataset=voxceleb1").run_id


def test_a_key_added_later_keeps_the_ids_of_runs_made_before_it():
    """`dataset.noise` came after runs existed: off, it is not part of the identity, so the
    default run keeps the id that `make run` printed before (README), and resumes."""
    make_run = ("compression=fshift", "schedule=2phase", "schedule.c=4")
    plain, noisy = spec_for(*make_run), spec_for(*make_run, "dataset.noise=true")
    assert "noise" not in plain.semantic["dataset"] and noisy.semantic["dataset"]["noise"]
    assert plain.run_id == "10964b71ea" != noisy.run_id


def test_flops_predictions_are_reused_from_disk_and_never_across_models(monkeypatch, tmp_path):
    import c2f.plan

    monkeypatch.setenv("C2F_CACHE_DIR", str(tmp_path))
    spec = spec_for("compression=fshift", "schedule=2phase", "model.embed_dim=48")
    first = [p.flops_per_sample for p in build_plan(spec).phases]
    assert (tmp_path / "flops.json").is_file()

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted again")

    c2f.plan._flops_per_sample.cache_clear()  # a new process: only the file remembers
    monkeypatch.setattr(c2f.plan, "predicted_flops_per_sample", no_prediction)
    assert [p.flops_per_sample for p in build_plan(spec).phases] == first
    renamed = spec_for("compression=fshift", "schedule=2phase", "model.embed_dim=48",
                       "model.name=mine")
    assert [p.flops_per_sample for p in build_plan(renamed).phases] == first
    with pytest.raises(AssertionError, match="predicted again"):
        build_plan(spec_for("compression=fshift", "schedule=2phase", "model.embed_dim=64"))
    (tmp_path / "flops.json").write_text("{torn")  # a damaged cache is recomputed
    c2f.plan._flops_per_sample.cache_clear()
    monkeypatch.undo()
    monkeypatch.setenv("C2F_CACHE_DIR", str(tmp_path))
    assert [p.flops_per_sample for p in build_plan(spec).phases] == first


def test_flops_print_in_a_unit_that_shows_them():
    """A run's compute in TFLOPs as the paper counts it, unless that reads 0.000 (a tiny model
    of your own): then the largest unit that shows every value."""
    assert flops_text(8.791e12) == "8.791 TFLOPs" and flops_text(0.624e12) == "0.624 TFLOPs"
    assert flops_text(2.44e8) == "0.244 GFLOPs" and flops_text(0) == "0.000 TFLOPs"
    assert flops_unit([0.5e12, 2e9]) == (1e9, "GFLOPs")  # the smallest nonzero value decides
    assert flops_unit([3e11], largest="GFLOPs") == (1e9, "GFLOPs")  # per sample: GFLOPs at most
    assert flops_unit([3.7e4, 3.7e4], largest="GFLOPs") == (1e6, "MFLOPs")
    assert flops_unit([3.0], largest="GFLOPs") == (1e3, "kFLOPs")


def test_a_plans_code_version_follows_the_files_its_method_and_model_are_built_on():
    """A family built on c2f's AST (a plugin's, here one defined in this test) depends on
    c2f/models/ast.py; HTS-AT's does not, so an edit to AST keeps HTS-AT's cached plans."""
    from pathlib import Path

    import c2f.models.ast
    import c2f.models.htsat
    from c2f.flops_cache import _uses
    from c2f.models import model_family

    class Wider(type(model_family("ast"))):  # a user's variant of the AST family
        pass

    ast_file = Path(c2f.models.ast.__file__).resolve()
    assert ast_file in _uses(Wider) and Path(__file__).resolve() in _uses(Wider)
    htsat = _uses(type(model_family("htsat")))
    assert Path(c2f.models.htsat.__file__).resolve() in htsat and ast_file not in htsat


def test_the_flops_cache_file_is_as_readable_as_open_makes_it(tmp_path, monkeypatch):
    """C2F_CACHE_DIR may be a lab's shared folder (NamedTemporaryFile made it 0o600)."""
    from c2f.files import file_mode
    from c2f.flops_cache import cache_file, cached

    monkeypatch.setenv("C2F_CACHE_DIR", str(tmp_path))
    assert cached("a key", lambda: 7) == 7 and cached("a key", lambda: 8) == 7
    assert cache_file().stat().st_mode & 0o777 == file_mode()


def test_a_method_that_changes_the_features_at_c1_is_refused_by_the_plan(monkeypatch):
    """C = 1 is every method's identity: its full-resolution phase, and a trained model used
    without the method's code (c2f.trained builds C = 1 with `none`), rely on it."""
    from c2f.compression import _REGISTRY, register
    from c2f.compression.pool import AvgPool

    _REGISTRY.names()
    monkeypatch.setattr(_REGISTRY, "classes", dict(_REGISTRY.classes))

    @register("pool_and_gain")
    class PoolAndGain(AvgPool):
        def transform(self, fbank, c):
            return super().transform(fbank, c) * 2.0

    with pytest.raises(ConfigError, match=r"`compression=pool_and_gain` at C = 1 \(phase 1\): "
                                          r"transform changes the features at C = 1"):
        build_plan(spec_for("compression.name=pool_and_gain", "schedule=2phase"))


@pytest.mark.parametrize("phases", ["[8,4,2]", "[2,4,1]", "[4,1,1]"])
def test_phases_go_coarse_to_fine_and_end_at_full_resolution(phases):
    with pytest.raises(ConfigError, match=r"`schedule.phases`: phases go coarse to fine, C "
                                          r"falling to 1"):
        build_plan(spec_for("compression=fshift", "schedule=custom",
                            f"schedule.phases={phases}"))
    # one phase at C alone (Table 1's Pool2) stays a plan
    assert build_plan(spec_for("compression=pool_max", "schedule=baseline",
                               "schedule.c=2")).phases[0].c == 2
