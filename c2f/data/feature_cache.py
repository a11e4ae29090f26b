"""Prepared fbanks kept in memory, for CPU training on cached audio without mixup.

On a CPU the fbank of a batch costs a fifth of a small model's step, and for the pool and
patch methods it is made at full resolution in every phase, so it does not shrink with C.
Without mixup a clip's normalized, compressed fbank never changes (masks and noise come after),
so it is made once per clip and phase input: lazily, when a phase first asks (inside its first
timed epoch, so the time is counted), for every clip in fixed chunks of the index order (the
same values whatever batch first needs them, so a resumed run stays bitwise), and shared by the
phases that see the same input (a patch phase and full resolution). A pool phase keeps its
pooled table, so its steps read C times fewer frames and pool nothing."""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from c2f.compression import Compression
from c2f.data.frontend import Frontend
from c2f.data.wave_cache import WaveCache

CHUNK = 64


class FeatureCache:
    """One split's table, on `device` (on a GPU, batches then never cross from the host)."""

    def __init__(self, waves: WaveCache, frontend: Frontend, device: torch.device | None = None):
        self.waves, self.frontend = waves, frontend
        self.device = device or torch.device("cpu")
        self.table: torch.Tensor | None = None

    def _build(self) -> torch.Tensor:
        frontend, count = self.frontend, len(self.waves)
        table = torch.zeros(count, frontend.phase.model_frames, frontend.settings.num_mel_bins,
                            device=self.device)
        for start in range(0, count, CHUNK):
            rows = [i for i in range(start, min(start + CHUNK, count))
                    if self.waves.good(i)]  # bad clips stay zero
            if not rows:
                continue
            waves = [self.waves.get(i) for i in rows]
            clips = [frontend.clip(wave, None) for wave in waves]
            inputs = pad_sequence([view for view, _ in clips], batch_first=True)
            offsets = torch.tensor([offset for _, offset in clips])
            lengths = torch.tensor([frontend.valid_samples(wave) for wave in waves])
            fbank = frontend.fbank(inputs.to(self.device), lengths.to(self.device),
                                   offsets.to(self.device))
            table[torch.tensor(rows, device=self.device)] = frontend.prepare(fbank)
        return table

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Prepared fbanks [B, model frames, mel] of the clips with these manifest indices."""
        if self.table is None:
            self.table = self._build()
        return self.table[indices.to(self.device, non_blocking=True)]


def table_bytes(waves: WaveCache, frontend: Frontend) -> int:
    return len(waves) * frontend.phase.model_frames * frontend.settings.num_mel_bins * 4


def cache_key(split: str, frontend: Frontend) -> tuple:
    """Phases whose prepared fbanks are equal share one table (one run: one method): the same
    fbank shape, and the same C where the method transforms the fbank (a method may keep the
    shape at every C and change only the values, e.g. blur in time)."""
    p = frontend.phase
    transforms = type(frontend.compression).transform is not Compression.transform
    return split, p.frame_shift_ms, p.fbank_frames, p.model_frames, \
        frontend.c if transforms else None
