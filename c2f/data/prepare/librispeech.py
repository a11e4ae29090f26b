"""LibriSpeech (Panayotov et al., ICASSP 2015), the speech half of SSAST's pretraining data.

The release (openslr.org/12) holds `LibriSpeech/<subset>/<speaker>/<chapter>/` folders of
`<speaker>-<chapter>-<n>.flac` utterances, each folder listed by its
`<speaker>-<chapter>.trans.txt` (one `<id> <TRANSCRIPT>` line per utterance). Every utterance
gets AudioSet's "Speech" label (`/m/09x0r`), as SSAST's src/prep_data/librispeech/
prep_librispeech.py gives it ("the label is not used in the pretraining"), so the manifest joins
AudioSet's under AudioSet's class list. Writes `train960.json` (train-clean-100, -360 and
train-other-500: SSAST's librispeech_tr960), and `dev.json` / `test.json` when those subsets
are there. Utterances keep their length (the fbank takes the first 1024 frames).
"""
from __future__ import annotations

import re

from c2f.data.prepare.registry import (
    DatasetRecipe,
    Entry,
    ListError,
    Listing,
    list_lines,
    register_dataset,
)
from c2f.data.prepare.sources import PathIndex

UTTERANCE = re.compile(r"\d+-\d+-\d+")
SPEECH = ("/m/09x0r", "Speech")  # AudioSet's class; prep_librispeech.py's dummy label
SUBSETS = {"train-clean-100": "train", "train-clean-360": "train", "train-other-500": "train",
           "dev-clean": "dev", "dev-other": "dev", "test-clean": "test", "test-other": "test"}


@register_dataset
class LibriSpeech(DatasetRecipe):
    name = "librispeech"
    preset = "audioset_librispeech"
    expected_classes = 1
    description = "LibriSpeech: train960 (and dev, test) manifests of unlabeled speech"
    duration = None
    target_length = 1024
    manifests = {"train960": ("train",), "dev": ("dev",), "test": ("test",)}
    train_manifests = ()  # pretraining uses AudioSet's statistics (SSAST run_mask_patch.sh)
    lists_help = "the LibriSpeech folders of openslr.org/12 (their *.trans.txt files)"

    def read(self) -> Listing:
        root = self.src / "LibriSpeech" if (self.src / "LibriSpeech").is_dir() else self.src
        subsets = [d for d in sorted(root.iterdir()) if d.name in SUBSETS] \
            if root.is_dir() else []
        if not subsets:
            raise ListError(f"librispeech: no subset folder ({', '.join(SUBSETS)}) under "
                            f"{root}; point --src at the extracted LibriSpeech folder")
        index = PathIndex(root)
        entries, problems, sources = [], [], []
        for subset in subsets:
            for listing in sorted(subset.rglob("*.trans.txt")):
                sources.append(listing)
                folder = listing.parent.relative_to(root).as_posix()
                for number, line in enumerate(list_lines(listing), 1):
                    ident = line.split(" ", 1)[0].strip()
                    if not ident:
                        continue
                    if not UTTERANCE.fullmatch(ident):
                        problems.append(f"{listing.name}:{number}: {ident!r} is not "
                                        "<speaker>-<chapter>-<n>; line left out")
                        index.claim(f"{folder}/{ident}")
                        continue
                    key = f"{folder}/{ident}"
                    entries.append(Entry(key=key, labels=(SPEECH[0],),
                                         split=SUBSETS[subset.name],
                                         where=f"{listing.name}:{number}", ident=key,
                                         found=index.find(key)))
        # utterances of chapters no *.trans.txt lists, or of folders that are no subset
        problems += index.unused_note()
        self.manifests = {name: splits for name, splits in self.manifests.items()
                          if any(e.split in splits for e in entries)}
        return Listing(classes=[SPEECH], entries=entries, problems=problems, sources=sources)
