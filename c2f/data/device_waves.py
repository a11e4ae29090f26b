"""Decoded clips kept on the training device, mixed there: AST's waveform mixup without a
waveform crossing from the host at each step.

AST's AudioSet and Speech Commands recipes mix waveforms (`dataset.mixup`), so their training
fbanks change every step and cannot be read from feature tables: the host would cut, mix and
send a batch of waveforms per step (48 ten-second clips: 31 MB), which a GPU's coarse phases
outrun. Here every clip of the split lives in one flat tensor on the device, the host draws
what it always draws per clip (whether to mix, with which clip, the weight: the same seeded
draws, so a run is the same run) and sends those numbers, and the device gathers, mixes and
fbanks the batch.

The mix is AST's (src/dataloader.py `_wav2fbank`, c2f/features.py `mix_waves`): each clip minus
its own mean, the second zero-padded or cut to the first's length, lam * first + (1 - lam) *
second; an unmixed clip is left as decoded. The clip's mean, which AST removes last, is its
offset, as the host path has it: over the window that a clip shorter than one is padded to, and
over the phase's samples for a clip longer than those (the host takes the whole clip; kaldi
removes each frame's mean, so there the two differ by float rounding only)."""
from __future__ import annotations

import torch

from c2f.data.frontend import Frontend
from c2f.data.wave_cache import WaveCache, unpacked


class DeviceWaves:
    """One split's decoded clips in a flat tensor on `device` (a bad clip holds no sample; the
    host never draws it: its item fails or is skipped before)."""

    def __init__(self, waves: WaveCache, device: torch.device):
        clips = [w[0] if isinstance(w, torch.Tensor) else torch.zeros(0, dtype=torch.int16)
                 for w in waves.stored]
        lengths = torch.tensor([len(c) for c in clips])
        self.starts = (torch.cumsum(lengths, 0) - lengths).to(device)
        self.lengths = lengths.to(device)
        # each clip's mean over all its samples, as mix_waves takes it (float32, on the host)
        self.means = torch.tensor([float(unpacked(c).mean()) if len(c) else 0.0 for c in clips],
                                  device=device)
        # 16-bit PCM clips stay int16 on the device (half the memory), unless some clip is not
        pcm16 = all(c.dtype == torch.int16 for c in clips)
        self.flat = torch.empty(int(lengths.sum()), device=device,
                                dtype=torch.int16 if pcm16 else torch.float32)
        for clip, start in zip(clips, self.starts.tolist()):  # no second copy on the host
            self.flat[start:start + len(clip)] = (clip if pcm16 else unpacked(clip)).to(device)
        self.device = device

    def _rows(self, index: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `samples` samples of each clip [B, samples], zero after its end, and the
        clips' lengths."""
        lengths = self.lengths[index]
        offsets = torch.arange(samples, device=self.device)
        valid = offsets < lengths[:, None]
        where = torch.where(valid, self.starts[index][:, None] + offsets, 0)
        return unpacked(self.flat[where]) * valid, lengths

    def mixed(self, frontend: Frontend, index: torch.Tensor, partner: torch.Tensor,
              lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training batch as `Frontend.batch` takes it (inputs [B, samples], valid lengths,
        offsets): clip index[i] mixed with clip partner[i] (itself when unmixed) with weight
        lam[i] (1 when unmixed)."""
        # non_blocking: a blocking copy waits for the GPU to drain the previous step
        index = index.to(self.device, non_blocking=True)
        partner = partner.to(self.device, non_blocking=True)
        lam = lam.to(self.device, torch.float32, non_blocking=True)[:, None]
        samples = frontend.samples
        first, length = self._rows(index, samples)
        second, other = self._rows(partner, samples)
        span = torch.arange(samples, device=self.device)
        second = (second - self.means[partner][:, None]) * (span < other[:, None])
        mix = lam * (first - self.means[index][:, None]) + (1 - lam) * second
        mix = mix * (span < length[:, None])  # cut to the first clip's length
        # an unmixed clip stays as it was decoded: its mean goes with the offset below, over
        # the window a short clip is padded to, as Frontend.clip takes it
        mix = torch.where(((partner != index) | (lam[:, 0] != 1))[:, None], mix, first)
        if frontend.logmel:  # PANNs' zero padding: no offset, the clip's own samples
            return mix, torch.clamp(length, max=samples), torch.zeros_like(lam[:, 0])
        # kaldi needs one full window: a shorter clip is zero-padded to it (Frontend.clip)
        valid = torch.clamp(torch.clamp(length, min=frontend.window_samples), max=samples)
        return mix, valid, mix.sum(1) / valid  # the mix's mean, over the samples it has here
