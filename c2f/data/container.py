"""Decode any container with PyAV (FFmpeg in its wheels): wav, flac, mp3, ogg, m4a, mp4, webm,
mkv... `c2f.data.audio` falls back on it for what libsndfile does not read, and dataset
preparation (`c2f.data.prepare`) decodes every source with it.

Why PyAV: its wheels ship FFmpeg, so every container above decodes on a machine with nothing
else installed. torchaudio 2.9+ dropped its own FFmpeg decoding (`torchaudio.io.StreamReader` is
gone and `torchaudio.load` hands over to TorchCodec, which needs FFmpeg's shared libraries on
the system); soundfile (libsndfile) reads wav/flac/ogg/mp3 but no video container.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


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


def probe(path: Path) -> tuple[str | None, float | None]:
    """Why PyAV finds no audio stream in `path` (it reads the container's header only), or
    None when it finds one; and the audio's length in seconds where the header says it."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                return "no audio stream (a video without sound?)", None
            stream = streams[0]
            if stream.duration is not None and stream.time_base is not None:
                return None, float(stream.duration * stream.time_base)
            return None, None if container.duration is None else container.duration / 1e6
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        return f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}", None
