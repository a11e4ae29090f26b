"""Spectrogram dataset for one phase: waveform -> fbank -> normalize -> compress -> augment."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, default_collate

from c2f import features
from c2f.compression import Compression, PhaseInput
from c2f.data.audio import load_waveform
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


class SpectrogramDataset(Dataset):
    """Items are (spectrogram [frames, mel], multi-hot target [classes]), or a SkippedClip.

    Randomness (mixup, masks) is drawn per item from (seed, phase, epoch, index), so results
    do not depend on the worker count and a resumed run repeats them exactly."""

    def __init__(self, manifest: Manifest, settings: FeatureSettings, phase: PhaseInput,
                 compression: Compression, c: int, train: bool, seed: int = 0):
        self.manifest, self.settings, self.phase = manifest, settings, phase
        self.compression, self.c, self.train, self.seed = compression, c, train, seed
        self.epoch_key = (0, 0)

    def set_epoch(self, phase_index: int, epoch: int) -> None:
        self.epoch_key = (phase_index, epoch)

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def target(self, index: int) -> torch.Tensor:
        target = torch.zeros(self.manifest.num_classes)
        target[list(self.manifest.clips[index].label_ids)] = 1.0
        return target

    def _wave(self, index: int) -> torch.Tensor:
        return load_waveform(self.manifest.clips[index].path, self.settings.sample_rate)

    def _mixed(self, index: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        wave, target = self._wave(index), self.target(index)
        if not (self.train and self.settings.mixup > 0):
            return wave, target
        if float(torch.rand((), generator=gen)) >= self.settings.mixup:
            return wave, target
        other = int(torch.randint(0, len(self), (), generator=gen))
        other_wave = self._wave(other)
        lam = features.mixup_weight(gen)
        length = wave.shape[1]
        other_wave = torch.nn.functional.pad(other_wave, (0, max(0, length - other_wave.shape[1])))
        wave = lam * (wave - wave.mean()) + (1 - lam) * (other_wave[:, :length] - other_wave.mean())
        return wave, lam * target + (1 - lam) * self.target(other)

    def __getitem__(self, index: int):
        gen = torch.Generator().manual_seed(item_seed(self.seed, *self.epoch_key, index))
        try:
            wave, target = self._mixed(index, gen)
        except DataError as err:
            if self.settings.skip_bad:
                return SkippedClip(str(self.manifest.clips[index].path), str(err))
            raise
        s, p = self.settings, self.phase
        window = int(0.025 * s.sample_rate)
        if wave.shape[1] < window:  # kaldi needs one full window
            wave = torch.nn.functional.pad(wave, (0, window - wave.shape[1]))
        spec = features.fbank(wave, s.sample_rate, s.num_mel_bins, p.frame_shift_ms)
        spec = features.pad_or_crop_frames(spec, p.fbank_frames)
        spec = features.normalize(spec, s.mean, s.std)
        spec = self.compression.transform(spec, self.c)
        if self.train:
            spec = features.spec_augment(spec, s.freq_mask, p.time_mask, gen)
        return spec, target


@dataclass(frozen=True)
class SkippedClip:
    """Stands in for a bad clip when dataset.on_bad_audio=skip."""

    path: str
    reason: str


def collate_skipping(items: list) -> dict:
    """Batch the good items; list the skipped ones."""
    good = [item for item in items if not isinstance(item, SkippedClip)]
    batch = {"skipped": [item for item in items if isinstance(item, SkippedClip)],
             "size": len(good)}
    if good:
        batch["spec"], batch["target"] = default_collate(good)
    return batch
