"""Decode audio files to mono float waveforms at a fixed sample rate, refusing bad clips."""

from __future__ import annotations

import os
import re
from collections import Counter
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from c2f.data.errors import DataError

# what dataset preparation and predict take from a folder: audio and video containers
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4",
                  ".m4v", ".webm", ".mkv", ".mka", ".mov", ".avi", ".aiff", ".aif", ".aifc",
                  ".caf", ".w64", ".au", ".wma", ".wv", ".3gp"}

# Digital silence is valid audio (AudioSet has many such clips): it loads and is counted.
SILENCE_PEAK = 1e-8
# libsndfile logs "data : <declared> (should be <actual>)" when a WAV/AIFF data chunk is cut short.
_SHORT_CHUNK = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size unset; not a truncation


def declared_short(extra_info: str) -> bool:
    """Whether libsndfile's header log says the data chunk holds fewer bytes than declared."""
    for declared, actual in _SHORT_CHUNK.findall(extra_info):
        if int(declared) not in _UNKNOWN_SIZES and int(declared) > int(actual):
            return True
    return False


EMPTY = "empty file (0 bytes), no audio; an interrupted copy or download? Copy it again or drop it"
TRUNCATED = "truncated audio (header declares more data than the file holds{}); " \
    "re-download/re-encode it or drop it"
LOSSLESS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "FLAC"}  # frame counts in the header are exact


SHALLOW = {"PCM_S8", "PCM_U8", "PCM_16", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM", "GSM610",
           "VORBIS", "OPUS", "MPEG_LAYER_III"}  # 16 bits or fewer: 16-bit output loses nothing


class Header(NamedTuple):
    """What libsndfile's reading of a file's header says, before it is decoded."""

    problem: str | None = None  # why it is unusable (0 bytes, a data chunk cut short)
    frames: int | None = None  # the frames a lossless file (WAV, AIFF, FLAC) declares
    deep: bool = False  # samples of more than 16 bits (24-bit, float): kept so when converted


def read_header(path: Path) -> Header:
    """The file's header as libsndfile reads it; Header() where libsndfile cannot open it
    (PyAV decides). Dataset preparation uses it, so it refuses what training would."""
    try:
        if path.stat().st_size == 0:
            return Header(EMPTY)
    except OSError as err:  # gone since it was listed, a dangling link, no permission
        return Header(f"cannot read it ({err.strerror or err})")
    try:
        with soundfile.SoundFile(str(path)) as f:
            declared, extra, kind, subtype = f.frames, f.extra_info, f.format, f.subtype
    except (soundfile.LibsndfileError, RuntimeError):
        return Header()
    if declared_short(extra):
        return Header(TRUNCATED.format(""))
    return Header(None, declared if kind in LOSSLESS else None, subtype not in SHALLOW)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Read all frames as float32 [frames, channels], raising DataError for unusable files."""
    if not path.is_file():
        raise DataError(f"{path}: audio file not found; fix its path (the manifest entry or the "
                        "argument) or restore the file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {EMPTY}")
    try:
        with soundfile.SoundFile(str(path)) as f:
            header_frames, rate, extra = f.frames, f.samplerate, f.extra_info
            data = f.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        return _decode_container(path, e)
    if declared_short(extra) or data.shape[0] < header_frames:
        raise DataError(f"{path}: " + TRUNCATED.format(f", {data.shape[0]} frames decodable"))
    if data.shape[0] == 0:
        raise DataError(f"{path}: zero-length audio (0 frames); drop it from the manifest")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains NaN or Inf samples; re-encode it or drop it")
    return data, rate


def _decode_container(path: Path, unread: Exception) -> tuple[np.ndarray, int]:
    """What libsndfile does not read (m4a, mp4, webm, mkv, ...) through PyAV, mono
    [frames, 1]; DataError naming both readers' reasons when PyAV fails too."""
    from c2f.data.container import DecodeError, decode  # PyAV: loaded only when needed

    try:
        mono, rate = decode(path)
    except DecodeError as err:
        raise DataError(f"{path}: cannot decode audio ({unread}; PyAV: {err}); the file is "
                        "corrupt or truncated, re-encode or drop it") from None
    return mono[:, None], rate


def load_waveform(path: str | PathLike[str], sample_rate: int = 16000) -> torch.Tensor:
    """Decode a file to a mono float32 tensor [1, L] at sample_rate."""
    data, rate = _decode(Path(path))
    wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32)).unsqueeze(0)
    if rate != sample_rate:
        wave = AF.resample(wave, orig_freq=rate, new_freq=sample_rate)
    return wave


def is_silent(wave: torch.Tensor) -> bool:
    """All samples below SILENCE_PEAK in magnitude: a valid clip, counted in the run log."""
    low, high = torch.aminmax(wave)  # no temporary as large as the clip
    return max(-float(low), float(high)) < SILENCE_PEAK


def pad_or_crop(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad at the end or keep the first num_samples along the last axis."""
    length = wave.shape[-1]
    if length >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - length))


def audio_files(root: Path, left_out: list[Path] | None = None) -> list[Path]:
    """Every file under `root` whose suffix is an audio or video container, sorted. Linked
    folders are followed, each once (a link to a folder above does not loop). `left_out`
    gathers the other files (not hidden ones), to say what was not read."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            suffix = Path(name).suffix.lower()
            if suffix in AUDIO_SUFFIXES:
                found.append(Path(folder) / name)
            elif left_out is not None:
                left_out.append(Path(folder) / name)
    return found


def left_out_note(left_out: list[Path]) -> str | None:
    """One line on the files `audio_files` did not take, by suffix, most common first."""
    if not left_out:
        return None
    suffixes = Counter(p.suffix.lower() or "(no suffix)" for p in left_out)
    kinds = ", ".join(f"{suffix} {n}" for suffix, n in suffixes.most_common())
    return (f"{len(left_out)} file(s) left out, not audio by their suffix ({kinds}); "
            f"audio must end in one of {' '.join(sorted(AUDIO_SUFFIXES))} (rename or "
            "convert any that are audio)")
