"""Convert one listed clip (in a worker process): decode, cut, resample, write atomically.

A YouTube clip named by bare id (`<id>.flac`, `Y<id>.wav`) may hold the whole video or the
segment already cut: PANNs' downloader (qiuqiangkong/audioset_tagging_cnn, utils/dataset.py
`download_wavs`, run by scripts/1_download_dataset.sh) writes the cut segment as
`'Y' + audio_id + '.wav'` (`ffmpeg ... -ac 1 -ar 32000 -ss start -t duration`), and mirrors
ship one cut `<id>.flac` per segment, while yt-dlp without a cut gives the whole video. The
file's own length decides (`--bare-id-files auto`): one no longer than the listed segment (plus
`SLACK_S`) is the segment, since a whole video that short could only hold it from 0 s on,
where both readings agree; a longer one is the whole video, cut at the list's start.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2f.data.audio import TRUNCATED, read_header
from c2f.data.prepare.decode import DecodeError, Segment, decode, fit, link_atomic, write_atomic

SLACK_S = 0.5  # a cut file may run this much past the segment's length (encoder padding)
READINGS = ("auto", "segment", "video")  # --bare-id-files
SEGMENT, VIDEO = "segment", "video"


@dataclass(frozen=True)
class Task:
    """One clip to write: its source, where to, which part, and how."""

    source: str
    target: str
    start: float
    duration: float | None
    sample_rate: int
    fmt: str
    bare: str | None = None     # a bare-id source: "auto", "segment" or "video"
    length: float | None = None  # the listed segment's length (end - start), for "auto"


def add_bare_id_option(parser) -> None:
    """--bare-id-files, for the recipes whose sources are named by YouTube id."""
    parser.add_argument(
        "--bare-id-files", choices=READINGS, default="auto",
        help="what a file named by bare YouTube id (<id>.flac, Y<id>.wav) holds: auto (the "
             "default) decides by its length: no longer than the segment (+0.5 s): the segment "
             "already cut (PANNs' downloader writes Y<id>.wav so), longer: the whole video, cut "
             "at the list's start; segment or video force one reading for every such file")


def _bare(task: Task) -> tuple[np.ndarray, int, str]:
    """Samples, rate and the reading used of a source named by bare id."""
    path, start, duration = Path(task.source), task.start, task.duration
    length = task.length or duration or 0.0
    if task.bare == SEGMENT:
        return (*decode(path, Segment(0.0, duration)), SEGMENT)
    if task.bare == VIDEO:
        samples, rate = _whole(path, start, duration)
        return samples, rate, VIDEO
    head, rate = decode(path, Segment(0.0, max(start + (duration or length), length + SLACK_S)
                                      + 0.1))
    held = head.size / rate
    if held <= length + SLACK_S:
        return head[:None if duration is None else round(duration * rate)], rate, SEGMENT
    first = round(start * rate)
    if first >= head.size:
        raise DecodeError(
            f"named by bare id and {held:.2f} s long, longer than the {length:g} s segment, so "
            f"read as the whole video, but the segment starts at {start:.2f} s, past its end: "
            "if the file is the segment already cut, pass --bare-id-files segment; else "
            "download the whole video again")
    return head[first:None if duration is None else first + round(duration * rate)], rate, VIDEO


def _whole(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int]:
    """The segment of a whole video; a file too short for it is named with the fix."""
    try:
        return decode(path, Segment(start, duration))
    except DecodeError as err:
        if "the segment starts at" not in str(err):
            raise
        raise DecodeError(f"{err}; read as the whole video (--bare-id-files video): if it is "
                          "the segment already cut, pass --bare-id-files auto") from None


def convert_task(task: Task) -> tuple[str | None, float, str | None]:
    """Decode, resample, cut and write one clip, or hard-link a whole source that already is
    such a clip: (None or the failure reason, the peak cut to full scale, the reading of a
    bare-id source: "segment" or "video")."""
    source, target = Path(task.source), Path(task.target)
    if task.bare is None and task.duration is None and task.start == 0 and link_atomic(
            source, target, task.sample_rate, task.fmt):
        return None, 0.0, None
    try:
        header = read_header(source)
        if header.problem:
            return header.problem, 0.0, None
        reading = None
        if task.bare is not None:
            samples, rate, reading = _bare(task)
        else:
            samples, rate = decode(source, Segment(task.start, task.duration))
        whole = task.start == 0 and task.duration is None and task.bare is None
        if header.frames is not None and whole and len(samples) < header.frames:
            return TRUNCATED.format(f", {len(samples)} of {header.frames} frames decodable"), \
                0.0, None
        return None, write_atomic(target, fit(samples, rate, task.sample_rate, task.duration),
                                  task.sample_rate, task.fmt, header.deep), reading
    except DecodeError as err:  # say what to do, as the empty and truncated files' reasons do
        return str(err) + ("; not audio (a renamed document?) or a damaged file: export it "
                           "again or drop it" if str(err).startswith("cannot decode") else ""), \
            0.0, None
    except (OSError, RuntimeError, ValueError) as err:  # soundfile or torch on odd input
        return f"{type(err).__name__}: {err}", 0.0, None


def init_worker(parent: int | None = None) -> None:
    """One thread per worker process: parallelism comes from the processes. Ctrl-C reaches
    the whole process group: only the main process handles it (it ends the workers), so the
    workers print no traceback of their own. A worker ends with its `parent` (kill -9, the OOM
    killer), on Linux, rather than live on orphaned, writing into the output."""
    import os
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (linux/prctl.h): 1
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(0)
    torch.set_num_threads(1)
