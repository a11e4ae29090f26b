"""AudioSet (Gemmeke et al., ICASSP 2017) from its published segment lists.

Lists (research.google.com/audioset/download.html): `balanced_train_segments.csv`,
`unbalanced_train_segments.csv`, `eval_segments.csv` (three `#` header lines, then
`YTID, start_seconds, end_seconds, "mid1,mid2"`), and the 527-class
`class_labels_indices.csv` (`index,mid,display_name`; AST ships the same file in
egs/audioset/data/). Audio files are named by YouTube id, cut or whole (see `sources`); one
named by bare id is read as cut or whole by its length (`convert`, --bare-id-files).

Writes `balanced_train.json` (AudioSet-20K), `full_train.json` (balanced + unbalanced, ~2M),
`eval.json`, and `full_train_weight.csv`: the per-clip weights of AST's balanced sampler
(egs/audioset/gen_weight_file.py: class weight 1000 / (count + 0.01), a clip's weight the sum
over its labels, one line per clip, as np.savetxt writes them), for AST's own code; c2f computes
the same weights in the run (`dataset.balanced_sampler`).

Labels are the official ones. AST's balanced-set (AudioSet-20K) results, 0.347 and 0.378 mAP,
were trained on PSLA's enhanced labels, its full-set results on the official ones (AST
README.md, "Audioset Recipe": "for the **balanced training set** experiments ... we use the
enhanced label set ... if you train with the original label set for the balanced training set,
you will get a slightly worse result"; run.sh trains on balanced_train_data_type1_2_mean.json).
A manifest with enhanced labels trains through `dataset.train_manifest=...`.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from c2f.data.prepare.convert import add_bare_id_option
from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    csv_rows,
    read_class_csv,
    register_dataset,
    segment_times,
)
from c2f.data.prepare.sources import YouTubeIndex
from c2f.files import atomic_write_text

LISTS = {"balanced": "balanced_train_segments.csv", "unbalanced": "unbalanced_train_segments.csv",
         "eval": "eval_segments.csv"}


def segment_entries(path: Path, split: str, mids: set[str], index: YouTubeIndex,
                    problems: list[str]) -> list[Entry]:
    """One entry per row of a segment list; rows cut short, with times that place no segment
    (`segment_times`) or with unknown labels are reported, left out, and claim their files."""
    entries = []
    for number, cells in csv_rows(path, comment="#"):
        where = f"{path.name}:{number}"
        if len(cells) < 4 or not cells[0]:
            why = "YTID is empty" if len(cells) >= 4 else \
                "expected YTID, start_seconds, end_seconds, positive_labels"
            problems.append(f"{where}: {why}; got {','.join(cells)!r}; row left out")
            index.claim(cells[0], None)  # the files of its id
            continue
        ident, labels_text = cells[0], ",".join(cells[3:])
        start, end, why = segment_times(("start_seconds", "end_seconds"), (cells[1], cells[2]))
        if why:
            problems.append(f"{where}: {ident}: {why}; clip left out")
            index.claim(ident, start)  # None: the files of its id
            continue
        labels = tuple(dict.fromkeys(m.strip() for m in labels_text.split(",") if m.strip()))
        unknown = [m for m in labels if m not in mids]
        if unknown or not labels:
            why = f"unknown label(s) {', '.join(unknown)} not in class_labels_indices.csv" \
                if labels else "positive_labels is empty"
            problems.append(f"{where}: {ident}: {why}; clip left out")
            index.claim(ident, start)
            continue
        entries.append(Entry(key=f"{ident}_{round(start * 1000)}", labels=labels, split=split,
                             where=where, ident=f"{ident} {start:.3f}",
                             found=index.find(ident, start), start=start, length=end - start))
    return entries


@register_dataset
class AudioSet(DatasetRecipe):
    name = "audioset"
    preset = "audioset_balanced"
    expected_classes = 527  # the preset's dataset.num_classes
    description = "AudioSet: balanced (20K), full (2M) and eval manifests, 527 classes"
    duration = 10.0        # 10 s segments (paper §3.1)
    target_length = 1024   # AST egs/audioset/run.sh audio_length=1024
    manifests = {"balanced_train": ("balanced",), "full_train": ("balanced", "unbalanced"),
                 "eval": ("eval",)}
    train_manifests = ("balanced_train", "full_train")
    other_presets = ("audioset_full",)  # full_train.json; the preset above: balanced_train
    lists_help = ("balanced_train_segments.csv, unbalanced_train_segments.csv, "
                  "eval_segments.csv and class_labels_indices.csv from "
                  "research.google.com/audioset/download.html")

    @classmethod
    def add_arguments(cls, parser) -> None:
        add_bare_id_option(parser)

    def read(self) -> Listing:
        labels_csv = self.list_file("class_labels_indices.csv")
        classes = read_class_csv(labels_csv)
        mids = {mid for mid, _ in classes}
        index = YouTubeIndex(self.src)
        problems: list[str] = []
        entries, sources = [], [labels_csv]
        for split, file in LISTS.items():
            try:
                path = self.list_file(file)
            except ListError:
                if split != "unbalanced":
                    raise
                problems.append(f"{file} not found: full_train.json is not written "
                                "(balanced_train and eval are)")
                self.manifests = {k: v for k, v in self.manifests.items() if k != "full_train"}
                continue
            sources.append(path)
            entries += segment_entries(path, split, mids, index, problems)
        problems += index.unread_note()
        return Listing(classes=classes, entries=entries, problems=problems, sources=sources)

    def extra_outputs(self, out: Path, manifests: dict[str, list[Entry]]) -> list[Path]:
        """full_train_weight.csv, from the same function the run's balanced sampler uses."""
        if "full_train" not in manifests:
            return []
        from c2f.data.manifest import load_manifest
        from c2f.data.sampling import balanced_weights

        manifest = load_manifest(out / "full_train.json", out / "class_labels_indices.csv")
        path = out / "full_train_weight.csv"
        text = io.StringIO()
        np.savetxt(text, balanced_weights(manifest).numpy(), delimiter=",")
        atomic_write_text(path, text.getvalue())
        return [path]
