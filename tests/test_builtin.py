"""Built-in SoundFont dataset: determinism, caching, held-out programs, audio sanity."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from c2f.data import DataError, check_files, load_manifest, load_waveform, read_label_csv
from c2f.data.builtin import (
    FAMILIES,
    FAMILY_PROGRAMS,
    BuiltinParams,
    default_soundfont,
    ensure_builtin,
    main,
)
from c2f.data.synth import Note, Renderer

TINY = BuiltinParams(train_per_class=2, eval_per_class=1, clip_seconds=0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny single-label build shared by the tests of this module."""
    return ensure_builtin(tmp_path_factory.mktemp("root"), TINY)


@pytest.fixture(scope="module")
def tiny_multi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny multilabel build."""
    return ensure_builtin(tmp_path_factory.mktemp("root"), replace(TINY, multilabel=True))


def entries(path: Path) -> list[dict]:
    """The raw manifest entries."""
    return json.loads(path.read_text())["data"]


def tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def test_layout_and_label_csv(tiny: dict[str, Path]) -> None:
    assert tiny["dir"].name.startswith("builtin-")
    assert all(tiny[k].parent == tiny["dir"] for k in ("train", "eval", "labels"))
    mids, names = read_label_csv(tiny["labels"])
    assert names == list(FAMILIES)
    assert set(mids) == {f"/c2f/{f}" for f in FAMILIES}
    assert [e["labels"] for e in entries(tiny["train"])] == [f"/c2f/{f}" for f in FAMILIES] * 2
    assert len(entries(tiny["eval"])) == len(FAMILIES)
    assert not [p for p in tiny["dir"].parent.iterdir() if p.name.startswith(".tmp")]


def test_build_is_deterministic(tiny: dict[str, Path], tmp_path: Path) -> None:
    again = ensure_builtin(tmp_path, TINY)
    assert again["dir"].name == tiny["dir"].name
    assert tree(again["dir"]) == tree(tiny["dir"])


def test_folder_is_as_readable_as_mkdir_makes_it(tiny: dict[str, Path]) -> None:
    """A lab's shared data folder: the group reads the dataset (mkdtemp's 0o700 hid it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    assert tiny["dir"].stat().st_mode & 0o777 == 0o777 & ~mask


def test_second_call_reuses_folder(tiny: dict[str, Path]) -> None:
    files = sorted(p for p in tiny["dir"].rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert ensure_builtin(tiny["dir"].parent, TINY) == tiny
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_param_change_uses_new_folder(tiny: dict[str, Path]) -> None:
    other = ensure_builtin(tiny["dir"].parent, replace(TINY, seed=1))
    assert other["dir"] != tiny["dir"]
    assert tiny["train"].exists()
    assert tree(other["dir"])["train.json"] != tree(tiny["dir"])["train.json"]


def test_eval_programs_are_held_out(tiny: dict[str, Path]) -> None:
    info = json.loads((tiny["dir"] / "info.json").read_text())["programs"]
    for family in FAMILIES:
        train, held = set(info["train"][family]), set(info["eval"][family])
        assert train and held and not train & held
        assert train | held <= set(FAMILY_PROGRAMS[family])
    used = {s: {p for e in entries(tiny[s]) for p in e["programs"]} for s in ("train", "eval")}
    assert used["eval"] and not used["train"] & used["eval"]
    for e in entries(tiny["eval"]):
        family = e["labels"].removeprefix("/c2f/")
        assert e["programs"][0] in info["eval"][family]


def test_clips_are_real_16k_mono_audio(tiny: dict[str, Path]) -> None:
    for split in ("train", "eval"):
        manifest = load_manifest(tiny[split], tiny["labels"])
        assert check_files(manifest)[1] == []
        for clip in manifest.clips:
            info = soundfile.info(str(clip.path))
            got = (info.samplerate, info.channels, info.frames, info.subtype)
            assert got == (16000, 1, 8000, "PCM_16")
            wave = load_waveform(clip.path)  # raises on NaN clips; the peak rules out silence
            assert 0.4 < wave.abs().max() <= 1.0


def test_clips_of_a_class_differ_in_time(tiny: dict[str, Path]) -> None:
    clips = load_manifest(tiny["train"], tiny["labels"]).clips
    for family in range(len(FAMILIES)):
        a, b = (load_waveform(c.path)[0].numpy() for c in clips if c.label_ids == (family,))
        env_a, env_b = (np.sqrt((w.reshape(-1, 160) ** 2).mean(axis=1)) for w in (a, b))
        env_a, env_b = env_a / env_a.max(), env_b / env_b.max()
        assert np.abs(env_a - env_b).max() > 0.2, FAMILIES[family]


def test_multilabel_clips_have_one_to_three_families(tiny_multi: dict[str, Path]) -> None:
    counts = []
    for split in ("train", "eval"):
        manifest = load_manifest(tiny_multi[split], tiny_multi["labels"])
        for clip, entry in zip(manifest.clips, entries(tiny_multi[split])):
            assert 1 <= len(clip.label_ids) <= 3
            assert len(set(clip.label_ids)) == len(clip.label_ids) == len(entry["programs"])
            counts.append(len(clip.label_ids))
            load_waveform(clip.path)
    assert max(counts) > 1


def test_bad_soundfont_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.sf2"):
        ensure_builtin(tmp_path, BuiltinParams(soundfont=str(tmp_path / "nope.sf2")))


def test_cli_prints_paths_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = ["--train-per-class", "1", "--eval-per-class", "1", "--clip-seconds", "0.3"]
    main(["--root", str(tmp_path), *sizes])
    out = capsys.readouterr().out
    assert f"({len(FAMILIES)} clips)" in out
    assert str(tmp_path) in out and "class_labels_indices.csv" in out


def test_render_does_not_depend_on_earlier_renders() -> None:
    font = default_soundfont().read_bytes()
    phrase = [Note(0.0, 0.2, 60, 100), Note(0.1, 0.3, 67, 80)]
    fresh = Renderer(font, 16000).render(0, phrase, 8000)
    used = Renderer(font, 16000)
    used.render(48, [Note(0.0, 2.0, 50, 127), Note(0.05, 2.0, 57, 127)], 4000)  # cut mid-note
    assert np.abs(fresh).max() > 0.01
    assert np.array_equal(used.render(0, phrase, 8000), fresh)
