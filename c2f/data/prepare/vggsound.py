"""VGGSound (Chen et al., ICASSP 2020) from its published `vggsound.csv`.

The list (robots.ox.ac.uk/~vgg/data/vggsound/) has no header; each row is
`YouTube ID, start seconds, label, split` with split `train` or `test`; labels may hold commas
and are then quoted. The release names clips `<id>_<start:06d>.mp4` (10 s, already cut); a
bare `<id>.<ext>` is cut at the start time. 309 classes (paper §3.1), ordered alphabetically
unless `--classes` gives a class_labels_indices.csv (e.g. the authors' own
FlexiAST_INTERSPEECH23 egs/vggsound/data/class_labels_indices.csv, to match their checkpoints'
output order).
"""
from __future__ import annotations

from pathlib import Path

from c2f.data.prepare.convert import add_bare_id_option
from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    Listing,
    csv_rows,
    numbered_mids,
    read_class_list,
    register_dataset,
    time_problem,
)
from c2f.data.prepare.sources import YouTubeIndex

SPLITS = ("train", "test")


def classes_from(names: set[str], classes_csv: Path | None) -> list[tuple[str, str]]:
    """(mid, name) in the given file's order, else alphabetical with AST-style numbered mids."""
    if classes_csv is not None:
        return read_class_list(classes_csv, "vggsd")
    return numbered_mids("vggsd", sorted(names))


@register_dataset
class VGGSound(DatasetRecipe):
    name = "vggsound"
    preset = "vggsound"
    expected_classes = 309  # the preset's dataset.num_classes
    description = "VGGSound: train and test manifests from vggsound.csv, 309 classes"
    duration = 10.0        # 10 s clips (paper §3.1)
    target_length = 1024   # FlexiAST egs/vggsound/run16.sh audio_length=1024
    manifests = {"train": ("train",), "eval": ("test",)}
    lists_help = "vggsound.csv from robots.ox.ac.uk/~vgg/data/vggsound/"

    @classmethod
    def add_arguments(cls, parser) -> None:
        add_bare_id_option(parser)
        parser.add_argument("--classes", type=Path,
                            help="class_labels_indices.csv (or one name per line) fixing class "
                                 "order and mids (default: labels of vggsound.csv, "
                                 "alphabetical)")

    def read(self) -> Listing:
        path = self.list_file("vggsound.csv")
        rows, problems, left_out = [], [], []
        for number, cells in csv_rows(path):
            where = f"{path.name}:{number}"
            if len(cells) != 4:
                problems.append(f"{where}: expected 4 columns (id, start, label, split), got "
                                f"{len(cells)}: {','.join(cells)!r}; row left out")
                left_out.append((cells[0], None))
                continue
            ident, start_text, label, split = cells
            whys = [f"{column} is empty" for column, cell in (("id", ident), ("label", label))
                    if not cell]  # an empty label would be a class of its own
            if split not in SPLITS:
                whys.append(f"split {split!r} must be train or test")
            # whole seconds, as the release names clips; isdecimal: int() reads every such
            # digit, while isdigit() passes '²', which it does not
            whole, why = start_text.isdecimal(), time_problem("start", start_text)
            if why or not whole:
                whys.append(why or f"start {start_text!r} is not whole seconds")
            # read by float(), exact for whole seconds up to MAX_SECONDS: int() refuses over
            # 4,300 digits, and a start past any video's end would overflow a float from it
            start = float(start_text) if whole and not why else None
            if whys:
                named = f"{ident}: " if ident else ""
                problems.append(f"{where}: {named}{' and '.join(whys)}; row left out")
                left_out.append((ident, start))  # None: the files of its id
                continue
            rows.append((where, ident, int(start), label, split))
        classes = classes_from({r[3] for r in rows}, self.args.classes)
        mid_of = {name: mid for mid, name in classes}
        index = YouTubeIndex(self.src)
        for ident, start in left_out:  # rows left out above: their lines name their files
            index.claim(ident, start)
        entries = []
        for where, ident, start, label, split in rows:
            if label not in mid_of:
                problems.append(f"{where}: {ident}: unknown label {label!r} not in "
                                f"{self.args.classes}; clip left out")
                index.claim(ident, float(start))
                continue
            entries.append(Entry(key=f"{ident}_{start:06d}", labels=(mid_of[label],),
                                 split=split, where=where, ident=f"{ident} {start}",
                                 found=index.find(ident, float(start)), start=float(start)))
        problems += index.unread_note()
        sources = [path] + ([self.args.classes] if self.args.classes else [])
        return Listing(classes=classes, entries=entries, problems=problems, sources=sources)
