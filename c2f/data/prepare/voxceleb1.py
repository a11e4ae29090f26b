"""VoxCeleb1 speaker identification (Nagrani et al., 2017/2020) as the paper uses it.

`iden_split.txt` (robots.ox.ac.uk/~vgg/data/voxceleb/) lists `<set> idXXXXX/<video>/<n>.wav`
per line, set 1 = train, 2 = validation, 3 = test; the audio lies under `wav/` of the download.
A file is found by its last three path parts wherever it sits under `--src`: the folder holding
`wav/`, `wav/` itself, or the two archives unzipped side by side (`vox1_dev_wav/wav/...`,
`vox1_test_wav/wav/...`). Training uses train + validation and evaluation the test set, as the
paper's 1,251-speaker identification (§3.1; FlexiAST egs/voxceleb/vox_sup_from16.sh trains on
train.json and evaluates on test.json).
Utterances keep their length (AST's fbank pads or cuts to 1024 frames). Display names come
from `vox1_meta.csv` when it is found (its VGGFace1 ID column), else the speaker id.
"""
from __future__ import annotations

from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    list_lines,
    register_dataset,
)
from c2f.data.prepare.sources import PathIndex

SETS = {"1": "train", "2": "val", "3": "test"}


@register_dataset
class VoxCeleb1(DatasetRecipe):
    name = "voxceleb1"
    preset = "voxceleb1"
    expected_classes = 1251  # the preset's dataset.num_classes
    description = "VoxCeleb1 identification: 1,251 speakers, train+val for training, test"
    duration = None        # whole utterances (4 s to minutes)
    target_length = 1024   # FlexiAST egs/voxceleb/vox_sup_from16.sh audio_length=1024
    manifests = {"train": ("train", "val"), "eval": ("test",)}
    lists_help = "iden_split.txt from robots.ox.ac.uk/~vgg/data/voxceleb/"

    def _names(self, problems: list[str]) -> dict[str, str]:
        """Speaker id -> name from vox1_meta.csv (tab-separated), when there is one. It only
        names the classes: one that cannot be read is a line of `problems`, and the speaker ids
        name them instead, rather than stopping the preparation."""
        try:
            path = self.list_file("vox1_meta.csv")
        except ListError:
            return {}
        try:
            lines = list_lines(path)
        except ListError as err:
            problems.append(f"{err}; the speaker ids name the classes instead")
            return {}
        names = {}
        for line in lines[1:]:
            cells = line.split("\t")
            if len(cells) >= 2 and cells[0].strip().startswith("id"):
                names[cells[0].strip()] = cells[1].strip()
        return names

    def read(self) -> Listing:
        path = self.list_file("iden_split.txt")
        index = PathIndex(self.src, parts=3)  # idXXXXX/<video>/<n>, wherever under --src
        rows, problems = [], []
        for number, line in enumerate(list_lines(path), 1):
            if not line.strip():
                continue
            cells = line.split()
            where = f"{path.name}:{number}"
            # three parts, none empty: '/a/b' would make a speaker named '' a class
            named = len(cells) == 2 and all(cells[1].split("/")) and cells[1].count("/") == 2
            if not named or cells[0] not in SETS:
                problems.append(f"{where}: expected '<1|2|3> idXXXXX/<video>/<n>.wav', got "
                                f"{line.strip()!r}")
                if named:  # its file is named by this line
                    index.claim(cells[1])
                continue
            rows.append((where, SETS[cells[0]], cells[1]))
        speakers = sorted({relative.split("/")[0] for _, _, relative in rows})
        names = self._names(problems)
        classes = [(speaker, names.get(speaker, speaker)) for speaker in speakers]
        entries = [Entry(key=relative.rsplit(".", 1)[0], labels=(relative.split("/")[0],),
                         split=split, where=where, ident=relative,
                         found=index.find(relative)) for where, split, relative in rows]
        problems += index.unused_note()
        return Listing(classes=classes, entries=entries, problems=problems, sources=[path])
