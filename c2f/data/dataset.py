"""Spectrogram dataset for one phase: waveform -> fbank -> normalize -> compress -> augment."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from c2f import features
from c2f.compression import Compression, PhaseInput
from c2f.data.audio import is_silent, load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import Manifest


@dataclass(frozen=True)
class FeatureSettings:
    """Dataset-level feature parameters shared by every phase."""

    sample_rate: int
    num_mel_bins: int
    mean: float
    std: float
    freq_mask: int = 0
    mixup: float = 0.0
    skip_bad: bool = False


def item_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (seed, phase, epoch, index)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Item(NamedTuple):
    """One example: what the model sees, its (possibly mixed) target, and where it came from."""

    spec: torch.Tensor  # [frames, mel]
    target: torch.Tensor  # [classes], multi-hot or mixed
    index: int  # manifest index of the clip
    silent: bool  # the clip is digital silence (valid audio, counted in the run log)


class SpectrogramDataset(Dataset):
    """Items are `Item`s, or a SkippedClip for a bad clip when bad clips are skipped.

    An item is asked for by its index (evaluation) or by a key (phase, epoch, index), which
    the training sampler yields. Randomness (mixup, masks) is drawn per item from
    (seed, phase, epoch, index), so results do not depend on the worker count, a resumed run
    repeats them exactly, and the loader's workers can live for a whole phase."""

    def __init__(self, manifest: Manifest, settings: FeatureSettings, phase: PhaseInput,
                 compression: Compression, c: int, train: bool, seed: int = 0):
        self.manifest, self.settings, self.phase = manifest, settings, phase
        self.compression, self.c, self.train, self.seed = compression, c, train, seed
        self.window = int(0.025 * settings.sample_rate)  # kaldi needs one full window
        # AST masks the raw fbank, then normalizes: a masked cell is the normalized zero
        self.mask_value = float(features.normalize(0.0, settings.mean, settings.std))

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def target(self, index: int) -> torch.Tensor:
        target = torch.zeros(self.manifest.num_classes)
        target[list(self.manifest.clips[index].label_ids)] = 1.0
        return target

    def _wave(self, index: int) -> torch.Tensor:
        return load_waveform(self.manifest.clips[index].path, self.settings.sample_rate)

    def _mixed(self, index: int, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        wave, target = self._wave(index), self.target(index)
        silent = is_silent(wave)
        if not (self.train and self.settings.mixup > 0):
            return wave, target, silent
        if float(torch.rand((), generator=gen)) >= self.settings.mixup:
            return wave, target, silent
        other = int(torch.randint(0, len(self), (), generator=gen))
        other_wave = self._wave(other)
        lam = features.mixup_weight(gen)
        length = wave.shape[1]
        other_wave = torch.nn.functional.pad(other_wave, (0, max(0, length - other_wave.shape[1])))
        wave = lam * (wave - wave.mean()) + (1 - lam) * (other_wave[:, :length] - other_wave.mean())
        return wave, lam * target + (1 - lam) * self.target(other), silent

    def __getitem__(self, key: int | tuple[int, int, int]):
        phase_index, epoch, index = key if isinstance(key, tuple) else (0, 0, key)
        gen = torch.Generator().manual_seed(item_seed(self.seed, phase_index, epoch, index))
        try:
            wave, target, silent = self._mixed(index, gen)
        except DataError as err:
            if self.settings.skip_bad:
                return SkippedClip(str(self.manifest.clips[index].path), str(err))
            raise DataError(f"{err}; or set dataset.on_bad_audio=skip to train without "
                            "unusable clips (they are counted and listed)") from None
        s, p = self.settings, self.phase
        if wave.shape[1] < self.window:
            wave = torch.nn.functional.pad(wave, (0, self.window - wave.shape[1]))
        spec = features.fbank(wave, s.sample_rate, s.num_mel_bins, p.frame_shift_ms)
        spec = features.pad_or_crop_frames(spec, p.fbank_frames)
        spec = features.normalize(spec, s.mean, s.std)
        spec = self.compression.transform(spec, self.c)
        if self.train:
            spec = features.spec_augment(spec, s.freq_mask, p.time_mask, gen, self.mask_value)
        return Item(spec, target, index, silent)


class EpochKeys(Sampler):
    """Turns a sampler's indices into the dataset's (phase, epoch, index) keys.

    The loader iterates its sampler in the main process, so `set_epoch` reaches every item
    even when the workers persist across epochs."""

    def __init__(self, indices: Sampler):
        self.indices, self.key = indices, (0, 0)

    def set_epoch(self, phase_index: int, epoch: int) -> None:
        self.key = (phase_index, epoch)

    def __iter__(self):
        return ((*self.key, index) for index in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class SkippedClip:
    """Stands in for a bad clip when dataset.on_bad_audio=skip."""

    path: str
    reason: str


def collate_skipping(items: list) -> dict:
    """Batch the good items (spec, target, index, silent); list the skipped ones."""
    good = [item for item in items if not isinstance(item, SkippedClip)]
    batch = {"skipped": [item for item in items if isinstance(item, SkippedClip)],
             "size": len(good)}
    if good:
        batch |= default_collate(good)._asdict()
    return batch


def balanced_weights(manifest: Manifest) -> torch.Tensor:
    """AST's balanced sampling (egs/audioset/gen_weight_file.py): class weight
    1000 / (count + 0.01); a clip's weight is the sum over its labels."""
    counts = np.zeros(manifest.num_classes)
    for clip in manifest.clips:
        counts[list(clip.label_ids)] += 1
    class_weight = 1000.0 / (counts + 0.01)
    return torch.tensor([class_weight[list(c.label_ids)].sum() for c in manifest.clips])
