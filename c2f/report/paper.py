"""The paper's numbers (paper_tables.csv) and how c2f's dataset and model presets map onto the
paper's columns and rows."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from c2f.report.variants import base_name

# The paper's column order (Tables 2-5); presets map onto these columns.
PAPER_COLUMNS = ("vggsound", "voxceleb", "kinetics_sounds", "audioset")
COLUMN_OF_PRESET = {"vggsound": "vggsound", "voxceleb1": "voxceleb", "voxceleb": "voxceleb",
                    "kinetics_sounds": "kinetics_sounds", "audioset_full": "audioset",
                    "audioset": "audioset"}
TITLES = {"vggsound": "VGGSound", "voxceleb1": "VoxCeleb", "voxceleb": "VoxCeleb",
          "kinetics_sounds": "Kinetics-Sounds", "audioset_full": "AudioSet",
          "audioset": "AudioSet", "audioset_balanced": "AudioSet-20K"}
# The paper's epoch budgets (§3.2): AST 5 on AudioSet, 20 on the others; HTS-AT 25 on AudioSet,
# 50 on VGGSound. A run of another budget gets no paper number beside it. (Table 1's CNN14 and
# Table 6's SSAST fine-tuning name no budget: not checked.)
PAPER_BUDGETS = {("ast", "audioset"): 5, ("ast", None): 20, ("htsat", "audioset"): 25,
                 ("htsat", "vggsound"): 50}
# The presets of the paper's own models: only their runs get the paper's numbers beside them
# (htsat_tiny, cnn14_tiny, ast_tiny, ast_vit224 are c2f's: their tables' placement only).
PAPER_MODELS = ("ast_base", "htsat", "cnn14", "ssast_base")
# Preset names -> the paper's model names (its AST is AST-Base).
FAMILIES = {"ast_base": "ast", "ast": "ast", "cnn14": "cnn14", "htsat": "htsat",
            "ssast": "ssast"}


def model_family(model: str, arch: str | None = None) -> str:
    """The paper's name of a model preset: ast_base -> ast, htsat_tiny -> htsat, ... (with
    the settings that tell its runs apart, variants.py: ast_base [optim.lr=0.0001] -> ast).
    Its runs' `arch`, where known, has the last word: a preset `my_htsat` of arch htsat is
    HTS-AT, a ConvNet named `htsat_mine` is not (SSAST's arch is ast: its name tells)."""
    model = base_name(model)
    named = FAMILIES.get(model) or next(
        (f for f in ("cnn14", "htsat", "ssast") if model.startswith(f + "_")), model)
    if arch is None or arch == named or (arch == "ast" and named not in ("cnn14", "htsat")):
        return named
    return arch


def paper_column(dataset: str, model: str) -> str | None:
    """The paper's column for a dataset preset, None when the paper has none. AudioSet-20K is
    the AudioSet column of Table 6's SSAST rows only (the AST tables use AudioSet-2M)."""
    if dataset == "audioset_balanced":
        return "audioset" if model_family(model) == "ssast" else None
    return COLUMN_OF_PRESET.get(dataset)


def column_order(dataset: str) -> tuple:
    """Sort key of a dataset column: the paper's order, then the others by name."""
    column = COLUMN_OF_PRESET.get(dataset)
    if column is not None:
        return (PAPER_COLUMNS.index(column), dataset)
    if dataset == "audioset_balanced":
        return (len(PAPER_COLUMNS) - 0.5, dataset)
    return (len(PAPER_COLUMNS), dataset)


def title(dataset: str) -> str:
    """A dataset's column title."""
    return TITLES.get(dataset, dataset)


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
    """paper_tables.csv keyed by (table, criterion, column, model, method, schedule)."""
    text = resources.files("c2f.report").joinpath("paper_tables.csv").read_text()
    return {(row["table"], row["criterion"], row["dataset"], row["model"], row["method"],
             row["schedule"]): PaperCell(float(row["value"]), _number(row["flops_save"]),
                                         _number(row["time_save"]))
            for row in csv.DictReader(io.StringIO(text))}


def paper_cell(paper: dict | None, table: str, criterion: str, dataset: str, model: str,
               method: str, schedule: str, budget: int | None = None) -> PaperCell | None:
    """The paper's number for this table, column, model and row, if it has one. Table 1's
    "Pool" rows are max pooling (its Pool2->1 is Table 3's Max Pool 2->1 on AudioSet). A
    variant of the recipe (a setting named in the model or method, variants.py) has none, nor
    has a run of another epoch budget than the paper's (PAPER_BUDGETS), nor a model that is not
    one of the paper's (PAPER_MODELS: htsat_tiny is placed with HTS-AT, but is not it)."""
    column = paper_column(dataset, model)
    if paper is None or column is None or model not in PAPER_MODELS or \
            base_name(method) != method:
        return None
    family = model_family(model)
    want = PAPER_BUDGETS.get((family, column), PAPER_BUDGETS.get((family, None)))
    if budget is not None and want is not None and budget != want:
        return None
    if table == "1" and method == "pool_max":
        method = "pool"
    return paper.get((table, criterion, column, model_family(model), method, schedule))
