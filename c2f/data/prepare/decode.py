"""Decode any container a user may hold with PyAV, and write one 16 kHz mono clip atomically.

Why PyAV: its wheels ship FFmpeg, so wav, flac, mp3, ogg, m4a, mp4, webm and mkv decode on a
machine with nothing else installed. torchaudio 2.9+ dropped its own FFmpeg decoding
(`torchaudio.io.StreamReader` is gone and `torchaudio.load` hands over to TorchCodec, which
needs FFmpeg's shared libraries on the system); soundfile (libsndfile) reads wav/flac/ogg/mp3
but no video container. Resampling uses `torchaudio.functional.resample`, the same function
`c2f.data.audio.load_waveform` uses at training time, so a prepared clip equals what training
would have made of the original file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}
TMP_MARK = ".partial-"  # temporary outputs: `.<name>.partial-<pid>`, removed or renamed


class DecodeError(Exception):
    """A source file that cannot give the clip asked for; the message says why."""


@dataclass(frozen=True)
class Segment:
    """What to cut from a source: `start` seconds in, `duration` seconds long (None: to the
    end)."""

    start: float = 0.0
    duration: float | None = None


def decode(path: Path, segment: Segment = Segment()) -> tuple[np.ndarray, int]:
    """The segment's samples as float32 mono (channels averaged, as training does) and their
    rate; DecodeError for a file without a decodable audio stream or too short to reach the
    segment's start.

    Time is counted in decoded samples from the start of the stream, not read from packet
    timestamps: containers disagree on how encoder delay shifts timestamps (mp3 and Matroska
    start at the delay, mp4 at 0, Opus in WebM in between), while the decoded sample stream is
    what every player and `ffmpeg -ss` agree on. Decoding from the start costs well under a
    second per ten minutes of audio.
    """
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                raise DecodeError("no audio stream (a video without sound?)")
            stream = streams[0]
            rate = stream.codec_context.sample_rate or stream.rate
            if not rate:
                raise DecodeError("audio stream declares no sample rate")
            samples, held = _read(container, stream, rate, segment)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise DecodeError(f"cannot decode ({type(err).__name__}: {reason})") from None
    if held == 0:
        raise DecodeError("no audio samples decoded")
    if samples.size == 0:
        raise DecodeError(f"the file holds {held / rate:.2f} s of audio, the segment starts at "
                          f"{segment.start:.2f} s")
    if not np.isfinite(samples).all():
        raise DecodeError("decoded audio contains NaN or Inf")
    return samples, rate


def _read(container, stream, rate: int, segment: Segment) -> tuple[np.ndarray, int]:
    """The segment's mono samples, and how many samples the stream held up to where reading
    stopped."""
    resampler = av.AudioResampler(format="fltp", rate=rate)  # planar float at the stream rate
    first = round(segment.start * rate)
    last = None if segment.duration is None else first + round(segment.duration * rate)
    pieces: list[np.ndarray] = []
    held = 0

    def take(frames) -> None:
        nonlocal held
        for out in frames:
            mono = out.to_ndarray().astype(np.float32).mean(axis=0)
            lo, hi = max(first - held, 0), mono.size if last is None else last - held
            if hi > lo:
                pieces.append(mono[lo:hi])
            held += mono.size

    for frame in container.decode(stream):
        take(resampler.resample(frame))
        if last is not None and held >= last:
            break
    take(resampler.resample(None))
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), held


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


def write_atomic(path: Path, wave: np.ndarray, sample_rate: int, fmt: str) -> None:
    """Write 16-bit audio to a temporary name beside `path`, then rename: a reader (or a later
    run) sees the whole file or nothing."""
    container, subtype = FORMATS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        soundfile.write(str(tmp), np.clip(wave, -1.0, 1.0), sample_rate, format=container,
                        subtype=subtype)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_partials(folder: Path) -> int:
    """Delete temporary outputs a killed run left behind; how many there were."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(f".*{TMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
