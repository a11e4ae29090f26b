"""The report's files and labels: each table and plot in a file of its own, whatever the
settings in its model's label hold (decimals, '/', spaces)."""
from __future__ import annotations

import hashlib
import re

from c2f.report.cli import main
from c2f.report.tables import unique_slugs
from tests.report_fixtures import make_run


def lr_pair(root, lr: float, **kw) -> None:
    """A baseline and an Fshift 4->1 run at learning rate `lr`."""
    make_run(root, f"b{lr}", values=[0.2, 0.3, 0.4, 0.5], setting={"optim": {"lr": lr}}, **kw)
    make_run(root, f"f{lr}", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5],
             setting={"optim": {"lr": lr}}, **kw)


def test_plots_of_settings_with_decimals_do_not_overwrite_each_other(tmp_path):
    """Two learning rates: `..._optim.lr_0.0005_4` lost everything after its last dot and
    both variants wrote `..._optim.lr_0.png`; the dashboard showed one variant twice."""
    lr_pair(tmp_path, 0.0005)
    lr_pair(tmp_path, 0.001)
    assert main([str(tmp_path)]) == 0
    plots = tmp_path / "report" / "plots"
    assert sorted(p.name for p in plots.glob("*.png")) == [
        f"{kind}_ds_m_optim.lr_{lr}_4.png" for kind in ("curves", "savings")
        for lr in ("0.0005", "0.001")]
    assert len(list(plots.glob("*.svg"))) == 4
    page = (tmp_path / "report" / "index.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]*)"', page)
    assert len(images) == 4 and len(set(images)) == 4


def test_names_that_sanitize_alike_get_files_of_their_own():
    names = unique_slugs(["m [a=b c]", "m [a=b_c]", "m [a=0.5]"])
    assert names["m [a=0.5]"] == "m_a_0.5"
    assert names["m [a=b c]"] == "m_a_b_c-" + hashlib.sha1(b"m [a=b c]").hexdigest()[:6]
    assert len(set(names.values())) == 3


def test_tables_of_models_whose_label_holds_a_path_are_written_under_safe_names(tmp_path):
    """A model setting holding '/' (`model.pretrained=/weights/deit_base.pth`): the table's
    CSV was `table2_m [model.pretrained=/weights/deit_base.pth].csv`, a folder that does not
    exist, and the report crashed with nothing written; its label stays in the title."""
    lr_pair(tmp_path, 0.001)
    for name, method, phases in (("pb", "none", (1,)), ("pf", "fshift", (4, 1))):
        make_run(tmp_path, name, method=method, phases=phases, values=[0, 0.5, 0.5, 0.6],
                 setting={"optim": {"lr": 0.001},
                          "model": {"pretrained": "/weights/deit_base.pth", "name": "m"}})
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = tmp_path / "report"
    names = sorted(p.name for p in out.glob("table*.csv"))
    assert names == ["table2_m_model.pretrained_null.csv",
                     "table2_m_model.pretrained_weights_deit_base.pth.csv",
                     "table3_m_model.pretrained_null.csv",
                     "table3_m_model.pretrained_weights_deit_base.pth.csv"], names
    text = (out / "tables.md").read_text()
    assert "## Table 2 — 2-phase training: FLOPs and time saved " \
        "(m [model.pretrained=/weights/deit_base.pth])" in text
    page = (out / "index.html").read_text()
    assert 'id="table2_m_model.pretrained_weights_deit_base.pth"' in page


def test_wandb_without_a_login_writes_the_offline_run(tmp_path, capsys, monkeypatch):
    """No WANDB_API_KEY, no .netrc, no WANDB_MODE (a fresh machine): wandb.Api() raised
    "No API key configured" out of the report; now the report run is written offline, said in
    one line, beside the tables."""
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    lr_pair(tmp_path / "runs", 0.001)
    out = tmp_path / "report"
    assert main([str(tmp_path / "runs"), "--no-plots", "--wandb", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "W&B offline (no W&B API key: `wandb login` or WANDB_API_KEY):" in said, said
    assert f"`wandb sync {out / 'wandb'}" in said
    assert list((out / "wandb").glob("offline-run-*")) and (out / "tables.md").exists()
