"""What a dataset preparation declares, and the registry of them.

Adding a dataset is one file in `c2f/data/prepare/` with a `@register_dataset` class: it reads
the publisher's lists into `Entry`s (one clip each, found or not) and names the manifests and
classes; `c2f.data.prepare.engine` does the rest (decoding, manifests, statistics, reports).
"""
from __future__ import annotations

import argparse
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from c2f.data.prepare.decode import Segment
from c2f.data.prepare.sources import Found
from c2f.registry import same_definition

DATASETS: dict[str, type[DatasetRecipe]] = {}


class ListError(Exception):
    """A list or source folder that cannot be used at all; the message names it and the fix."""


@dataclass(frozen=True)
class Entry:
    """One listed clip: where the list names it, what it is, and the file found for it."""

    key: str                      # output path under audio/, without suffix; unique
    labels: tuple[str, ...]       # class mids
    split: str
    where: str                    # "list.csv:12", for messages
    ident: str                    # the clip as the list names it, for missing.txt
    found: Found | None           # None: no source file
    start: float = 0.0            # segment start in the (uncut) source, seconds
    length: float | None = None   # the listed segment's length (end - start), seconds: a
    #                               source named by bare id no longer than it is already cut

    def segment(self, duration: float | None) -> Segment:
        """The part of the source to keep: from 0 in a cut file, from `start` in a whole one."""
        return Segment(0.0 if self.found is None or self.found.trimmed else self.start,
                       duration)


@dataclass
class Listing:
    """What the lists say: the classes in order, the entries, and lines that could not be used
    (unknown labels, malformed rows), each naming its file and line."""

    classes: list[tuple[str, str]]            # (mid, display name), index order
    entries: list[Entry]
    problems: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # list files read, hashed into prepared.json


class DatasetRecipe:
    """One dataset's layout. Subclasses set the class attributes and implement `read`."""

    name: str = ""
    preset: str = ""                   # the `dataset=` preset that reads the output
    expected_classes: int = 0          # that preset's dataset.num_classes
    description: str = ""
    duration: float | None = None      # seconds each clip is cut or padded to; None keeps all
    target_length: int = 1024          # the preset's frames (statistics use the same)
    manifests: dict[str, tuple[str, ...]] = {}  # manifest name -> splits it holds
    train_manifests: tuple[str, ...] = ("train",)  # normalization statistics are computed here
    lists_help: str = ""               # the publisher's files, for --help and errors
    out_help: str = ""                 # --help of --out when not data/<name>
    out_named_by_preset = True         # --out must be named default_out_name() (the preset's)
    recheck_sources = False            # convert a clip again when its source's size changed
    other_presets: tuple[str, ...] = ()  # more `dataset=` presets reading the same output

    def __init__(self, src: Path, lists: list[Path], args: argparse.Namespace):
        self.src, self.lists, self.args = src, lists, args

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Options of this dataset only (none by default)."""

    def read(self) -> Listing:
        """Parse the lists, find each clip's source file."""
        raise NotImplementedError

    def list_file(self, name: str, *fallbacks: str) -> Path:
        """A publisher list: given with --lists (matched by file name), else searched under
        --src; ListError naming what was looked for."""
        names = (name, *fallbacks)
        self.__dict__.setdefault("asked", []).extend(n for n in names if n not in self.asked)
        for path in self.lists:
            if path.name in names:
                self.__dict__.setdefault("used", set()).add(path)
                return path
        for candidate in names:
            hits = sorted(self.src.rglob(candidate))
            if hits:
                return hits[0]
        listed = ", ".join(p.name for p in self.lists)
        given = f" (--lists are matched by file name, and none of {listed} is named " \
            f"{' or '.join(names)}: if one of them holds it, rename it so)" if listed else ""
        raise ListError(f"{self.name}: cannot find {' or '.join(names)} under {self.src} "
                        f"nor among --lists{given}; download it ({self.lists_help}) and pass "
                        f"--lists /path/to/{name}")

    def unused_lists(self) -> str | None:
        """Why a --lists file went unread after `read` (its name is none of the lists the
        recipe looked for, which would else be taken from --src instead), or None."""
        asked, used = self.__dict__.get("asked", []), self.__dict__.get("used", set())
        unused = [p for p in self.lists if p not in used]
        if not asked or not unused:
            return None  # a recipe that reads --lists itself (folder), or all were read
        return (f"--lists {unused[0]}: {self.name} reads no list of that name (lists are "
                f"matched by file name: {', '.join(asked)}); rename it to the list it is, or "
                "leave it out")

    def final_splits(self, usable: list[Entry]) -> list[Entry]:
        """The usable entries (converted now or before) with their final splits; as listed by
        default. The `folder` recipe draws its held-out clips here, among those that decoded."""
        return usable

    def extra_outputs(self, out: Path, manifests: dict[str, list[Entry]]) -> list[Path]:
        """Files beyond manifests and labels (AudioSet's sampler weights); paths written."""
        return []

    def default_out_name(self) -> str:
        """The folder under data/ that --out defaults to (the preset's)."""
        return self.name

    def target_frames(self, out: Path, manifests: dict[str, list[Entry]], fmt: str,
                      log=print) -> int:
        """The preset's input length in frames, once the clips are converted (the statistics
        are computed at it)."""
        return self.target_length

    def preset_values(self, out: Path, classes: int) -> dict:
        """Values of the preset's `???` and null keys, kept in prepared.json
        (`preset_values`), where c2f.prepared fills them in before a run (the `folder`
        preset); none by default."""
        return {}

    def run_overrides(self, out: Path, classes: int) -> list[str]:
        """The run.py overrides that train on this preparation: printed at the end and kept in
        prepared.json."""
        found = [f"dataset={self.preset}", f"paths.data_dir={out.parent}"]
        if classes != self.expected_classes:
            found.append(f"dataset.num_classes={classes}")
        return found


def register_dataset(cls: type[DatasetRecipe]) -> type[DatasetRecipe]:
    """Class decorator: make `python -m c2f.data.prepare NAME` know the dataset (NAME: the
    class's `name`)."""
    if not isinstance(cls, type):
        raise TypeError(f"@register_dataset({cls!r}): write @register_dataset without a name "
                        "above the class; the name is the class's `name` attribute")
    known = DATASETS.get(cls.name)
    if not cls.name or known is not None and not same_definition(known, cls):
        raise ValueError(f"dataset preparation {cls.__name__}: name {cls.name!r} is empty or "
                         "taken")
    DATASETS[cls.name] = cls
    return cls


def csv_rows(path: Path, comment: str | None = None):
    """(line number, stripped cells) of a CSV list; blank lines and comment lines skipped."""
    import csv

    def text_lines(handle):  # Python 3.10's csv refuses a NUL, 3.11's reads it into the cells
        for number, line in enumerate(handle, 1):
            if "\0" in line:
                raise ListError(f"{path}: line {number} holds a NUL byte: not a text CSV (a "
                                "UTF-16 file? save it as UTF-8)")
            yield line

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(text_lines(handle), skipinitialspace=True),
                                         1):
                cells = [c.strip() for c in row]
                if not any(cells) or (comment and cells[0].startswith(comment)):
                    continue
                yield number, cells
    except (UnicodeDecodeError, csv.Error) as err:
        raise ListError(f"{path}: cannot read as a UTF-8 CSV ({err}); is it the right file?") \
            from None


MAX_SECONDS = 1e7  # 116 days: past the end of any video a list cuts segments from


def time_problem(column: str, text: str) -> str | None:
    """Why a list's time cell (of `column`) places no segment in a video, or None: empty, not a
    number, not a finite one ('inf', 'nan': float() reads both), negative (before the video
    starts), or past any video's end (a typo; 1e306 s overflows in milliseconds). A finite
    number too large for a float ('1e400', 400 digits) reads as inf: it is past the end."""
    if not text:
        return f"{column} is empty"
    try:
        value = float(text)
    except ValueError:
        return f"{column} {text!r} is not a number"
    if math.isnan(value) or (math.isinf(value) and
                             text.strip().lstrip("+-").lower() in ("inf", "infinity")):
        return f"{column} {text!r} is not a finite number"
    if value < 0:
        return f"{column} {text!r} is negative"
    if value > MAX_SECONDS:
        return f"{column} {text!r} is past the end of any video (over {MAX_SECONDS:,.0f} s)"
    return None


def segment_times(columns: tuple[str, str], cells: tuple[str, str]
                  ) -> tuple[float | None, float | None, str | None]:
    """A listed segment's start and end in seconds from its two time cells (`columns` names
    them), and None; or why the row places no segment (each cell's `time_problem`, or an end
    not after the start: an empty segment), with the times that did read (None for one that did
    not: a row left out then claims the files of its id, which of them it meant is unknown)."""
    whys = [time_problem(column, text) for column, text in zip(columns, cells)]
    start, end = (None if why else float(text) for why, text in zip(whys, cells))
    if start is not None and end is not None and end <= start:
        whys.append(f"{columns[1]} {cells[1]!r} is not after {columns[0]} {cells[0]!r}")
    return start, end, " and ".join(why for why in whys if why) or None


def list_lines(path: Path, option: str = "", fix: str | None = None) -> list[str]:
    """The lines of a text list (a BOM dropped); ListError naming it (after `option`, the
    command-line option that gave it) and `fix` (else the usual one) when it is no UTF-8 text
    (the right list saved in Latin-1, or another file) or cannot be read at all, as `csv_rows`
    says of a CSV list, instead of a traceback. The one way a list of lines is read."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        why = f"cannot read as UTF-8 text ({err})"
        usual = "if it is the right file, save it as UTF-8"
    except OSError as err:
        why, usual = f"cannot read it ({err.strerror or err})", "give a readable text file"
    raise ListError(f"{option}{path}: {why}; {fix or usual}")


def numbered_mids(prefix: str, names: list[str]) -> list[tuple[str, str]]:
    """AST-style mids for classes that have none: `/m/<prefix>000`, in the given order."""
    return [(f"/m/{prefix}{i:03d}", name) for i, name in enumerate(names)]


def read_class_list(path: Path, prefix: str) -> list[tuple[str, str]]:
    """(mid, name) in a `--classes` file's order: a class_labels_indices.csv (its mids; AST's
    format, header `index,mid,display_name`) or a text file of one class name per line
    (numbered mids `/m/<prefix>000`, ...)."""
    lines = list_lines(path, "--classes ", "give a class_labels_indices.csv or a UTF-8 text "
                       "file of class names, one per line")
    first = next((line for line in lines if line.strip()), "")
    if first.replace(" ", "").lower().startswith("index,mid,"):
        return read_class_csv(path)
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise ListError(f"--classes {path}: no class in it; write one class name per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ListError(f"--classes {path}: {', '.join(map(repr, repeated))} listed more "
                        "than once; list each class once, in the order of the model's outputs")
    return numbered_mids(prefix, names)


def read_class_csv(path: Path) -> list[tuple[str, str]]:
    """(mid, display name) rows of a class_labels_indices.csv, in index order."""
    from c2f.data.errors import DataError
    from c2f.data.manifest import read_label_csv

    try:
        mids, names = read_label_csv(path)
    except DataError as err:
        raise ListError(str(err)) from None
    order = sorted(mids, key=mids.get)
    return [(mid, names[mids[mid]]) for mid in order]


def check_listed_classes(path: Path, classes: list[tuple[str, str]], kept: list[Entry],
                         names: list[str], listed: dict[str, str]) -> None:
    """What `--classes` (at `path`, as `classes`) did to the clips of the classes `names`:
    none kept is refused; so is a listed name that no clip has, close to a class whose clips
    it leaves out: a typo (`birds` for the folder `bird`), which would give a model an output
    no clip trains and drop a class of clips. `listed`: the names and mids it lists."""
    if not kept:
        found = ", ".join(map(repr, names[:8])) + (", ..." if len(names) > 8 else "")
        raise ListError(f"--classes {path}: none of its classes has a clip; it names classes "
                        f"by folder name or CSV label (or mid), and the clips' classes are "
                        f"{found}")
    used, unlisted = {label for e in kept for label in e.labels}, [
        n for n in names if n not in listed]
    for mid, name in classes:
        near = difflib.get_close_matches(name, unlisted, n=1, cutoff=0.75)
        if mid not in used and near:
            raise ListError(f"--classes {path}: no clip has class {name!r}, while the clips "
                            f"of {near[0]!r} are left out as not listed: did you mean "
                            f"{near[0]!r}? Fix the list")
