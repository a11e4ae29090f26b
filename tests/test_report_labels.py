"""The report's files and labels: each table and plot in a file of its own, whatever the
settings in its model's label hold (decimals, '/', spaces); and the table a model's rows go
to, by its arch."""
from __future__ import annotations

import hashlib
import re

import pytest

from c2f.report.cli import main
from c2f.report.layout import paper_tables
from c2f.report.paper import load_paper
from c2f.report.runs import load_runs
from c2f.report.savings import aggregate
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


def paper_runs(root, name: str, lr: float, method: str = "fshift", **setting) -> None:
    """A VGGSound ast_base run of the paper's budget (20 epochs) at learning rate `lr`."""
    make_run(root, name, method=method, phases=(4, 1) if method != "none" else (1,),
             values=[0, .5, .6, .6] if method != "none" else [0.2, 0.3, 0.4, 0.5],
             dataset="vggsound", model="ast_base", budget=20,
             setting={"optim": {"lr": lr}, "average": {"mode": "none", "k": 15}, **setting})


def test_one_off_recipe_run_leaves_the_recipe_runs_their_paper_column(tmp_path):
    """One exploratory run (another learning rate, or top-k averaging) beside the recipe's
    runs (vggsound's optim.lr 1e-5, no averaging): it is named by its settings; the recipe's
    runs kept the name `ast_base [optim.lr=1e-05]` and lost the paper's column, unexplained."""
    from c2f.report.layout import paper_refusals, paper_tables
    from c2f.report.paper import load_paper
    from c2f.report.runs import load_runs
    from c2f.report.savings import aggregate

    paper_runs(tmp_path, "b", 1e-5, method="none")
    paper_runs(tmp_path, "f", 1e-5)
    paper_runs(tmp_path, "fast", 5e-4)
    paper_runs(tmp_path, "top", 1e-5, average={"mode": "top_k", "k": 3})
    runs, _ = load_runs([tmp_path])
    assert sorted(r.model for r in runs) == [
        "ast_base", "ast_base", "ast_base [average.k=3, average.mode=top_k]",
        "ast_base [optim.lr=0.0005]"]
    tables = paper_tables(aggregate(runs), load_paper())
    [two] = [t for t in tables if t.key == "2" and t.model == "ast_base"]
    assert two.header[-1] == "VGGSound paper"
    assert [row[-1] for row in two.rows] == ["49.40", "49.90 / 58.31 / 55.00"]
    assert paper_refusals(tables, load_paper()) == [
        "vggsound/ast_base [average.k=3, average.mode=top_k]: no paper number beside Fshift "
        "4→1: its runs set average.k=3, average.mode=top_k where the recipe (what "
        "`dataset=vggsound model=ast_base` composes to) has average.k=15, average.mode=none; "
        "the runs at the recipe's values keep their plain name and the paper's column",
        "vggsound/ast_base [optim.lr=0.0005]: no paper number beside Fshift 4→1: its runs set "
        "optim.lr=0.0005 where the recipe (what `dataset=vggsound model=ast_base` composes "
        "to) has optim.lr=1e-05; the runs at the recipe's values keep their plain name and "
        "the paper's column"]
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "no paper number beside" in (tmp_path / "report" / "tables.md").read_text()


def test_averaging_window_is_not_named_where_nothing_is_averaged(tmp_path):
    """average.k (start, end) has no effect with average.mode none: a run without averaging
    was `m [average.k=15, average.mode=none]` beside a top-k run."""
    from c2f.report.runs import load_runs

    for name, average in (("b", {"mode": "none", "k": 15}), ("f", {"mode": "top_k", "k": 3})):
        make_run(tmp_path, name, values=[0.2, 0.5], setting={"average": average})
    assert sorted(r.model for r in load_runs([tmp_path])[0]) == [
        "m [average.k=3, average.mode=top_k]", "m [average.mode=none]"]


def test_papers_numbers_stand_only_beside_the_papers_own_models(tmp_path):
    """htsat_tiny and cnn14_tiny are placed with HTS-AT and CNN14 (Tables 6 and 1), but they
    are c2f's CPU models: the paper's 52.82 stood beside a 2-layer htsat_tiny."""
    from c2f.report.layout import paper_tables
    from c2f.report.paper import load_paper
    from c2f.report.runs import load_runs
    from c2f.report.savings import aggregate

    for model in ("htsat", "htsat_tiny"):
        kw = {"dataset": "vggsound", "model": model, "budget": 50}
        make_run(tmp_path, f"{model}-b", values=[0.4, 0.5], **kw)
        make_run(tmp_path, f"{model}-f", method="fshift", phases=(4, 1), values=[0.3, 0.5], **kw)
    for model in ("cnn14", "cnn14_tiny"):
        kw = {"dataset": "audioset_full", "model": model, "metric": "mAP"}
        make_run(tmp_path, f"{model}-b", values=[0.4, 0.432], **kw)
        make_run(tmp_path, f"{model}-p", method="pool_max", phases=(2,), values=[0.4, 0.426],
                 **kw)
    tables = {t.key: t for t in paper_tables(aggregate(load_runs([tmp_path])[0]), load_paper())}
    assert {row[1]: row[-1] for row in tables["6"].rows if row[0] == "Baseline"} == {
        "htsat": "52.82", "htsat_tiny": ""}
    assert {row[1]: row[-1] for row in tables["1"].rows if row[0] == "Baseline"} == {
        "cnn14": "43.20", "cnn14_tiny": ""}


def test_a_run_from_before_weight_averaging_pairs_with_a_baseline_that_averages_nothing(tmp_path):
    """A run made before c2f had the `average` group (none in its config) averaged nothing: it
    pairs with a baseline of average.mode none, where it had 'no baseline' and a label of
    `average.end=-, average.k=-, ...`; its run id stays (the report reads it so)."""
    from c2f.report.runs import load_runs
    from c2f.report.savings import pair

    make_run(tmp_path, "b", values=[0.2, 0.3, 0.4, 0.5],
             setting={"average": {"mode": "none", "start": 1, "end": None, "k": 15}})
    make_run(tmp_path, "old", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5])
    runs, _ = load_runs([tmp_path])
    assert {r.model for r in runs} == {"m"}
    [outcome] = pair(runs)[1]
    assert outcome.status == "reached"


def test_no_baseline_says_which_setting_tells_it_from_the_baseline_there(tmp_path):
    from c2f.report.runs import load_runs
    from c2f.report.savings import pair

    lr_pair(tmp_path, 0.001)
    make_run(tmp_path, "f2", method="fshift", phases=(4, 1), values=[0, 0.5, 0.5, 0.5],
             setting={"optim": {"lr": 0.0005}})
    [warning] = [w for w in pair(load_runs([tmp_path])[0])[2] if "no baseline" in w]
    assert warning.endswith(f"; {tmp_path / 'group' / 'b0.001'} is the baseline of another "
                            "setting: optim.lr=0.0005 (the baseline's: 0.001)"), warning


@pytest.mark.parametrize("name, arch, table", [
    ("my_htsat", "htsat", "6"),  # a preset of one's own of HTS-AT: Table 6, as htsat_tiny
    ("htsat_mine", "convnet", "2"),  # a ConvNet whose name starts like HTS-AT's: not Table 6
    ("ssast_mine", "ast", "6"),  # SSAST's arch is ast: its name tells
])
def test_a_model_is_placed_by_its_arch_not_by_its_presets_name(tmp_path, name, arch, table):
    kw = {"model": name, "setting": {"model": {"name": name, "arch": arch}}}
    make_run(tmp_path, "base", values=[0.40, 0.50, 0.52], **kw)
    make_run(tmp_path, "c2f", method="fshift", phases=(4, 1), values=[0.30, 0.51, 0.52], **kw)
    tables = paper_tables(aggregate(load_runs([tmp_path])[0]), load_paper())
    assert table in {t.key for t in tables}, [t.key for t in tables]
    assert ({"6", "2"} - {table}).isdisjoint(t.key for t in tables)  # and not in the other
