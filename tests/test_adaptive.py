"""schedule=adaptive: the switching rules, a real run that switches, its resume at any moment,
and the report's rows for it."""
from __future__ import annotations

import csv
import json

import pytest

from c2f.spec import SwitchSpec
from c2f.train.switching import switch_reason
from tests.conftest import ROOT, TINY, cli_env, kill_after_records, read_metrics, run_cli, run_dirs
from tests.warm_python import run_python

ADAPTIVE = [*TINY, "logger=disabled", "compression=fshift", "schedule=adaptive",
            "schedule.c=4", "dataset.epochs=10"]
SAME = ("value", "train_loss", "eval_loss", "flops", "flops_cum", "samples", "lr", "C", "phase",
        "switch")


def test_plateau_waits_patience_epochs_past_the_best_gain_over_min_delta():
    rule = SwitchSpec(rule="plateau", patience=2, min_delta=0.01)
    assert switch_reason(rule, [0.1, 0.3, 0.305], 0.25) is None  # 1 epoch without a gain
    reason = switch_reason(rule, [0.1, 0.3, 0.305, 0.309], 0.25)
    assert reason.startswith("plateau") and "best 0.3000 at epoch 2" in reason
    assert switch_reason(rule, [0.1, 0.3, 0.305, 0.32], 0.25) is None  # +0.02 counts
    assert switch_reason(SwitchSpec(min_epochs=5), [0.5, 0.4, 0.3, 0.2], 0.25) is None


def test_epochs_without_a_metric_do_not_count_towards_a_plateau():
    """An undefined metric (null: no class of the eval set has both positives and negatives)
    is skipped; comparing it failed (None) or never beat the best (NaN)."""
    from c2f.plan import build_plan
    from c2f.train.switching import phase_decision
    from tests.test_batch_mixup import spec_of

    spec = spec_of("compression=fshift", "schedule=adaptive", "dataset.epochs=20",
                   "schedule.switch.rule=plateau", "schedule.switch.patience=2",
                   "schedule.switch.min_epochs=1")
    records = [{"phase": 0, "value": v} for v in (None, 0.1, 0.3, float("nan"), 0.3)]
    assert phase_decision(spec.schedule.switch, build_plan(spec), 0, records, 5, 10,
                          "epoch") is None  # 0.1, 0.3, 0.3: one epoch without a gain
    decision = phase_decision(spec.schedule.switch, build_plan(spec), 0,
                              [*records, {"phase": 0, "value": 0.3}], 6, 10, "epoch")
    # the best is the phase's epoch 3, not the 2nd defined value (review 6 F10)
    assert decision["reason"] == "plateau: no gain over 0 for 2 epoch(s) (best 0.3000 at " \
        "epoch 3 of the phase)"
    # a phase where no epoch has a metric runs to its cap, and says the rule never ran (F3)
    never = [{"phase": 0, "value": None, "metric": "mAP"}] * 10
    assert phase_decision(spec.schedule.switch, build_plan(spec), 0, never[:9], 9, 10,
                          "epoch") is None
    assert phase_decision(spec.schedule.switch, build_plan(spec), 0, never, 10, 10,
                          "epoch")["reason"] == "cap: 10 epochs (no epoch of the phase had a " \
        "defined mAP: the rule was never checked)"


def test_budget_switches_when_recent_gain_per_flop_falls_below_the_next_phases():
    """Next phase predicted at the phase's mean gain per epoch, 4x the cost: switch once the
    recent slope is below a quarter of the mean slope."""
    rule = SwitchSpec(rule="budget", patience=1)
    assert switch_reason(rule, [0.1], 0.25) is None  # no slope yet
    assert switch_reason(rule, [0.1, 0.3, 0.45], 0.25) is None  # +0.15 >= 0.25 * 0.175
    reason = switch_reason(rule, [0.1, 0.3, 0.45, 0.47], 0.25)  # +0.02 < 0.25 * 0.1233
    assert reason.startswith("budget") and "+0.0200/epoch" in reason
    # the gain counts from where the phase began (the previous phase's last value)
    assert switch_reason(rule, [0.40, 0.42], 0.25, before=0.1) is not None
    assert switch_reason(rule, [0.40, 0.50], 0.25, before=0.1) is None
    assert switch_reason(rule, [0.3, 0.2], 0.25) is not None  # falling: no gain to wait for


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    runs = tmp_path_factory.mktemp("adaptive") / "runs"
    proc = run_cli(ADAPTIVE, runs, data_dir)
    [run] = run_dirs(runs)
    return run, proc.stdout


@pytest.mark.parametrize("overrides, says", [
    (["schedule.switch.min_epochs=12"], r"`schedule.switch.min_epochs`=12 is not less than the "
                                        r"cap of 10 epoch\(s\) an initial phase may train"),
    (["schedule.switch.min_epochs=10"], r"`schedule.switch.min_epochs`=10 is not less than"),
    (["schedule.switch.patience=9"], r"`schedule.switch.patience`=9: the plateau rule can end a "
                                     r"phase after 10 epochs at the earliest, which is not before"),
    (["schedule.switch.rule=budget", "schedule.switch.patience=10"], r"the budget rule"),
])
def test_an_adaptive_rule_that_could_never_end_a_phase_early_is_refused(overrides, says):
    """20 epochs, max_fraction 0.5: a cap of 10 for the coarse phase; a rule that cannot end it
    before then would run a fixed schedule that says it adapts."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from c2f.plan import build_plan
    from c2f.spec import ConfigError, build_spec

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["compression=fshift", "schedule=adaptive",
                                           "dataset.epochs=20", *overrides])
    with pytest.raises(ConfigError, match=says):
        build_plan(build_spec(OmegaConf.to_container(cfg, resolve=True)))


@pytest.mark.parametrize("overrides, refused", [
    (["schedule.steps=[40,40]", "pretrain.eval_every=20"], True),  # 2 evaluations, patience 2
    (["schedule.steps=[40,40]", "pretrain.eval_every=10"], False),  # 4: may end at the third
    (["schedule.steps=[40,40]", "pretrain.eval_every=10", "schedule.switch.min_epochs=4"], True),
])
def test_a_step_based_rule_that_could_never_end_a_pretraining_phase_is_refused(overrides,
                                                                              refused):
    """SSAST pretraining counts evaluations: a phase of 40 steps evaluated every 20 has two,
    the last at its cap; patience 2 needs three."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from c2f.plan import build_plan
    from c2f.spec import ConfigError, build_spec

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("pretrain", overrides=[
            "dataset=builtin", "dataset.target_length=128", "model.embed_dim=32",
            "model.depth=1", "model.num_heads=2", "compression=fshift", "schedule=adaptive",
            "schedule.phases=[4,1]", *overrides])
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    if not refused:
        assert [p.steps for p in build_plan(spec).phases] == [40, 40]
        return
    with pytest.raises(ConfigError, match=r"`schedule.switch`: the plateau rule can end a phase "
                                          r"after \d evaluations at the earliest"):
        build_plan(spec)


def test_an_adaptive_run_switches_once_and_fills_the_budget(straight):
    run, out = straight
    records = read_metrics(run)
    [decision] = [r["switch"] for r in records if "switch" in r]
    coarse = [r for r in records if r["C"] == 4]
    assert decision["epochs"] == len(coarse) < 5  # before its cap of half the budget
    assert decision["reason"].startswith("plateau")
    assert f"phase 0 (C = 4) ends after {len(coarse)} epoch(s): plateau" in out
    assert len(records) == 10 and [r["C"] for r in records] == [4] * len(coarse) + [1] * (
        10 - len(coarse))
    plan = json.loads((run / "plan.json").read_text())
    assert plan["switches"] == [decision]
    assert [p["epochs"] for p in plan["phases"]] == [len(coarse), 10 - len(coarse)]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["at", "after"])
def test_a_resumed_adaptive_run_decides_the_same_bitwise(straight, tmp_path, data_dir,
                                                        kill_after):
    """Killed right at its decision (its record written, maybe not its checkpoint) and in the
    final phase: the resumed run keeps or remakes the same decision at the same epoch and ends
    with the same metrics."""
    run, _ = straight
    expected = read_metrics(run)
    at = next(i for i, r in enumerate(expected, 1) if "switch" in r)
    runs = tmp_path / "runs"
    kill_after_records(ADAPTIVE, {"at": at, "after": at + 2}[kill_after],
                       runs, data_dir)
    run_cli(ADAPTIVE, runs, data_dir)
    [again] = run_dirs(runs)
    assert [{k: r.get(k) for k in SAME} for r in read_metrics(again)] == [
        {k: r.get(k) for k in SAME} for r in expected]
    assert json.loads((again / "plan.json").read_text())["switches"] == json.loads(
        (run / "plan.json").read_text())["switches"]


@pytest.mark.slow
def test_the_report_gives_adaptive_runs_their_own_rows_and_says_where_they_switched(
        straight, tmp_path, data_dir):
    run, _ = straight
    fixed = tmp_path / "runs"
    run_cli([*ADAPTIVE, "schedule=2phase"], fixed, data_dir)
    proc = run_python(["-m", "c2f.report", str(fixed), str(run.parent), "--no-plots", "--out",
                       str(tmp_path / "report")], ROOT, cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["schedule"]: r for r in csv.DictReader((tmp_path / "report" / "runs.csv").open())}
    decision = next(r["switch"] for r in read_metrics(run) if "switch" in r)
    assert set(rows) == {"4-1", "4~1:plateau"}
    assert rows["4~1:plateau"]["switched"] == f"C=4: {decision['epochs']} epochs (plateau)"
    assert rows["4-1"]["switched"] == ""
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "| Fshift 4→1 (adaptive, plateau) |" in text and "| Fshift 4→1 |" in text
    assert f"Fshift 4→1 (adaptive, plateau), seed 0: C=4: {decision['epochs']} epochs" in text
