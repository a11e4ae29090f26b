"""Built-in offline dataset: NSynth-style instrument families rendered from a GM SoundFont."""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from c2f.data.errors import DataError
from c2f.data.synth import Note, Renderer
from c2f.files import folder_mode

FAMILIES = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet",
    "organ", "reed", "string", "synth_lead", "vocal",
)  # fmt: skip
# General-MIDI programs per family (timpani, 47, is left out: it is a drum).
FAMILY_PROGRAMS: dict[str, tuple[int, ...]] = {
    "keyboard": tuple(range(0, 8)),
    "mallet": tuple(range(8, 16)),
    "organ": tuple(range(16, 24)),
    "guitar": tuple(range(24, 32)),
    "bass": tuple(range(32, 40)),
    "string": (*range(40, 47), 48, 49),
    "vocal": (52, 53, 54),
    "brass": tuple(range(56, 64)),
    "reed": tuple(range(64, 72)),
    "flute": tuple(range(72, 80)),
    "synth_lead": tuple(range(80, 88)),
}
# Natural MIDI pitch range (low, high inclusive) of each family.
PITCH_RANGE: dict[str, tuple[int, int]] = {
    "bass": (28, 55), "brass": (43, 77), "flute": (60, 96), "guitar": (40, 76),
    "keyboard": (36, 96), "mallet": (53, 96), "organ": (36, 84), "reed": (45, 82),
    "string": (40, 88), "synth_lead": (48, 84), "vocal": (48, 76),
}  # fmt: skip
GENERATOR_VERSION = 1  # bump when the rendering changes, so old folders are not reused
MID_PREFIX = "/c2f/"
SILENT_PEAK = 1e-4
MAX_TRIES = 8


@dataclass(frozen=True)
class BuiltinParams:
    """What to generate; every field goes into the dataset folder's hash."""

    soundfont: str | None = None
    multilabel: bool = False
    train_per_class: int = 60
    eval_per_class: int = 20
    clip_seconds: float = 2.56
    sample_rate: int = 16000
    seed: int = 0


def default_soundfont() -> Path:
    """Path of TimGM6mb.sf2, the GM SoundFont shipped inside the pretty_midi package."""
    spec = importlib.util.find_spec("pretty_midi")
    path = Path(spec.origin if spec and spec.origin else "pretty_midi").parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise DataError(
            f"{path}: pretty_midi's SoundFont is missing; reinstall pretty_midi or pass soundfont="
        )
    return path


def _soundfont_path(params: BuiltinParams) -> Path:
    """The SoundFont to render with, checked to exist and be .sf2/.sf3."""
    if params.soundfont is None:
        return default_soundfont()
    path = Path(params.soundfont).expanduser().resolve()
    if not path.is_file() or path.suffix.lower() not in (".sf2", ".sf3"):
        raise DataError(
            f"{path}: not an existing .sf2/.sf3 file; set soundfont to a SoundFont path or None"
        )
    return path


def _phrase(rng: np.random.Generator, family: str, seconds: float) -> list[Note]:
    """A short melodic phrase with random onsets, durations, pitches and velocities."""
    low, high = PITCH_RANGE[family]
    count = int(rng.integers(max(2, round(seconds)), max(3, round(3 * seconds)) + 1))
    onsets = np.sort(rng.uniform(0.0, 0.85 * seconds, size=count))
    onsets[0] = rng.uniform(0.0, 0.2 * seconds)
    key = int(rng.integers(low, high + 1))
    notes = []
    for onset in np.sort(onsets):
        key = int(np.clip(key + rng.integers(-7, 8), low, high))
        duration = float(rng.uniform(0.08, 0.8))
        notes.append(Note(float(onset), duration, key, int(rng.integers(50, 128))))
    return notes


def _usable_programs(renderer: Renderer) -> dict[str, list[int]]:
    """Programs of each family that exist in the font and make sound on a probe note."""
    usable: dict[str, list[int]] = {}
    for family in FAMILIES:
        low, high = PITCH_RANGE[family]
        probe = [Note(0.0, 0.3, (low + high) // 2, 100)]
        usable[family] = []
        for program in FAMILY_PROGRAMS[family]:
            if not renderer.has_program(program):
                continue
            if np.abs(renderer.render(program, probe, renderer.rate // 2)).max() > SILENT_PEAK:
                usable[family].append(program)
        if len(usable[family]) < 2:
            raise DataError(
                f"SoundFont has {len(usable[family])} sounding programs for family {family!r} "
                f"(GM {FAMILY_PROGRAMS[family]}); need 2 to hold one out for eval: "
                "use a full GM SoundFont"
            )
    return usable


def _split_programs(usable: dict[str, list[int]], seed: int) -> dict[str, dict[str, list[int]]]:
    """Hold out ~1/4 of each family's programs (at least one) for eval, NSynth-style."""
    splits: dict[str, dict[str, list[int]]] = {"train": {}, "eval": {}}
    for i, family in enumerate(FAMILIES):
        programs = usable[family]
        rng = np.random.default_rng([seed, i, 1])
        held_out = rng.choice(programs, size=max(1, len(programs) // 4), replace=False)
        held = {int(p) for p in held_out}
        splits["eval"][family] = sorted(held)
        splits["train"][family] = [p for p in programs if p not in held]
    return splits


def _make_clip(
    renderer: Renderer,
    rng: np.random.Generator,
    families: list[str],
    programs: dict[str, list[int]],
    params: BuiltinParams,
) -> tuple[np.ndarray, list[int]]:
    """Render one clip mixing one part per family; each part audible, result peak-normalised."""
    n = round(params.clip_seconds * params.sample_rate)
    mix, used = np.zeros(n, dtype=np.float64), []
    for family in families:
        for _ in range(MAX_TRIES):
            program = int(rng.choice(programs[family]))
            part = renderer.render(program, _phrase(rng, family, params.clip_seconds), n)
            if np.abs(part).max() > SILENT_PEAK:
                break
        else:
            raise DataError(
                f"program {program} ({family}) stayed silent in {MAX_TRIES} phrases; "
                "use another SoundFont"
            )
        mix += part / np.abs(part).max() * rng.uniform(0.5, 1.0)
        used.append(program)
    mix *= rng.uniform(0.5, 0.95) / np.abs(mix).max()
    return mix.astype(np.float32), used


def _write_split(
    renderer: Renderer,
    folder: Path,
    split: str,
    programs: dict[str, list[int]],
    params: BuiltinParams,
) -> list[dict]:
    """Render and write one split's WAVs; return its manifest entries."""
    per_class = params.train_per_class if split == "train" else params.eval_per_class
    rng = np.random.default_rng([params.seed, 0 if split == "train" else 1])
    (folder / "audio" / split).mkdir(parents=True)
    entries = []
    for i in range(per_class * len(FAMILIES)):
        families = [FAMILIES[i % len(FAMILIES)]]
        if params.multilabel:
            others = [f for f in FAMILIES if f != families[0]]
            extra = rng.choice(others, size=int(rng.integers(0, 3)), replace=False)
            families += [str(f) for f in extra]
            families.sort(key=FAMILIES.index)
        wave, used = _make_clip(renderer, rng, families, programs, params)
        rel = f"audio/{split}/{split}_{i:05d}_{'+'.join(families)}.wav"
        soundfile.write(folder / rel, wave, params.sample_rate, subtype="PCM_16")
        labels = ",".join(MID_PREFIX + f for f in families)
        entries.append({"wav": rel, "labels": labels, "programs": used})
    return entries


def _folder_name(params: BuiltinParams, font: bytes) -> str:
    """builtin-<hash> of the params, the SoundFont's content and the generator version."""
    font_hash = hashlib.sha256(font).hexdigest()
    key = {**asdict(params), "soundfont": font_hash, "version": GENERATOR_VERSION}
    return "builtin-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _paths(folder: Path) -> dict[str, Path]:
    """The files of a built dataset folder."""
    return {
        "train": folder / "train.json",
        "eval": folder / "eval.json",
        "labels": folder / "class_labels_indices.csv",
        "dir": folder,
    }


def _build(folder: Path, font: bytes, params: BuiltinParams, font_path: Path) -> None:
    """Render the whole dataset into folder (which must not exist yet)."""
    renderer = Renderer(font, params.sample_rate)
    splits = _split_programs(_usable_programs(renderer), params.seed)
    paths = _paths(folder)
    for split in ("train", "eval"):
        entries = _write_split(renderer, folder, split, splits[split], params)
        paths[split].write_text(json.dumps({"data": entries}, indent=1) + "\n")
    with paths["labels"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, MID_PREFIX + fam, fam] for i, fam in enumerate(FAMILIES))
    info = {"params": asdict(params), "soundfont_file": str(font_path), "programs": splits}
    (folder / "info.json").write_text(json.dumps(info, indent=1) + "\n")


def ensure_builtin(root: Path, params: BuiltinParams) -> dict[str, Path]:
    """Build the dataset under root once (atomically) and return its manifest/CSV paths."""
    if min(params.train_per_class, params.eval_per_class) < 1 or params.clip_seconds <= 0:
        raise DataError(f"{params}: train/eval_per_class must be >= 1 and clip_seconds > 0")
    font_path = _soundfont_path(params)
    font = font_path.read_bytes()
    root = Path(root)
    folder = root / _folder_name(params, font)
    paths = _paths(folder)
    if folder.exists():
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise DataError(
                f"{folder}: incomplete built-in dataset (missing {missing}); "
                "delete the folder to rebuild"
            )
        return paths
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=root))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's 0o700 would hide it from the group
        _build(tmp, font, params, font_path)
        os.rename(tmp, folder)
    except OSError:
        if not folder.exists():  # a concurrent builder that won the rename is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI: build the built-in dataset and print its paths and clip counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = BuiltinParams()
    parser.add_argument("--root", type=Path, default=Path("data"))
    parser.add_argument("--soundfont", default=None)
    parser.add_argument("--multilabel", action="store_true")
    parser.add_argument("--train-per-class", type=int, default=defaults.train_per_class)
    parser.add_argument("--eval-per-class", type=int, default=defaults.eval_per_class)
    parser.add_argument("--clip-seconds", type=float, default=defaults.clip_seconds)
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = vars(parser.parse_args(argv))
    paths = ensure_builtin(args.pop("root"), BuiltinParams(**args))
    for name, path in paths.items():
        count = ""
        if name in ("train", "eval"):
            count = f"  ({len(json.loads(path.read_text())['data'])} clips)"
        print(f"{name:6s} {path}{count}")


if __name__ == "__main__":
    main()
