"""Decoded waveforms kept in memory for a whole run, for datasets that fit.

Decoding is the largest per-clip cost left in the workers once the fbank runs on the device;
a dataset that fits in memory is decoded once (in parallel, by a loader's workers) and every
later epoch and phase reads the tensors. Workers forked afterwards share them copy-on-write."""
from __future__ import annotations

import os

import soundfile
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from c2f.data.audio import load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import Manifest

BYTES_PER_SAMPLE = 4  # float32
AUTO_LIMIT_FRACTION = 0.125  # `auto` caches when the estimate is under this share of RAM
AUTO_LIMIT_BYTES = 4 << 30


class _Decode(Dataset):
    def __init__(self, manifest: Manifest, sample_rate: int):
        self.manifest, self.sample_rate = manifest, sample_rate

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def __getitem__(self, index: int) -> torch.Tensor | DataError:
        try:
            return load_waveform(self.manifest.clips[index].path, self.sample_rate)
        except DataError as err:  # kept, and raised when the clip is asked for
            return err


class WaveCache:
    """Every clip of a manifest decoded at `sample_rate`; bad clips keep their DataError."""

    def __init__(self, manifest: Manifest, sample_rate: int, workers: int = 0,
                 progress: bool = False):
        loader = DataLoader(_Decode(manifest, sample_rate), batch_size=None,
                            num_workers=workers, collate_fn=lambda x: x)
        self.waves = list(tqdm(loader, total=len(manifest.clips), disable=not progress,
                               desc="caching audio", leave=False))

    def get(self, index: int) -> torch.Tensor:
        wave = self.waves[index]
        if isinstance(wave, DataError):
            raise wave
        return wave


def wave_bytes(waves: WaveCache) -> int:
    """Memory the decoded clips take (bad clips none)."""
    return sum(w.numel() for w in waves.waves if isinstance(w, torch.Tensor)) * BYTES_PER_SAMPLE


def estimated_bytes(manifest: Manifest, sample_rate: int, probe: int = 32) -> int:
    """Memory the decoded manifest would take, from the headers of up to `probe` clips."""
    clips = manifest.clips
    if not clips:
        return 0
    step = max(1, len(clips) // probe)
    seconds = []
    for clip in clips[::step][:probe]:
        try:
            info = soundfile.info(str(clip.path))
            seconds.append(info.frames / info.samplerate)
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            continue  # bad clips are reported when they are read
    if not seconds:
        return 0
    return int(sum(seconds) / len(seconds) * sample_rate * BYTES_PER_SAMPLE * len(clips))


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_cache(setting: bool | str, manifests: list[Manifest], sample_rate: int) -> bool:
    """`trainer.cache_audio`: true, false, or auto (when it takes under an eighth of RAM and
    at most 4 GiB)."""
    if setting != "auto":
        return bool(setting)
    need = sum(estimated_bytes(m, sample_rate) for m in manifests)
    return need <= min(AUTO_LIMIT_BYTES, AUTO_LIMIT_FRACTION * memory_bytes())


def cache_splits(setting: bool | str, manifests: dict[str, Manifest], sample_rate: int,
                 workers: int, progress: bool) -> dict[str, WaveCache] | None:
    """Every split decoded once, when `trainer.cache_audio` says so; else None."""
    if not should_cache(setting, list(manifests.values()), sample_rate):
        return None
    return {split: WaveCache(m, sample_rate, workers, progress) for split, m in manifests.items()}
