"""The paper's table layout (rows Baseline, Fshift 4->1, ...) as Markdown, CSV and LaTeX."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources

from c2f.report.savings import Cell, Stat

METHODS = {"none": "Baseline", "fshift": "Fshift", "pool_avg": "Avg Pool",
           "pool_max": "Max Pool", "patch_bl": "Patch BL", "patch_pi": "Patch PI"}
FAMILY = {"fshift": (0, 0), "pool_avg": (1, 0), "pool_max": (1, 1), "patch_bl": (2, 0),
          "patch_pi": (2, 1)}
DATASETS = {"vggsound": "VGGSound", "voxceleb": "VoxCeleb", "kinetics_sounds": "Kinetics-Sounds",
            "audioset": "AudioSet"}
MODEL_ALIASES = {"ast_base": "ast"}  # the paper's AST is AST-Base
CSV_FIELDS = ["criterion", "dataset", "model", "budget", "method", "schedule", "label", "metric",
              "seeds", "status", "value", "value_std", "diff", "flops_save", "flops_save_std",
              "time_save", "time_save_std", "paper_value", "paper_flops_save", "paper_time_save"]


def label(method: str, schedule: str, arrow: str = "→") -> str:
    """Row label in the paper's words: "Fshift 4→1", "Baseline", "Avg Pool C=2"."""
    name = METHODS.get(method, method)
    if schedule == "1" and method == "none":
        return "Baseline"
    if "-" not in schedule:
        return f"{name} C={schedule}"
    return f"{name} {schedule.replace('-', arrow)}"


def row_order(method: str, schedule: str) -> tuple:
    """The paper's row order: baseline, single phase, then by phases, family, C, variant."""
    phases = [int(c) for c in schedule.split("-")]
    family, variant = FAMILY.get(method, (3, 0))
    kind = 0 if (method == "none" and phases == [1]) else 1 if len(phases) == 1 else len(phases)
    return (kind, family, [-c for c in phases], variant, method)


def _norm(text: str) -> str:
    """Lower case, letters and digits only: matches "kinetics_sounds" with "Kinetics-Sounds"."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class PaperCell:
    """One cell of the paper (percent)."""

    value: float
    flops_save: float | None
    time_save: float | None


def _number(text: str) -> float | None:
    """A CSV number, None when empty."""
    return float(text) if text else None


def load_paper() -> dict[tuple, PaperCell]:
    """paper_tables.csv keyed by (criterion, dataset, model, method, schedule), normalized."""
    text = resources.files("c2f.report").joinpath("paper_tables.csv").read_text()
    cells: dict[tuple, PaperCell] = {}
    for row in csv.DictReader(io.StringIO(text)):
        key = (row["criterion"], _norm(row["dataset"]), row["model"], row["method"],
               row["schedule"])
        cells.setdefault(key, PaperCell(float(row["value"]), _number(row["flops_save"]),
                                        _number(row["time_save"])))
    return cells


def paper_cell(paper: dict, criterion: str, cell: Cell) -> PaperCell | None:
    """The paper's number for the same dataset, model, method and schedule, if it has one."""
    method = "pool" if cell.method.startswith("pool_") and "-" not in cell.schedule else cell.method
    model = MODEL_ALIASES.get(cell.model, cell.model)
    return paper.get((criterion, _norm(cell.dataset), model, method, cell.schedule))


def pct(stat: Stat | None, signed: bool = False) -> str:
    """A fraction as percent with two decimals, with ± std over several seeds."""
    if stat is None:
        return "n/a"
    text = f"{100 * stat.mean:+.2f}" if signed else f"{100 * stat.mean:.2f}"
    return text + (f"±{100 * stat.std:.2f}" if stat.n > 1 else "")


def metric_text(cell: Cell, criterion: str) -> str:
    """The metric cell: "49.90 (+0.50)", "not reached (45.00, -4.40)", "pending", ..."""
    seeds = f" [n={cell.seeds}]" if cell.seeds > 1 else ""
    if cell.status.startswith("baseline"):
        extra = "" if cell.status == "baseline" else " (unfinished)"
        return pct(cell.value) + extra + seeds
    if criterion == "convergence":
        if cell.best is None:
            return cell.status if cell.status in ("no baseline", "baseline unfinished", "no data") \
                else "unfinished" + seeds
        return f"{pct(cell.best)} ({pct(cell.best_diff, True)})" + seeds
    if cell.status == "not reached":
        return f"not reached ({pct(cell.value)}, {pct(cell.diff, True)})" + seeds
    if cell.value is None:
        return cell.status + seeds
    partial = "" if cell.status == "reached" else f" [{cell.status}]"
    return f"{pct(cell.value)} ({pct(cell.diff, True)}){partial}" + seeds


def save_text(cell: Cell, stat: Stat | None) -> str:
    """A savings cell: "-" for the baseline, "n/r" when not reached, else percent."""
    if cell.status.startswith("baseline"):
        return "-"
    return pct(stat) if stat is not None else "n/r" if cell.status == "not reached" else "n/a"


def _paper_text(found: PaperCell | None, criterion: str) -> str:
    """The paper's cell: "49.90 / 58.31 / 55.00" (budget) or "52.31" (convergence)."""
    if found is None:
        return ""
    if criterion == "convergence" or found.flops_save is None:
        return f"{found.value:.2f}"
    return f"{found.value:.2f} / {found.flops_save:.2f} / {found.time_save:.2f}"


def grid(cells: list[Cell], criterion: str, model: str, paper: dict | None
         ) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one table (one model): rows = settings, columns per dataset."""
    mine = [c for c in cells if c.model == model]
    columns = sorted({(c.dataset, c.budget) for c in mine})
    names = [c[0] for c in columns]
    with_paper = paper is not None and any(paper_cell(paper, criterion, c) for c in mine)
    header = ["Setting"]
    for dataset, budget in columns:
        title = DATASETS.get(dataset, dataset) + (f" @{budget}ep" if names.count(dataset) > 1
                                                  else "")
        metric = next(c.metric for c in mine if (c.dataset, c.budget) == (dataset, budget))
        header.append(f"{title} {'mAP' if metric == 'mAP' else 'Acc'}")
        if criterion == "budget":
            header += [f"{title} FLOPs save (%)", f"{title} Time save (%)"]
        if with_paper:
            header.append(f"{title} paper")
    by_key = {(c.method, c.schedule, c.dataset, c.budget): c for c in mine}
    rows = []
    for method, schedule in sorted({(c.method, c.schedule) for c in mine},
                                   key=lambda ms: row_order(*ms)):
        row = [label(method, schedule)]
        for dataset, budget in columns:
            cell = by_key.get((method, schedule, dataset, budget))
            width = (3 if criterion == "budget" else 1) + with_paper
            if cell is None:
                row += [""] * width
                continue
            row.append(metric_text(cell, criterion))
            if criterion == "budget":
                row += [save_text(cell, cell.flops_save), save_text(cell, cell.time_save)]
            if with_paper:
                row.append(_paper_text(paper_cell(paper, criterion, cell), criterion))
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs LaTeX table."""
    def esc(text: str) -> str:
        text = re.sub(r"([_%&#])", r"\\\1", text)
        return text.replace("→", r"$\to$").replace("±", r"$\pm$")
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(map(esc, header)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(esc, row)) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_rows(cells: list[Cell], paper: dict | None) -> list[dict]:
    """Long-form rows (one per cell and criterion) in percent, like paper_tables.csv."""
    def num(stat: Stat | None, part: str = "mean") -> str:
        return "" if stat is None else f"{100 * getattr(stat, part):.4f}"
    out = []
    for cell in sorted(cells, key=lambda c: (c.model, c.dataset, c.budget,
                                             row_order(c.method, c.schedule))):
        for criterion in ("budget", "convergence"):
            found = paper_cell(paper, criterion, cell) if paper else None
            value = cell.best if criterion == "convergence" else cell.value
            diff = cell.best_diff if criterion == "convergence" else cell.diff
            budget = criterion == "budget"
            out.append({
                "criterion": criterion, "dataset": cell.dataset, "model": cell.model,
                "budget": cell.budget, "method": cell.method, "schedule": cell.schedule,
                "label": label(cell.method, cell.schedule, "->"), "metric": cell.metric,
                "seeds": cell.seeds, "status": cell.status, "value": num(value),
                "value_std": num(value, "std"), "diff": num(diff),
                "flops_save": num(cell.flops_save) if budget else "",
                "flops_save_std": num(cell.flops_save, "std") if budget else "",
                "time_save": num(cell.time_save) if budget else "",
                "time_save_std": num(cell.time_save, "std") if budget else "",
                "paper_value": found.value if found else "",
                "paper_flops_save": found.flops_save if found and found.flops_save else "",
                "paper_time_save": found.time_save if found and found.time_save else ""})
    return out
