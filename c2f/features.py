"""Features in AST's recipe: kaldi fbank (per clip, or batched on any device), pad/crop,
normalization, SpecAugment masks and the mixup weight; and PANNs'/HTS-AT's log-mel for models
that bring their own features."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torchaudio.compliance import kaldi

# AST's fbank arguments (src/dataloader.py, `_wav2fbank`); the frame shift is a parameter.
FRAME_LENGTH_MS = 25.0
PREEMPHASIS = 0.97  # kaldi's default, which AST keeps
LOW_FREQ_HZ = 20.0  # kaldi's default, which AST keeps
# SpecAugment's time mask as a share of the input, where a preset leaves it to the length:
TIME_MASK_SHARE = 192 / 1024  # AST egs/audioset/run.sh timem=192 of 1024 (run_esc: 96 of 512)


def fbank(wave: torch.Tensor, sample_rate: int, num_mel_bins: int,
          frame_shift_ms: float) -> torch.Tensor:
    """Log-mel filterbank [frames, mel] of one clip [1, L], exactly as AST computes it. A clip
    shorter than one 25 ms window (which kaldi refuses) is zero-padded to one, as the frontend
    pads it."""
    window = window_samples(sample_rate)
    if wave.shape[-1] < window:
        wave = F.pad(wave, (0, window - wave.shape[-1]))
    return kaldi.fbank(wave - wave.mean(), htk_compat=True, sample_frequency=sample_rate,
                       use_energy=False, window_type="hanning", num_mel_bins=num_mel_bins,
                       dither=0.0, frame_length=FRAME_LENGTH_MS, frame_shift=frame_shift_ms)


def window_samples(sample_rate: int) -> int:
    return int(sample_rate * FRAME_LENGTH_MS * 0.001)


def shift_samples(sample_rate: int, frame_shift_ms: float) -> int:
    return int(sample_rate * frame_shift_ms * 0.001)


def samples_for_frames(frames: int, sample_rate: int, frame_shift_ms: float) -> int:
    """Samples that kaldi (snip_edges) turns into exactly `frames` frames."""
    return window_samples(sample_rate) + (frames - 1) * shift_samples(sample_rate, frame_shift_ms)


@lru_cache(maxsize=16)
def _mel_banks(num_mel_bins: int, padded: int, sample_rate: int, device: str,
               dtype: torch.dtype) -> torch.Tensor:
    """kaldi's triangular mel filters [padded / 2 + 1, mel] (the Nyquist bin gets weight 0)."""
    banks, _ = kaldi.get_mel_banks(num_mel_bins, padded, float(sample_rate), LOW_FREQ_HZ, 0.0,
                                   100.0, -500.0, 1.0)
    return F.pad(banks, (0, 1)).T.contiguous().to(device, dtype)


@lru_cache(maxsize=16)
def _hann(window: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(window, periodic=False, dtype=torch.float32).to(device, dtype)


def fbank_batch(waves: torch.Tensor, lengths: torch.Tensor, sample_rate: int,
                num_mel_bins: int, frame_shift_ms: float, frames: int) -> torch.Tensor:
    """`fbank` + `pad_or_crop_frames` for a batch [B, L] on its own device -> [B, frames, mel].

    Each row holds a clip whose mean is already removed, zero-padded after its `lengths[i]`
    valid samples. Frames that kaldi would not produce from the valid samples are zero, as
    AST's frame padding leaves them. On CPU it runs in float32 as kaldi does and matches it to
    ~1e-7; on CUDA in float64 (cheap there), since kaldi's own float32 result is up to ~1.5e-4
    from the exact fbank after AST's normalization and a float32 cuFFT adds as much again
    (bench/results_gpu.md)."""
    window, shift = window_samples(sample_rate), shift_samples(sample_rate, frame_shift_ms)
    need = samples_for_frames(frames, sample_rate, frame_shift_ms)
    dtype = torch.float64 if waves.is_cuda else torch.float32
    waves = F.pad(waves, (0, max(0, need - waves.shape[1])))[:, :need].to(dtype)
    strided = waves.unfold(1, window, shift)  # [B, frames, window]
    strided = strided - strided.mean(dim=2, keepdim=True)  # remove_dc_offset
    previous = torch.cat([strided[:, :, :1], strided[:, :, :-1]], dim=2)
    strided = (strided - PREEMPHASIS * previous) * _hann(window, str(waves.device), dtype)
    padded = 1 << (window - 1).bit_length()  # round_to_power_of_two
    spectrum = torch.fft.rfft(strided, n=padded)
    power = spectrum.real.square() + spectrum.imag.square()  # |X|^2 without the sqrt
    mel = power @ _mel_banks(num_mel_bins, padded, sample_rate, str(waves.device), dtype)
    spec = mel.clamp_min(torch.finfo(torch.float32).eps).log().float()
    valid = torch.where(lengths >= window, (lengths - window) // shift + 1, 0)
    keep = torch.arange(frames, device=waves.device) < valid.to(waves.device)[:, None]
    return spec * keep[:, :, None]


@lru_cache(maxsize=16)
def _periodic_hann(window: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """librosa's get_window('hann', fftbins=True), as torchlibrosa's STFT uses."""
    return torch.hann_window(window, periodic=True, dtype=torch.float64).to(device, dtype)


@lru_cache(maxsize=16)
def _slaney_mel(sample_rate: int, window: int, num_mel_bins: int, fmin: float, fmax: float,
                device: str, dtype: torch.dtype) -> torch.Tensor:
    """[freq bins, mel] filters equal to librosa.filters.mel's defaults (Slaney scale and
    area normalization), which torchlibrosa's LogmelFilterBank uses."""
    banks = AF.melscale_fbanks(window // 2 + 1, fmin, fmax, num_mel_bins, sample_rate,
                               norm="slaney", mel_scale="slaney")
    return banks.to(device=device, dtype=dtype)


def logmel_batch(waves: torch.Tensor, sample_rate: int, num_mel_bins: int, hop: int,
                 window: int, fmin: float, fmax: float, frames: int) -> torch.Tensor:
    """PANNs' and HTS-AT's log-mel [B, frames, mel] of waveforms [B, samples]: the
    periodic-Hann STFT (torchlibrosa Spectrogram, center=True, reflect padding, power 2), Slaney
    mel filters, 10 log10(max(x, 1e-10)) (LogmelFilterBank, ref 1, top_db None); the first
    `frames` frames (a clip of frames x hop samples gives one more, centered on its end)."""
    dtype = torch.float64 if waves.is_cuda else torch.float32
    x = waves.to(dtype)
    if x.shape[-1] <= window // 2:  # reflect padding needs more than half a window
        x = F.pad(x, (0, window // 2 + 1 - x.shape[-1]))
    spec = torch.stft(x, n_fft=window, hop_length=hop, win_length=window,
                      window=_periodic_hann(window, str(x.device), dtype), center=True,
                      pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [B, freq, T]
    mel = power.transpose(1, 2) @ _slaney_mel(sample_rate, window, num_mel_bins, fmin, fmax,
                                              str(x.device), dtype)
    out = 10.0 * torch.log10(mel.clamp_min(1e-10))[:, :frames]
    return F.pad(out, (0, 0, 0, frames - out.shape[1])).to(torch.float32)


def pad_or_crop_frames(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad at the end or keep the first `frames` frames, as AST does."""
    missing = frames - spec.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(spec, (0, 0, 0, missing))
    return spec[:frames]


def normalize(spec: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """AST's normalization: (x - mean) / (2 std)."""
    return (spec - mean) / (2.0 * std)


def draw_masks(generator: torch.Generator, freq_mask: int, time_mask: int, mel: int,
               frames: int) -> torch.Tensor:
    """One frequency and one time mask as torchaudio's `mask_along_axis` draws them
    (width ~ U(0, param), start ~ U(0, size - width), both floored), from `generator`:
    int64 [freq_start, freq_end, time_start, time_end]; an empty mask is (0, 0)."""
    axes = ((freq_mask, mel), (time_mask, frames))
    # one draw for all of them: the same numbers as one scalar draw each, in that order
    # (tests/test_dataset.py compares with torchaudio), for a quarter of the per-clip cost
    draws = iter(torch.rand(2 * sum(param >= 1 for param, _ in axes),
                            generator=generator).tolist())
    bounds = []
    for param, size in axes:
        if param < 1:
            bounds += [0, 0]
            continue
        width = next(draws) * param
        start = next(draws) * (size - width)
        bounds += [int(start), int(start) + int(width)]
    return torch.tensor(bounds, dtype=torch.int64)


def apply_masks(spec: torch.Tensor, masks: torch.Tensor, value: float) -> torch.Tensor:
    """Fill the masked bands of spec [..., frames, mel] given masks [..., 4] (`draw_masks`)."""
    frames, mel = spec.shape[-2:]
    masks = masks.to(spec.device)[..., None]
    mel_pos = torch.arange(mel, device=spec.device)
    time_pos = torch.arange(frames, device=spec.device)
    in_freq = (mel_pos >= masks[..., 0, :]) & (mel_pos < masks[..., 1, :])  # [..., mel]
    in_time = (time_pos >= masks[..., 2, :]) & (time_pos < masks[..., 3, :])  # [..., frames]
    masked = in_freq[..., None, :] | in_time[..., :, None]
    return spec.masked_fill(masked, value)


# AST's --noise rolls by np.random.randint(-10, 10) frames of its 10 ms fbank (src/dataloader.py)
NOISE_ROLL_MS = 100.0


def draw_noise(generator: torch.Generator, frames: int, mel: int, max_roll: int
               ) -> tuple[torch.Tensor, int]:
    """AST's --noise (src/dataloader.py, training only; egs/speechcommands/run_sc.sh turns it
    on) from `generator`: uniform noise [frames, mel] times U(0, 1) / 10, added to the
    normalized spectrogram, and a roll along time of randint(-max_roll, max_roll) frames."""
    noise = torch.rand(frames, mel, generator=generator)
    noise = noise * (float(torch.rand((), generator=generator)) / 10)
    roll = int(torch.randint(-max_roll, max_roll, (), generator=generator)) if max_roll else 0
    return noise, roll


def add_noise(spec: torch.Tensor, noise: torch.Tensor, roll: int | torch.Tensor
              ) -> torch.Tensor:
    """spec [..., frames, mel] + noise, rolled along frames by `roll` (one per item) as
    torch.roll rolls: out[t] = in[(t - roll) mod frames]."""
    spec = spec + noise
    frames = spec.shape[-2]
    roll = torch.as_tensor(roll, device=spec.device)
    index = (torch.arange(frames, device=spec.device) - roll[..., None]) % frames
    return torch.gather(spec, -2, index[..., None].expand(spec.shape))


def mix_waves(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """AST's mixup of two waveforms [1, L] (src/dataloader.py `_wav2fbank`): each minus its
    own mean, the second zero-padded or cut to the first's length, lam * first + (1 - lam) *
    second. (The mix's own mean goes with the clip's offset, as AST's last step removes it.)"""
    first, second = first - first.mean(), second - second.mean()
    length = first.shape[1]
    second = torch.nn.functional.pad(second, (0, max(0, length - second.shape[1])))[:, :length]
    return lam * first + (1 - lam) * second


def mixup_weight(generator: torch.Generator, alpha: float = 10.0) -> float:
    """lambda ~ Beta(alpha, alpha), as AST (Beta(10, 10)), seeded from `generator`."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
