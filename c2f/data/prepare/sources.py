"""Find each listed clip among the files a user downloaded, whatever they were named.

Datasets cut from YouTube (AudioSet, VGGSound, Kinetics) arrive under many naming schemes:
`ID.mp4`, `YID.wav` (AudioSet's "Y" prefix), `ID_30.000_40.000.flac`, `ID_30000.m4a`,
`ID_000030_000040.mp4` (Kinetics' downloader), `ID_000030.mp4` (VGGSound's release). A name
that carries times holds the segment already cut; a bare id (`ID.mp4`, `YID.wav`) holds either
the whole video (cut at the segment's start) or the segment already cut (PANNs' downloader
writes it as `YID.wav`): its length decides, when it is converted (`convert.py`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from c2f.data.audio import audio_files

YOUTUBE_ID = 11  # YouTube ids are 11 characters of [A-Za-z0-9_-]
_ID_CHARS = re.compile(r"^[A-Za-z0-9_-]{11}$")
_TIMES = re.compile(r"^_(\d+(?:\.\d+)?)(?:_(\d+(?:\.\d+)?))?$")
TOLERANCE_S = 0.5  # a name's start time matches a list's within this


@dataclass(frozen=True)
class Found:
    """A source file and whether its name says it holds the segment already cut (it carries
    times); False: named by bare id, read as cut or whole by its length (`convert.py`)."""

    path: Path
    trimmed: bool


_BRACKETED = re.compile(r"\[([A-Za-z0-9_-]{11})\]$")  # yt-dlp's default `%(title)s [%(id)s]`
NAMES_HELP = ("<id>.<ext>, Y<id>.<ext>, <id>_<start>_<end>.<ext>, <id>_<start:06d>.<ext> or "
              "yt-dlp's '<title> [<id>].<ext>'")
SHOWN = 3  # file names quoted in a note


def parse_youtube_name(stem: str) -> tuple[str, float | None] | None:
    """(id, start time named in the file or None) from a file stem, or None for other names.
    A stem ending in `[<id>]` (yt-dlp's default output template) is named by bare id."""
    parsed = _parse_name(stem)
    return None if parsed is None else parsed[:2]


def _parse_name(stem: str) -> tuple[str, float | None, tuple[float, ...]] | None:
    """`parse_youtube_name`, with the units the named time may be in: seconds, and milliseconds
    for whole numbers (`ID_30000.m4a`; `ID_20.000_30.000` is in seconds, never 20 ms); none
    without a time. Read from the times the name matched, whatever characters the id holds."""
    bracketed = _BRACKETED.search(stem)
    if bracketed:
        return bracketed.group(1), None, ()
    for offset in (0, 1) if stem.startswith("Y") else (0,):
        ident, rest = stem[offset:offset + YOUTUBE_ID], stem[offset + YOUTUBE_ID:]
        if not _ID_CHARS.match(ident):
            continue
        if rest == "":
            return ident, None, ()
        times = _TIMES.match(rest)
        if times:
            return ident, float(times.group(1)), (1.0,) if "." in rest else (1.0, 1e-3)
    return None


def _same_start(named: float, start: float, unit: float) -> bool:
    """A name's time equals the segment start, written in `unit`s (1: seconds, 1e-3: ms)."""
    return abs(named * unit - start) <= TOLERANCE_S


class _Unused:
    """What an index of source files knows of the files no listed clip asked for."""

    root: Path
    used: set[Path]

    def files(self) -> list[Path]:
        raise NotImplementedError

    def _use(self, found: Found | None) -> Found | None:
        if found is not None:
            self.used.add(found.path)
        return found

    def find(self, *key) -> Found | None:
        raise NotImplementedError

    def claim(self, *key) -> None:
        """Count the file of a listed row that the recipe leaves out (an unknown label, bad
        times) as used: its problems.txt line already names it, `unused_note` must not say it
        holds no clip of the lists. Every recipe calls it for every listed row it skips."""
        self.find(*key)

    def unused_note(self) -> list[str]:
        """A problems.txt line counting the indexed audio files that no listed clip of this
        dataset is found in (clips of other lists or classes, a larger download, stray
        files), naming a few; none when every file was used. Call it after every `find`."""
        unused = sorted(set(self.files()) - self.used)
        if not unused:
            return []
        shown = ", ".join(repr(p.relative_to(self.root).as_posix()) for p in unused[:SHOWN])
        more = f" and {len(unused) - SHOWN} more" if len(unused) > SHOWN else ""
        return [f"{len(unused)} audio file(s) under {self.root} hold no clip of this dataset's "
                f"lists and are left out ({shown}{more}): expected when the folder holds more "
                "than these lists (another subset, other classes); else check that the "
                "lists read, named in prepared.json, are the ones meant"]


class YouTubeIndex(_Unused):
    """Files under a folder by YouTube id; `find(id, start)` picks the one for a segment."""

    def __init__(self, root: Path):
        self.root, self.used = root, set()
        # id -> (file, the start time its name holds, the units that time may be in)
        self.by_id: dict[str, list[tuple[Path, float | None, tuple[float, ...]]]] = {}
        self.unread: list[Path] = []  # audio files whose names carry no YouTube id
        for path in audio_files(root):
            parsed = _parse_name(path.stem)
            if parsed:
                self.by_id.setdefault(parsed[0], []).append((path, *parsed[1:]))
            else:
                self.unread.append(path)

    def files(self) -> list[Path]:
        return [path for found in self.by_id.values() for path, *_ in found]

    def unread_note(self) -> list[str]:
        """Problems.txt lines: the audio files left out because their names carry no YouTube
        id, naming a few and the names that are read; then those no listed clip used."""
        if not self.unread:
            return self.unused_note()
        shown = ", ".join(repr(p.relative_to(self.root).as_posix()) for p in self.unread[:SHOWN])
        more = f" and {len(self.unread) - SHOWN} more" if len(self.unread) > SHOWN else ""
        return [f"{len(self.unread)} audio file(s) under {self.root} are left out: their names "
                f"hold no YouTube id ({shown}{more}); name them {NAMES_HELP}",
                *self.unused_note()]

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_id.values())

    def find(self, ident: str, start: float) -> Found | None:
        """The cut segment named with this start if there is one, else the whole video."""
        return self._use(self._find(ident, start))

    def claim(self, ident: str, start: float | None = None) -> None:
        """As every index claims (`_Unused.claim`); a row whose start cannot be read (None)
        claims every file of its id: which of them it meant cannot be told, and its
        problems.txt line names the id."""
        if start is None:
            self.used.update(path for path, *_ in self.by_id.get(ident, []))
        else:
            self.find(ident, start)

    def _find(self, ident: str, start: float) -> Found | None:
        candidates = self.by_id.get(ident, [])
        # seconds first: `ID_20.000_30.000` read in milliseconds (0.02 s) would be the segment
        # at 0 s of a video whose `ID_0.000_10.000` is there too
        for unit in (1.0, 1e-3):
            for path, named, units in candidates:
                if unit in units and _same_start(named, start, unit):
                    return Found(path, trimmed=True)
        whole = [path for path, named, _ in candidates if named is None]
        if whole:
            return Found(whole[0], trimmed=False)
        # one cut file whose whole-number time is in another unit; a name in decimal seconds
        # that is not the row's start is another segment of the video, not this one
        if len(candidates) == 1 and len(candidates[0][2]) > 1:
            return Found(candidates[0][0], trimmed=True)
        return None


class PathIndex(_Unused):
    """Files under a folder by relative path without suffix (`id10001/1zcIwhmdeo4/00001`), so
    that a list naming `x.wav` finds `x.flac` too; with `parts`, by the last `parts` parts of
    the path wherever the file sits below the folder (VoxCeleb1 unzipped as its two archives,
    `vox1_dev_wav/wav/id10001/...` beside `vox1_test_wav/wav/id10270/...`)."""

    def __init__(self, root: Path, parts: int | None = None):
        self.root, self.parts, self.used = root, parts, set()
        self.by_key: dict[str, Path] = {}
        for path in audio_files(root):
            self.by_key.setdefault(self._last(self.key(path.relative_to(root).as_posix())), path)

    @staticmethod
    def key(relative: str) -> str:
        """The key of a path relative to the root, as files are indexed and lists are matched:
        without its suffix (a list naming `x.wav` finds `x.flac`); a path that names no file
        ('/', '.') has none to drop. The one rule, so that a list read apart (Speech Commands'
        held-out lines) keys its clips as the files are."""
        listed = PurePosixPath(relative)
        return (listed.with_suffix("") if listed.name else listed).as_posix()

    def _last(self, key: str) -> str:
        """Its last `parts` parts, with `parts`."""
        return key if self.parts is None else "/".join(key.split("/")[-self.parts:])

    def __len__(self) -> int:
        return len(self.by_key)

    def files(self) -> list[Path]:
        return list(self.by_key.values())

    def find(self, relative: str) -> Found | None:
        """The file at `relative` (any suffix) under the root; none for a path that names no
        file ('/', '.'), which has no suffix to drop."""
        path = self.by_key.get(self._last(self.key(relative)))
        return self._use(Found(path, trimmed=True) if path else None)
