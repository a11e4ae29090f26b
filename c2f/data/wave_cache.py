"""Decoded waveforms kept in memory for a whole run, for datasets that fit.

Decoding is the largest per-clip cost left in the workers once the fbank runs on the device;
a dataset that fits in memory is decoded once (in parallel, by a loader's workers) and every
later epoch and phase reads the tensors. Workers forked afterwards share them copy-on-write.

A clip that decodes to 16-bit PCM values exactly (a 16-bit WAV or FLAC at the run's rate and
mono, as `make prepare` and the built-in dataset write them) is kept as int16, half the
memory, and read back as the same float32 samples bit for bit (k / 32768 is exact in both
directions); any other clip (resampled, downmixed, 24-bit, compressed) is kept as decoded."""
from __future__ import annotations

import os
from contextlib import nullcontext

import soundfile
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from c2f.data.audio import load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import Manifest

PCM_SCALE = 32768  # 16-bit PCM sample k decodes to k / 32768 (libsndfile's float scale)
AUTO_LIMIT_FRACTION = 0.125  # `auto` caches when the estimate is under this share of RAM
AUTO_LIMIT_BYTES = 4 << 30


class _Decode(Dataset):
    def __init__(self, manifest: Manifest, sample_rate: int):
        self.manifest, self.sample_rate = manifest, sample_rate

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def __getitem__(self, index: int) -> torch.Tensor | DataError:
        try:
            return packed(load_waveform(self.manifest.clips[index].path, self.sample_rate))
        except DataError as err:  # kept, and raised when the clip is asked for
            return err


def packed(wave: torch.Tensor) -> torch.Tensor:
    """`wave` as int16 when its samples are 16-bit PCM values exactly, else as it is."""
    scaled = wave * PCM_SCALE
    if not scaled.numel() or not torch.equal(scaled, scaled.round()):
        return wave
    low, high = torch.aminmax(scaled)
    return scaled.to(torch.int16) if -PCM_SCALE <= float(low) and float(high) < PCM_SCALE \
        else wave


def unpacked(wave: torch.Tensor) -> torch.Tensor:
    """The float32 samples of a stored clip (int16 ones scaled back, exactly)."""
    return wave.float() / PCM_SCALE if wave.dtype == torch.int16 else wave


class WaveCache:
    """Every clip of a manifest decoded at `sample_rate`; bad clips keep their DataError."""

    def __init__(self, manifest: Manifest, sample_rate: int, workers: int = 0,
                 progress: bool = False, worker_init=None, starting=nullcontext):
        """`worker_init`, `starting`: how the training's loaders start their workers (stop
        signals ignored in them, blocked while they start: c2f/train/stopping.py)."""
        loader = DataLoader(_Decode(manifest, sample_rate), batch_size=None,
                            num_workers=workers, collate_fn=lambda x: x,
                            worker_init_fn=worker_init if workers else None)
        with starting():
            decoded = iter(loader)
        # int16 or float32 [1, L] per clip (`packed`), or the clip's DataError
        self.stored = list(tqdm(decoded, total=len(manifest.clips), disable=not progress,
                                desc="caching audio", leave=False))

    def __len__(self) -> int:
        return len(self.stored)

    def get(self, index: int) -> torch.Tensor:
        """Clip `index` as decoded (float32 [1, L]); a bad clip raises its DataError."""
        wave = self.stored[index]
        if isinstance(wave, DataError):
            raise wave
        return unpacked(wave)

    def good(self, index: int) -> bool:
        return not isinstance(self.stored[index], DataError)


def wave_bytes(waves: WaveCache) -> int:
    """Memory the decoded clips take (bad clips none)."""
    return sum(w.numel() * w.element_size() for w in waves.stored if isinstance(w, torch.Tensor))


def estimated_bytes(manifest: Manifest, sample_rate: int, probe: int = 32) -> int:
    """Memory the decoded manifest would take, from the headers of up to `probe` clips."""
    clips = manifest.clips
    if not clips:
        return 0
    step = max(1, len(clips) // probe)
    sizes = []  # bytes per clip: int16 for mono 16-bit PCM at the rate (`packed`), else float32
    for clip in clips[::step][:probe]:
        try:
            info = soundfile.info(str(clip.path))
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            continue  # bad clips are reported when they are read
        pcm16 = info.subtype == "PCM_16" and info.channels == 1 and info.samplerate == sample_rate
        sizes.append(info.frames / info.samplerate * sample_rate * (2 if pcm16 else 4))
    if not sizes:
        return 0
    return int(sum(sizes) / len(sizes) * len(clips))


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
                 workers: int, progress: bool, **starts) -> dict[str, WaveCache] | None:
    """Every split decoded once, when `trainer.cache_audio` says so; else None (`starts`:
    WaveCache's worker_init and starting)."""
    if not should_cache(setting, list(manifests.values()), sample_rate):
        return None
    return {split: WaveCache(m, sample_rate, workers, progress, **starts)
            for split, m in manifests.items()}
