"""Spectrogram dataset for one phase: waveform -> fbank -> normalize -> compress -> augment."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, Sampler, default_collate, get_worker_info

from c2f import features
from c2f.data.audio import is_silent, load_waveform
from c2f.data.errors import DataError
from c2f.data.frontend import EMPTY, FeatureSettings, Frontend
from c2f.data.manifest import Manifest, multi_hot
from c2f.data.wave_cache import WaveCache

__all__ = ["FeatureSettings", "Item", "SpectrogramDataset", "EpochKeys", "SkippedClip",
           "collate_skipping", "item_seed"]

# the fix a bad clip's error ends with (c2f.evaluate words its own --skip-bad instead)
SKIP_HINT = ("set dataset.on_bad_audio=skip to train without unusable clips (they are counted "
             "and listed)")


def item_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (seed, phase, epoch, index)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Item(NamedTuple):
    """One example: what the model sees, its (possibly mixed) target, and where it came from."""

    input: torch.Tensor  # [frames, mel] (worker frontend) or a waveform [samples] (device)
    length: int  # valid samples of the waveform (device frontend), else frames
    offset: float  # the clip's mean, which the device frontend subtracts (else 0)
    masks: torch.Tensor  # SpecAugment bands (features.draw_masks); (0, 0, 0, 0) when none
    target: torch.Tensor  # [classes], multi-hot or mixed
    index: int  # manifest index of the clip
    silent: bool  # the clip is digital silence (valid audio, counted in the run log)
    noise: torch.Tensor  # AST's --noise [frames, mel] (features.draw_noise); empty when off
    roll: int  # and its roll along time, in frames
    partner: int  # the clip mixed in (waveform mixup), or the clip itself when unmixed
    lam: float  # the first clip's weight in the mix; 1.0 when unmixed


class SpectrogramDataset(Dataset):
    """Items are `Item`s, or a SkippedClip for a bad clip when bad clips are skipped.

    An item is asked for by its index (evaluation) or by a key (phase, epoch, index), which
    the training sampler yields. Randomness (mixup, masks) is drawn per item from
    (seed, phase, epoch, index), so results do not depend on the worker count, a resumed run
    repeats them exactly, and the loader's workers can live for a whole phase."""

    def __init__(self, manifest: Manifest, frontend: Frontend, train: bool, seed: int = 0,
                 waves: WaveCache | None = None):
        self.manifest, self.frontend, self.train, self.seed = manifest, frontend, train, seed
        self.settings, self.waves = frontend.settings, waves
        # a cached clip's silence flag and (unmixed) mean never change: found once per phase
        self._silent: dict[int, bool] = {}
        self._offset: dict[int, float] = {}
        # false when the phase reads its inputs from a feature table or mixes clips kept on
        # the device: items then carry no waveform, and no batch copies one
        self.waveforms = True

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def target(self, index: int) -> torch.Tensor:
        """The clip's multi-hot target [classes] (manifest.multi_hot)."""
        clip = self.manifest.clips[index]
        return torch.from_numpy(multi_hot([clip], self.manifest.num_classes)[0])

    def _wave(self, index: int) -> torch.Tensor:
        if self.waves is not None:
            return self.waves.get(index)
        return load_waveform(self.manifest.clips[index].path, self.settings.sample_rate)

    def _usable(self, index: int) -> None:
        """Raises the DataError of an unusable clip (a cached one without copying it)."""
        if self.waves is None or not self.waves.good(index):
            self._wave(index)

    def _where(self, index: int, err: DataError) -> str:
        """A skipped clip's reason with its manifest line, as the check before training gives
        it: where the error is the clip's own (not its mixup partner's) and its manifest is one
        (joined manifests number their lines each from 0)."""
        clip = self.manifest.clips[index]
        own = str(err).startswith(str(clip.path)) and len(self.manifest.sources) <= 1
        return f"{err} (data[{clip.line}] of {self.manifest.path})" if own else str(err)

    def _is_silent(self, index: int, wave: torch.Tensor | None) -> bool:
        """Whether the part of the clip the model sees (its first `frontend.samples`: a long
        recording silent at its start counts) is silent; a cached clip's flag is found once
        (from `wave`, or from the cache when the item carries no waveform)."""
        window = self.frontend.samples
        if self.waves is None:
            return is_silent(wave[..., :window])
        if index not in self._silent:
            whole = self.waves.get(index) if wave is None else wave
            self._silent[index] = is_silent(whole[..., :window])
        return self._silent[index]

    def _mixup(self, index: int, gen: torch.Generator) -> tuple[int, float, torch.Tensor]:
        """(partner, lam, target): with probability `mixup`, this clip mixed with another
        (whose audio must be usable) with weight lam; else (index, 1.0, its own target)."""
        target = self.target(index)
        if not (self.train and self.settings.mixup > 0):
            return index, 1.0, target
        if float(torch.rand((), generator=gen)) >= self.settings.mixup:
            return index, 1.0, target
        other = int(torch.randint(0, len(self), (), generator=gen))
        self._usable(other)  # a bad partner fails (or is skipped) here, on either path
        lam = features.mixup_weight(gen)
        return other, lam, lam * target + (1 - lam) * self.target(other)

    def __getitem__(self, key: int | tuple[int, int, int]):
        return self.item(key, self.waveforms)

    def item(self, key: int | tuple[int, int, int], waveform: bool = True):
        """The item of `key`; without `waveform` its input is empty (feature tables, or clips
        mixed on the device from `partner` and `lam`)."""
        phase_index, epoch, index = key if isinstance(key, tuple) else (0, 0, key)
        gen = torch.Generator().manual_seed(item_seed(self.seed, phase_index, epoch, index))
        try:
            if waveform or self.waves is None:
                wave = self._wave(index)
            else:  # a cached clip read from a table or mixed on the device: not copied
                wave = None
                self._usable(index)
            silent = self._is_silent(index, wave)
            partner, lam, target = self._mixup(index, gen)
            mixed = partner != index or lam != 1.0
            if mixed and waveform:
                wave = features.mix_waves(wave, self._wave(partner), lam)
        except DataError as err:
            if self.settings.skip_bad:
                return SkippedClip(str(self.manifest.clips[index].path), self._where(index, err))
            raise DataError(f"{err}; or {SKIP_HINT}") from None
        frontend = self.frontend
        masks = frontend.draw_masks(gen) if self.train else torch.zeros(4, dtype=torch.int64)
        noise, roll = frontend.draw_noise(gen) if self.train else (EMPTY, 0)
        if not waveform:
            return Item(EMPTY, 0, 0.0, masks, target, index, silent, noise, roll, partner, lam)
        constant = self.waves is not None and not mixed
        clip, offset = frontend.clip(wave, masks if self.train else None,
                                     self._offset.get(index) if constant else None, noise, roll)
        if constant:
            self._offset[index] = offset
        length = frontend.valid_samples(wave) if frontend.on_device else clip.shape[0]
        return Item(clip, length, offset, masks, target, index, silent, noise, roll, partner,
                    lam)


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
    """Batch the good items (`Item`'s fields); list the skipped ones. Waveforms of the device
    frontend are views of different lengths: zero-padded to the longest."""
    good = [item for item in items if not isinstance(item, SkippedClip)]
    batch = {"skipped": [item for item in items if isinstance(item, SkippedClip)],
             "size": len(good)}
    if not good:
        return batch
    batch |= {name: _column(name, list(values)) for name, values in zip(Item._fields, zip(*good))}
    if get_worker_info() is not None:
        # every tensor into shared memory here, in the worker's fetch: where /dev/shm is full
        # that fails as the batch's error, which reaches the main process (failures.py); done
        # later by the worker's queue feeder thread, it only printed there and the run waited
        # for the lost batch forever
        for value in batch.values():
            if isinstance(value, torch.Tensor) and not value.is_shared():
                value.share_memory_()
    return batch


def _column(name: str, values: list):
    """One field of a batch: tensors stacked (into shared memory in a worker, as
    default_collate does), waveform views padded, numbers as one tensor (floats in float64)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return _padded_rows(values) if name == "input" and first.dim() == 1 else \
            default_collate(values)
    return torch.tensor(values, dtype=torch.float64 if isinstance(first, float) else None)


_ROWS_BUFFER: dict[str, torch.Tensor] = {}


def _padded_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows zero-padded into one [len(rows), longest] tensor.

    In the main process the tensor is one buffer reused from batch to batch: a fresh tensor
    of a batch of 10 s clips costs more in page faults than the whole fbank. That is safe
    because the loader pins (copies) a batch before it collates the next, or, without
    pinning, the training step has consumed it by then. Workers allocate as usual (their
    batches travel through shared memory)."""
    shape = (len(rows), max(row.shape[0] for row in rows))
    if get_worker_info() is not None:
        out = torch.zeros(shape)
    else:
        out = _ROWS_BUFFER.get("rows")
        if out is None or out.numel() < shape[0] * shape[1]:
            out = _ROWS_BUFFER["rows"] = torch.empty(shape[0] * shape[1])
        out = out[: shape[0] * shape[1]].view(shape)
        out.zero_()
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out

