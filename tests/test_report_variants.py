"""Runs of one table cell that differ in another setting (report/variants.py): rows of their
own, each against the baseline of its setting, with the settings in their own CSV columns."""
from __future__ import annotations

import csv

import pytest

from c2f.report.cli import main
from c2f.report.layout import paper_tables
from c2f.report.paper import load_paper
from c2f.report.runs import load_runs
from c2f.report.savings import aggregate, pair
from c2f.report.tables import label
from tests.report_fixtures import make_run


def test_runs_that_differ_in_a_setting_are_rows_of_their_own_not_duplicates(tmp_path):
    """One group swept over the learning rate and a method's option: each option is a row of
    its own, each against the baseline of its learning rate. Settings outside a run's identity
    (precision, paths) tell nothing apart, and a run that differs in nothing is a duplicate."""
    fast = {"trainer": {"precision": "bf16"}, "paths": {"runs_dir": "/elsewhere"}}
    make_run(tmp_path, "b1", values=[0.2, 0.3, 0.4, 0.5], setting={"optim": {"lr": 0.001}})
    make_run(tmp_path, "b2", values=[0.2, 0.6, 0.4, 0.4], setting={"optim": {"lr": 0.002}})
    for lr in (0.001, 0.002, 0.003):
        for k in (1, 2):
            make_run(tmp_path, f"c{lr}-{k}", method="fshift", phases=(4, 1), values=[0, .5, .6, .6],
                     setting={"optim": {"lr": lr}, "compression": {"options": {"k": k}}, **fast})
    make_run(tmp_path, "later", method="fshift", phases=(4, 1), values=[0, 0.1, 0.1, 0.1],
             setting={"optim": {"lr": 0.001}, "compression": {"options": {"k": 1}}})
    runs, _ = load_runs([tmp_path])
    _, outcomes, warnings = pair(runs)
    assert [w for w in warnings if "duplicate" in w] == [
        f"duplicate run for ds/m [optim.lr=0.001]/4/fshift [compression.options.k=1]/4-1/0: "
        f"using {tmp_path / 'group' / 'c0.001-1'}, ignoring {tmp_path / 'group' / 'later'}"]
    found = {(o.run.model, o.run.method): o for o in outcomes}
    assert len(found) == 6
    for k in (1, 2):  # lr 0.001: M_B 0.5 reached at epoch 2 (125 of 400 FLOPs); lr 0.002:
        # M_B 0.6 at epoch 3 (225 of 200); lr 0.003 has no baseline
        method = f"fshift [compression.options.k={k}]"
        assert found[("m [optim.lr=0.001]", method)].flops_save == pytest.approx(1 - 125 / 400)
        assert found[("m [optim.lr=0.002]", method)].flops_save == pytest.approx(1 - 225 / 200)
        assert found[("m [optim.lr=0.003]", method)].status == "no baseline"
    assert label("fshift [compression.options.k=2]", "4-1") == \
        "Fshift [compression.options.k=2] 4→1"
    assert any("no baseline for ds/m [optim.lr=0.003]" in w and
               "; train it: the command of this run with compression=none schedule=baseline (in "
               "a sweep of rows: +row=baseline); " in w and "optim.lr=0.003 (the baseline's: 0.00"
               in w for w in warnings)
    assert main([str(tmp_path), "--no-plots"]) == 0
    runs_csv = list(csv.DictReader((tmp_path / "report" / "runs.csv").open()))
    [ignored] = [r for r in runs_csv if r["budget_status"].startswith("ignored")]
    assert ignored["path"].endswith("later") and ignored["budget_status"] == \
        "ignored: a duplicate (see the warnings)"
    assert {(r["model"], r["model_setting"], r["method"], r["method_setting"])
            for r in runs_csv if r["method"] == "fshift"} == {
        ("m", f"optim.lr={lr}", "fshift", f"compression.options.k={k}")
        for lr in (0.001, 0.002, 0.003) for k in (1, 2)}
    assert {(r["model_setting"], r["method_setting"]) for r in runs_csv
            if r["method"] == "none"} == {("optim.lr=0.001", ""), ("optim.lr=0.002", "")}
    savings = list(csv.DictReader((tmp_path / "report" / "savings.csv").open()))
    row = [r for r in savings if r["criterion"] == "budget" and r["model_setting"] ==
           "optim.lr=0.002" and r["method_setting"] == "compression.options.k=2"]
    assert [(r["model"], r["method"], r["label"]) for r in row] == [
        ("m", "fshift", "Fshift [compression.options.k=2] 4->1")]


def test_runs_on_two_versions_of_a_datasets_data_are_said_and_paired_by_version(tmp_path):
    """A folder prepared again (other manifests, another dataset.digest): each version's
    runs are rows of their own against that version's baseline, and the report says so."""
    for digest, best in (("aaaa", 0.5), ("bbbb", 0.6)):
        data = {"dataset": {"digest": digest}}
        make_run(tmp_path, f"b-{digest}", values=[0.2, 0.3, 0.4, best], setting=data)
        make_run(tmp_path, f"f-{digest}", method="fshift", phases=(4, 1),
                 values=[0, 0.5, 0.6, 0.6], setting=data)
    runs, warnings = load_runs([tmp_path])
    assert warnings == ["dataset ds: runs on 2 versions of its data (dataset.digest aaaa, "
                        "bbbb: its manifests or label CSV changed); each version's runs are "
                        "rows of their own, paired with that version's baseline; `--where "
                        "dataset.digest=<one of them>` reports one version alone"]
    _, outcomes, _ = pair(runs)
    assert {o.run.model for o in outcomes} == {"m [dataset.digest=aaaa]",
                                               "m [dataset.digest=bbbb]"}
    one = load_runs([tmp_path / "group" / "b-aaaa", tmp_path / "group" / "f-aaaa"])
    assert one[1] == []  # one version: nothing to say


def test_where_reports_only_the_runs_with_a_setting(tmp_path, capsys):
    """`--where KEY=VALUE` keeps the runs whose config has that value: one version of a
    dataset's data, one learning rate (given as 1e-3 for 0.001), and says so in the tables.
    Keys and values no run has are refused with what the runs do have."""
    for digest, lr, best in (("aaaa", 0.001, 0.5), ("bbbb", 0.002, 0.6)):
        data = {"dataset": {"digest": digest}, "optim": {"lr": lr}}
        make_run(tmp_path, f"b-{digest}", values=[0.2, 0.3, 0.4, best], setting=data)
        make_run(tmp_path, f"f-{digest}", method="fshift", phases=(4, 1),
                 values=[0, 0.5, 0.6, 0.6], setting=data)
    make_run(tmp_path, "unfinished", values=[0.1], setting={"dataset": {"digest": "bbbb"}},
             finished=False)
    assert main([str(tmp_path), "--no-plots", "--where", "dataset.digest=aaaa"]) == 0
    report = tmp_path / "report"
    runs = list(csv.DictReader((report / "runs.csv").open()))
    assert sorted((r["path"].rsplit("/", 1)[1], r["model"], r["model_setting"]) for r in runs) \
        == [("b-aaaa", "m", ""), ("f-aaaa", "m", "")]  # one version: no variant to name
    tables = (report / "tables.md").read_text()
    assert "Only the runs with dataset.digest=aaaa (--where)." in tables
    assert "versions of its data" not in tables and "unfinished" not in tables
    assert "Only the runs with dataset.digest=aaaa" in (report / "index.html").read_text()
    assert main([str(tmp_path), "--no-plots", "--where", "optim.lr=1e-3",
                 "--out", str(tmp_path / "lr")]) == 0
    runs = list(csv.DictReader((tmp_path / "lr" / "runs.csv").open()))
    assert sorted(r["path"].rsplit("/", 1)[1] for r in runs) == ["b-aaaa", "f-aaaa"]
    capsys.readouterr()
    assert main([str(tmp_path), "--where", "optim.learning_rate=0.001"]) == 2
    assert "no run has the key optim.learning_rate (did you mean optim.lr?)" in \
        capsys.readouterr().err
    assert main([str(tmp_path), "--where", "dataset.digest=cccc"]) == 2
    assert "no run has that value; the runs have dataset.digest = aaaa, bbbb" in \
        capsys.readouterr().err
    assert main([str(tmp_path), "--where", "dataset.digest=aaaa",
                 "--where", "optim.lr=0.002"]) == 2
    assert "no run matches every --where dataset.digest=aaaa optim.lr=0.002 at once" in \
        capsys.readouterr().err
    for odd in ("[old", "@x", "*x"):  # text YAML cannot read: a value no run has, no traceback
        assert main([str(tmp_path), "--where", f"dataset.digest={odd}"]) == 2
        assert "no run has that value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--where", "optim.lr"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_a_c1_run_of_another_method_never_replaces_the_baseline(tmp_path):
    """`-m compression=fshift,none schedule=baseline,2phase` makes two C = 1 runs (fshift at
    C = 1 is the identity): compression=none is the baseline, the other is said."""
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "a_fshift_c1", method="fshift", values=[0.2, 0.3, 0.4, 0.9])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.3, 0.5, 0.6])
    runs, _ = load_runs([tmp_path])
    _, outcomes, warnings = pair(runs)
    [outcome] = [o for o in outcomes if o.run.method == "fshift"]
    assert outcome.ref.metric == 0.5 and outcome.status == "reached"
    assert warnings == [f"{tmp_path / 'group' / 'a_fshift_c1'}: a second C = 1 run for ds/m "
                        f"seed 0 (method fshift); the baseline is {tmp_path / 'group' / 'base'}"]
    # a compression=none run that has not finished gives way to a finished C = 1 run
    make_run(tmp_path, "base1", values=[0.2], seed=1, finished=False)
    make_run(tmp_path, "fshift_c1_1", method="fshift", values=[0.2, 0.3, 0.4, 0.7], seed=1)
    make_run(tmp_path, "c2f1", method="fshift", phases=(4, 1), values=[0.1, 0.3, 0.5, 0.7],
             seed=1)
    runs, _ = load_runs([tmp_path])
    _, outcomes, _ = pair(runs)
    [seed1] = [o for o in outcomes if o.run.seed == 1 and o.run.method == "fshift"]
    assert seed1.status == "reached" and seed1.ref.metric == 0.7


def test_time_savings_across_kinds_of_device_are_warned_about(tmp_path):
    """Each epoch record says the device it ran on: a run whose baseline ran on another kind
    of device (another GPU model, a CPU with other threads) has time savings that compare
    machines, and the report says so; the same device is no warning."""
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5], device="NVIDIA A100")
    make_run(tmp_path, "same", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5],
             device="NVIDIA A100")
    make_run(tmp_path, "other", method="pool_avg", phases=(4, 1), values=[0, 0.5, 0.5, 0.5],
             device="Tesla V100")
    runs, _ = load_runs([tmp_path])
    _, _, warnings = pair(runs)
    mixed = [w for w in warnings if "time savings compare different machines" in w]
    assert len(mixed) == 1 and "other: trained on Tesla V100" in mixed[0]
    assert "on NVIDIA A100" in mixed[0]


def test_a_run_trained_past_the_budget_is_named_and_the_recipe_rows_keep_the_paper(tmp_path):
    """One longer run (schedule.final_epochs set: the paper's "until convergence" setting)
    beside the recipe's runs: the longer run is named by its setting, the runs at their
    schedule file's value (final_epochs null: the final phase fills the budget) keep their
    plain name and with it the paper's column. The recipe is the schedule's own: 3phase's
    initial_fraction is 0.3, not the 0.25 of the baseline's file."""
    recipe = {"schedule": {"final_epochs": None}}
    for seed in (0, 1):
        make_run(tmp_path, f"b{seed}", values=[0.2, 0.3, 0.4, 0.5], dataset="vggsound",
                 model="ast_base", seed=seed, budget=20, setting=recipe)  # paper §3.2
        make_run(tmp_path, f"f{seed}", method="fshift", phases=(4, 1), values=[0, .5, .6, .6],
                 dataset="vggsound", model="ast_base", seed=seed, budget=20, setting=recipe)
    make_run(tmp_path, "long", method="fshift", phases=(4, 1), epochs=(1, 6), budget=20,
             values=[0, .4, .5, .6, .6, .6, .7], dataset="vggsound", model="ast_base",
             setting={"schedule": {"final_epochs": 6}})
    runs, _ = load_runs([tmp_path])
    _, outcomes, warnings = pair(runs)
    assert not [w for w in warnings if "duplicate" in w]
    assert sorted({o.run.method for o in outcomes}) == [
        "fshift", "fshift [schedule.final_epochs=6]"]
    cells = aggregate(runs, 0.0)
    [two] = [t for t in paper_tables(cells, load_paper(), 0.0) if t.key == "2"]
    rows = {row[0]: row for row in two.rows}
    assert rows["Fshift 4→1"][-1] == "49.90 / 58.31 / 55.00"  # VGGSound @20ep, paper column
    assert rows["Fshift [schedule.final_epochs=6] 4→1"][-1] in ("", "-")
    for name, fraction in (("t30", 0.3), ("t25", 0.25)):
        make_run(tmp_path, name, method="pool_avg", phases=(4, 2, 1), values=[0, .3, .5, .6],
                 setting={"schedule": {"name": "3phase", "initial_fraction": fraction}})
    _, outcomes, _ = pair(load_runs([tmp_path])[0])
    assert sorted(o.run.method for o in outcomes if o.run.method.startswith("pool_avg")) == [
        "pool_avg", "pool_avg [schedule.initial_fraction=0.25]"]
