"""Runs that did not finish, as the report tells them: stopped and resumable or running,
reached before they stopped, or diverged."""
from __future__ import annotations

import json

from c2f.report.runs import load_runs
from c2f.report.savings import pair
from c2f.track import RunLock
from tests.report_fixtures import make_run
from tests.test_report import table


def test_an_unfinished_run_says_whether_it_runs_or_stopped_and_resumes(tmp_path):
    """A run stopped by SIGTERM (ckpt/last.pt, no live process) was 'running or crashed'."""
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    stopped = make_run(tmp_path, "stopped", method="fshift", phases=(4, 1), values=[0.1, 0.2],
                       budget=4, epochs=(1, 3), finished=False)
    (stopped / "ckpt").mkdir()
    (stopped / "ckpt" / "last.pt").write_bytes(b"")
    running = make_run(tmp_path, "running", method="pool_avg", phases=(4, 1), values=[0.1],
                       budget=4, epochs=(1, 3), finished=False)
    lost = make_run(tmp_path, "lost", method="pool_max", phases=(4, 1), values=[0.1],
                    budget=4, epochs=(1, 3), finished=False)
    lock = RunLock(running)
    lock.acquire()
    try:
        _, warnings = load_runs([tmp_path])
    finally:
        lock.release()
    assert f"{stopped}: no finished summary.json (stopped: no process holds it, and " \
        "ckpt/last.pt is there: the same command resumes it), 2/4 epochs" in warnings
    [held] = [w for w in warnings if w.startswith(f"{running}:")]
    assert held.startswith(f"{running}: no finished summary.json (running: held by pid ")
    assert f"{lost}: no finished summary.json (running or crashed), 1/4 epochs" in warnings
    # its last holder's note names another machine (a compute node), whose lock a filesystem
    # without shared locks hides from this one: it may still run there
    (stopped / ".lock").write_text(json.dumps({"pid": 7, "host": "node042", "since": "noon"}))
    [elsewhere] = [w for w in load_runs([tmp_path])[1] if w.startswith(f"{stopped}:")]
    assert "the same command resumes it; or still running on host node042 (pid 7, since " \
        "noon), whose lock this machine may not see" in elsewhere, elsewhere


def test_a_run_that_reached_before_it_stopped_is_marked_in_its_budget_cell(tmp_path):
    """Its budget numbers are final (later epochs cannot come earlier), but the cell looked
    like a finished run's."""
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.6], budget=4,
             epochs=(1, 3), finished=False)
    [_, row] = table(tmp_path, "2")[1]
    assert row[:4] == ["Fshift 4→1", "60.00 (+10.00) [reached (1 unfinished run)]", "68.75",
                       "68.75"], row


def test_a_diverged_run_without_a_baseline_is_diverged_in_both_criteria(tmp_path):
    """Its budget status was 'no baseline' (and a warning to train one), its convergence
    status 'diverged'."""
    run = make_run(tmp_path, "lr1e8", method="fshift", phases=(4, 1), values=[], budget=4,
                   epochs=(1, 3), finished=False, setting={"optim": {"lr": 1e8}})
    (run / "diverged.json").write_text(json.dumps({"message": "the training loss became NaN "
                                                   "at phase 0 (C = 4), epoch 1, step 2"}))
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    _, outcomes, warnings = pair(load_runs([tmp_path])[0])
    [outcome] = outcomes
    assert outcome.status == "diverged"
    assert not [w for w in warnings if "no baseline" in w]
    [row] = table(tmp_path, "2", model="m [optim.lr=100000000.0]")[1]
    assert row[:2] == ["Fshift 4→1", "diverged"], row


def test_a_model_whose_only_run_diverged_before_an_epoch_gets_no_empty_plot(tmp_path):
    """Two empty axes and matplotlib's 'No artists with labels found to put in legend'."""
    import warnings

    from c2f.report.cli import main

    run = make_run(tmp_path, "lr1e8", method="fshift", phases=(4, 1), values=[], budget=4,
                   epochs=(1, 3), finished=False, setting={"optim": {"lr": 1e8}})
    (run / "diverged.json").write_text(json.dumps({"message": "the loss became NaN"}))
    for name, method, phases in (("b", "none", (1,)), ("f", "fshift", (4, 1))):
        make_run(tmp_path, name, method=method, phases=phases, values=[0.2, 0.3, 0.4, 0.5],
                 setting={"optim": {"lr": 1e-3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "report" / "plots").glob("*.png")) == [
        "curves_ds_m_optim.lr_0.001_4.png", "savings_ds_m_optim.lr_0.001_4.png"]


def test_records_without_final_phase_take_it_from_the_runs_phases(tmp_path):
    """Hand-made or foreign records without `final_phase` counted as final: the coarse epoch
    1 (0.55, above the baseline's 0.5) became the budget epoch."""
    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    run = make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.55, 0.3, 0.5, 0.6])
    metrics = run / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "final_phase"})
                               + "\n" for r in records))
    [outcome] = pair(load_runs([tmp_path])[0])[1]
    assert (outcome.status, outcome.epoch) == ("reached", 3)


def test_an_averaged_baseline_far_below_its_own_epochs_is_warned_about(tmp_path):
    """average=epochs over a run whose epochs reach 16.67 gave an averaged model of 3.03: the
    reference of its cell, reached at once, with huge savings and no word."""
    base = make_run(tmp_path, "base", values=[0.1, 0.15, 0.1667, 0.16], average=0.0303)
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.1, 0.12, 0.13, 0.1],
             average=0.05)
    make_run(tmp_path, "b2", values=[0.1, 0.15, 0.1667, 0.16], average=0.17, seed=1)
    notes = [w for w in pair(load_runs([tmp_path])[0])[2] if "weight-averaged model" in w]
    assert notes == [f"{base}: the baseline's weight-averaged model, its reference M_B, "
                     "scores 3.03 where its epoch 3 reached 16.67: every coarse-to-fine run of "
                     "its cell is judged against that weaker model, so their savings look "
                     "larger than the training gives; check its averaging window "
                     "(average.start/end/k) or compare with average=none"]


def test_single_phase_compressed_runs_stay_out_of_the_savings_views(tmp_path, monkeypatch):
    """`Fshift C=4` (Table 1: a metric only) stood in the savings bars at 92% FLOPs saved and
    in the dashboard's budget table; its convergence row stays."""
    import re

    import matplotlib.axes

    from c2f.report.cli import main

    make_run(tmp_path, "base", values=[0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path, "c4", method="fshift", phases=(4,), values=[0.5, 0.3, 0.4, 0.4])
    make_run(tmp_path, "c41", method="fshift", phases=(4, 1), values=[0.1, 0.5, 0.5, 0.5])
    drawn = []
    real = matplotlib.axes.Axes.bar
    monkeypatch.setattr(matplotlib.axes.Axes, "bar",
                        lambda self, x, *a, **k: drawn.append(k.get("label")) or
                        real(self, x, *a, **k))
    assert main([str(tmp_path)]) == 0
    assert len(drawn) == 2  # FLOPs and time of Fshift 4→1 only
    page = (tmp_path / "report" / "index.html").read_text()
    budget, convergence = (re.search(f'<table id="cells-{c}".*?</table>', page).group(0)
                           for c in ("budget", "convergence"))
    assert "Fshift C=4" not in budget and "Fshift 4→1" in budget
    assert "Fshift C=4" in convergence
