"""Features in AST's recipe: kaldi fbank, pad/crop, normalization, SpecAugment, mixup."""
from __future__ import annotations

import torch
import torchaudio
from torchaudio.compliance import kaldi


def fbank(wave: torch.Tensor, sample_rate: int, num_mel_bins: int,
          frame_shift_ms: float) -> torch.Tensor:
    """Log-mel filterbank [frames, mel] with AST's arguments; the frame shift is a parameter."""
    return kaldi.fbank(wave - wave.mean(), htk_compat=True, sample_frequency=sample_rate,
                       use_energy=False, window_type="hanning", num_mel_bins=num_mel_bins,
                       dither=0.0, frame_length=25.0, frame_shift=frame_shift_ms)


def pad_or_crop_frames(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad at the end or keep the first `frames` frames, as AST does."""
    missing = frames - spec.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(spec, (0, 0, 0, missing))
    return spec[:frames]


def normalize(spec: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """AST's normalization: (x - mean) / (2 std)."""
    return (spec - mean) / (2.0 * std)


def spec_augment(spec: torch.Tensor, freq_mask: int, time_mask: int,
                 generator: torch.Generator, mask_value: float = 0.0) -> torch.Tensor:
    """One frequency and one time mask (torchaudio's), drawn from `generator`.

    AST masks the raw fbank before normalizing it (src/dataloader.py), so a masked cell of the
    normalized input holds `normalize(0)`, not 0: pass that as `mask_value`."""
    if freq_mask <= 0 and time_mask <= 0:
        return spec
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    image = spec.T.unsqueeze(0)  # [1, mel, frames], torchaudio's layout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if freq_mask > 0:
            image = torchaudio.transforms.FrequencyMasking(freq_mask)(image, mask_value)
        if time_mask > 0:
            image = torchaudio.transforms.TimeMasking(time_mask)(image, mask_value)
    return image.squeeze(0).T


def mixup_weight(generator: torch.Generator, alpha: float = 10.0) -> float:
    """lambda ~ Beta(alpha, alpha), as AST (Beta(10, 10))."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return float(torch.distributions.Beta(alpha, alpha).sample())
