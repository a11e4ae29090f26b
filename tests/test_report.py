"""The savings rules on hand-built run directories with known answers."""
from __future__ import annotations

import csv

import pytest

from c2f.report.cli import main
from c2f.report.publish import headline
from c2f.report.runs import ReportError, load_runs
from c2f.report.savings import aggregate, pair
from c2f.report.tables import grid, label, load_paper
from tests.report_fixtures import make_run

SECONDS = {1: 10.0, 2: 6.0, 4: 5.0}  # time does not scale like FLOPs


def outcome_of(root, method):
    runs, _ = load_runs([root])
    _, outcomes, warnings = pair(runs)
    [found] = [o for o in outcomes if o.run.method == method]
    return found, warnings


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


def test_never_reached_shows_the_gap_and_no_number(tmp_path):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.9, 0.3, 0.45, 0.4])
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert outcome.status == "not reached" and outcome.flops_save is None
    assert outcome.metric == 0.45 and outcome.gap == pytest.approx(-0.05)
    header, rows = grid(aggregate(load_runs([tmp_path])[0]), "budget", "m", None)
    assert header == ["Setting", "ds Acc", "ds FLOPs save (%)", "ds Time save (%)"]
    assert rows == [["Baseline", "50.00", "-", "-"],
                    ["Fshift 4→1", "not reached (45.00, -5.00)", "n/r", "n/r"]]


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
    assert c2f.seeds == 3 and c2f.status == "2/3 reached"
    assert c2f.flops_save.n == 2
    assert c2f.flops_save.mean == pytest.approx(((1 - 125 / 400) + (1 - 225 / 300)) / 2)
    assert c2f.best_diff.mean == pytest.approx(((0.5 - 0.5) + (0.7 - 0.6)) / 2)
    assert any("no baseline" in w and "seed 2" in w for w in warnings)
    [_, row] = grid(aggregate(runs), "budget", "m", None)[1]
    assert row[1].endswith("[2/3 reached] [n=3]") and "±" in row[2]


def test_missing_baseline_and_other_budget_are_explicit_gaps(tmp_path, capsys):
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "longer", method="fshift", phases=(4, 1), values=[0.1] * 8)
    make_run(tmp_path, "other", method="fshift", phases=(4, 1), values=[0.1] * 4, dataset="ds2")
    assert main([str(tmp_path), "--no-plots"]) == 0
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "| Fshift 4→1 |  |  |  | no baseline | n/a | n/a | no baseline |" in text
    assert "ds @4ep" in text and "ds @8ep" in text and "## Warnings" in text
    assert "no baseline" in capsys.readouterr().out


def test_truncated_last_line_is_tolerated_with_a_warning(tmp_path):
    run = make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5], finished=False)
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"run": "base", "epoch": 5, "val')
    runs, warnings = load_runs([tmp_path])
    assert len(runs[0].records) == 4
    assert any("last line (truncated)" in w for w in warnings)


def test_unusable_input_is_an_error(tmp_path, capsys):
    with pytest.raises(ReportError, match="no run directory"):
        load_runs([tmp_path])
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_outputs_and_the_paper_column(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, f"b{seed}", values=[0.2, 0.3, 0.4, 0.5], dataset="vggsound",
                 model="ast_base", seed=seed)
        make_run(tmp_path, f"f{seed}", method="fshift", phases=(4, 1), values=[0, 0.5, 0.6, 0.6],
                 dataset="vggsound", model="ast_base", seed=seed)
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out), "--no-plots"]) == 0
    header, rows = grid(aggregate(load_runs([tmp_path])[0]), "budget", "ast_base", load_paper())
    assert header[-1] == "VGGSound paper" and rows[1][-1] == "49.90 / 58.31 / 55.00"
    assert rows[0][-1] == "49.40"
    saved = list(csv.DictReader((out / "savings.csv").open()))
    fshift = [r for r in saved if r["method"] == "fshift" and r["criterion"] == "budget"]
    assert fshift[0]["paper_flops_save"] == "58.31" and fshift[0]["seeds"] == "2"
    assert float(fshift[0]["flops_save"]) == pytest.approx(100 * (1 - 125 / 400))
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 4
    tex = (out / "tables.tex").read_text()
    assert r"Fshift 4$\to$1" in tex and r"\toprule" in tex
    assert (out / "index.html").read_text().count("<tr") > 4


def test_wandb_offline_says_so_and_carries_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.6, 0.6, 0.6])
    assert main([str(tmp_path), "--no-plots", "--wandb"]) == 0
    assert "W&B offline (WANDB_MODE=offline): tables not published" in capsys.readouterr().out
    outcome, _ = outcome_of(tmp_path, "fshift")
    assert headline(outcome)["report/flops_save"] == pytest.approx(1 - 125 / 400)
