"""A table cell's numbers. Over several seeds they average every seed judged by the budget
criterion (reached, or not reached and taken at its best final-phase epoch), never only the
seeds that reached; seeds not judged yet, or never to be, are counted apart and said. Ties
reach by default; --strict reads the paper's "surpasses" literally."""
from __future__ import annotations

import csv
import json

import pytest

from c2f.report.cli import main
from c2f.report.runs import load_runs
from c2f.report.savings import aggregate, pair
from tests.report_fixtures import make_run
from tests.test_report import table


def two_seeds(root, second: list[float], finished: bool = True) -> None:
    """Baselines of seeds 0 and 1 (M_B 0.5 at epoch 4, FLOPs 400) and Fshift 4->1 of both:
    seed 0 reaches 0.5 at epoch 2 (125 FLOPs), seed 1 gives `second`."""
    for seed in (0, 1):
        make_run(root, f"b{seed}", values=[0.2, 0.3, 0.4, 0.5], seed=seed)
    make_run(root, "c0", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5], seed=0)
    make_run(root, "c1", method="fshift", phases=(4, 1), values=second, seed=1,
             finished=finished, budget=4)


def fshift_cell(root):
    cells = {(c.method, c.schedule): c for c in aggregate(load_runs([root])[0])}
    return cells[("fshift", "4-1")]


def test_a_cell_where_one_seed_reached_averages_both_seeds(tmp_path):
    """Seed 1 never reaches 0.5: its best final-phase epoch (0.4 at epoch 3, 225 of 400 FLOPs)
    goes into the mean with seed 0's 0.5 (at epoch 2, 125 of 400 FLOPs), not left out."""
    two_seeds(tmp_path, [0, 0.3, 0.4, 0.35])
    cell = fshift_cell(tmp_path)
    assert cell.status == "1/2 reached"
    assert (cell.value.n, cell.value.mean) == (2, pytest.approx(0.45))
    assert cell.diff.mean == pytest.approx(-0.05) and cell.diff.std > 0
    assert cell.flops_save.mean == pytest.approx(((1 - 125 / 400) + (1 - 225 / 400)) / 2)
    [_, row] = table(tmp_path, "2")[1]
    assert row[1] == "45.00±7.07 (-5.00±7.07) [1/2 reached] [n=2]"
    assert main([str(tmp_path), "--no-plots"]) == 0
    [saved] = [r for r in csv.DictReader((tmp_path / "report" / "savings.csv").open())
               if r["method"] == "fshift" and r["criterion"] == "budget"]
    assert (saved["value_n"], saved["value_std"], saved["diff_std"]) == (
        "2", "7.0711", "7.0711")


def test_a_seed_still_running_leaves_the_cell_undecided_and_its_n_says_so(tmp_path):
    """Seed 1 has not reached yet and is still training: the cell is seed 0's alone, marked
    as such, with no spread of one value."""
    two_seeds(tmp_path, [0, 0.3, 0.4], finished=False)
    cell = fshift_cell(tmp_path)
    assert cell.status == "reached, 1 pending" and cell.value.n == 1
    [_, row] = table(tmp_path, "2")[1]
    assert row[1] == "50.00 (+0.00) [reached, 1 pending] [n=1 of 2]"
    assert main([str(tmp_path), "--no-plots"]) == 0
    saved = {r["criterion"]: r for r in csv.DictReader(
        (tmp_path / "report" / "savings.csv").open()) if r["method"] == "fshift"}
    assert (saved["budget"]["value_n"], saved["budget"]["value_std"],
            saved["budget"]["seeds"]) == ("1", "", "2")
    # convergence rows carry their own criterion's status: seed 1's best is not known yet
    assert (saved["convergence"]["status"], saved["convergence"]["value_n"]) == (
        "finished, 1 unfinished", "1")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<td>finished, 1 unfinished</td>" in page and "<td>reached, 1 pending</td>" in page


def test_a_diverged_seed_is_not_pending_forever(tmp_path):
    two_seeds(tmp_path, [0, 0.3, 0.4], finished=False)
    (tmp_path / "group" / "c1" / "diverged.json").write_text(json.dumps(
        {"message": "loss is NaN at step 30; lower optim.lr"}))
    _, outcomes, _ = pair(load_runs([tmp_path])[0])
    assert {o.run.seed: o.status for o in outcomes} == {0: "reached", 1: "diverged"}
    assert fshift_cell(tmp_path).status == "reached, 1 diverged"
    (tmp_path / "group" / "c0" / "diverged.json").write_text(json.dumps(  # both: no best
        {"message": "loss is NaN at step 3; lower optim.lr"}))
    (tmp_path / "group" / "c0" / "summary.json").unlink()
    from c2f.report.tables import cell_text
    assert cell_text(fshift_cell(tmp_path), "convergence") == "diverged [n=2]"


def test_strict_reads_surpasses_literally_ties_do_not_reach(tmp_path, capsys):
    """Seed 0 ties its baseline's 0.5 at epoch 2: reached by default (ties count), not with
    --strict, whose caption says so; --strict with --tolerance is refused."""
    make_run(tmp_path, "b0", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c0", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5])
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "(ties count)" in (tmp_path / "report" / "tables.md").read_text()
    assert "± is the sample standard deviation (n - 1)" in (tmp_path / "report" / "tables.md"
                                                           ).read_text()
    assert main([str(tmp_path), "--no-plots", "--strict"]) == 0
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "strictly above it: --strict" in tables and "50.00 (+0.00) n/r" in tables
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--strict", "--tolerance", "0.5"])
    assert "--strict and --tolerance ask for opposite things" in capsys.readouterr().err


def test_dashboard_files_each_plot_under_its_own_dataset(tmp_path):
    """`builtin_multilabel` holds `builtin` in its name: its plots are its own, not builtin's."""
    import re

    for dataset in ("builtin", "builtin_multilabel"):
        root = tmp_path / dataset
        make_run(root, "b0", values=[0.2, 0.3, 0.4, 0.5], dataset=dataset)
        make_run(root, "c0", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5],
                 dataset=dataset)
    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    tags = re.findall(r'<figure data-dataset="([^"]*)"><img alt="([^"]*)"', page)
    assert len(tags) == 4 and all(name.split("_m_")[0].split("_", 1)[1] == dataset
                                  for dataset, name in tags), tags


def test_table6_pairs_each_finetuning_row_with_the_pretraining_run_it_loaded(tmp_path):
    """Beside the pretraining runs the fine-tuning runs loaded, another one-phase pretraining
    run (a shorter trial): the savings stay those of the two runs loaded (recorded in each
    fine-tuning run's plan.json), not of whichever shares the phases; a fine-tuning run that
    recorded none, among two candidates, gets no savings rather than another run's."""
    from c2f.report.layout import paper_tables
    from c2f.report.paper import load_paper
    from tests.report_fixtures import make_pretraining_run

    make_pretraining_run(tmp_path, "pre1", phases=(1,), method="none", flops=1000,
                         seconds=100.0)
    make_pretraining_run(tmp_path, "trial1", phases=(1,), method="none", flops=300,
                         seconds=30.0)
    make_pretraining_run(tmp_path, "pre41", phases=(4, 1), method="fshift", flops=650,
                         seconds=70.0)
    kw = {"dataset": "audioset_balanced", "metric": "mAP", "model": "ssast_base"}
    for name, source, loaded in (("ft1", "pretrain:1", "group/pre1"),
                                 ("ft41", "pretrain:4-1", "group/pre41")):
        run = make_run(tmp_path, name, values=[0.25, 0.29, 0.30], pretrained=source, **kw)
        plan = json.loads((run / "plan.json").read_text())
        (run / "plan.json").write_text(json.dumps(plan | {"pretrained_run": loaded}))

    def fshift_row() -> list[str]:
        tables = paper_tables(aggregate(load_runs([tmp_path])[0]), load_paper())
        six = {t.key: t for t in tables}["6"]
        return next(row for row in six.rows if row[0] == "Fshift 4→1")
    assert fshift_row()[3:5] == ["35.00", "30.00"]  # 1 - 650/1000, 1 - 70/100
    # the same seed fine-tuned again (killed), named by the pretraining run's id, not by
    # `pretrain:`: one seed of the row, not two (the finished one)
    again = make_run(tmp_path, "ft41_again", values=[0.2, 0.2], pretrained="pre41", budget=3,
                     finished=False, **kw)
    (again / "plan.json").write_text(json.dumps(json.loads((again / "plan.json").read_text())
                                                | {"pretrained_run": "group/pre41"}))
    assert {r.path.name: r.pretrained_from for r in load_runs([tmp_path])[0]
            if r.path.name.startswith("ft41")} == {"ft41": "4-1", "ft41_again": "4-1"}
    assert fshift_row()[2] == "30.00 (+0.00)"  # ft41's 0.30, not a mean with 0.20 [n=2]
    plan = json.loads((tmp_path / "group" / "ft1" / "plan.json").read_text())
    del plan["pretrained_run"]  # a run from before that record: pre1 or trial1?
    (tmp_path / "group" / "ft1" / "plan.json").write_text(json.dumps(plan))
    assert fshift_row()[3:5] == ["n/a", "n/a"]


def test_curves_draw_coarse_phases_apart_from_the_final_phase(tmp_path, monkeypatch):
    """A coarse phase's metric is a coarse model's: its points are a dotted line up to the
    final phase's first epoch, the final phase a solid line (labelled), the baseline dashed."""
    from c2f.report import plots

    make_run(tmp_path, "b0", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c0", method="fshift", phases=(4, 1), epochs=(2, 2),
             values=[0.1, 0.2, 0.5, 0.6])
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig))
    plots.curves(load_runs([tmp_path])[0], tmp_path / "c.png")
    flops = drawn["fig"].axes[0]
    lines = [(line.get_linestyle(), list(line.get_xdata()), line.get_label())
             for line in flops.get_lines()
             if len(line.get_xdata()) > 1 and line.get_color() != "grey"]  # not M_B's line
    # FLOPs: 25 per C = 4 epoch, 100 per C = 1 epoch (report_fixtures), in TFLOPs
    assert [(ls, [round(x * 1e12) for x in xs]) for ls, xs, _ in lines] == [
        ("--", [100, 200, 300, 400]), (":", [25, 50, 150]), ("-", [150, 250])]
    assert lines[2][2] == "Fshift 4→1" and lines[1][2].startswith("_")
    # runs not in their final phase yet (a 2-phase run in its coarse phase, a 3-phase run at
    # C = 2): dotted throughout, their label on the dotted line
    make_run(tmp_path, "early", method="fshift", phases=(4, 1), epochs=(3, 1), seed=1,
             values=[0.1, 0.2, 0.3], finished=False)
    make_run(tmp_path, "mid", method="pool_avg", phases=(4, 2, 1), epochs=(1, 2, 1),
             values=[0.1, 0.2, 0.3], finished=False)
    drawn.clear()
    plots.curves(load_runs([tmp_path])[0], tmp_path / "c.png")
    styles = {line.get_label(): line.get_linestyle() for line in drawn["fig"].axes[0].get_lines()
              if not line.get_label().startswith("_")}
    assert styles["Avg Pool 4→2→1"] == ":"
    solid = [line for line in drawn["fig"].axes[0].get_lines() if line.get_linestyle() == "-"]
    assert [[round(x * 1e12) for x in line.get_xdata()] for line in solid] == [[150, 250]]
    # (c0's C = 1 alone: neither unfinished run is drawn solid); each ends in an x where it
    # stopped, and the legend says what the x is
    crosses = [[round(x * 1e12) for x in line.get_xdata()]
               for line in drawn["fig"].axes[0].get_lines() if line.get_marker() == "x"]
    assert sorted(crosses) == [[75], [125]]  # early: 3 epochs at C = 4; mid: 25 + 2 x 50
    assert "x = last epoch of an unfinished run" in \
        drawn["fig"].axes[0].get_legend().get_title().get_text()


def test_an_early_peak_of_the_baseline_and_noisy_epoch_times_are_warned_about(tmp_path):
    """A baseline whose best epoch is its first of five: every coarse-to-fine run is judged
    against an early peak, and the report says so (an averaged baseline, whose result is its
    end, is not). A run whose final-phase epochs took 10 s and 16 s on a loaded machine: its
    time savings may be noise, and the report names it; steady runs are not named."""
    make_run(tmp_path, "peak", values=[0.6, 0.3, 0.3, 0.3, 0.3])
    make_run(tmp_path, "c0", method="fshift", phases=(4, 1), values=[0, .3, .4, .5, .6])
    make_run(tmp_path, "avg", values=[0.6, 0.3, 0.3, 0.3, 0.3], seed=1, average=0.5)
    make_run(tmp_path, "c1", method="fshift", phases=(4, 1), values=[0, .3, .4, .5, .6], seed=1)
    metrics = tmp_path / "group" / "c0" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    records[3]["seconds"] = 16.0  # the final phase's third epoch: 10, 10, 16, 10 s
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    _, _, warnings = pair(load_runs([tmp_path])[0])
    early = [w for w in warnings if "early peak" in w]
    assert len(early) == 1 and early[0].startswith(
        f"{tmp_path / 'group' / 'peak'}: the baseline's best epoch is 1 of 5")
    [noisy] = [w for w in warnings if w.startswith("time savings may be noise")]
    assert "in 1 run(s)" in noisy and f"{tmp_path / 'group' / 'c0'} (60%)" in noisy
    # a steady warm-up (20, 16, 12, 8 s: a trend) and sub-second epochs are not noise
    from c2f.report.caveats import phase_spread

    for name, times in (("c1", [10.0, 20.0, 16.0, 12.0, 8.0]), ("avg", [1, 0.1, 0.3, 0.1, 0.3]),
                        ("peak", [10.0, 10.0, 12.0, 14.0, 16.0])):
        path = tmp_path / "group" / name / "metrics.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record, seconds in zip(records, times):
            record["seconds"] = seconds
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    runs = {r.path.name: r for r in load_runs([tmp_path])[0]}
    assert phase_spread(runs["c1"]) == 0.0 and phase_spread(runs["avg"]) == 0.0
    assert phase_spread(runs["peak"]) == pytest.approx(6 / 13)  # a slow-down (10 -> 16 s) counts


def test_undefined_metrics_rank_nowhere_in_the_report(tmp_path):
    """An epoch whose metric is undefined (null, or NaN as runs wrote it before) is neither
    the baseline's best nor a run's: with a NaN first, max() kept it whatever followed."""
    make_run(tmp_path, "b0", values=[float("nan"), 0.3, 0.5, None])
    make_run(tmp_path, "c0", method="fshift", phases=(4, 1), values=[0, None, 0.4, 0.6])
    runs = load_runs([tmp_path])[0]
    [outcome] = pair(runs)[1]
    assert (outcome.ref.epoch, outcome.ref.metric) == (3, 0.5)
    assert (outcome.status, outcome.epoch, outcome.best) == ("reached", 4, 0.6)
    assert main([str(tmp_path)]) == 0  # tables and plots draw the gaps


def test_a_finished_baseline_without_a_defined_metric_says_so_and_warns(tmp_path):
    """Review 6 F1: an eval set that scores no class leaves every epoch undefined; the baseline
    is finished, not "(unfinished)", and the run is named in a warning."""
    from c2f.report.tables import cell_text

    make_run(tmp_path, "b0", values=[None, None], metric="mAP")
    make_run(tmp_path, "c0", method="fshift", phases=(2, 1), values=[None, None], metric="mAP")
    runs, warnings = load_runs([tmp_path])
    [base] = [c for c in aggregate(runs) if c.schedule == "1"]
    assert base.status == "baseline: no defined metric"
    assert cell_text(base, "budget") == "n/a (no defined metric)"
    assert f"{tmp_path}/group/b0: finished, but no epoch has a defined mAP (no class of the " \
        "eval set has both positives and negatives" in "\n".join(warnings)
