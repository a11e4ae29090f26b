"""`python -m c2f.report RUN_DIRS...`: tables, plots and a dashboard from run directories."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from c2f.report.runs import ReportError, Run, load_runs
from c2f.report.savings import Outcome, aggregate, pair, reference
from c2f.report.tables import CSV_FIELDS, csv_rows, grid, latex, load_paper, markdown

CAPTIONS = {"budget": "Budget criterion: metric at the earliest final-phase epoch that reaches "
                      "the baseline's best, and the training FLOPs and time saved up to it.",
            "convergence": "Convergence criterion: best metric of the run and its difference to "
                           "the baseline's best."}
RUN_FIELDS = ["path", "dataset", "model", "budget", "method", "schedule", "seed", "status",
              "epochs", "baseline_epoch", "baseline_metric", "budget_status", "epoch", "metric",
              "flops_save", "time_save", "best", "best_diff"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m c2f.report", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path,
                        help="run directories, or folders holding them (searched recursively)")
    parser.add_argument("--out", type=Path, help="output folder (default: FIRST_RUN_DIR/report)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper column")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--wandb", action="store_true",
                        help="also publish the tables to W&B when online")
    parser.add_argument("--wandb-project", default="c2f", help="W&B project for --wandb")
    return parser.parse_args(argv)


def tables(cells: list, paper: dict | None) -> dict[str, list[tuple[str, list, list]]]:
    """Per criterion: (title, header, rows) of each model's table."""
    out: dict[str, list] = {}
    for criterion in ("budget", "convergence"):
        for model in sorted({c.model for c in cells}):
            header, rows = grid(cells, criterion, model, paper)
            out.setdefault(criterion, []).append((f"{criterion} — {model}", header, rows))
    return out


def run_rows(runs: list[Run], outcomes: list[Outcome]) -> list[dict]:
    """One row per run: its status and both criteria against its baseline."""
    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.4f}"
    by_path = {o.run.path: o for o in outcomes}
    rows = []
    for run in runs:
        outcome = by_path.get(run.path)
        ref = outcome.ref if outcome else reference(run) if run.is_baseline else None
        row = {"path": str(run.path), "dataset": run.dataset, "model": run.model,
               "budget": run.budget, "method": run.method, "schedule": run.schedule,
               "seed": run.seed, "status": run.status, "epochs": len(run.records),
               "baseline_epoch": ref.epoch if ref else "",
               "baseline_metric": pct(ref.metric if ref else None)}
        if outcome:
            row |= {"budget_status": outcome.status, "epoch": outcome.epoch or "",
                    "metric": pct(outcome.metric), "flops_save": pct(outcome.flops_save),
                    "time_save": pct(outcome.time_save), "best": pct(outcome.best),
                    "best_diff": pct(outcome.best_diff)}
        rows.append(row)
    return rows


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """A CSV file with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_tables(out: Path, built: dict, cells: list, runs: list[Run], outcomes: list,
                 paper: dict | None, warnings: list[str]) -> str:
    """tables.md, tables.tex, savings.csv and runs.csv; returns the Markdown."""
    md = ["# Coarse-to-fine savings", "",
          ("Metrics and savings in percent; ± is the standard deviation over seeds, [n=k] the "
           "number of seeds; n/r: not reached (never an estimate)."), ""]
    tex = []
    for criterion, items in built.items():
        for title, header, rows in items:
            md += [f"## {title}", "", CAPTIONS[criterion], "", markdown(header, rows)]
            tex.append(latex(header, rows, f"{CAPTIONS[criterion]} ({title})"))
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    text = "\n".join(md)
    (out / "tables.md").write_text(text)
    (out / "tables.tex").write_text("\n".join(tex))
    write_csv(out / "savings.csv", CSV_FIELDS, csv_rows(cells, paper))
    write_csv(out / "runs.csv", RUN_FIELDS, run_rows(runs, outcomes))
    return text


def main(argv: list[str] | None = None) -> int:
    """Read, pair, tabulate, plot; 0 on partial sweeps, 2 on unusable input."""
    args = parse_args(argv)
    try:
        runs, warnings = load_runs(args.run_dirs)
    except (ReportError, OSError) as err:
        print(f"c2f.report: error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run_dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    _, outcomes, pair_warnings = pair(runs)
    warnings += pair_warnings
    cells = aggregate(runs)
    paper = None if args.no_paper else load_paper()
    built = tables(cells, paper)
    text = write_tables(out, built, cells, runs, outcomes, paper, warnings)
    images: list[Path] = []
    if not args.no_plots:
        from c2f.report.plots import plot_all

        images = plot_all(runs, cells, out / "plots")
    from c2f.report.dashboard import write_dashboard

    page = write_dashboard(out / "index.html", built, cells, runs, images, warnings)
    if args.wandb:
        from c2f.report.publish import publish

        publish(built, images, outcomes, args.wandb_project)
    print(text)
    print(f"{len(runs)} runs, {len(cells)} cells, {len(warnings)} warnings -> {out} "
          f"(dashboard {page})")
    return 0
