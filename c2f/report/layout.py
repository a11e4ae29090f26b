"""The paper's tables from cells: which table a cell belongs to, the paper's column and row
order, headers, rows and captions.

- Table 1: single-phase training on compressed spectrograms, with the baseline and the
  coarse-to-fine run of the same method and C (convergence; models as rows).
- Tables 2 / 3: 2-phase runs (C -> 1), budget / convergence criterion; one table per model.
- Tables 4 / 5: 3-phase runs, likewise.
- Table 6: the other AST-based models (HTS-AT, SSAST), budget criterion; models as rows.
- Other schedules (4+ phases, or not ending at C = 1): both criteria, per model.
A baseline joins every table that holds another row of its model, dataset and budget. Dataset
columns come in the paper's order (VGGSound, VoxCeleb, Kinetics-Sounds, AudioSet), then the
others.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from c2f.report.paper import column_order, model_family, paper_cell, title
from c2f.report.savings import Cell
from c2f.report.tables import (
    AVERAGED,
    NOT_REACHED,
    cell_text,
    label,
    paper_text,
    row_order,
    save_text,
    schedule_phases,
    unique_slugs,
)
from c2f.report.variants import base_name, preset_setting, shown, split_label

KINDS = {  # key: (title, criterion)
    "1": ("Table 1 — training on compressed spectrograms: one phase, or coarse to fine",
          "convergence"),
    "2": ("Table 2 — 2-phase training: FLOPs and time saved", "budget"),
    "3": ("Table 3 — 2-phase training until convergence", "convergence"),
    "4": ("Table 4 — 3-phase training: FLOPs and time saved", "budget"),
    "5": ("Table 5 — 3-phase training until convergence", "convergence"),
    "6": ("Table 6 — other AST-based models: FLOPs and time saved", "budget"),
    "other-budget": ("Other schedules: FLOPs and time saved", "budget"),
    "other-convergence": ("Other schedules until convergence", "convergence"),
    "baselines": ("Baselines without other runs", "convergence"),
}
MODELS_AS_ROWS = ("1", "6", "baselines")
SIX = ("htsat", "ssast")  # Table 6's models
MODEL_ORDER = {"cnn14": 0, "ast": 1, "htsat": 2, "ssast": 3}


@dataclass(frozen=True)
class Table:
    """One rendered table."""

    key: str  # "1".."6", "other-budget", "other-convergence"
    model: str | None  # the model of a per-model table; None where models are rows
    title: str
    criterion: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    cells: list[Cell]
    # its file name (paper_tables): table2, table2_ast_tiny, table_other-budget_ast_base,
    # table2_ast_tiny_model.pretrained_weights_x.pth for `ast_tiny [model.pretrained=/weights/
    # x.pth]`: the model's label, that may hold '/', spaces and brackets, made file-name safe
    slug: str = ""

    @property
    def name(self) -> str:
        """The table's name with its model's label as it is: table2_ast_tiny [optim.lr=0.1]."""
        base = f"table{self.key}" if self.key.isdigit() else f"table_{self.key}"
        return base + (f"_{self.model}" if self.model else "")


def _phases(cell: Cell) -> list[int]:
    return schedule_phases(cell.schedule)


def table_keys(cell: Cell, single_phase: set[tuple]) -> list[str]:
    """The tables a non-baseline cell belongs to; [] for a baseline."""
    phases = _phases(cell)
    if model_family(cell.model, cell.arch) in SIX:
        return [] if phases == [1] else ["6"]
    if phases == [1]:
        return []
    if len(phases) == 1:
        return ["1"]
    if phases[-1] != 1 or len(phases) > 3:
        return ["other-budget", "other-convergence"]
    if len(phases) == 3:
        return ["4", "5"]
    coarse_alone = (cell.dataset, cell.model, cell.method, phases[0]) in single_phase
    return ["2", "3"] + (["1"] if coarse_alone else [])


def _caption(criterion: str, tolerance: float, cells: list[Cell]) -> str:
    if criterion == "budget":
        bar = "ties count" if tolerance == 0 else "strictly above it: --strict" \
            if tolerance < 0 else \
            f"or comes within {tolerance:.2f} points of it: --tolerance {tolerance:g}"
        text = ("Budget criterion: the metric at the earliest final-phase epoch that reaches the "
                f"baseline's best ({bar}), and the training FLOPs and time saved up to it. "
                f"{NOT_REACHED}: never reached; metric and savings at the best final-phase "
                "epoch.")
    else:
        text = ("Convergence criterion: the best metric of the run and its difference to the "
                "baseline's best.")
    if any(c.averaged or c.best_averaged for c in cells):
        text += f" {AVERAGED}: weight-averaged model (AST's recipe, as the paper on AudioSet)."
    if any(model_family(c.model) == "ssast" for c in cells):
        text += (" SSAST rows: the best metric of fine-tuning from each pretraining run, and "
                 "the FLOPs and time saved by its coarse-to-fine pretraining (the paper's "
                 "pretraining-stage savings).")
    return text


def _header(key: str, criterion: str, columns: list[tuple], cells: list[Cell],
            with_paper: bool) -> list[str]:
    header = ["Setting"] + (["Model"] if key in MODELS_AS_ROWS else []) + \
        (["Multi-phase"] if key == "1" else [])
    names = [dataset for dataset, _ in columns]
    for dataset, budget in columns:
        name = title(dataset) + (f" @{budget}ep" if names.count(dataset) > 1 else "")
        metric = next(c.metric for c in cells if (c.dataset, c.budget) == (dataset, budget))
        header.append(f"{name} {'mAP' if metric == 'mAP' else 'Acc'}")
        if criterion == "budget":
            header += [f"{name} FLOPs save (%)", f"{name} Time save (%)"]
        if with_paper:
            header.append(f"{name} paper")
    return header


def build_table(key: str, model: str | None, cells: list[Cell], paper: dict | None,
                tolerance: float) -> Table:
    """Header and rows of one table: rows = (model,) setting, columns per dataset (and budget)."""
    name, criterion = KINDS[key]

    def found(cell):
        return paper_cell(paper, key, criterion, cell.dataset, cell.model, cell.method,
                          cell.schedule, cell.budget)

    columns = sorted({(c.dataset, c.budget) for c in cells},
                     key=lambda db: (column_order(db[0]), db[1]))
    with_paper = any(found(c) for c in cells)
    by_key = {(c.model, c.method, c.schedule, c.dataset, c.budget): c for c in cells}
    archs = {c.model: c.arch for c in cells}
    settings = sorted({(c.model, c.method, c.schedule) for c in cells},
                      key=lambda m: (MODEL_ORDER.get(model_family(m[0], archs[m[0]]), 9), m[0],
                                     row_order(m[1], m[2])))
    rows = []
    for row_model, method, schedule in settings:
        row = [label(method, schedule)]
        if key in MODELS_AS_ROWS:
            row.append(row_model)
        if key == "1":
            row.append("yes" if len(schedule_phases(schedule)) > 1 else "no")
        for dataset, budget in columns:
            cell = by_key.get((row_model, method, schedule, dataset, budget))
            if cell is None:
                row += [""] * ((3 if criterion == "budget" else 1) + with_paper)
                continue
            row.append(cell_text(cell, criterion))
            if criterion == "budget":
                row += [save_text(cell, cell.flops_save), save_text(cell, cell.time_save)]
            if with_paper:
                row.append(paper_text(found(cell), criterion))
        rows.append(row)
    heading = name + (f" ({model})" if model else "")
    return Table(key, model, heading, criterion, _caption(criterion, tolerance, cells),
                 _header(key, criterion, columns, cells, with_paper), rows, cells)


def paper_tables(cells: list[Cell], paper: dict | None, tolerance: float = 0.0) -> list[Table]:
    """Every table the cells fill, in the paper's order; `tolerance` in metric points."""
    single = {(c.dataset, c.model, c.method, _phases(c)[0]) for c in cells
              if len(_phases(c)) == 1 and _phases(c) != [1]}
    groups: dict[tuple[str, str | None], list[Cell]] = {}
    for cell in cells:
        for key in table_keys(cell, single):
            model = None if key in MODELS_AS_ROWS else cell.model
            groups.setdefault((key, model), []).append(cell)
    for cell in cells:  # a baseline joins the tables that hold a row of its model and column
        if _phases(cell) != [1]:
            continue
        joined = False
        for members in list(groups.values()):
            if any((m.model, m.dataset, m.budget) == (cell.model, cell.dataset, cell.budget)
                   for m in members):
                members.append(cell)
                joined = True
        if not joined:
            groups.setdefault(("baselines", None), []).append(cell)
    order = list(KINDS)
    tables = [build_table(key, model, members, paper, tolerance)
              for (key, model), members in sorted(groups.items(),
                                                  key=lambda g: (order.index(g[0][0]),
                                                                 g[0][1] or ""))]
    slugs = unique_slugs([table.name for table in tables])
    return [replace(table, slug=slugs[table.name]) for table in tables]


def paper_refusals(tables: list[Table], paper: dict | None) -> list[str]:
    """A warning for each dataset and model whose rows the paper has numbers for but that
    stand without them because their labels name settings off the recipe (variants.py), with
    the recipe's values where known: the paper column does not vanish unexplained."""
    refused: dict[tuple[str, str], dict[str, tuple]] = {}
    for table in tables:
        for c in table.cells:
            bare = (base_name(c.model), base_name(c.method))
            if (c.model, c.method) != bare and paper_cell(
                    paper, table.key, table.criterion, c.dataset, *bare, c.schedule,
                    c.budget) and not paper_cell(paper, table.key, table.criterion, c.dataset,
                                                 c.model, c.method, c.schedule, c.budget):
                refused.setdefault((c.dataset, c.model), {})[label(c.method, c.schedule)] = \
                    row_order(c.method, c.schedule)
    warnings = []
    for (dataset, model), rows in sorted(refused.items()):
        name, setting = split_label(model)
        recipe = preset_setting(dataset, name)
        known = [f"{key}={shown(recipe[key])}" for key in re.findall(r"(?:^|, )([\w.]+)=", setting)
                 if key in recipe]
        warnings.append(
            f"{dataset}/{model}: no paper number beside "
            f"{', '.join(sorted(rows, key=rows.get))}: "
            + (f"its runs set {setting} where the recipe (what `dataset={dataset} "
               f"model={name}` composes to) has " + (", ".join(known) or "other values")
               if setting else
               "their methods set what the row names, off the schedule's and method's files")
            + "; the runs at the recipe's values keep their plain name and the paper's column")
    return warnings
