"""Dataset preparation speed: VGGSound-like 10 s mp4 clips (AAC 44.1 kHz stereo + a video
stream) through `python -m c2f.data.prepare vggsound`, with 1 and 2 worker processes, and
where one clip's time goes (decode, resample, write).

    python -m bench.prepare_speed --out bench/results_prepare.md [--clips 60]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results_table import cpu_model
from c2f.data.prepare.decode import Segment, decode, fit, write_atomic
from tests.dataset_layouts import phrase, write_media, youtube_id

ROOT = Path(__file__).resolve().parents[1]


def build(src: Path, clips: int) -> None:
    """`clips` released VGGSound clips and their vggsound.csv rows."""
    rows = []
    for n in range(clips):
        ident = youtube_id(n)
        write_media(src / f"{ident}_000030.mp4", phrase(n % 3, 10.0, 44100, n), 44100,
                    stereo=True, video=True)
        rows.append([ident, 30, f"class {n % 3}", "test" if n % 5 == 0 else "train"])
    with (src / "vggsound.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def prepare_seconds(src: Path, out: Path, workers: int) -> float:
    """Wall seconds of one fresh preparation (statistics off: they are not conversion)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "c2f.data.prepare", "vggsound", "--src", str(src),
                    "--out", str(out), "--workers", str(workers), "--no-progress",
                    "--no-stats"], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def stages(src: Path, out: Path) -> dict[str, float]:
    """Median milliseconds per clip of each step, in this process."""
    times: dict[str, list[float]] = {"decode": [], "resample": [], "write": []}
    for path in sorted(src.glob("*.mp4"))[:20]:
        t0 = time.perf_counter()
        samples, rate = decode(path, Segment(0.0, 10.0))
        t1 = time.perf_counter()
        wave = fit(samples, rate, 16000, 10.0)
        t2 = time.perf_counter()
        write_atomic(out / f"{path.stem}.flac", wave, 16000, "flac")
        t3 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(1000 * seconds)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_prepare.md")
    parser.add_argument("--clips", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, scratch = Path(tmp) / "src", Path(tmp) / "scratch"
        src.mkdir()
        scratch.mkdir()
        build(src, args.clips)
        per_stage = stages(src, scratch)
        walls = {w: prepare_seconds(src, Path(tmp) / f"out{w}", w) for w in (1, 2)}
    lines = [
        "# Dataset preparation speed", "",
        f"`python -m bench.prepare_speed --clips {args.clips}` on {cpu_model()}: "
        f"{args.clips} VGGSound-like clips (10 s, AAC 44.1 kHz stereo in mp4 with a video "
        "stream) -> 16 kHz mono FLAC. Wall time of the whole command, including Python and "
        "torch start-up and the manifests.", "",
        "| workers | wall s | clips/s | audio hours per hour |", "|---|---|---|---|"]
    for workers, wall in walls.items():
        lines.append(f"| {workers} | {wall:.1f} | {args.clips / wall:.1f} | "
                     f"{args.clips * 10 / wall:.0f} |")
    lines += ["", "One clip, median ms (20 clips, one process):", "",
              "| decode (PyAV) | resample to 16 kHz | write FLAC |", "|---|---|---|",
              f"| {per_stage['decode']:.1f} | {per_stage['resample']:.1f} | "
              f"{per_stage['write']:.1f} |", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
