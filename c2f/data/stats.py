"""Normalization statistics (mean, std of the padded fbank) of a training set.

    python -m c2f.data.stats --manifest train.json --labels class_labels_indices.csv

The statistics are those of the clean fbank: no SpecAugment masks, no mixup. AST's
src/get_norm_stats.py runs its training loader (freqm 24, timem 192, mixup 0.5, skip_norm)
and averages per-batch means and stds, so its masked cells (raw fbank 0) raise the mean: -6.20
against -8.30 here on 330 clips of the built-in training set, std 5.80 against 5.83. Clean
statistics describe what the model sees at evaluation and do not depend on the augmentation
settings, so two runs of a sweep over freqm, timem or mixup normalize their input alike; they
are the data's own mean and (population) std. The presets keep AST's published numbers; a run
that wants AST's procedure on other data passes its numbers as dataset.norm_mean/norm_std.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from c2f import features
from c2f.data.audio import load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import Manifest, load_manifest
from c2f.files import atomic_write_text


def compute_stats(manifest: Manifest, sample_rate: int = 16000, num_mel_bins: int = 128,
                  frame_shift_ms: float = 10.0, target_length: int = 1024,
                  max_clips: int = 2000, log=None) -> tuple[float, float]:
    """Mean and std over the fbank of up to `max_clips` evenly spaced clips; unreadable ones
    are left out, and `log` (if given) says how many and the first."""
    sampled = manifest.clips[::max(1, len(manifest.clips) // max_clips)][:max_clips]
    total, total_sq, count = 0.0, 0.0, 0
    bad: list[str] = []
    for clip in sampled:
        try:
            wave = load_waveform(clip.path, sample_rate)
        except DataError as err:
            bad.append(str(err))
            continue
        spec = features.fbank(wave, sample_rate, num_mel_bins, frame_shift_ms)
        spec = features.pad_or_crop_frames(spec, target_length).double()
        total += float(spec.sum())
        total_sq += float((spec * spec).sum())
        count += spec.numel()
    if count == 0:
        raise DataError(f"{manifest.path}: no readable clip to compute statistics from"
                        + (f" (the first: {bad[0]})" if bad else ""))
    if bad and log is not None:
        log(f"WARNING: statistics of {manifest.path} leave out {len(bad)} unreadable clip(s) "
            f"of the {len(sampled)} sampled; the first: {bad[0]}")
    mean = total / count
    return mean, max(total_sq / count - mean * mean, 0.0) ** 0.5


STATS_DIR = "stats"  # beside a manifest (written by `python -m c2f.data.prepare`) or in data_dir


def _stats_key(manifest: Manifest, sample_rate: int, num_mel_bins: int, frame_shift_ms: float,
               target_length: int) -> str:
    """File name of the statistics of this manifest's content under these feature settings."""
    from c2f.spec import config_hash  # spec is a leaf module; imported here to keep data light

    files = manifest.sources or (manifest.path,)
    content = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    key = {"manifest": ",".join(map(str, files)), "sha256": content,
           "sample_rate": int(sample_rate), "num_mel_bins": int(num_mel_bins),
           "frame_shift_ms": float(frame_shift_ms), "target_length": int(target_length)}
    return f"stats-{config_hash(key)}.json"


def cached_stats(cache_dir: Path, manifest: Manifest, sample_rate: int = 16000,
                 num_mel_bins: int = 128, frame_shift_ms: float = 10.0,
                 target_length: int = 1024, log=None) -> tuple[float, float]:
    """compute_stats, cached by manifest content and feature settings: read from the `stats`
    folder beside the manifest (where dataset preparation leaves them) or from `cache_dir`,
    else computed and written to `cache_dir`. A damaged copy is named, and rewritten from the
    good one (or the computed one) where it can be, so it is not met again."""
    log = log or print
    name = _stats_key(manifest, sample_rate, num_mel_bins, frame_shift_ms, target_length)
    cache, damaged, text = Path(cache_dir) / name, [], None
    for path in (manifest.path.parent / STATS_DIR / name, cache):
        if not path.exists():
            continue
        try:
            text = path.read_text()
            cached = json.loads(text)
            mean, std = float(cached["mean"]), float(cached["std"])
            break
        except (OSError, ValueError, KeyError, TypeError) as err:  # a cache: use or compute
            damaged.append((path, f"{type(err).__name__}: {err}"))
            text = None
    if text is None:
        for path, why in damaged:
            log(f"warning: {path} is unreadable ({why}); the normalization statistics are "
                f"computed again, into {cache}")
        mean, std = compute_stats(manifest, sample_rate, num_mel_bins, frame_shift_ms,
                                  target_length, log=log)
        text = json.dumps({"mean": mean, "std": std, "manifest": str(manifest.path),
                           "sample_rate": sample_rate, "num_mel_bins": num_mel_bins,
                           "frame_shift_ms": frame_shift_ms, "target_length": target_length})
        # several ranks may race here: each writes whole, the last rename wins
        atomic_write_text(cache, text)
    else:
        for path, why in damaged:
            log(f"warning: {path} is unreadable ({why}); using {cache}")
    for path, _ in damaged:
        if path == cache:
            continue
        try:
            atomic_write_text(path, text)
            log(f"note: {path} rewritten with the statistics in {cache}")
        except OSError as err:
            log(f"warning: {path} could not be rewritten ({err}); delete or replace it, or "
                "this warning comes back on every run")
    return mean, std


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c2f.data.stats",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--labels", required=True, help="class_labels_indices.csv")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--mel-bins", type=int, default=128)
    parser.add_argument("--target-length", type=int,
                        help="frames each clip is padded or cut to, as the run's "
                             "dataset.target_length (the statistics count the padding): default "
                             "the prepared length (prepared.json beside the manifest), else 1024")
    parser.add_argument("--max-clips", type=int, default=2000)
    args = parser.parse_args(argv)
    length, source = input_length(Path(args.manifest), args.target_length)
    try:
        manifest = load_manifest(args.manifest, args.labels)
        mean, std = compute_stats(manifest, args.sample_rate, args.mel_bins, 10.0,
                                  length, args.max_clips,
                                  log=lambda line: print(line, file=sys.stderr))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    used = min(len(manifest.clips), args.max_clips)
    print(f"statistics of {used} sampled clip(s) at {length} frames ({source}); train with "
          "the same dataset.target_length", file=sys.stderr)
    print(f"dataset.norm_mean={mean:.7f} dataset.norm_std={std:.7f} "
          f"dataset.target_length={length}")
    return 0


def input_length(manifest: Path, given: int | None) -> tuple[int, str]:
    """The frames the statistics pad or cut clips to, and where the number comes from."""
    if given is not None:
        return given, "--target-length"
    try:
        prepared = json.loads((manifest.parent / "prepared.json").read_text())
        return int(prepared["target_length"]), f"prepared.json in {manifest.parent}"
    except PermissionError:
        return 1024, (f"AST's 10 s: {manifest.parent / 'prepared.json'} is not readable by "
                      "this user; --target-length sets the prepared length")
    except (OSError, ValueError, KeyError, TypeError):
        return 1024, "AST's 10 s; --target-length sets another"


if __name__ == "__main__":
    sys.exit(main())
