"""Speech Commands v2 (Warden, 2018): 35 words, one-second utterances.

The release (speech_commands_v0.02.tar.gz) holds one folder per word (plus
`_background_noise_`, which is not a class), `validation_list.txt` and `testing_list.txt`
(paths `word/<speaker>_nohash_<n>.wav`); every other clip is training data, as AST's
egs/speechcommands/prep_sc.py splits it. Writes `train.json`, `valid.json` and `test.json`;
classes in the order and with the mids (`/m/spcmd<kk>`) of AST's
egs/speechcommands/data/speechcommands_class_labels_indices.csv, so AST's checkpoints' outputs
line up.
"""
from __future__ import annotations

from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    Listing,
    list_lines,
    register_dataset,
)
from c2f.data.prepare.sources import PathIndex

# AST egs/speechcommands/data/speechcommands_class_labels_indices.csv, in its order
WORDS = ("backward", "follow", "five", "bed", "zero", "on", "learn", "two", "house", "tree",
         "dog", "stop", "seven", "eight", "down", "six", "forward", "cat", "right", "visual",
         "four", "wow", "no", "nine", "off", "three", "left", "marvin", "yes", "up", "sheila",
         "happy", "bird", "go", "one")
NOISE = "_background_noise_"


@register_dataset
class SpeechCommands(DatasetRecipe):
    name = "speechcommands"
    preset = "speechcommands"
    expected_classes = 35  # the preset's dataset.num_classes
    description = "Speech Commands v2: 35 words; train, validation and test manifests"
    duration = None        # whole 1 s clips
    target_length = 128    # AST egs/speechcommands/run_sc.sh audio_length=128
    manifests = {"train": ("train",), "valid": ("valid",), "test": ("test",)}
    lists_help = ("validation_list.txt and testing_list.txt of speech_commands_v0.02, "
                  "download.tensorflow.org/data/speech_commands_v0.02.tar.gz")

    def read(self) -> Listing:
        held_out: dict[str, tuple[str, str]] = {}  # word/<clip> without suffix -> split, line
        sources, problems = [], []
        for split, file in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
            path = self.list_file(file)
            sources.append(path)
            for number, line in enumerate(list_lines(path), 1):
                listed = line.strip()
                if not listed:
                    continue
                # 'yes/.' would be keyed 'yes', 'no/..' a clip named '..': both are a word alone
                if listed.count("/") != 1 or any(part in ("", ".", "..")
                                                 for part in listed.split("/")):
                    # else dropped without a word, its clip trained on: a held-out clip leaked
                    problems.append(f"{path.name}:{number}: expected <word>/<clip>.wav, got "
                                    f"{listed!r}; line left out")
                    continue
                # by the clip's name without suffix, as the files are found: a line naming
                # another suffix than the file's still holds the clip out of training
                held_out[PathIndex.key(listed)] = (split, f"{path.name}:{number}")
        root = sources[0].parent
        index = PathIndex(root)
        mid_of = {word: f"/m/spcmd{i:02d}" for i, word in enumerate(WORDS)}
        relatives = sorted(set(index.by_key) | set(held_out))
        entries, unknown = [], set()
        for relative in relatives:
            word = relative.split("/")[0]
            if "/" not in relative or word == NOISE:
                continue
            listed = held_out.get(relative)
            split, where = listed if listed else ("train", f"{root.name}/{relative}")
            if word not in mid_of:
                unknown.add(word)
                problems.append(f"{where}: {relative}: word {word!r} is not one of the 35 "
                                "Speech Commands v2 words; clip left out")
                continue
            entries.append(Entry(key=relative, labels=(mid_of[word],), split=split,
                                 where=where, ident=f"{relative}.wav",
                                 found=index.find(relative)))
        classes = [(mid_of[w], w) for w in WORDS]
        return Listing(classes=classes, entries=entries, problems=problems, sources=sources)
