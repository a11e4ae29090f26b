"""The savings rules on hand-built run directories with known answers."""
from __future__ import annotations

import csv
import json

import pytest

from c2f.report.cli import main
from c2f.report.layout import paper_tables
from c2f.report.paper import load_paper
from c2f.report.publish import headline
from c2f.report.runs import ReportError, load_runs
from c2f.report.savings import aggregate, fold_epochs, pair
from c2f.report.tables import label
from tests.report_fixtures import make_pretraining_run, make_run

SECONDS = {1: 10.0, 2: 6.0, 4: 5.0}  # time does not scale like FLOPs


def outcome_of(root, method, tolerance=0.0):
    runs, _ = load_runs([root])
    _, outcomes, warnings = pair(runs, tolerance)
    [found] = [o for o in outcomes if o.run.method == method]
    return found, warnings


def table(root, key, paper=None, model="m", tolerance=0.0):
    """(header, rows) of one paper table built from the runs under `root`."""
    cells = aggregate(load_runs([root])[0], tolerance / 100)
    [found] = [t for t in paper_tables(cells, paper, tolerance)
               if t.key == key and t.model in (model, None)]
    return found.header, found.rows


def test_tie_counts_as_reached_and_initial_phase_does_not_count(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5], seconds=SECONDS)  # B=4: 400, 40 s
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.55, 0.3, 0.5, 0.6],
             seconds=SECONDS)
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert outcome.ref.epoch == 4 and outcome.ref.metric == 0.5
    assert outcome.status == "reached" and outcome.epoch == 3  # 0.5 == M_B: a tie reaches
    assert outcome.flops_save == pytest.approx(1 - 225 / 400)  # 25 + 100 + 100 FLOPs
    assert outcome.time_save == pytest.approx(1 - 25 / 40)  # 5 + 10 + 10 s
    assert outcome.best == 0.6 and outcome.best_diff == pytest.approx(0.1)


def test_baseline_best_epoch_is_the_earliest_of_ties(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.5, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="pool_avg", phases=(2, 1), values=[0.1, 0.5, 0.5, 0.5])
    outcome, _ = outcome_of(tmp_path, "pool_avg")
    assert (outcome.ref.epoch, outcome.ref.flops) == (2, 200)
    assert outcome.epoch == 2 and outcome.flops_save == pytest.approx(1 - 150 / 200)


def test_never_reached_shows_the_gap_and_savings_at_the_best_epoch_flagged(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.9, 0.3, 0.45, 0.4])
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert outcome.status == "not reached" and outcome.epoch == 3
    assert outcome.metric == 0.45 and outcome.gap == pytest.approx(-0.05)
    assert outcome.flops_save == pytest.approx(1 - 225 / 400)  # at epoch 3: 25 + 100 + 100
    assert outcome.time_save == pytest.approx(1 - 22.5 / 40)
    header, rows = table(tmp_path, "2")
    assert header == ["Setting", "ds Acc", "ds FLOPs save (%)", "ds Time save (%)"]
    assert rows == [["Baseline", "50.00", "-", "-"],
                    ["Fshift 4→1", "45.00 (-5.00) n/r", "43.75 n/r", "43.75 n/r"]]


def test_tolerance_in_points_turns_a_near_miss_into_reached(tmp_path):
    make_run(tmp_path, "base", values=[0.40, 0.443, 0.44, 0.443], metric="mAP")  # M_B 44.30
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.42, 0.4382, 0.44],
             metric="mAP")
    strict, _ = outcome_of(tmp_path, "fshift")
    assert strict.status == "not reached" and strict.epoch == 4  # best final epoch: 44.00
    loose, _ = outcome_of(tmp_path, "fshift", tolerance=0.005)  # half a point
    assert loose.status == "reached" and loose.epoch == 3 and loose.metric == 0.4382
    assert loose.flops_save == pytest.approx(1 - 225 / 200)  # B = 2: 200 FLOPs
    _, rows = table(tmp_path, "2", tolerance=0.5)
    assert rows[1][1] == "43.82 (-0.48)"
    assert main([str(tmp_path), "--no-plots", "--tolerance", "0.5"]) == 0
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "comes within 0.50 points of it: --tolerance 0.5" in text
    assert main([str(tmp_path), "--no-plots"]) == 0
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "| Fshift 4→1 | 44.00 (-0.30) n/r |" in text and "ties count" in text


def test_unfinished_run_is_pending_until_it_reaches(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "slow", method="fshift", phases=(4, 1), values=[0.1, 0.3], budget=4,
             epochs=(1, 3), finished=False)
    make_run(tmp_path, "fast", method="pool_max", phases=(4, 1), values=[0.1, 0.6], budget=4,
             epochs=(1, 3), finished=False)
    runs, warnings = load_runs([tmp_path])
    _, outcomes, _ = pair(runs)
    status = {o.run.method: o for o in outcomes}
    assert status["fshift"].status == "pending" and status["fshift"].best is None
    assert status["pool_max"].status == "reached"  # later epochs cannot make it earlier
    assert status["pool_max"].flops_save == pytest.approx(1 - 125 / 400)
    assert sum("running or crashed" in w for w in warnings) == 2


def test_three_phases_budget_counts_only_the_final_phase(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="patch_pi", phases=(4, 2, 1), values=[0.9, 0.9, 0.5, 0.4])
    outcome, _ = outcome_of(tmp_path, "patch_pi")
    assert outcome.run.schedule == "4-2-1" and outcome.epoch == 3
    assert outcome.flops_save == pytest.approx(1 - 175 / 400)  # 25 + 50 + 100
    # convergence: the best of the final phase, the model the run delivers, not a coarse one
    assert outcome.best == 0.5 and outcome.best_diff == pytest.approx(0.0)
    assert label("patch_pi", "4-2-1") == "Patch PI 4→2→1"


def test_seeds_pair_with_their_own_baseline_and_aggregate(tmp_path):
    make_run(tmp_path, "b0", values=[0.2, 0.3, 0.4, 0.5], seed=0)  # F_B 400
    make_run(tmp_path, "b1", values=[0.2, 0.3, 0.6, 0.4], seed=1)  # F_B 300
    make_run(tmp_path, "c0", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5], seed=0)
    make_run(tmp_path, "c1", method="fshift", phases=(4, 1), values=[0, 0.5, 0.7, 0.7], seed=1)
    make_run(tmp_path, "c2", method="fshift", phases=(4, 1), values=[0, 0.5, 0.7, 0.7], seed=2)
    runs, _ = load_runs([tmp_path])
    _, _, warnings = pair(runs)
    cells = {(c.method, c.schedule): c for c in aggregate(runs)}
    base, c2f = cells[("none", "1")], cells[("fshift", "4-1")]
    assert base.seeds == 2 and base.value.mean == pytest.approx(0.55)
    assert base.value.std == pytest.approx(0.0707107, rel=1e-5)
    # seed 0: 125/400 at epoch 2; seed 1: 225/300 at epoch 3; seed 2 has no baseline.
    assert c2f.seeds == 3 and c2f.status == "reached, 1 no baseline"
    assert c2f.flops_save.n == 2
    assert c2f.flops_save.mean == pytest.approx(((1 - 125 / 400) + (1 - 225 / 300)) / 2)
    assert c2f.best_diff.mean == pytest.approx(((0.5 - 0.5) + (0.7 - 0.6)) / 2)
    assert any("no baseline" in w and "seed 2" in w for w in warnings)
    [_, row] = table(tmp_path, "2")[1]
    assert row[1].endswith("[reached, 1 no baseline] [n=2 of 3]") and "±" in row[2]


def test_folds_pair_with_their_own_baseline_and_average_in_one_row(tmp_path):
    """ESC-50's cross-validation: each fold against the baseline of that fold, one row."""
    make_run(tmp_path, "b1", values=[0.2, 0.3, 0.4, 0.5], fold=1)  # F_B 400
    make_run(tmp_path, "b2", values=[0.2, 0.9, 0.6, 0.4], fold=2)  # F_B 200
    make_run(tmp_path, "c1", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5], fold=1)
    make_run(tmp_path, "c2", method="fshift", phases=(4, 1), values=[0, 0.5, 0.7, 0.9], fold=2)
    runs, _ = load_runs([tmp_path])
    _, outcomes, warnings = pair(runs)
    assert not [w for w in warnings if "duplicate" in w or "no baseline" in w]
    by_fold = {o.run.fold: o for o in outcomes}
    # AST's get_esc_result.py: the folds at one epoch, the best of their averaged curve. The
    # baselines' mean curve 0.2, 0.6, 0.5, 0.45 peaks at epoch 2: M_B 0.3 (fold 1) and 0.9
    # (fold 2), both at F_B 200, where each fold's own best would be 0.5 and 0.9
    assert by_fold[1].ref.metric == 0.3 and by_fold[2].ref.metric == 0.9
    # fold 1 reaches 0.3 at epoch 2 (125/200); fold 2 reaches 0.9 at epoch 4 (325/200 > 1)
    assert by_fold[1].status == "reached" and by_fold[1].flops_save == pytest.approx(1 - 125 / 200)
    assert by_fold[2].status == "reached" and by_fold[2].flops_save == pytest.approx(1 - 325 / 200)
    cells = {(c.method, c.schedule): c for c in aggregate(runs)}
    base, c2f = cells[("none", "1")], cells[("fshift", "4-1")]
    assert base.seeds == 2 and base.value.mean == pytest.approx((0.3 + 0.9) / 2)
    # the coarse-to-fine folds' final-phase mean curve 0.5, 0.6, 0.7 peaks at epoch 4
    assert c2f.seeds == 2 and c2f.best.mean == pytest.approx((0.5 + 0.9) / 2)
    assert c2f.flops_save.mean == pytest.approx(((1 - 125 / 200) + (1 - 325 / 200)) / 2)
    # a row whose folds disagree at its own bests: scored at the common epoch, not at each best
    make_run(tmp_path, "p1", method="pool_avg", phases=(4, 1), values=[0, 0.9, 0.6, 0.1], fold=1)
    make_run(tmp_path, "p2", method="pool_avg", phases=(4, 1), values=[0, 0.1, 0.6, 0.9], fold=2)
    runs, _ = load_runs([tmp_path])
    assert fold_epochs(runs)[tmp_path / "group" / "p1"] == 3  # means 0.5, 0.6, 0.5
    pool = {(c.method, c.schedule): c for c in aggregate(runs)}[("pool_avg", "4-1")]
    assert pool.best.mean == pytest.approx(0.6)  # each fold's own best would give 0.9


def test_missing_baseline_and_other_budget_are_explicit_gaps(tmp_path, capsys):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "longer", method="fshift", phases=(4, 1), values=[0.1] * 8)
    make_run(tmp_path, "other", method="fshift", phases=(4, 1), values=[0.1] * 4, dataset="ds2")
    assert main([str(tmp_path), "--no-plots"]) == 0
    text = (tmp_path / "report" / "tables.md").read_text()
    # the 8-epoch run has no 8-epoch baseline; the 4-epoch baseline stands alone
    assert "| Fshift 4→1 | no baseline | n/a | n/a | no baseline | n/a | n/a |" in text
    assert "## Baselines without other runs" in text and "| Baseline | m | 50.00 |" in text
    assert "## Warnings" in text
    assert "no baseline" in capsys.readouterr().out


def test_a_diverged_baseline_is_named_and_its_runs_keep_their_own_best(tmp_path):
    """The baseline stopped at a NaN loss (diverged.json, as the trainer writes it): its row
    says unfinished, the warning says why, and a finished coarse-to-fine run still shows its
    own best (it was rendered as a baseline row, "n/a (unfinished)")."""
    base = make_run(tmp_path, "base", values=[0.2], budget=4, epochs=(4,), finished=False)
    (base / "diverged.json").write_text(json.dumps({
        "phase": 0, "C": 1, "epoch": 2, "step": 6, "loss": "NaN",
        "message": "the training loss became NaN at phase 0 (C = 1), epoch 2, step 6 of the "
                   "phase; the run stopped there and keeps its last good checkpoint"}))
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.3, 0.6, 0.5])
    runs, warnings = load_runs([tmp_path])
    assert {r.status for r in runs} == {"diverged", "finished"}
    assert f"{base}: the training loss became NaN at phase 0 (C = 1), epoch 2, step 6 of " \
        "the phase (diverged.json), 1/4 epochs" in warnings
    [outcome] = pair(runs)[1]
    assert outcome.status == "unfinished baseline" and outcome.best == 0.6
    [_, row] = table(tmp_path, "3")[1]
    assert row[:2] == ["Fshift 4→1", "60.00 (unfinished baseline)"], row
    [_, row] = table(tmp_path, "2")[1]
    assert row[:4] == ["Fshift 4→1", "unfinished baseline", "n/a", "n/a"], row


def test_plots_of_runs_without_a_baseline_draw_without_warnings(tmp_path):
    """A sweep of coarse-to-fine runs whose baseline has not run yet: no bar to label, so no
    legend (matplotlib warned 'No artists with labels' on stderr)."""
    import warnings

    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.2, 0.3, 0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(tmp_path)]) == 0
    assert list((tmp_path / "report" / "plots").glob("*.png"))


def test_truncated_or_broken_lines_are_tolerated_with_a_warning(tmp_path):
    """A report still shows a damaged run: a cut last line, and a broken middle line (which
    training refuses to resume from), each skipped naming the file and line."""
    run = make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5], finished=False)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join([lines[0], "{garbage\n", *lines[1:]]) +
                       '{"run": "base", "epoch": 5, "val')
    runs, warnings = load_runs([tmp_path])
    assert len(runs[0].records) == 4
    assert any(f"{metrics} line 2 is unreadable" in w and "skipped" in w for w in warnings)
    assert any(f"{metrics} line 6 is cut short" in w for w in warnings)


def test_unusable_input_is_an_error(tmp_path, capsys):
    with pytest.raises(ReportError, match="no run directory"):
        load_runs([tmp_path])
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    make_run(tmp_path, "b0", values=[0.5])  # readable runs, an output folder that cannot be made
    (tmp_path / "file").write_text("")
    assert main([str(tmp_path), "--out", str(tmp_path / "file" / "report"), "--no-plots"]) == 2
    assert f"cannot write the report to {tmp_path / 'file' / 'report'}" in \
        capsys.readouterr().err


def test_outputs_and_the_paper_column(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, f"b{seed}", values=[0.2, 0.3, 0.4, 0.5], dataset="vggsound",
                 model="ast_base", seed=seed, budget=20)  # the paper's budget (§3.2)
        make_run(tmp_path, f"f{seed}", method="fshift", phases=(4, 1), values=[0, .5, .6, .6],
                 dataset="vggsound", model="ast_base", seed=seed, budget=20)
        make_run(tmp_path, f"short{seed}", method="fshift", phases=(4, 1), values=[0, .5, .6],
                 dataset="vggsound", model="ast_base", seed=seed)  # 3 epochs: not the paper's
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out), "--no-plots"]) == 0
    header, rows = table(tmp_path, "2", load_paper(), "ast_base")
    assert header[-1] == "VGGSound @20ep paper" and rows[1][-1] == "49.90 / 58.31 / 55.00"
    assert rows[0][-1] == "49.40"
    at = header.index("VGGSound @3ep paper")  # a budget the paper did not train: no number
    assert {row[at] for row in rows} <= {"", "-"}
    short = [r for r in csv.DictReader((out / "savings.csv").open()) if r["budget"] == "3"]
    assert short and all(r["paper_value"] == "" for r in short)
    saved = list(csv.DictReader((out / "savings.csv").open()))
    fshift = [r for r in saved if r["method"] == "fshift" and r["criterion"] == "budget"]
    assert fshift[0]["paper_flops_save"] == "58.31" and fshift[0]["seeds"] == "2"
    assert float(fshift[0]["flops_save"]) == pytest.approx(100 * (1 - 125 / 400))
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 6
    tex = (out / "tables.tex").read_text()
    assert r"Fshift 4$\to$1" in tex and r"\toprule" in tex
    assert (out / "index.html").read_text().count("<tr") > 4


def test_wandb_offline_says_so_and_carries_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.6, 0.6, 0.6])
    assert main([str(tmp_path), "--no-plots", "--wandb"]) == 0
    out = capsys.readouterr().out
    assert "W&B offline (WANDB_MODE=offline):" in out and "wandb sync" in out
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert headline(outcome)["report/flops_save"] == pytest.approx(1 - 125 / 400)


def test_paper_layout_columns_rows_and_tables(tmp_path):
    """Presets map to the paper's columns, in its order; 2- and 3-phase runs get their own
    tables; every cell the paper has gets its number."""
    for dataset in ("audioset_full", "kinetics_sounds", "voxceleb1", "vggsound"):
        metric = "mAP" if dataset == "audioset_full" else "acc"
        kw = {"dataset": dataset, "model": "ast_base", "metric": metric,
              "budget": 5 if dataset == "audioset_full" else 20}  # the paper's (§3.2)
        make_run(tmp_path, f"{dataset}-base", values=[0.2, 0.3, 0.4, 0.5], **kw)
        make_run(tmp_path, f"{dataset}-f41", method="fshift", phases=(4, 1),
                 values=[0.1, 0.5, 0.5, 0.5], **kw)
        if dataset != "audioset_full":  # the paper has no 3-phase AudioSet runs
            make_run(tmp_path, f"{dataset}-p421", method="patch_pi", phases=(4, 2, 1),
                     values=[0.1, 0.2, 0.6, 0.6], **kw)
    cells = aggregate(load_runs([tmp_path])[0])
    tables = {t.key: t for t in paper_tables(cells, load_paper())}
    assert list(tables) == ["2", "3", "4", "5"]
    two = tables["2"]
    titles = [h for h in two.header if h.endswith(("Acc", "mAP"))]
    assert titles == ["VGGSound Acc", "VoxCeleb Acc", "Kinetics-Sounds Acc", "AudioSet mAP"]
    assert [row[0] for row in two.rows] == ["Baseline", "Fshift 4→1"]
    papers = [two.rows[1][i] for i, h in enumerate(two.header) if h.endswith("paper")]
    assert papers == ["49.90 / 58.31 / 55.00", "41.95 / 42.56 / 38.89",
                      "63.84 / 42.56 / 38.89", "43.82 / 35.32 / 33.40"]
    assert [row[0] for row in tables["4"].rows] == ["Baseline", "Patch PI 4→2→1"]
    assert "AudioSet mAP" not in tables["4"].header
    assert tables["5"].rows[1][2::2] == ["53.62", "43.11", "65.43"]  # the paper's Table 5
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = tmp_path / "report"
    for key in ("2", "3", "4", "5"):
        with (out / f"table{key}_ast_base.csv").open() as handle:
            assert next(csv.reader(handle)) == tables[key].header
    saved = list(csv.DictReader((out / "savings.csv").open()))
    assert {r["table"] for r in saved} == {"2", "3", "4", "5"}


def test_table1_is_max_pooling_single_phase_and_coarse_to_fine(tmp_path):
    kw = {"dataset": "audioset_full", "model": "ast_base", "metric": "mAP"}
    make_run(tmp_path, "base", values=[0.40, 0.42, 0.43, 0.44, 0.443], **kw)
    make_run(tmp_path, "pool2", method="pool_max", phases=(2,), values=[0.40, 0.41, 0.42, 0.42,
                                                                        0.4279], **kw)
    make_run(tmp_path, "pool21", method="pool_max", phases=(2, 1),
             values=[0.40, 0.43, 0.44, 0.443, 0.4435], **kw)
    cells = aggregate(load_runs([tmp_path])[0])
    tables = {t.key: t for t in paper_tables(cells, load_paper())}
    assert list(tables) == ["1", "2", "3"]
    one = tables["1"]
    assert one.header == ["Setting", "Model", "Multi-phase", "AudioSet mAP", "AudioSet paper"]
    assert one.rows == [["Baseline", "ast_base", "no", "44.30", "44.30"],
                        ["Max Pool C=2", "ast_base", "no", "42.79 (-1.51)", "42.79"],
                        ["Max Pool 2→1", "ast_base", "yes", "44.35 (+0.05)", "44.35"]]


def test_table1_cnn14_rows_sit_above_ast_with_the_papers_numbers(tmp_path):
    kw = {"dataset": "audioset_full", "metric": "mAP"}
    make_run(tmp_path, "base", values=[0.40, 0.443], model="ast_base", **kw)
    make_run(tmp_path, "pool2", method="pool_max", phases=(2,), values=[0.40, 0.4279],
             model="ast_base", **kw)
    make_run(tmp_path, "cnn", values=[0.40, 0.432], model="cnn14", **kw)
    make_run(tmp_path, "cnn2", method="pool_max", phases=(2,), values=[0.40, 0.426],
             model="cnn14", **kw)
    cells = aggregate(load_runs([tmp_path])[0])
    one = {t.key: t for t in paper_tables(cells, load_paper())}["1"]
    assert one.rows[:2] == [["Baseline", "cnn14", "no", "43.20", "43.20"],
                            ["Max Pool C=2", "cnn14", "no", "42.60 (-0.60)", "42.60"]]
    assert [row[1] for row in one.rows[2:]] == ["ast_base", "ast_base"]


def test_table6_htsat_rows_with_the_papers_numbers(tmp_path):
    kw = {"dataset": "vggsound", "metric": "acc", "model": "htsat", "budget": 50}
    make_run(tmp_path, "base", values=[0.40, 0.5282, 0.52, 0.51], **kw)  # F_B = 200 at epoch 2
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.30, 0.53, 0.52, 0.5],
             **kw)  # reaches at epoch 2: 25 + 100 FLOPs
    six = {t.key: t for t in paper_tables(aggregate(load_runs([tmp_path])[0]), load_paper())}
    assert six["6"].header[:6] == ["Setting", "Model", "VGGSound Acc",
                                   "VGGSound FLOPs save (%)", "VGGSound Time save (%)",
                                   "VGGSound paper"]
    assert six["6"].rows == [
        ["Baseline", "htsat", "52.82", "-", "-", "52.82"],
        ["Fshift 4→1", "htsat", "53.00 (+0.18)", "37.50", "37.50", "52.98 / 21.13 / 14.32"]]


def test_table6_ssast_rows_pair_finetuning_results_and_pretraining_savings(tmp_path):
    """The fine-tuning runs of models pretrained in one phase and coarse to fine (named by
    `pretrain:<phases>` or by the pretraining run's checkpoint path); the savings are the
    pretraining stage's."""
    make_pretraining_run(tmp_path, "pre1", phases=(1,), method="none", flops=1000,
                         seconds=100.0)
    c2f = make_pretraining_run(tmp_path, "pre41", phases=(4, 1), method="fshift", flops=650,
                               seconds=70.0)
    kw = {"dataset": "audioset_balanced", "metric": "mAP", "model": "ssast_base"}
    make_run(tmp_path, "ft1", values=[0.25, 0.2942, 0.29], pretrained="pretrain:1", **kw)
    make_run(tmp_path, "ft41", values=[0.26, 0.30, 0.3028], **kw,
             pretrained=str(c2f / "ckpt" / "last.pt"))
    runs, _ = load_runs([tmp_path])
    assert {r.path.name: r.pretrained_from for r in runs} == {
        "pre1": None, "pre41": None, "ft1": "1", "ft41": "4-1"}
    six = {t.key: t for t in paper_tables(aggregate(runs), load_paper())}["6"]
    assert six.rows == [
        ["Baseline", "ssast_base", "29.42", "-", "-", "29.42"],
        ["Fshift 4→1", "ssast_base", "30.28 (+0.86)", "35.00", "30.00",
         "30.28 / 34.58 / 31.73"]]


def test_weight_averaged_models_are_the_reference_where_runs_have_them(tmp_path):
    """AST reports its averaged model (AudioSet): the baseline's reference is it, at the cost
    of the whole run, and a run whose epochs fall short can reach with its average."""
    make_run(tmp_path, "base", values=[0.40, 0.41, 0.42, 0.43], average=0.45, metric="mAP")
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.43, 0.44, 0.44],
             average=0.452, metric="mAP")
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert outcome.ref.metric == 0.45 and outcome.ref.averaged and outcome.ref.flops == 400
    assert outcome.status == "reached" and outcome.averaged and outcome.epoch == 4
    assert outcome.flops_save == pytest.approx(1 - 325 / 400)
    assert outcome.best == 0.452 and outcome.best_averaged
    header, rows = table(tmp_path, "2")
    assert rows == [["Baseline", "45.00†", "-", "-"],
                    ["Fshift 4→1", "45.20† (+0.20)", "18.75", "18.75"]]
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "†: weight-averaged model" in (tmp_path / "report" / "tables.md").read_text()
