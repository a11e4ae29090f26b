"""The whole path on a tiny real sweep, and the dashboard in a real headless browser."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, cli_env, run_cli
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
SWEEP = [["compression=none", "schedule=baseline", "schedule.c=1"],
         ["compression=fshift,pool_avg", "schedule=2phase", "schedule.c=2,4"]]
ROWS = ["Baseline", "Fshift 4→1", "Fshift 2→1", "Avg Pool 4→1", "Avg Pool 2→1"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, data_dir) -> Path:
    """A baseline, two methods and two schedules through run.py, then `python -m c2f.report`."""
    runs = tmp_path_factory.mktemp("sweep") / "runs"
    for args in SWEEP:
        run_cli(["-m", *TINY, *args, "group=tiny"], runs, data_dir)
    proc = run_python(["-m", "c2f.report", str(runs)], ROOT, cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "5 runs, 5 cells" in proc.stdout
    return runs / "report"


def test_report_on_a_real_sweep(report):
    text = (report / "tables.md").read_text()
    positions = [text.index(f"| {row} |") for row in ROWS]
    assert positions == sorted(positions)  # the paper's row order
    for name in ("tables.tex", "savings.csv", "runs.csv", "index.html"):
        assert (report / name).stat().st_size > 0
    runs = list(csv.DictReader((report / "runs.csv").open()))
    assert {r["status"] for r in runs} == {"finished"}
    for row in runs:
        if row["method"] != "none":
            assert row["budget_status"] in ("reached", "not reached")
            assert row["flops_save"] != ""  # at the budget epoch, or the best one (n/r)
    pngs = sorted(p.name for p in (report / "plots").glob("*.png"))
    assert pngs == ["curves_builtin_ast_tiny_4.png", "savings_builtin_ast_tiny_4.png"]
    assert len(list((report / "plots").glob("*.svg"))) == 2


def _install_chromium() -> None:
    """As tests/slurm/cluster.sh installs SLURM: Debian's package, where this is root with
    apt-get (a fresh CI machine); elsewhere nothing."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=300", "chromium"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, capture_output=True, env=env, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        subprocess.run(command, capture_output=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser binary (installed if missing, where it can be), or skip with the reason
    printed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _install_chromium()
        found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        reason = "chromium not installed (apt-get install -y --no-install-recommends chromium)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return found


def _browse(binary: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    """Headless chromium on `url` with a throwaway profile."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
             "--window-size=1280,1600", *extra, url],
            capture_output=True, text=True, timeout=120, check=False)


def test_dashboard_in_a_headless_browser(chromium, report, tmp_path):
    binary = chromium
    page = (report / "index.html").as_uri()
    dom = _browse(binary, page, "--dump-dom").stdout
    assert 'data-rendered="2" data-total="2"' in dom, dom[-2000:]
    budget = dom[dom.index('id="cells-budget"'):dom.index("</table>", dom.index("cells-budget"))]
    assert budget.count("<tr") == 1 + len(ROWS)
    assert all(f"<td>{row}</td>" in budget for row in ROWS)
    # the paper's layout: Tables 2 and 3 for the 2-phase runs, rows in the paper's order
    for key, criterion_columns in (("2", 3), ("3", 1)):
        start = dom.index(f'id="table{key}_ast_tiny"')
        html = dom[start:dom.index("</table>", start)]
        assert f'data-table="{key}"' in html
        assert ("Budget criterion" in html) == (key == "2")
        assert html.count("<th onclick") == 1 + criterion_columns  # Setting + builtin columns
        positions = [html.index(f"<td>{row}</td>") for row in ROWS]
        assert positions == sorted(positions)
    filtered = _browse(binary, page + "#schedule=4-1", "--dump-dom").stdout
    hidden = filtered.count('data-schedule="2-1" style="display: none;"')
    assert hidden == 2 * 2  # Fshift and Avg Pool 2->1, in both criteria tables

    shot = tmp_path / "dashboard.png"
    _browse(binary, page, f"--screenshot={shot}")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 500 and pixels.std() > 0.05  # not a blank page
    assert len({tuple(p) for p in pixels[::7, ::7].reshape(-1, pixels.shape[-1])}) > 20


def test_wandb_report_run_offline_holds_every_table_and_plot(report, tmp_path):
    """`--wandb` without W&B credentials: an offline report run that `wandb sync` uploads,
    read back from its transaction log, with one W&B Table per table CSV and every plot."""
    import json

    from tests import wandb_log

    out = tmp_path / "out"
    proc = run_python(["-m", "c2f.report", str(report.parent), "--out", str(out), "--wandb"],
                      ROOT, cli_env({"WANDB_MODE": "offline"}), timeout=300)
    assert proc.returncode == 0, proc.stderr
    [log] = out.glob("wandb/offline-run-*/run-*.wandb")
    assert f"wandb sync {log.parent}" in proc.stdout
    assert wandb_log.run_record(log).job_type == "report"
    [row] = wandb_log.history(log)
    csvs = {p.stem: p for p in out.glob("table*.csv")}
    tables = wandb_log.media(row, "tables")
    assert csvs and set(tables) == set(csvs)
    for slug, path in csvs.items():
        logged = tables[slug]
        assert logged["_type"] == "table-file"
        table = json.loads((log.parent / "files" / logged["path"]).read_text())
        expected = list(csv.reader(path.open()))
        assert [table["columns"], *table["data"]] == expected
    plots = wandb_log.media(row, "plots")
    assert set(plots) == {p.stem for p in (out / "plots").glob("*.png")}
    assert {v["_type"] for v in plots.values()} == {"image-file"}
