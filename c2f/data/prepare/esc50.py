"""ESC-50 (Piczak, ACM MM 2015): 2,000 five-second clips, 50 classes, 5 folds.

From the release (github.com/karolpiczak/ESC-50): `meta/esc50.csv` with header
`filename,fold,target,category,esc10,src_file,take` and the clips in `audio/`. One manifest
pair per fold: `fold<k>_train.json` (the other four folds) and `fold<k>_eval.json` (fold k),
as AST's egs/esc50/prep_esc50.py makes them; class k is `target` k with AST's mids
(`/m/07rwj<kk>`, egs/esc50/data/esc_class_labels_indices.csv) and the category as its name.
Clips keep their 5 s (AST egs/esc50/run_esc.sh audio_length=512 frames).
"""
from __future__ import annotations

from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    csv_rows,
    register_dataset,
)
from c2f.data.prepare.sources import PathIndex

FOLDS = (1, 2, 3, 4, 5)
NUM_CLASSES = 50
HEADER = ["filename", "fold", "target", "category"]


def _number(text: str) -> int | None:
    """The whole number a cell writes in decimal digits, else None: isdecimal, since int()
    reads every decimal digit while isdigit() passes '²', which it does not; and of at most 9
    digits after leading zeros, since int() refuses over 4,300 (a ValueError) and no fold or
    target needs them."""
    return int(text.lstrip("0") or "0") if text.isdecimal() and len(text.lstrip("0")) <= 9 \
        else None


@register_dataset
class ESC50(DatasetRecipe):
    name = "esc50"
    preset = "esc50"
    expected_classes = 50  # the preset's dataset.num_classes
    description = "ESC-50: 50 classes, a train/eval manifest pair for each of the 5 folds"
    duration = None        # whole 5 s clips
    target_length = 512    # AST egs/esc50/run_esc.sh audio_length=512
    manifests = {f"fold{k}_{part}": tuple(f"fold{j}" for j in FOLDS if (j == k) == (part == "eval"))
                 for k in FOLDS for part in ("train", "eval")}
    train_manifests = tuple(f"fold{k}_train" for k in FOLDS)
    lists_help = "meta/esc50.csv of github.com/karolpiczak/ESC-50"

    def read(self) -> Listing:
        path = self.list_file("esc50.csv")
        # the clips beside the list (ESC-50-master/meta/esc50.csv), else in --src/audio (a list
        # kept elsewhere, --lists), else --src itself
        audio = next((folder for folder in (path.parent.parent / "audio", self.src / "audio")
                      if folder.is_dir()), self.src)
        index = PathIndex(audio)
        rows = csv_rows(path)
        first = next(rows, None)
        if first is None or first[1][:4] != HEADER:
            raise ListError(f"{path}: header must start with {','.join(HEADER)}; is it ESC-50's "
                            "meta/esc50.csv?")
        names: dict[int, str] = {}
        entries, problems = [], []
        for number, cells in rows:
            where = f"{path.name}:{number}"
            filename, fold, target, category = (cells + [""] * 4)[:4]
            empty = [name for name, cell in zip(HEADER, (filename, fold, target, category))
                     if not cell]
            if empty:  # a row cut short or a cell left blank: which clip or class is unknown
                named = f"{filename}: " if filename else ""
                problems.append(f"{where}: {named}no {', '.join(empty)} (a row is "
                                f"{','.join(HEADER)},...: got {','.join(cells)!r}); clip left "
                                "out")
                if filename:
                    index.claim(filename)
                continue
            if not (_number(fold) in FOLDS and _number(target) in range(NUM_CLASSES)):
                problems.append(f"{where}: {filename}: fold {fold!r} must be 1-5 and target "
                                f"{target!r} 0-{NUM_CLASSES - 1}; clip left out")
                index.claim(filename)
                continue
            label = int(target)
            if names.setdefault(label, category) != category:
                problems.append(f"{where}: {filename}: target {label} is {names[label]!r} "
                                f"elsewhere, {category!r} here; clip left out")
                index.claim(filename)
                continue
            entries.append(Entry(key=filename.rsplit(".", 1)[0],
                                 labels=(f"/m/07rwj{label:02d}",), split=f"fold{int(fold)}",
                                 where=where, ident=filename, found=index.find(filename)))
        classes = [(f"/m/07rwj{k:02d}", names.get(k, f"class {k}")) for k in range(NUM_CLASSES)]
        problems += index.unused_note()  # the release lists every file of audio/
        return Listing(classes=classes, entries=entries, problems=problems, sources=[path])
