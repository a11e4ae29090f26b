"""Miniature downloads of each dataset c2f prepares, in the publishers' layouts and list formats.

Audio is real: instrument phrases rendered by the built-in SoundFont synthesizer (one General
MIDI program per class, so the classes can be learned), encoded with PyAV into the containers
users hold (wav, flac, m4a, mp4 with a video stream, mkv, webm, mp3), at 44.1/48/22.05 kHz,
stereo or mono. Every layout also holds one listed clip without a file, one corrupt file and
one row with an unknown label.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from c2f.data.builtin import default_soundfont
from c2f.data.synth import Note, Renderer

PROGRAMS = (0, 40, 56, 73, 19, 24)  # piano, violin, trumpet, flute, organ, guitar
CONTAINERS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac"), ".m4a": ("ipod", "aac"),
              ".mp4": ("mp4", "aac"), ".mkv": ("matroska", "aac"), ".webm": ("webm", "libopus"),
              ".mp3": ("mp3", "libmp3lame"), ".ogg": ("ogg", "libopus"),
              ".mov": ("mov", "pcm_s16le")}  # lossless, in a container libsndfile cannot open


@functools.lru_cache(maxsize=4)
def _renderer(rate: int) -> Renderer:
    return Renderer(default_soundfont().read_bytes(), rate)


def phrase(label: int, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A mono phrase of notes on class `label`'s instrument."""
    rng = np.random.default_rng(seed)
    notes = [Note(onset=float(t), duration=0.35, key=int(rng.integers(55, 75)), velocity=100)
             for t in np.arange(0.05, max(0.1, seconds - 0.4), 0.45)]
    return _renderer(rate).render(PROGRAMS[label % len(PROGRAMS)], notes, round(seconds * rate))


def write_media(path: Path, mono: np.ndarray, rate: int, stereo: bool = False,
                video: bool = False) -> Path:
    """Encode samples into the container named by the suffix (a small video stream in mp4)."""
    fmt, codec = CONTAINERS[path.suffix]
    if codec == "libopus":
        rate_out = 48000  # Opus runs at 48 kHz
        mono = np.interp(np.arange(round(mono.size * rate_out / rate)) * rate / rate_out,
                         np.arange(mono.size), mono).astype(np.float32)
        rate = rate_out
    planes = np.stack([mono, 0.5 * mono]) if stereo else mono[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        audio = container.add_stream(codec, rate=rate)
        audio.layout = "stereo" if stereo else "mono"
        picture = None
        if video:
            picture = container.add_stream("mpeg4", rate=5)
            picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes, dtype=np.float32),
                                           format="fltp", layout=audio.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
        if picture is not None:
            for i in range(int(5 * mono.size / rate)):
                image = np.full((32, 32, 3), (i * 7) % 255, dtype=np.uint8)
                for packet in picture.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in picture.encode(None):
                container.mux(packet)
    return path


def corrupt(path: Path) -> Path:
    """A file with a container's suffix and garbage inside (a failed download)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


def youtube_id(i: int) -> str:
    """Distinct 11-character ids, some starting with - or _ as real ones do."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rng = np.random.default_rng(1000 + i)
    return "".join(alphabet[j] for j in rng.integers(0, 64, 11))


@dataclass
class Layout:
    """A miniature download and what preparing it must give."""

    src: Path
    args: list[str] = field(default_factory=list)  # command-line options beyond --src
    expected: dict[str, int] = field(default_factory=dict)  # manifest -> clips
    classes: int = 0
    problem: str = ""  # the one line of problems.txt starts with (or holds) this
    missing: int = 1


def _write_csv(path: Path, rows: list[list], header: list[str] | None = None,
               comments: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        for line in comments:
            handle.write(line + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


AUDIOSET_CLASSES = [("/m/05r5c", "Piano"), ("/m/07y_7", "Violin, fiddle"),
                    ("/m/07gql", "Trumpet"), ("/m/09x0r", "Speech")]  # Speech: LibriSpeech's


def audioset(root: Path) -> Layout:
    """Segment CSVs as published (3 comment lines, `YTID, start, end, "mids"`), files of the
    whole video (`<id>.m4a`, `<id>.mp4`) or of the segment cut: named with its times
    (`<id>_<start>_<end>.flac`) or by bare id (PANNs' `Y<id>.wav`, a mirror's `<id>.flac`)."""
    src = root / "audioset"
    csvs = src / "lists"
    _write_csv(csvs / "class_labels_indices.csv", [[i, m, n] for i, (m, n)
                                                   in enumerate(AUDIOSET_CLASSES)],
               ["index", "mid", "display_name"])
    splits = {"balanced": 6, "unbalanced": 3, "eval": 3}
    rows: dict[str, list[str]] = {s: [] for s in splits}
    n = 0
    for split, count in splits.items():
        for k in range(count):
            ident, label, start = youtube_id(n), k % 3, float(2 + (n % 3) * 5)  # no Speech
            mids = AUDIOSET_CLASSES[label][0] + (",/m/07y_7" if k == 3 else "")
            rows[split].append(f'{ident}, {start:.3f}, {start + 10:.3f}, "{mids}"')
            kind = n % 3
            if kind == 0:  # whole "video" (yt-dlp -x): the phrase sits at the segment
                wave = np.concatenate([np.zeros(int(start * 22050), np.float32),
                                       phrase(label, 10.0, 22050, n)])
                write_media(src / "audio" / f"{ident}.m4a", wave, 22050, stereo=True)
            elif n == 4:  # PANNs' downloader: the segment cut, 32 kHz mono, as Y<id>.wav
                write_media(src / "audio" / f"Y{ident}.wav", phrase(label, 10.0, 32000, n),
                            32000)
            elif n == 7:  # a mirror's cut segment named by bare id, 48 kHz stereo
                write_media(src / "audio" / f"{ident}.flac", phrase(label, 10.0, 48000, n),
                            48000, stereo=True)
            elif kind == 1:
                write_media(src / "audio" / f"{ident}_{start:.3f}_{start + 10:.3f}.flac",
                            phrase(label, 10.0, 44100, n), 44100)
            else:
                wave = np.concatenate([np.zeros(int(start * 44100), np.float32),
                                       phrase(label, 10.0, 44100, n)])
                write_media(src / "audio" / "sub" / f"{ident}.mp4", wave, 44100, video=True)
            n += 1
    rows["balanced"].append(f'{youtube_id(90)}, 0.000, 10.000, "/m/05r5c"')  # no file
    rows["eval"].append(f'{youtube_id(91)}, 0.000, 10.000, "/m/05r5c"')  # corrupt file
    corrupt(src / "audio" / f"{youtube_id(91)}.mp4")
    rows["eval"].append(f'{youtube_id(92)}, 0.000, 10.000, "/m/0unknown"')  # unknown label
    write_media(src / "audio" / f"{youtube_id(92)}.wav", phrase(0, 10.0, 16000, 92), 16000)
    header = ["# Segments csv created Sun Mar  5 10:54:25 2017",
              "# num_ytids=9, num_segs=9, num_unique_labels=3, num_positive_labels=10",
              "# YTID, start_seconds, end_seconds, positive_labels"]
    names = {"balanced": "balanced_train_segments.csv",
             "unbalanced": "unbalanced_train_segments.csv", "eval": "eval_segments.csv"}
    for split, lines in rows.items():
        (csvs / names[split]).write_text("\n".join(header + lines) + "\n")
    return Layout(src=src, expected={"balanced_train": 6, "full_train": 9, "eval": 3},
                  classes=4, problem="eval_segments.csv:8: ")


def vggsound(root: Path) -> Layout:
    """vggsound.csv without a header (`id,start,label,split`, a label with a comma quoted),
    clips as released (`<id>_<start:06d>.mp4`, 10 s, with video)."""
    src = root / "vggsound"
    labels = ["playing piano", "playing violin, fiddle", "playing trumpet"]
    rows = []
    for n in range(9):
        ident, label, start = youtube_id(100 + n), n % 3, 30 + n
        split = "test" if n >= 6 else "train"
        rows.append([ident, start, labels[label], split])
        suffix = ".mp4" if n % 2 == 0 else ".webm"
        write_media(src / "video" / f"{ident}_{start:06d}{suffix}",
                    phrase(label, 10.0, 44100, 100 + n), 44100, stereo=n % 2 == 0,
                    video=suffix == ".mp4")
    rows.append([youtube_id(190), 5, labels[0], "train"])  # no file
    rows.append([youtube_id(191), 5, labels[1], "test"])  # corrupt
    corrupt(src / "video" / f"{youtube_id(191)}_000005.mp4")
    rows.append([youtube_id(192), 5, "playing theremin", "train"])  # unknown label
    classes = src / "class_labels_indices.csv"
    _write_csv(classes, [[i, f"/m/vggsd{i:03d}", name] for i, name in enumerate(labels)],
               ["index", "mid", "display_name"])
    return Layout(src=src, args=["--lists", str(_write_csv(src / "vggsound.csv", rows)),
                                 "--classes", str(classes)],
                  expected={"train": 6, "eval": 3}, classes=3, problem="vggsound.csv:12: ")


def voxceleb1(root: Path) -> Layout:
    """`wav/idXXXXX/<video>/<n>.wav` and iden_split.txt (`<1|2|3> id/video/n.wav`)."""
    src = root / "voxceleb1"
    lines = []
    for n in range(12):
        speaker, split = f"id1000{n % 3 + 1}", (1, 1, 2, 3)[n // 3]
        relative = f"{speaker}/vid{n:03d}abcd/{n % 4 + 1:05d}.wav"
        seconds = 3.0 + (n % 4)  # utterances of different lengths
        write_media(src / "wav" / relative, phrase(n % 3, seconds, 16000, 200 + n), 16000)
        lines.append(f"{split} {relative}")
    lines.append("1 id10001/missing0000/00001.wav")  # no file
    corrupt_rel = "id10002/brokenvideo/00001.wav"
    (src / "wav" / corrupt_rel).parent.mkdir(parents=True)
    (src / "wav" / corrupt_rel).write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    lines.append(f"3 {corrupt_rel}")
    lines.append("4 id10003/vid999zzzz/00001.wav")  # malformed: set 4 does not exist
    split = src / "iden_split.txt"
    split.write_text("\n".join(lines) + "\n")
    return Layout(src=src, expected={"train": 9, "eval": 3}, classes=3,
                  problem="iden_split.txt:15: ")


def kinetics_sounds(root: Path) -> Layout:
    """Kinetics-400 train.csv / validate.csv with other classes mixed in, clips named by the
    official downloader (`<id>_<start:06d>_<end:06d>.mp4`)."""
    src = root / "kinetics"
    header = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
    classes = ["playing piano", "playing violin", "playing trumpet"]
    rows = {"train": [], "val": []}
    for n in range(10):
        ident, label, start = youtube_id(300 + n), n % 3, 10 * n
        split = "val" if n >= 7 else "train"
        rows[split].append([classes[label], ident, start, start + 10, split, 0])
        write_media(src / split / f"{ident}_{start:06d}_{start + 10:06d}.mp4",
                    phrase(label, 10.0, 44100, 300 + n), 44100, stereo=True, video=True)
    rows["train"].append(["abseiling", youtube_id(380), 0, 10, "train", 0])  # not a KS class
    rows["train"].append([classes[0], youtube_id(390), 0, 10, "train", 0])  # no file
    rows["val"].append([classes[1], youtube_id(391), 0, 10, "val", 0])  # corrupt
    corrupt(src / "val" / f"{youtube_id(391)}_000000_000010.mp4")
    class_list = src / "ks_classes.txt"
    class_list.write_text("\n".join(classes + ["playing theremin"]) + "\n")  # never listed
    lists = [_write_csv(src / "lists" / "train.csv", rows["train"], header),
             _write_csv(src / "lists" / "validate.csv", rows["val"], header)]
    return Layout(src=src, args=["--lists", *map(str, lists), "--classes", str(class_list)],
                  expected={"train": 7, "eval": 3}, classes=4,
                  problem="class 'playing theremin' has no clip")


ESC_CATEGORIES = ["dog", "rooster", "pig"]


def esc50(root: Path, clips: int = 10) -> Layout:
    """ESC-50-master/meta/esc50.csv and audio/*.wav (44.1 kHz, 5 s), 5 folds."""
    src = root / "ESC-50-master"
    rows = []
    for n in range(clips):
        fold, target = n % 5 + 1, n % 3
        name = f"{fold}-{1000 + n}-A-{target}.wav"
        write_media(src / "audio" / name, phrase(target, 5.0, 44100, 400 + n), 44100)
        rows.append([name, fold, target, ESC_CATEGORIES[target], "False", 1000 + n, "A"])
    rows.append(["1-9999-A-0.wav", 1, 0, "dog", "False", 9999, "A"])  # no file
    rows.append(["2-9998-A-1.wav", 2, 1, "rooster", "False", 9998, "A"])  # corrupt
    corrupt(src / "audio" / "2-9998-A-1.wav")
    rows.append(["3-9997-A-0.wav", 3, 0, "cat", "False", 9997, "A"])  # label clash
    write_media(src / "audio" / "3-9997-A-0.wav", phrase(0, 5.0, 44100, 9997), 44100)
    _write_csv(src / "meta" / "esc50.csv", rows,
               ["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    expected = {f"fold{k}_{part}": clips // 5 * (1 if part == "eval" else 4)
                for k in range(1, 6) for part in ("train", "eval")}
    return Layout(src=src, expected=expected, classes=50, problem="esc50.csv:14: ")


SC_WORDS = ["yes", "no", "up"]


def speechcommands(root: Path) -> Layout:
    """speech_commands_v0.02: word folders, _background_noise_, validation/testing lists."""
    src = root / "speech_commands_v0.02"
    valid, test = [], []
    for n in range(12):
        word = SC_WORDS[n % 3]
        relative = f"{word}/{n:08x}_nohash_0.wav"
        write_media(src / relative, phrase(n % 3, 1.0, 16000, 500 + n), 16000)
        (valid if n in (9, 10) else test if n == 11 else []).append(relative)
    write_media(src / "_background_noise_" / "white_noise.wav",
                np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    corrupt(src / "no" / "deadbeef_nohash_0.wav")  # a training clip that does not decode
    valid.append("up/0badf00d_nohash_0.wav")  # listed, no file
    write_media(src / "marvinn" / "00000001_nohash_0.wav", phrase(0, 1.0, 16000, 599), 16000)
    (src / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (src / "testing_list.txt").write_text("\n".join(test) + "\n")
    return Layout(src=src, expected={"train": 9, "valid": 2, "test": 1}, classes=35,
                  problem="speech_commands_v0.02/marvinn/00000001_nohash_0: ")


def librispeech(root: Path) -> Layout:
    """LibriSpeech/<subset>/<speaker>/<chapter>/ with *.trans.txt listings and FLAC files."""
    src = root / "LibriSpeech"
    for subset, speakers in (("train-clean-100", (19, 26)), ("dev-clean", (84,))):
        for speaker in speakers:
            folder = src / subset / str(speaker) / "198"
            lines = []
            for n in range(3):
                ident = f"{speaker}-198-{n:04d}"
                write_media(folder / f"{ident}.flac", phrase(n % 3, 2.0 + n, 16000, speaker + n),
                            16000)
                lines.append(f"{ident} SOME WORDS SPOKEN HERE")
            if speaker == 19:
                lines.append("19-198-0099 A LINE WHOSE AUDIO IS MISSING")
                lines.append("NOT-AN-ID WITH WORDS")
                ident = "19-198-0098"
                corrupt(folder / f"{ident}.flac")
                lines.append(f"{ident} A BROKEN FILE")
            (folder / f"{speaker}-198.trans.txt").write_text("\n".join(lines) + "\n")
    return Layout(src=root, expected={"train960": 6, "dev": 3}, classes=1,
                  problem="19-198.trans.txt:5: ")


OWN_CLASSES = {"piano": 0, "violin": 1, "trumpet": 2}
OWN_FILES = (("a.wav", 44100, True), ("b.mp3", 22050, False), ("c.flac", 48000, False),
             ("sub/d.ogg", 16000, True))  # name under the class folder, rate, stereo


def folder(root: Path) -> Layout:
    """Your own data: one folder per class (any container, rate and channel count, a nested
    folder), a corrupt file, and a recording left outside every class folder."""
    src = root / "my_sounds"
    for name, label in OWN_CLASSES.items():
        for n, (file, rate, stereo) in enumerate(OWN_FILES):
            seconds = 2.0 + 0.5 * n
            write_media(src / name / file, phrase(label, seconds, rate, 700 + 10 * label + n),
                        rate, stereo=stereo)
    corrupt(src / "violin" / "e.wav")
    write_media(src / "notes.wav", phrase(0, 1.0, 16000, 799), 16000)
    # 4 or 5 clips a class: one of each held out for evaluation (by path hash: violin/e, the
    # corrupt one, stays in train)
    return Layout(src=src, expected={"train": 9, "eval": 3}, classes=3, missing=0,
                  problem="notes.wav: not inside a class folder")


LAYOUTS = {"audioset": audioset, "vggsound": vggsound, "voxceleb1": voxceleb1,
           "kinetics_sounds": kinetics_sounds, "esc50": esc50,
           "speechcommands": speechcommands, "librispeech": librispeech, "folder": folder}
