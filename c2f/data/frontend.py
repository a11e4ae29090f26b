"""A phase's feature frontend: decoded clip -> what the model sees.

`worker`: each clip becomes its spectrogram inside the loader's workers (kaldi's own fbank,
as AST computes it). `device`: workers only cut the waveform; the batch goes to the training
device, where one batched fbank, normalization, the compression transform and SpecAugment
run on the whole batch. Both draw the same per-clip masks, so they give the same input up to
float rounding (tests/test_frontend.py).

Models with their own features (`model.features`, e.g. CNN14's 32 kHz log-mel) get
`kind="logmel"`: the clip is zero-padded to the phase's samples, as PANNs pads waveforms, the
log-mel is taken over the whole buffer, and dataset normalization applies only when the model
asks for it."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from c2f import features
from c2f.compression import Compression, PhaseInput

EMPTY = torch.zeros(0)  # no noise (dataset.noise off), or no waveform (a feature-table phase)


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
    noise: bool = False  # AST's --noise: fbank noise and a time roll (features.draw_noise)
    kind: str = "kaldi"  # kaldi (AST's fbank) | logmel (model.features)
    window: int = 0  # logmel: STFT window in samples
    fmin: float = 0.0  # logmel: mel filter range
    fmax: float = 0.0
    normalize: bool = True  # (x - mean) / (2 std), AST's; logmel models may normalize inside


@dataclass(frozen=True)
class Frontend:
    settings: FeatureSettings
    phase: PhaseInput
    compression: Compression
    c: int
    on_device: bool

    @property
    def logmel(self) -> bool:
        return self.settings.kind == "logmel"

    @property
    def hop(self) -> int:
        """logmel: the STFT hop of this phase, in samples."""
        return features.shift_samples(self.settings.sample_rate, self.phase.frame_shift_ms)

    @property
    def samples(self) -> int:
        """Waveform samples that make the phase's fbank frames."""
        s, p = self.settings, self.phase
        if self.logmel:
            return p.fbank_frames * self.hop
        return features.samples_for_frames(p.fbank_frames, s.sample_rate, p.frame_shift_ms)

    @property
    def window_samples(self) -> int:
        """kaldi's window (25 ms) in samples: the shortest clip it takes."""
        return features.window_samples(self.settings.sample_rate)

    @property
    def mask_value(self) -> float:
        """AST masks the raw fbank, then normalizes: a masked cell is the normalized zero."""
        if not self.settings.normalize:
            return 0.0
        return float(features.normalize(0.0, self.settings.mean, self.settings.std))

    def draw_masks(self, generator: torch.Generator) -> torch.Tensor:
        return features.draw_masks(generator, self.settings.freq_mask, self.phase.time_mask,
                                   self.settings.num_mel_bins, self.phase.model_frames)

    @property
    def max_roll(self) -> int:
        """AST's noise roll (100 ms) in frames of what the model sees in this phase."""
        p = self.phase
        return int(features.NOISE_ROLL_MS * p.model_frames / (p.frame_shift_ms * p.fbank_frames))

    def draw_noise(self, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """A training clip's noise and roll, or none (an empty tensor) without `noise`."""
        if not self.settings.noise:
            return EMPTY, 0
        return features.draw_noise(generator, self.phase.model_frames,
                                   self.settings.num_mel_bins, self.max_roll)

    def clip(self, wave: torch.Tensor, masks: torch.Tensor | None, offset: float | None = None,
             noise: torch.Tensor | None = None, roll: int = 0) -> tuple[torch.Tensor, float]:
        """Worker side, one clip [1, L] -> (input, offset). Worker frontend: the spectrogram.
        Device frontend: a view of the waveform's first `samples` samples (no copy: large
        per-clip allocations cost more than the fbank) and the clip's mean, which the device
        subtracts (`offset`: that mean, when the caller already knows it)."""
        if self.logmel:
            view = wave[0, :self.samples]
            if self.on_device:
                return view, 0.0
            lengths = torch.tensor([view.shape[0]])
            spec = self.fbank(view[None], lengths, torch.zeros(1))[0]
            return self.finish(spec, masks, noise, roll), 0.0
        window = self.window_samples
        if wave.shape[1] < window:  # kaldi needs one full window
            wave = torch.nn.functional.pad(wave, (0, window - wave.shape[1]))
        if self.on_device:
            return wave[0, :self.samples], float(wave.mean()) if offset is None else offset
        s, p = self.settings, self.phase
        spec = features.fbank(wave, s.sample_rate, s.num_mel_bins, p.frame_shift_ms)
        spec = features.pad_or_crop_frames(spec, p.fbank_frames)
        return self.finish(spec, masks, noise, roll), 0.0

    def valid_samples(self, wave: torch.Tensor) -> int:
        """How many of `clip`'s samples are the clip's own (the rest is padding)."""
        if self.logmel:
            return min(wave.shape[1], self.samples)
        return min(max(wave.shape[1], self.window_samples), self.samples)

    def batch(self, inputs: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor,
              masks: torch.Tensor | None, noise: torch.Tensor | None = None,
              roll: torch.Tensor | None = None) -> torch.Tensor:
        """Device side: the model input of a batch already on its device."""
        if not self.on_device:
            return inputs
        return self.finish(self.fbank(inputs, lengths, offsets), masks, noise, roll)

    def fbank(self, inputs: torch.Tensor, lengths: torch.Tensor,
              offsets: torch.Tensor) -> torch.Tensor:
        """Raw fbank [B, frames, mel] of clip views (`clip`), padded into a batch."""
        s, p = self.settings, self.phase
        valid = torch.arange(inputs.shape[1], device=inputs.device) < lengths[:, None]
        if self.logmel:  # zero-padded to the phase's samples, as PANNs pads waveforms
            waves = torch.nn.functional.pad(inputs * valid, (0, self.samples - inputs.shape[1]))
            return features.logmel_batch(waves, s.sample_rate, s.num_mel_bins, self.hop,
                                         s.window, s.fmin, s.fmax, p.fbank_frames)
        waves = (inputs - offsets[:, None].to(inputs.dtype)) * valid
        return features.fbank_batch(waves, lengths, s.sample_rate, s.num_mel_bins,
                                    p.frame_shift_ms, p.fbank_frames)

    def finish(self, spec: torch.Tensor, masks: torch.Tensor | None,
               noise: torch.Tensor | None = None, roll: int | torch.Tensor = 0
               ) -> torch.Tensor:
        """A raw fbank [..., frames, mel] -> the model input: `prepare`, then `augment`."""
        return self.augment(self.prepare(spec), masks, noise, roll)

    def prepare(self, spec: torch.Tensor) -> torch.Tensor:
        """A raw fbank [..., frames, mel] -> normalized and compressed: what the feature
        cache keeps, since without mixup it is the same for a clip in every epoch."""
        if self.settings.normalize:
            spec = features.normalize(spec, self.settings.mean, self.settings.std)
        return self.compression.transform(spec, self.c)

    def augment(self, spec: torch.Tensor, masks: torch.Tensor | None,
                noise: torch.Tensor | None = None, roll: int | torch.Tensor = 0
                ) -> torch.Tensor:
        """A prepared spectrogram -> masked (a masked cell is the normalized zero: AST masks
        before it normalizes), then noise and roll, which AST adds after normalizing
        (src/dataloader.py)."""
        if masks is not None:
            spec = features.apply_masks(spec, masks, self.mask_value)
        if noise is not None and noise.numel():
            spec = features.add_noise(spec, noise, roll)
        return spec
