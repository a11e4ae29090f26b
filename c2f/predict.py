"""Score audio with a trained model: the top classes of each clip.

    python -m c2f.predict RUN_DIR a.wav b.flac ...        # a finished run's final weights
    python -m c2f.predict RUN_DIR recordings/             # every audio or video file under it
    python -m c2f.predict RUN_DIR --manifest eval.json    # every clip of a manifest
    python -m c2f.predict model.pt clip.mp4 --windows     # an exported model; long clips whole
    python -m c2f.predict RUN_DIR night.flac --timeline   # each window's top classes, in time

A clip is decoded (any container PyAV reads), made mono, resampled to the run's rate and cut
or padded to the model's window, exactly as the run's evaluation did; `--windows` scores a
longer clip in consecutive windows and averages their probabilities; `--timeline` also lists
each window's top classes with its start and end (what happens when, in a long recording).
`--json` writes one JSON line per clip instead of the table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from c2f.data.audio import AUDIO_SUFFIXES, audio_files, is_silent, left_out_note, load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import manifest_audio
from c2f.trained import WEIGHTS, Trained, TrainedError, load_trained


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m c2f.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a finished run directory or an exported file")
    parser.add_argument("audio", type=Path, nargs="*",
                        help="audio files to score; a folder stands for every audio or video "
                             "file under it")
    parser.add_argument("--manifest", type=Path, help="score every clip of this manifest too")
    parser.add_argument("--top", type=int, default=5, help="classes shown per clip (5)")
    parser.add_argument("--weights", choices=list(WEIGHTS), default="final",
                        help="a run's final weights or its averaged model (final)")
    parser.add_argument("--windows", action="store_true",
                        help="score every window of a long clip and average them")
    parser.add_argument("--timeline", action="store_true",
                        help="with --windows: each window's top classes, start and end")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--json", action="store_true", help="one JSON line per clip")
    args = parser.parse_args(argv)
    if not args.audio and args.manifest is None:
        if args.model.suffix.lower() in AUDIO_SUFFIXES:
            parser.error(f"{args.model} is an audio file; the first argument is the model (a "
                         "run directory or an exported file): python -m c2f.predict "
                         "RUN_OR_MODEL AUDIO...")
        parser.error("give audio files, --manifest, or both")
    if args.top < 1:
        parser.error("--top must be at least 1")
    args.windows = args.windows or args.timeline
    return args


def expand_folders(paths: list[Path]) -> list[Path]:
    """The files to score: each file as given, each folder as the audio and video files under
    it (sorted); DataError for a folder holding none."""
    found = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        left_out: list[Path] = []
        inside = audio_files(path, left_out)
        if not inside:
            raise DataError(f"{path}: a folder without audio or video files (looked for "
                            f"{', '.join(sorted(AUDIO_SUFFIXES))})")
        if note := left_out_note(left_out):
            print(f"note: {path}: {note}", file=sys.stderr)
        found.extend(inside)
    return found


def clip_windows(wave: torch.Tensor, size: int, whole: bool) -> list[torch.Tensor]:
    """The clip as the model sees it: its first window, or (whole) consecutive windows
    covering it, the last one as long as what is left."""
    if not whole or wave.shape[1] <= size:
        return [wave]
    return [wave[:, start:start + size] for start in range(0, wave.shape[1], size)]


def window_scores(trained: Trained, path: Path, whole: bool
                  ) -> tuple[np.ndarray, float, bool]:
    """(probabilities of each of the clip's windows [windows, classes], seconds of audio,
    whether it is all-silent: its scores are the model's answer to nothing)."""
    wave = load_waveform(path, trained.sample_rate)
    parts = clip_windows(wave, trained.window_samples, whole)
    return trained.probabilities(trained.logits(parts)).numpy(), \
        wave.shape[1] / trained.sample_rate, is_silent(wave)


def score(trained: Trained, path: Path, whole: bool) -> tuple[np.ndarray, int, float]:
    """(mean probabilities over the clip's windows, windows, seconds of audio)."""
    per_window, seconds, _ = window_scores(trained, path, whole)
    return per_window.mean(axis=0), len(per_window), seconds


def ranked(probabilities: np.ndarray, names: list[str], top: int) -> list[tuple[str, float]]:
    """The `top` classes, highest score first (ties in class order)."""
    order = np.argsort(-probabilities, kind="stable")[:top]
    return [(names[i], float(probabilities[i])) for i in order]


def timeline(per_window: np.ndarray, window: float, seconds: float, names: list[str],
             top: int) -> list[dict]:
    """Each window's start and end (seconds) and top classes."""
    return [{"start": round(i * window, 3), "end": round(min((i + 1) * window, seconds), 3),
             "top": [{"class": n, "score": v} for n, v in ranked(probs, names, top)]}
            for i, probs in enumerate(per_window)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        trained = load_trained(args.model, args.weights, args.device)
        files = expand_folders(args.audio) + (manifest_audio(args.manifest) if args.manifest
                                              else [])
    except (TrainedError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    window = trained.window_samples / trained.sample_rate
    if not args.json:
        print(f"model: {trained.source}; {len(trained.class_names)} classes, "
              f"{'sigmoid' if trained.multilabel else 'softmax'} scores, window {window:.2f} s")
    failed = 0
    for path in files:
        try:
            per_window, seconds, silent = window_scores(trained, path, args.windows)
        except DataError as err:
            failed += 1
            unknown = path.is_file() and path.suffix.lower() not in AUDIO_SUFFIXES \
                and "cannot decode audio" in str(err)
            print(f"error: {path}: not an audio file (no decoder reads it)" if unknown
                  else f"error: {err}", file=sys.stderr)
            continue
        parts, names = len(per_window), trained.class_names
        top = ranked(per_window.mean(axis=0), names, args.top)
        steps = timeline(per_window, window, seconds, names, args.top) if args.timeline else []
        if args.json:
            print(json.dumps({"path": str(path), "seconds": round(seconds, 3), "windows": parts,
                              "silent": silent,
                              "top": [{"class": name, "score": value} for name, value in top],
                              **({"timeline": steps} if args.timeline else {})}))
            continue
        cut = f", first {window:.2f} s scored (--windows: all of it)" if (
            seconds > window + 1e-6 and parts == 1) else ""
        quiet = ", all-silent (mono): the scores say nothing of it" if silent else ""
        print(f"\n{path} ({seconds:.2f} s{f', {parts} windows' if parts > 1 else ''}{cut}"
              f"{quiet})")
        for name, value in top:
            print(f"  {value:7.4f}  {name}")
        for step in steps:
            classes = ", ".join(f"{t['class']} {t['score']:.3f}" for t in step["top"])
            print(f"  {step['start']:9.2f} - {step['end']:9.2f} s  {classes}")
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be read (see above)", file=sys.stderr)
    return 1 if failed else 0


def run_cli() -> int:
    """main(), quiet when the reader of its output goes away (`... | head`)."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    sys.exit(run_cli())
