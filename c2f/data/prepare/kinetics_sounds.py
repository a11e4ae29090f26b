"""Kinetics-Sounds: the Kinetics-400 clips (Kay et al., 2017) of classes that can be heard.

Kinetics-Sounds was defined by Arandjelović & Zisserman, "Look, Listen and Learn" (ICCV 2017,
§4.1), as 34 classes "potentially manifested both visually and aurally", named after an early
Kinetics release. Mapped to the published Kinetics-400 class names, 31 of them exist with the
same name or a plain rename ("blowing out" -> "blowing out candles", "dribbling ball" ->
"dribbling basketball", "mowing the lawn by pushing lawnmower" -> "mowing lawn", and "stomping"
-> "stomping grapes", the only Kinetics-400 class that stomps); "typing", "fingerpicking" and
"patting" have no Kinetics-400 class. Those 31 classes are the default. Later work uses 31 or
32 classes under the same name, and the paper does not list its own (§3.1 gives only "around
20K and 2.7K" clips): `--classes FILE` (one Kinetics class name per line) uses another list,
and `dataset.num_classes` must then be set to its length.

Lists: Kinetics-400 `train.csv` and `validate.csv` (`label,youtube_id,time_start,time_end,
split`); clips are named `<id>_<start:06d>_<end:06d>.mp4` by the official downloader (cut to
10 s), or by bare id (cut here at time_start).
"""
from __future__ import annotations

from pathlib import Path

from c2f.data.prepare.convert import add_bare_id_option
from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    csv_rows,
    numbered_mids,
    read_class_list,
    register_dataset,
    segment_times,
)
from c2f.data.prepare.sources import YouTubeIndex

KINETICS_SOUNDS = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball",
    "laughing", "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar",
    "playing clarinet", "playing drums", "playing guitar", "playing harmonica",
    "playing keyboard", "playing organ", "playing piano", "playing saxophone",
    "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
)
LISTS = {"train": ("train.csv", "kinetics_train.csv", "kinetics-400_train.csv"),
         "val": ("validate.csv", "val.csv", "kinetics_val.csv", "kinetics-400_val.csv")}
HEADER = ["label", "youtube_id", "time_start", "time_end"]


@register_dataset
class KineticsSounds(DatasetRecipe):
    name = "kinetics_sounds"
    preset = "kinetics_sounds"
    expected_classes = 31  # the preset's dataset.num_classes
    description = "Kinetics-Sounds: 31 Kinetics-400 classes, train and validation manifests"
    duration = 10.0        # 10 s clips (paper §3.1)
    target_length = 1024   # 10 s at 10 ms, as the preset
    manifests = {"train": ("train",), "eval": ("val",)}
    lists_help = ("Kinetics-400 train.csv and validate.csv from "
                  "github.com/cvdfoundation/kinetics-dataset")

    @classmethod
    def add_arguments(cls, parser) -> None:
        add_bare_id_option(parser)
        parser.add_argument("--classes", type=Path,
                            help="text file, one Kinetics class name per line, or a "
                                 "class_labels_indices.csv (default: the "
                                 "31 Kinetics-Sounds classes of L3)")

    def read(self) -> Listing:
        classes = (read_class_list(self.args.classes, "kinsd") if self.args.classes
                   else numbered_mids("kinsd", sorted(KINETICS_SOUNDS)))
        names = [name for _, name in classes]
        mid_of = {name: mid for mid, name in classes}
        index = YouTubeIndex(self.src)
        entries, problems, sources, seen = [], [], [], set()
        for split, files in LISTS.items():
            path = self.list_file(*files)
            sources.append(path)
            rows = csv_rows(path)
            first = next(rows, None)
            if first is None or first[1][:4] != HEADER:
                raise ListError(f"{path}: header must start with {','.join(HEADER)}; is it a "
                                "Kinetics-400 list?")
            for number, cells in rows:
                where = f"{path.name}:{number}"
                label = cells[0]
                if label not in mid_of:
                    continue  # not a Kinetics-Sounds class
                seen.add(label)
                if len(cells) < 4 or not cells[1]:  # cut short: no id, or no times to read
                    why = "youtube_id is empty" if len(cells) >= 4 else \
                        f"expected {', '.join(HEADER)}"
                    problems.append(f"{where}: {why}; got {','.join(cells)!r}; row left out")
                    if len(cells) > 1:
                        index.claim(cells[1], None)  # the files of its id
                    continue
                ident = cells[1]
                start, end, why = segment_times(("time_start", "time_end"),
                                                (cells[2], cells[3]))
                if why:  # a start that reads finds its file; else the files of its id
                    problems.append(f"{where}: {ident}: {why}; clip left out")
                    index.claim(ident, None if start is None else float(int(start)))
                    continue
                first, last = int(start), int(end)  # whole seconds: the downloader's names
                entries.append(Entry(key=f"{ident}_{first:06d}_{last:06d}",
                                     labels=(mid_of[label],), split=split, where=where,
                                     ident=f"{ident} {first}", start=float(first),
                                     length=end - start, found=index.find(ident, float(first))))
        for name in names:
            if name not in seen:
                files = ", ".join(p.name for p in sources)
                problems.append(f"class {name!r} has no clip in {files}; check its spelling "
                                "against the Kinetics-400 class names")
        problems += index.unread_note()
        return Listing(classes=classes, entries=entries, problems=problems, sources=sources)
