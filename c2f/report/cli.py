"""`python -m c2f.report RUN_DIRS...`: the paper's tables, plots and a dashboard from run
directories (files only; W&B is optional)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from c2f.report.layout import Table, paper_refusals, paper_tables
from c2f.report.paper import load_paper, paper_cell
from c2f.report.runs import ReportError, Run, load_runs
from c2f.report.savings import Outcome, aggregate, fold_epochs, pair, reference
from c2f.report.select import SelectError, parse_where
from c2f.report.tables import label, latex, markdown, write_csv
from c2f.report.variants import split_label

STRICT = -1e-7  # metric points: ties do not count, values above the baseline's by any amount do
RUN_FIELDS = ["path", "dataset", "model", "model_setting", "budget", "method", "method_setting",
              "schedule", "switched", "seed", "fold", "status",
              "epochs", "averaged", "baseline_epoch", "baseline_metric", "budget_status",
              "epoch", "metric", "flops_save", "time_save", "best", "best_diff"]
CSV_FIELDS = ["table", "criterion", "dataset", "model", "model_setting", "budget", "method",
              "method_setting", "schedule", "label",
              "metric", "seeds", "status", "averaged", "value", "value_std", "value_n", "diff",
              "diff_std", "flops_save", "flops_save_std", "time_save", "time_save_std",
              "paper_value",
              "paper_flops_save", "paper_time_save"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m c2f.report", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path,
                        help="run directories, or folders holding them (searched recursively)")
    parser.add_argument("--out", type=Path, help="output folder (default: FIRST_RUN_DIR/report)")
    parser.add_argument("--tolerance", type=float, default=0.0, metavar="POINTS",
                        help="budget criterion: a run reaches the baseline when it comes within "
                             "POINTS metric points of its best (0, the default: ties count, "
                             "c2f's reading of the paper's 'surpasses'; the paper calls "
                             "AudioSet's -0.48 'a negligible drop')")
    parser.add_argument("--strict", action="store_true",
                        help="budget criterion: a run reaches the baseline only above its best "
                             "(ties do not count: 'surpasses' read literally; on a small eval "
                             "set ties are frequent)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only the runs whose config has this value, e.g. --where "
                             "optim.lr=0.0001 or --where dataset.digest=3f2a9c0b1d4e "
                             "(repeatable: every one must hold)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper column")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the tables and plots as a W&B run (offline: for wandb sync)")
    parser.add_argument("--wandb-project", default="c2f", help="W&B project for --wandb")
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0 (metric points)")
    if args.strict and args.tolerance:
        parser.error("--strict and --tolerance ask for opposite things: give one")
    if args.strict:
        args.tolerance = STRICT
    try:
        args.where = parse_where(args.where)
    except SelectError as err:
        parser.error(str(err))
    return args


def named(model: str, method: str) -> dict[str, str]:
    """The model and method columns: the names, and apart from them the settings that tell
    runs of one name apart (report/variants.py), as `key=value, ...`."""
    (model, model_setting), (method, method_setting) = split_label(model), split_label(method)
    return {"model": model, "model_setting": model_setting, "method": method,
            "method_setting": method_setting}


def run_rows(runs: list[Run], outcomes: list[Outcome]) -> list[dict]:
    """One row per run: its status and both criteria against its baseline."""
    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.4f}"
    by_path, epochs = {o.run.path: o for o in outcomes}, fold_epochs(runs)
    used = set(by_path) | {b.path for b in pair(runs)[0].values()}
    rows = []
    for run in runs:
        outcome = by_path.get(run.path)
        ref = outcome.ref if outcome else reference(run, epochs.get(run.path)) \
            if run.is_baseline else None
        row = {"path": str(run.path), "dataset": run.dataset, **named(run.model, run.method),
               "budget": run.budget, "schedule": run.schedule, "switched": run.switched,
               "seed": run.seed,
               "fold": "" if run.fold is None else run.fold,
               "status": run.status, "epochs": len(run.records),
               "averaged": "yes" if run.average else "",
               "baseline_epoch": ref.epoch if ref else "",
               "baseline_metric": pct(ref.metric if ref else None)}
        if run.path not in used and not run.pretrain and run.pretrained_from is None:
            row["budget_status"] = "ignored: a duplicate (see the warnings)"
        if outcome:
            row |= {"budget_status": outcome.status, "epoch": outcome.epoch or "",
                    "metric": pct(outcome.metric), "flops_save": pct(outcome.flops_save),
                    "time_save": pct(outcome.time_save), "best": pct(outcome.best),
                    "best_diff": pct(outcome.best_diff)}
        rows.append(row)
    return rows


def long_rows(tables: list[Table], paper: dict | None) -> list[dict]:
    """Every cell of every table in percent, one row each, like paper_tables.csv."""
    def num(stat, part: str = "mean") -> str:  # a spread only where there are two values
        return "" if stat is None or (part == "std" and stat.n < 2) else \
            f"{100 * getattr(stat, part):.4f}"
    out = []
    for table in tables:
        budget = table.criterion == "budget"
        for cell in table.cells:
            found = paper_cell(paper, table.key, table.criterion, cell.dataset, cell.model,
                               cell.method, cell.schedule, cell.budget)
            value = cell.value if budget else cell.best
            out.append({
                "table": table.key, "criterion": table.criterion, "dataset": cell.dataset,
                **named(cell.model, cell.method), "budget": cell.budget,
                "schedule": cell.schedule, "label": label(cell.method, cell.schedule, "->"),
                "metric": cell.metric, "seeds": cell.seeds,
                "status": cell.status_of(table.criterion),
                "averaged": "yes" if (cell.averaged if budget else cell.best_averaged) else "",
                "value": num(value), "value_std": num(value, "std"),
                "value_n": "" if value is None else value.n,  # of the cell's seeds
                "diff": num(cell.diff if budget else cell.best_diff),
                "diff_std": num(cell.diff if budget else cell.best_diff, "std"),
                "flops_save": num(cell.flops_save) if budget else "",
                "flops_save_std": num(cell.flops_save, "std") if budget else "",
                "time_save": num(cell.time_save) if budget else "",
                "time_save_std": num(cell.time_save, "std") if budget else "",
                "paper_value": found.value if found else "",
                "paper_flops_save": found.flops_save if found and found.flops_save else "",
                "paper_time_save": found.time_save if found and found.time_save else ""})
    return out


def write_tables(out: Path, tables: list[Table], runs: list[Run], outcomes: list,
                 paper: dict | None, warnings: list[str], selection: str) -> str:
    """tables.md, tables.tex, one CSV per table, savings.csv and runs.csv; returns the md."""
    md = ["# Coarse-to-fine savings", "",
          ("Metrics and savings in percent; ± is the sample standard deviation (n - 1) over "
           "seeds, [n=k] the number of seeds (seeds x folds for cross-validated datasets "
           "such as ESC-50, whose folds are scored at one epoch, the best of their averaged "
           "curve, as AST's get_esc_result.py)."), ""]
    if selection:
        md += [selection, ""]
    tex = []
    for table in tables:
        md += [f"## {table.title}", "", table.caption, "", markdown(table.header, table.rows)]
        tex.append(latex(table.header, table.rows, f"{table.title}. {table.caption}"))
        write_csv(out / f"{table.slug}.csv", table.header, table.rows)
    adaptive = [r for r in runs if r.switches]
    if adaptive:
        md += ["## Adaptive switches", ""] + [
            f"- {label(r.method, r.schedule)}, seed {r.seed}: {r.switched} ({r.path.name})"
            for r in sorted(adaptive, key=lambda r: (r.method, r.schedule, r.seed))] + [""]
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    text = "\n".join(md)
    (out / "tables.md").write_text(text)
    (out / "tables.tex").write_text("\n".join(tex))
    write_csv(out / "savings.csv", CSV_FIELDS, long_rows(tables, paper))
    write_csv(out / "runs.csv", RUN_FIELDS, run_rows(runs, outcomes))
    return text


def main(argv: list[str] | None = None) -> int:
    """Read, pair, tabulate, plot; 0 on partial sweeps, 2 on unusable input."""
    args = parse_args(argv)
    try:
        runs, warnings = load_runs(args.run_dirs, args.where)
    except (ReportError, OSError) as err:
        print(f"c2f.report: error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run_dirs[0] / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").write_text("ok")
        (out / ".write-test").unlink()
    except OSError as err:
        print(f"c2f.report: error: cannot write the report to {out} ({err.strerror or err}); "
              "give --out a writable folder", file=sys.stderr)
        return 2
    tolerance = args.tolerance / 100  # metric points -> the fraction the runs record
    _, outcomes, pair_warnings = pair(runs, tolerance)
    warnings += pair_warnings
    cells = aggregate(runs, tolerance)
    paper = None if args.no_paper else load_paper()
    tables = paper_tables(cells, paper, args.tolerance)
    warnings += paper_refusals(tables, paper)
    selection = ("Only the runs with " + ", ".join(f"{k}={v}" for k, v in args.where.items())
                 + " (--where)." if args.where else "")
    text = write_tables(out, tables, runs, outcomes, paper, warnings, selection)
    images: list[Path] = []
    if not args.no_plots:
        from c2f.report.plots import plot_all

        images = plot_all(runs, cells, out / "plots")
    from c2f.report.dashboard import write_dashboard

    page = write_dashboard(out / "index.html", tables, cells, runs, images, warnings, selection)
    if args.wandb:
        from c2f.report.publish import publish

        publish(tables, images, outcomes, args.wandb_project, out)
    print(text)
    print(f"{len(runs)} runs, {len(cells)} cells, {len(tables)} tables, {len(warnings)} "
          f"warnings -> {out} (dashboard {page})")
    return 0
