"""Your own data: a folder of recordings, one subfolder per class, or a CSV list of them.

Three layouts under `--src`, any container and sample rate:

- `<class>/.../<clip>.<ext>`: one label per clip, its top folder's name. The evaluation split is
  drawn from each class (`--eval-fraction`, 10% by default) by a hash of the clip's path, so the
  same files always give the same split, whatever order the file system lists them in, and a
  new class moves no clip of the others.
  `--group-by-folder` keeps the clips of one folder below the class folder (a recording
  session, a site, a speaker: `<class>/<group>/.../<clip>`) on one side of the split.
- `<split>/<class>/.../<clip>.<ext>` when a top folder named `train` holds class folders: the
  splits are the top folders (`train`, and `eval`, `test`, `val`, ...), one manifest each. A
  `train` folder that holds clips itself is a class (ESC-50 has one).

Two recordings of one name in one folder (`x.mp3`, `x.ogg`) are two clips (`x.mp3.flac`,
`x.ogg.flac`); other clips are converted to `<name>.flac`.
- `--lists clips.csv` with a header naming a file column (`file`, `filename`, `path`, `wav`,
  `audio`), a label column (`label`, `labels`, `class`, `category`; several labels in one cell,
  separated by `;`, `|` or `,`, make a multi-label dataset), optionally `split`, and optionally
  `group` (clips of one group are held out together). Paths are relative to `--src` or absolute.

Classes are numbered in name order (`/m/own000`, ...) unless `--classes` lists them (names,
or a class_labels_indices.csv with its mids): its order is then the model's output order and
clips of unlisted classes are left out.

Clips keep their length. The model's input length (`dataset.target_length`) is chosen from the
training clips: 95% of them fit, rounded up to a multiple of 128 frames (1 s -> 128, 5 s -> 512,
10 s -> 1024, AST's lengths for Speech Commands, ESC-50 and AudioSet) and at most 1024 unless
`--target-length` says otherwise. These values go to prepared.json (`preset_values`), where
the `folder` preset finds them (c2f/prepared.py); the command that trains on it is printed at
the end (`run_overrides`).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import re
from collections import Counter
from pathlib import Path

import yaml

from c2f.data.audio import AUDIO_SUFFIXES, audio_files, left_out_note
from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    check_listed_classes,
    csv_rows,
    numbered_mids,
    read_class_list,
    register_dataset,
)
from c2f.data.prepare.sources import Found
from c2f.features import TIME_MASK_SHARE, shift_samples, window_samples

TRAIN_NAMES = ("train", "training")
EVAL_NAMES = ("eval", "test", "val", "valid", "validation", "dev")  # the first present is scored
FILE_COLUMNS = ("file", "filename", "path", "wav", "audio")
LABEL_COLUMNS = ("label", "labels", "class", "category")
LABEL_SEPARATORS = re.compile(r"[;|,]")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a Hydra override value without quoting
FRAME_STEP = 128   # AST's input lengths: 128 (Speech Commands), 512 (ESC-50), 1024 (AudioSet)
LENGTH_SAMPLE = 4000  # training clips whose lengths choose the input length
MAX_FRAMES = 1024  # AST egs/audioset/run.sh audio_length=1024: 10 s; longer only if asked


def kaldi_frames(samples: int, sample_rate: int = 16000) -> int:
    """Frames of AST's fbank (c2f.features: 25 ms windows every 10 ms, snip_edges)."""
    window, shift = window_samples(sample_rate), shift_samples(sample_rate, 10.0)
    return 0 if samples < window else 1 + (samples - window) // shift


def fitting_frames(frames: list[int], share: float = 0.95) -> int:
    """Frames that `share` of the clips fit in, rounded up to a multiple of FRAME_STEP."""
    ordered = sorted(frames)
    at = ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]
    return max(FRAME_STEP, math.ceil(at / FRAME_STEP) * FRAME_STEP)


def _rank(key: str) -> str:
    """A clip's place in the split draw: a hash of its path, not the file system's order."""
    return hashlib.sha1(key.encode()).hexdigest()


def draw_eval(entries: list[Entry], fraction: float, groups: dict[str, str]) -> list[Entry]:
    """Hold out `fraction` of each class's clips (by first label) for evaluation. Groups of
    clips (`groups`: key -> group; a clip without one is its own) are held out whole: in the
    order of a hash of their names, a group is held out while one of its classes is short of
    its share, unless that would leave one of its classes without a training clip. A class of
    two or more groups thus gives at least one and keeps at least one."""
    members: dict[str, list[Entry]] = {}
    for entry in entries:
        members.setdefault(groups.get(entry.key, entry.key), []).append(entry)
    total: dict[str, int] = {}
    for entry in entries:
        total[entry.labels[0]] = total.get(entry.labels[0], 0) + 1
    want = {c: min(n - 1, max(1, round(fraction * n))) for c, n in total.items()}
    held: dict[str, int] = dict.fromkeys(total, 0)
    out = set()
    for group in sorted(members, key=_rank):
        counts: dict[str, int] = {}
        for entry in members[group]:
            counts[entry.labels[0]] = counts.get(entry.labels[0], 0) + 1
        short = any(held[c] < want[c] for c in counts)
        keeps_train = all(held[c] + n < total[c] for c, n in counts.items())
        if short and keeps_train:
            out.add(group)
            for c, n in counts.items():
                held[c] += n
    return [Entry(key=e.key, labels=e.labels,
                  split="eval" if groups.get(e.key, e.key) in out else "train", where=e.where,
                  ident=e.ident, found=e.found) for e in entries]


def _is_output(folder: Path, seen: dict[Path, bool]) -> bool:
    """Whether `folder` is a dataset c2f.data.prepare wrote (prepared.json beside the labels),
    looked up once per folder."""
    if folder not in seen:
        seen[folder] = (folder / "prepared.json").is_file() and \
            (folder / "class_labels_indices.csv").is_file()
    return seen[folder]


@register_dataset
class Folder(DatasetRecipe):
    name = "folder"
    preset = "folder"
    description = ("your own data: class folders (optionally under split folders) or a CSV "
                   "list; the split, the input length and the run command are worked out")
    duration = None       # clips keep their length; the input length is chosen from them
    target_length = 1024  # replaced by target_frames() once the clips are converted
    train_manifests = ("train",)
    lists_help = "a CSV with a header: file,labels[,split] (optional; else class folders)"
    out_help = ("output folder (default: $C2F_ROOT/data/<the --src folder's name>); its name "
                "is the run's dataset.name")
    out_named_by_preset = False  # any name: the run's dataset.name
    recheck_sources = True  # recordings fixed and exported again under their names

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--eval-fraction", type=float, default=0.1,
                            help="share of each class held out for evaluation when the layout "
                                 "names no split (default 0.1)")
        parser.add_argument("--group-by-folder", action="store_true",
                            help="hold out whole folders below the class folder (recording "
                                 "sessions, sites, speakers), never part of one")
        parser.add_argument("--classes", type=Path,
                            help="the classes and their order (the model's outputs): a "
                                 "class_labels_indices.csv or one name per line; clips of "
                                 "other classes are left out (default: every class found, "
                                 "in name order)")
        parser.add_argument("--target-length", type=int,
                            help="model input frames (10 ms each; default: what 95%% of the "
                                 "training clips fit, a multiple of 128, at most 1024)")

    def __init__(self, src: Path, lists: list[Path], args: argparse.Namespace):
        super().__init__(src, lists, args)
        self.groups: dict[str, str] = {}  # clip key -> its group, held out together

    def default_out_name(self) -> str:
        """The source folder's name, made a safe override value (`2024` -> `folder_2024`)."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.src.resolve().name)
        return name if name and isinstance(yaml.safe_load(name), str) else f"folder_{name}"

    def read(self) -> Listing:
        args = self.args
        if not 0 < args.eval_fraction < 1:
            raise ListError(f"--eval-fraction {args.eval_fraction}: give a share between 0 "
                            "and 1 (0.1 holds out a tenth of each class)")
        if args.target_length is not None and args.target_length < 16:
            raise ListError(f"--target-length {args.target_length}: give at least 16 frames")
        out = Path(args.out)
        if not SAFE_NAME.match(out.name) or not isinstance(yaml.safe_load(out.name), str):
            raise ListError(f"--out {out}: the dataset is named by its folder, and "
                            f"{out.name!r} is not a name a run.py override reads as text; use "
                            "letters, digits, '_', '.' or '-', not a number, true or null "
                            "alone (e.g. --out data/my_sounds)")
        listing = self._from_csv(self.lists[0]) if self.lists else self._from_folders()
        if not listing.classes and self.lists:
            raise ListError(f"{self.lists[0]}: no row with a file and a label; rows are "
                            "file,labels[,split][,group] under the header")
        if not listing.classes:
            raise ListError(f"{self.src}: no class found; put each class's recordings in a "
                            "folder of its own (<src>/<class>/*.wav) or pass --lists clips.csv "
                            "(file,labels[,split])")
        if self.args.classes is not None and len(listing.classes) == 1:
            raise ListError(f"--classes {self.args.classes}: one class listed, and a "
                            "classifier needs two; list every class the model should tell "
                            "apart")
        if len(listing.classes) == 1:
            name = listing.classes[0][1]
            raise ListError(f"{self.src}: one class found ({name!r}), and a classifier needs "
                            f"two; if the folders inside {name!r} are the classes, pass --src "
                            f"{self.src / name}")
        splits = sorted({e.split for e in listing.entries})
        if "prepared" in splits:
            raise ListError(f"{self.src}: a split named 'prepared' would be written over "
                            "prepared.json, the report of this preparation; rename that folder "
                            "(or the split column's value)")
        self.drawn = not any(s != "train" for s in splits)
        if self.drawn:  # drawn again among the clips that decode (final_splits)
            listing.entries[:] = draw_eval(listing.entries, args.eval_fraction, self.groups)
            if not any(e.split == "eval" for e in listing.entries):
                raise ListError(f"{self.src}: no class has two clips, so none can be held out "
                                "for evaluation; add recordings or an eval/ folder beside "
                                "train/")
            splits = ["eval", "train"]
        if "train" not in splits:
            raise ListError(f"{self.src}: no training split among {', '.join(splits)}; name "
                            "one folder (or the split column's value) 'train'")
        self.manifests = {split: (split,) for split in splits}
        self.eval_split = next((s for s in EVAL_NAMES if s in splits),
                               next(s for s in splits if s != "train"))
        self.multilabel = any(len(e.labels) > 1 for e in listing.entries)
        return listing

    def final_splits(self, usable: list[Entry]) -> list[Entry]:
        """Without split folders or a split column, the held-out clips are drawn among the
        clips that converted: a clip that fails to decode leaves no class without its share."""
        if not self.drawn:
            return usable
        return draw_eval(usable, self.args.eval_fraction, self.groups)

    def _in_output(self, path: Path, out: Path, earlier: dict[Path, bool]) -> bool:
        """Whether a file lies in --out or in an earlier output inside --src."""
        relative = path.relative_to(self.src)
        return out in path.resolve().parents or any(
            _is_output(self.src / Path(*relative.parts[:i]), earlier)
            for i in range(1, len(relative.parts)))

    def _from_folders(self) -> Listing:
        out = Path(self.args.out).resolve()  # an output folder inside --src is not data,
        earlier: dict[Path, bool] = {}  # nor is an earlier one (it holds prepared.json)
        files, problems, first, left_out = [], [], {}, []
        for path in audio_files(self.src, left_out):
            if self._in_output(path, out, earlier):
                continue
            relative = path.relative_to(self.src)
            try:
                stat = path.stat()
                inode = (stat.st_dev, stat.st_ino)
            except OSError:  # a dangling link: listed, and failed.txt says why
                inode = relative
            if inode in first:  # a symbolic or hard link: one recording, one clip
                problems.append(f"{relative}: the same file as {first[inode]} (a link); "
                                "used once")
                continue
            first[inode] = relative
            files.append(relative)
        note = left_out_note([p for p in left_out if not self._in_output(p, out, earlier)])
        problems += [note] if note else []
        problems += [f"{folder.relative_to(self.src)}/: an earlier output of c2f.data.prepare "
                     "(it holds prepared.json); left out" for folder, is_out in earlier.items()
                     if is_out]
        under_train = [p for p in files if len(p.parts) > 1 and p.parts[0].lower() in TRAIN_NAMES]
        # train/<class>/<clip> (train/<class>/<group>/<clip> with --group-by-folder) for most
        # of its files; a class of its own called "train" (ESC-50 has one) holds clips itself
        deep = 3 + bool(self.args.group_by_folder)
        by_split = 2 * sum(len(p.parts) >= deep for p in under_train) > len(under_train)
        depth = 2 if by_split else 1  # folders above the class folder's files
        stems = Counter(p.with_suffix("").as_posix() for p in files)
        # x.mp3 beside x.ogg is keyed "x.mp3", so a file named x.mp3.wav must be too
        stems.update([p.as_posix() for p in files if stems[p.with_suffix("").as_posix()] > 1])
        entries, names = [], set()
        for relative in files:
            if len(relative.parts) <= depth:
                where = "/".join(relative.parts[:-1]) or "."
                problems.append(f"{relative}: not inside a class folder ({where}/<class>/); "
                                "left out")
                continue
            split = relative.parts[0].lower() if by_split else "train"
            split = "train" if split in TRAIN_NAMES else split
            label = relative.parts[depth - 1]
            names.add(label)
            key = relative.with_suffix("").as_posix()
            if stems[key] > 1:  # x.mp3 and x.ogg: two recordings, each converted to a clip
                key = relative.as_posix()
            if self.args.group_by_folder and len(relative.parts) > depth + 1:
                self.groups[key] = "/".join(relative.parts[:depth + 1])
            entries.append(Entry(key=key, labels=(label,), split=split, where=str(relative),
                                 ident=str(relative), found=Found(self.src / relative, True)))
        return self._numbered(sorted(names), entries, problems, [])

    def _from_csv(self, path: Path) -> Listing:
        rows = csv_rows(path)
        number, header = next(rows, (0, []))
        columns = {cell.lower(): i for i, cell in enumerate(header)}
        file_at = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
        label_at = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
        if file_at is None or label_at is None:
            other = next((f"{name} ({sep!r})" for sep, name in ((";", "semicolons"),
                                                                   ("\t", "tabs"))
                          if len(header) == 1 and sep in header[0]), None)
            hint = (f"; its columns are separated by {other}: save it comma-separated"
                    if other else "")
            raise ListError(f"{path}:{number or 1}: the header must name a file column "
                            f"({', '.join(FILE_COLUMNS)}) and a label column "
                            f"({', '.join(LABEL_COLUMNS)}); it is {','.join(header)!r}{hint}")
        split_at, group_at = columns.get("split"), columns.get("group")
        entries, problems, names = [], [], set()
        root = self.src.resolve()
        for number, cells in rows:
            where = f"{path.name}:{number}"
            cells = cells + [""] * (len(header) - len(cells))
            labels = tuple(dict.fromkeys(
                x.strip() for x in LABEL_SEPARATORS.split(cells[label_at]) if x.strip()))
            if not cells[file_at] or not labels:
                problems.append(f"{where}: a row needs a file and at least one label; left out")
                continue
            source = Path(cells[file_at])
            source = source if source.is_absolute() else self.src / source
            try:
                key = source.resolve().relative_to(root).with_suffix("").as_posix()
            except ValueError:  # outside --src: keep the name, made unique by the full path
                key = f"outside/{_rank(str(source))[:8]}_{source.stem}"
            split = cells[split_at].strip().lower() if split_at is not None else "train"
            split = "train" if split in TRAIN_NAMES or not split else split
            if "/" in split or "\0" in split:  # '../x' wrote x.json beside --out
                problems.append(f"{where}: split {split!r} cannot name a manifest file "
                                "(<split>.json in --out); give one without '/'; left out")
                continue
            names.update(labels)
            if group_at is not None and cells[group_at].strip():
                self.groups[key] = cells[group_at].strip()
            found = Found(source, True) if source.is_file() and \
                source.suffix.lower() in AUDIO_SUFFIXES else None
            entries.append(Entry(key=key, labels=labels, split=split, where=where,
                                 ident=cells[file_at], found=found))
        return self._numbered(sorted(names), entries, problems, [path])

    def _numbered(self, names: list[str], entries: list[Entry], problems: list[str],
                  sources: list[Path]) -> Listing:
        """Classes in name order with numbered mids (`/m/own000`, ...), or as `--classes` lists
        them (its order and mids; clips of other classes left out), entries relabelled."""
        if self.args.classes is None:
            classes = numbered_mids("own", names)
        else:
            classes = read_class_list(self.args.classes, "own")
            sources = sources + [self.args.classes]
        mid = {name: m for m, name in classes} | {m: m for m, _ in classes}  # names or mids
        kept = []
        for e in entries:
            unlisted = [x for x in e.labels if x not in mid]
            if unlisted:
                fate = "dropped from the clip" if len(unlisted) < len(e.labels) else \
                    "clip left out"
                problems.append(f"{e.where}: {', '.join(map(repr, unlisted))} not in "
                                f"--classes {self.args.classes}; {fate}")
            labels = tuple(dict.fromkeys(mid[x] for x in e.labels if x in mid))
            if labels:
                kept.append(Entry(key=e.key, labels=labels, split=e.split, where=e.where,
                                  ident=e.ident, found=e.found))
        if self.args.classes is not None and entries:
            check_listed_classes(self.args.classes, classes, kept, names, mid)
        return Listing(classes=classes, entries=kept, problems=problems, sources=sources)

    def target_frames(self, out: Path, manifests: dict[str, list[Entry]], fmt: str,
                      log=print) -> int:
        import soundfile

        if self.args.target_length is not None:
            self.target_length = self.args.target_length
            return self.target_length
        train = manifests.get("train", [])
        sample = train[::max(1, len(train) // LENGTH_SAMPLE)]  # headers of a few thousand
        frames = [kaldi_frames(soundfile.info(str(out / "audio" / f"{e.key}.{fmt}")).frames)
                  for e in sample]
        if not frames:
            return self.target_length
        fit = fitting_frames(frames)
        self.target_length = min(fit, MAX_FRAMES)
        longer = [f for f in frames if f > self.target_length]
        log(f"input length: {self.target_length} frames ({self.target_length / 100:g} s); 95% "
            f"of the training clips fit in {fit} frames"
            + (f", capped at {MAX_FRAMES} (AST's 10 s; --target-length N sets another)"
               if fit > MAX_FRAMES else "")
            + (f"; {len(longer)} of {len(frames)} are longer (up to {max(longer) / 100:g} s): "
               f"the model sees the first {self.target_length / 100:g} s of each" if longer
               else ""))
        return self.target_length

    def preset_values(self, out: Path, classes: int) -> dict:
        # AST egs/esc50/run_esc.sh: single-label ESC-50 trains with CE (loss=CE), scored by
        # accuracy (metrics=acc); egs/audioset/run.sh: multi-label AudioSet with BCE, by mAP
        single = {"multilabel": False, "metric": "acc", "loss": "ce"}
        several = {"multilabel": True, "metric": "mAP", "loss": "bce"}
        return {"eval_manifest": f"{self.eval_split}.json", "num_classes": classes,
                "target_length": self.target_length,
                "timem": round(self.target_length * TIME_MASK_SHARE),
                **(several if self.multilabel else single)}

    def run_overrides(self, out: Path, classes: int) -> list[str]:
        """The rest comes from prepared.json (`preset_values`, c2f/prepared.py)."""
        return [f"dataset={self.preset}", f"dataset.name={out.name}",
                f"paths.data_dir={out.parent}"]
