"""Decode any container a user may hold (PyAV, `c2f.data.container`), and write one 16 kHz mono
clip atomically: 16-bit, or 24-bit FLAC (float WAV with `--format wav`) for a source of more
bits. Resampling uses `torchaudio.functional.resample`, the same function
`c2f.data.audio.load_waveform` uses at training time, so a prepared clip equals what training
would have made of the original file, to the output's precision; samples beyond full scale
(a float source) are cut to +-1 in FLAC and said, and kept in float WAV.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from c2f.data.container import DecodeError, Segment, decode

__all__ = ["DecodeError", "Segment", "decode", "fit", "link_atomic", "write_atomic",
           "remove_partials"]

FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}
DEEP = {"flac": "PCM_24", "wav": "FLOAT"}  # for sources of more than 16 bits (24-bit, float)
TMP_MARK = ".partial-"  # temporary outputs: `.<name>.partial-<pid>`, removed or renamed


def fit(samples: np.ndarray, rate: int, sample_rate: int,
        duration: float | None) -> np.ndarray:
    """Resampled to `sample_rate`, then zero-padded or cut to `duration` seconds."""
    wave = torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0)
    if rate != sample_rate:
        wave = AF.resample(wave, orig_freq=rate, new_freq=sample_rate)
    out = wave[0].numpy()
    if duration is not None:
        want = round(duration * sample_rate)
        out = np.pad(out, (0, max(0, want - out.size)))[:want]
    return out


def write_atomic(path: Path, wave: np.ndarray, sample_rate: int, fmt: str,
                 deep: bool = False) -> float:
    """Write 16-bit audio (24-bit FLAC or float WAV for a `deep` source) to a temporary name
    beside `path`, then rename: a reader (or a later run) sees the whole file or nothing.
    Returns the peak of a deep source that had to be cut to full scale (0.0 when nothing was):
    float WAV keeps samples beyond +-1, integer formats cannot. A 16-bit or lossy source's
    overshoot (resampling rings, lossy decoders overshoot a little) is cut without a word."""
    container, subtype = FORMATS[fmt]
    subtype = DEEP[fmt] if deep else subtype
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    over = peak > 1.0 and subtype != "FLOAT"  # integer samples end at full scale
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        soundfile.write(str(tmp), np.clip(wave, -1.0, 1.0) if over else wave, sample_rate,
                        format=container, subtype=subtype)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return peak if over and deep else 0.0


def link_atomic(source: Path, path: Path, sample_rate: int, fmt: str) -> bool:
    """Hard-link `source` as `path` when it already is what conversion would write (the same
    container, `sample_rate`, mono, 16-bit, every frame readable), so a folder of 16 kHz mono
    FLAC (LibriSpeech) takes no second copy; False, leaving nothing behind, when it is not or
    the file system cannot link (another device), and the clip is converted instead. A hard
    link keeps the clip usable after the download is deleted, as a converted one is."""
    from c2f.data.audio import load_waveform
    from c2f.data.errors import DataError

    container, subtype = FORMATS[fmt]
    try:
        info = soundfile.info(str(source))
        if (info.format, info.subtype, info.channels, info.samplerate) != (
                container, subtype, 1, sample_rate):
            return False
        load_waveform(source, sample_rate)  # truncated, empty, NaN: converting says why
    except (soundfile.LibsndfileError, RuntimeError, OSError, DataError):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def remove_partials(folder: Path) -> int:
    """Delete temporary outputs a killed run left behind; how many there were."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(f".*{TMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
