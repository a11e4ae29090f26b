"""Cells in the paper's words ("Fshift 4→1", "49.90 (+0.50)") and tables as Markdown, LaTeX
and CSV."""
from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from c2f.report.paper import PaperCell
from c2f.report.runs import METHOD_TITLES
from c2f.report.savings import Cell, Stat
from c2f.report.variants import base_name

FAMILY = {"fshift": (0, 0), "pool_avg": (1, 0), "pool_max": (1, 1), "patch_bl": (2, 0),
          "patch_pi": (2, 1)}
AVERAGED = "†"  # marks a value of a weight-averaged model
NOT_REACHED = "n/r"


def schedule_phases(schedule: str) -> list[int]:
    """C of each phase of a schedule's notation ("4-2-1"; "4~1:plateau": adaptive switching
    by the plateau rule)."""
    return [int(c) for c in re.split("[-~]", schedule.partition(":")[0])]


def label(method: str, schedule: str, arrow: str = "→") -> str:
    """Row label in the paper's words: "Fshift 4→1", "Baseline", "Max Pool C=2", and beyond
    the paper "Fshift 4→1 (adaptive)", "Fshift [compression.options.k=2] 4→1" (variants.py)."""
    base = base_name(method)
    name = METHOD_TITLES.get(base, base) + method[len(base):]
    if schedule == "1" and method == "none":
        return "Baseline"
    if len(schedule_phases(schedule)) == 1:
        return f"{name} C={schedule}"
    if "~" in schedule:
        phases, _, rule = schedule.partition(":")
        return f"{name} {phases.replace('~', arrow)} (adaptive{', ' + rule if rule else ''})"
    return f"{name} {schedule.replace('-', arrow)}"


def single_phase(cell) -> bool:
    """A compressed run of one phase (Table 1's "Fshift C=4"): the paper reports its metric
    only, never savings (its model is a coarse one), so the savings views leave it out."""
    return len(schedule_phases(cell.schedule)) == 1 and cell.schedule != "1"


def row_order(method: str, schedule: str) -> tuple:
    """The paper's row order: baseline, single phase, then by phases, family, C, variant."""
    phases = schedule_phases(schedule)
    family, variant = FAMILY.get(base_name(method), (3, 0))
    kind = 0 if (method == "none" and phases == [1]) else 1 if len(phases) == 1 else len(phases)
    return (kind, family, [-c for c in phases], variant, "~" in schedule, schedule, method)


def pct(stat: Stat | None, signed: bool = False) -> str:
    """A fraction as percent with two decimals, with ± the sample std (n - 1) over several seeds."""
    if stat is None:
        return "n/a"
    text = f"{100 * stat.mean:+.2f}" if signed else f"{100 * stat.mean:.2f}"
    return text + (f"±{100 * stat.std:.2f}" if stat.n > 1 else "")


def seeds_text(cell: Cell, stat: Stat | None) -> str:
    """" [n=3]" for a value of the cell's 3 seeds, " [n=2 of 3]" for one of 2 of them (the
    others undecided, or without a baseline: the status says why); "" for one seed."""
    if stat is not None and stat.n != cell.seeds:
        return f" [n={stat.n} of {cell.seeds}]"
    return f" [n={cell.seeds}]" if cell.seeds > 1 else ""


def cell_text(cell: Cell, criterion: str) -> str:
    """The metric cell: "49.90 (+0.50)", "43.82 (-0.48) n/r", "44.30†", "pending", ..."""
    seeds = seeds_text(cell, cell.best if criterion == "convergence" else cell.value)
    if cell.status.startswith("baseline"):
        extra = {"baseline": "", "baseline unfinished": " (unfinished)"}.get(
            cell.status, " (" + cell.status.removeprefix("baseline: ") + ")")
        return pct(cell.value) + (AVERAGED if cell.averaged else "") + extra + seeds
    if criterion == "convergence":
        status = cell.status_of(criterion)  # finished, or why no seed's best is known
        if cell.best is None:
            return status + ("" if status in ("no baseline", "unfinished baseline", "no data")
                             else seeds)
        mark = AVERAGED if cell.best_averaged else ""
        # without a finished baseline: the run's own best, and why there is no difference
        diff = status if cell.best_diff is None else pct(cell.best_diff, True)
        return f"{pct(cell.best)}{mark} ({diff})" + seeds
    if cell.value is None:
        return cell.status + seeds
    mark = AVERAGED if cell.averaged else ""
    flag = {"reached": "", "not reached": f" {NOT_REACHED}"}.get(cell.status, f" [{cell.status}]")
    flag = f" {NOT_REACHED} [{cell.status[13:]}]" if cell.status.startswith("not reached, ") \
        else flag
    return f"{pct(cell.value)}{mark} ({pct(cell.diff, True)}){flag}" + seeds


def save_text(cell: Cell, stat: Stat | None) -> str:
    """A savings cell: "-" for the baseline, "35.32 n/r" when never reached (savings at the best
    final-phase epoch), else percent."""
    if cell.status.startswith("baseline"):
        return "-"
    if stat is None:
        return "n/a"
    return pct(stat) + (f" {NOT_REACHED}" if cell.status.startswith("not reached") else "")


def paper_text(found: PaperCell | None, criterion: str) -> str:
    """The paper's cell: "49.90 / 58.31 / 55.00" (budget) or "52.31" (convergence)."""
    if found is None:
        return ""
    if criterion == "convergence" or found.flops_save is None:
        return f"{found.value:.2f}"
    return f"{found.value:.2f} / {found.flops_save:.2f} / {found.time_save:.2f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs LaTeX table."""
    def esc(text: str) -> str:
        text = re.sub(r"([_%&#])", r"\\\1", text)
        return text.replace("→", r"$\to$").replace("±", r"$\pm$").replace("†", r"$^\dagger$")
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(map(esc, header)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(esc, row)) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def file_slug(*parts: object) -> str:
    """A file name made of `parts`: letters, digits, '.' and '-' kept, any other run of
    characters (spaces, brackets, '=', '/') one '_'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(map(str, parts))).strip("_")


def unique_slugs(names: list[str]) -> dict[str, str]:
    """{name: its file_slug}, where two names would share one (`m [a=b c]`, `m [a=b_c]`)
    each with a short hash of the name added: no file overwrites another's."""
    slugs = {name: file_slug(name) for name in names}
    shared = {s for s in slugs.values() if list(slugs.values()).count(s) > 1}
    return {name: slug + "-" + hashlib.sha1(name.encode()).hexdigest()[:6] if slug in shared
            else slug for name, slug in slugs.items()}


def write_csv(path: Path, fields: list[str], rows: list[dict] | list[list[str]]) -> None:
    """A CSV file with a header; rows are dicts keyed by `fields` or lists in their order."""
    with path.open("w", newline="") as handle:
        if rows and isinstance(rows[0], list):
            writer = csv.writer(handle)
            writer.writerow(fields)
            writer.writerows(rows)
            return
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
