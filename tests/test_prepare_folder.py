"""`python -m c2f.data.prepare folder`: your own recordings (class folders, split folders or a
CSV list) become manifests, a held-out split, an input length and the run.py command that
trains on them. The common checks (counts, reports, 16 kHz mono FLAC, statistics) run in
tests/test_prepare.py over the `folder` miniature."""
from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from c2f.data.audio import audio_files, load_waveform
from c2f.data.manifest import load_manifest, read_label_csv
from c2f.data.prepare.__main__ import main
from c2f.data.prepare.folder import fitting_frames, kaldi_frames
from tests import dataset_layouts
from tests.conftest import read_metrics, run_cli, run_dirs


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """The `folder` miniature: piano, violin, trumpet folders (wav 44.1 kHz stereo, mp3, flac
    48 kHz, ogg in a subfolder), a corrupt file, a stray recording."""
    return dataset_layouts.folder(tmp_path_factory.mktemp("own")).src


def prepare(src: Path, out: Path, *extra: str) -> int:
    return main(["folder", "--src", str(src), "--out", str(out), "--workers", "1",
                 "--no-progress", *extra])


def splits(out: Path) -> dict[str, str]:
    """Clip -> the manifest holding it."""
    found = {}
    for manifest in out.glob("*.json"):
        if manifest.name != "prepared.json":
            for entry in json.loads(manifest.read_text())["data"]:
                found[entry["wav"]] = manifest.stem
    return found


def printed_overrides(stdout: str) -> list[str]:
    [line] = [x for x in stdout.splitlines() if "train with: python run.py " in x]
    return shlex.split(line.split("train with: python run.py ", 1)[1])


@pytest.mark.slow
def test_the_printed_command_trains_coarse_to_fine(downloads, tmp_path, capsys):
    """What a user does: prepare, then paste the printed command (plus a schedule and a tiny
    model). The preset takes the class count, input length and time mask from prepared.json,
    the run stores them in its config, and it reads the prepared statistics."""
    out = tmp_path / "data" / "my_sounds"
    umask = os.umask(0o022)  # a shared data folder: what it writes, others can read
    try:
        assert prepare(downloads, out) == 0
    finally:
        os.umask(umask)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in out.rglob("*") if f.is_file()
            and f.stat().st_mode & 0o777 != 0o644} == {}
    overrides = printed_overrides(capsys.readouterr().out)
    report = json.loads((out / "prepared.json").read_text())
    assert overrides == report["run_overrides"] == [
        "dataset=folder", "dataset.name=my_sounds", f"paths.data_dir={out.parent}"]
    # clips of 2-3.5 s: 95% fit in 348 frames, rounded up to a multiple of 128
    assert report["target_length"] == 384
    assert report["preset_values"] == {"eval_manifest": "eval.json", "num_classes": 3,
                                       "target_length": 384, "timem": 72, "multilabel": False,
                                       "metric": "acc", "loss": "ce"}
    args = [o for o in overrides if not o.startswith("paths.data_dir=")]
    tiny = ["compression=fshift", "schedule=2phase", "dataset.epochs=4", "dataset.batch_size=4",
            "model.embed_dim=32", "model.depth=1", "model.num_heads=2", "optim.warmup_steps=1",
            "trainer.progress=false", "logger=disabled"]
    proc = run_cli([*args, *tiny], tmp_path / "runs", out.parent)
    [run] = run_dirs(tmp_path / "runs")
    stats = report["statistics"]["train"]
    assert f"mean {stats['mean']:.4f}, std {stats['std']:.4f}" in proc.stdout
    assert not (out.parent / "stats").exists()  # read beside the manifest, not recomputed
    plan = json.loads((run / "plan.json").read_text())
    assert [p["input"]["model_frames"] for p in plan["phases"]] == [96, 384]
    assert plan["phases"][-1]["input"]["time_mask"] == 72
    stored = OmegaConf.load(run / "config.yaml").dataset
    assert stored.num_classes == 3 and stored.eval_manifest == str(out / "eval.json")
    records = [r for r in read_metrics(run) if r.get("kind", "epoch") == "epoch"]
    assert [r["samples"] for r in records] == [9] * 4
    assert {r["dataset"] for r in records} == {"my_sounds"}
    # a value on the command line wins over prepared.json's; a folder never prepared is named
    again = run_cli([*args, *tiny, "dataset.target_length=256", "trainer.dry_run=true"],
                    tmp_path / "runs", out.parent)
    assert "256->256" in again.stdout
    assert "masks 48/48" in again.stdout  # the time mask keeps its share: 72 of 384 frames
    missing = run_cli(["dataset=folder", "dataset.name=birds", "logger=disabled"],
                      tmp_path / "runs", out.parent, check=False)
    assert missing.returncode == 2
    assert f"`dataset.prepared`={out.parent / 'birds'}: prepared.json not found" in \
        missing.stderr and "python -m c2f.data.prepare folder" in missing.stderr
    assert f"(prepared in {out.parent}: my_sounds)" in missing.stderr
    # another rate than the folder's: trained (resampled), and said
    resampled = run_cli([*args, *tiny, "dataset.sample_rate=8000", "trainer.dry_run=true"],
                        tmp_path / "runs", out.parent)
    assert f"note: dataset.sample_rate=8000 resamples {out}'s audio, prepared at 16000 Hz; " \
        "what it holds above 4000 Hz is left out" in resampled.stderr
    upsampled = run_cli([*args, *tiny, "dataset.sample_rate=32000", "trainer.dry_run=true"],
                        tmp_path / "runs", out.parent)
    assert "prepared at 16000 Hz; the mel filters above 8000 Hz hear nothing" in \
        upsampled.stderr


def test_the_held_out_split_is_drawn_by_path_not_by_order(downloads, tmp_path, capsys):
    """Each class of 2+ clips gives at least one clip and keeps one; the draw depends on the
    paths only, so a new class or a new order leaves every other clip where it was."""
    first = tmp_path / "a"
    assert prepare(downloads, first) == 0
    drawn = splits(first)
    per_class: dict[tuple[str, str], int] = {}
    for wav, split in drawn.items():
        key = (wav.split("/")[1], split)
        per_class[key] = per_class.get(key, 0) + 1
    assert all(per_class[(c, "eval")] == 1 for c in dataset_layouts.OWN_CLASSES)
    grown = tmp_path / "grown"
    shutil.copytree(downloads, grown)
    for n in range(3):
        dataset_layouts.write_media(grown / "flute" / f"{n}.wav",
                                    dataset_layouts.phrase(3, 1.0, 16000, n), 16000)
    assert prepare(grown, tmp_path / "b") == 0
    again = splits(tmp_path / "b")
    assert {w: s for w, s in again.items() if "/flute/" not in w} == drawn
    assert sorted(s for w, s in again.items() if "/flute/" in w) == ["eval", "train", "train"]
    _, names = read_label_csv(tmp_path / "b" / "class_labels_indices.csv")
    assert names == ["flute", "piano", "trumpet", "violin"]  # classes in name order
    inside = grown / "prepared"  # an output folder inside --src: its clips are not a class
    assert prepare(grown, inside) == 0 and prepare(grown, inside) == 0
    assert splits(inside) == again
    assert "earlier output" not in (inside / "problems.txt").read_text()
    assert prepare(grown, tmp_path / "c") == 0  # nor is an earlier output, prepared again
    assert splits(tmp_path / "c") == again      # elsewhere
    assert "prepared/: an earlier output of c2f.data.prepare (it holds prepared.json); left " \
        "out" in (tmp_path / "c" / "problems.txt").read_text()
    assert prepare(downloads, tmp_path / "half", "--eval-fraction", "0.5") == 0
    # 2 of the 4 clips of each class: drawn among the clips that decode, so the corrupt
    # violin/e (listed, never converted) takes no held-out place
    half = splits(tmp_path / "half")
    assert sorted(w.split("/")[1] for w, s in half.items() if s == "eval") == [
        "piano", "piano", "trumpet", "trumpet", "violin", "violin"]
    capsys.readouterr()


def test_groups_are_held_out_whole(downloads, tmp_path, capsys):
    """`--group-by-folder` (`<class>/<session>/<clip>`) and a CSV's `group` column: no group
    has clips on both sides, and every class still gives and keeps some."""
    src = tmp_path / "sessions"
    rows = ["file,label,group"]
    for name in ("piano", "violin"):
        for n, file in enumerate(("a.wav", "b.mp3", "c.flac", "sub/d.ogg", "a.wav", "b.mp3")):
            session = f"s{n // 2}"
            target = src / name / session / f"{n}{Path(file).suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(downloads / name / file, target)
            rows.append(f"{target.relative_to(src)},{name},{name}-{session}")
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    for extra in (["--group-by-folder"], ["--lists", str(tmp_path / "clips.csv")]):
        out = tmp_path / f"out{len(extra)}"
        assert prepare(src, out, "--eval-fraction", "0.3", *extra) == 0
        sides: dict[str, set[str]] = {}
        for wav, split in splits(out).items():
            sides.setdefault(wav.rsplit("/", 1)[0], set()).add(split)  # audio/<class>/<session>
        assert len(sides) == 6 and all(len(s) == 1 for s in sides.values()), sides
        for name in ("piano", "violin"):
            assert {next(iter(s)) for g, s in sides.items() if f"/{name}/" in g} == {
                "train", "eval"}
    capsys.readouterr()


def test_a_group_spanning_classes_never_takes_a_class_whole():
    """One group holds the only clips of class b: holding it out would leave b nothing to
    train on, so it stays, and class a's share comes from other groups."""
    from c2f.data.prepare.folder import draw_eval
    from c2f.data.prepare.registry import Entry

    def entry(key: str, label: str) -> Entry:
        return Entry(key=key, labels=(label,), split="train", where=key, ident=key, found=None)

    entries = [entry("g/1", "a"), entry("g/2", "b"), entry("g/3", "b"),
               *(entry(f"x{i}", "a") for i in range(8))]
    groups = {"g/1": "g", "g/2": "g", "g/3": "g"}
    for fraction in (0.1, 0.5, 0.9):
        split = {e.key: e.split for e in draw_eval(entries, fraction, groups)}
        assert {split["g/1"], split["g/2"], split["g/3"]} == {"train"}
        assert 1 <= sum(s == "eval" for s in split.values()) <= 8


def test_clips_already_in_the_output_format_are_linked_not_copied(tmp_path, capsys):
    """16 kHz mono 16-bit FLAC (LibriSpeech's format) is hard-linked into audio/: no second
    copy, and it survives the download's deletion; anything else (another rate, 24-bit, a
    truncated file) is converted as before."""
    import numpy as np
    import soundfile

    src = tmp_path / "src"
    wave = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    for name, rate, subtype in (("a/plain.flac", 16000, "PCM_16"), ("a/rate.flac", 22050,
                                "PCM_16"), ("b/deep.flac", 16000, "PCM_24"),
                                ("b/plain.flac", 16000, "PCM_16")):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(src / name, wave, rate, subtype=subtype)
    cut = (src / "b" / "plain.flac").read_bytes()
    (src / "b" / "cut.flac").write_bytes(cut[: len(cut) // 2])
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    linked = {p.relative_to(out / "audio").as_posix() for p in (out / "audio").rglob("*.flac")
              if p.stat().st_ino == (src / p.relative_to(out / "audio")).stat().st_ino}
    assert linked == {"a/plain.flac", "b/plain.flac"}
    (src / "a" / "plain.flac").unlink()
    torch.testing.assert_close(load_waveform(out / "audio" / "a" / "plain.flac"),
                               load_waveform(out / "audio" / "b" / "plain.flac"))
    # 24 bits stay 24 bits: a quiet recording keeps its detail (16 bits kept 3 levels of it)
    assert soundfile.info(str(out / "audio" / "b" / "deep.flac")).subtype == "PCM_24"
    capsys.readouterr()


def test_class_balance_is_reported(downloads, tmp_path, capsys):
    """The training clips' spread over the classes, with the sampler hint when it is 10x or
    more, and a class that has no training clip named."""
    src = tmp_path / "skew"
    for n in range(12):
        (src / "train" / "piano").mkdir(parents=True, exist_ok=True)
        shutil.copy(downloads / "piano" / "a.wav", src / "train" / "piano" / f"{n}.wav")
    for name, folder in (("trumpet", "train"), ("violin", "test"), ("trumpet", "test")):
        (src / folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(downloads / name / "a.wav", src / folder / name / "a.wav")
    assert prepare(src, tmp_path / "out") == 0
    said = capsys.readouterr().out
    assert "WARNING: train.json has no clip of 1 class(es): violin" in said
    assert "train.json: 1 to 12 clips a class; dataset.balanced_sampler=true" in said


def test_split_folders_name_the_manifests(downloads, tmp_path, capsys, monkeypatch):
    """`train/<class>/` beside `Test/<class>/`: no draw; the test split is scored. Without
    --out the data lands in $C2F_ROOT/data/<the source folder's name>."""
    src = tmp_path / "split"
    for name in dataset_layouts.OWN_CLASSES:
        for file in ("a.wav", "b.mp3"):
            (src / "train" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(downloads / name / file, src / "train" / name / file)
        (src / "Test" / name).mkdir(parents=True)
        shutil.copy(downloads / name / "c.flac", src / "Test" / name / "c.flac")
    out = tmp_path / "data" / "split"
    monkeypatch.setenv("C2F_ROOT", str(tmp_path))
    assert main(["folder", "--src", str(src), "--workers", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["prepared.json", "test.json",
                                                          "train.json"]
    assert len(load_manifest(out / "test.json", out / "class_labels_indices.csv").clips) == 3
    capsys.readouterr()
    values = json.loads((out / "prepared.json").read_text())["preset_values"]
    assert values["eval_manifest"] == "test.json"


def test_a_csv_list_makes_multilabel_data(downloads, tmp_path, capsys):
    """file,labels,split rows: several labels in a cell, a listed file that is not there, a
    row without a label; the run command asks for BCE and mAP."""
    rows = ["path,labels,split", "piano/a.wav,piano,train", '"violin/b.mp3","violin;piano",train',
            "trumpet/c.flac,trumpet|violin,TRAIN", "piano/b.mp3,piano,eval",
            "violin/a.wav,violin,eval", "trumpet/gone.wav,trumpet,train",
            "trumpet/a.wav,,train", "piano/a.wav,piano,train", "piano/b.mp3,violin,eval"]
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "tags"
    assert prepare(downloads, out, "--lists", str(tmp_path / "clips.csv")) == 0
    capsys.readouterr()
    values = json.loads((out / "prepared.json").read_text())["preset_values"]
    assert (values["multilabel"], values["metric"], values["loss"]) == (True, "mAP", "bce")
    train = load_manifest(out / "train.json", out / "class_labels_indices.csv")
    assert sorted(len(c.label_ids) for c in train.clips) == [1, 2, 2]
    assert (out / "missing.txt").read_text().startswith("trumpet/gone.wav\tclips.csv:7")
    problems = (out / "problems.txt").read_text()
    assert problems.startswith("clips.csv:8: a row needs a file")
    # a row again: said, and when its labels disagree, with both (a relabelling appended to a
    # sheet does not win silently)
    assert "clips.csv:9: piano/a.wav is listed again (first at clips.csv:2); kept once" in \
        problems
    assert "clips.csv:10: piano/b.mp3 is listed again with other labels (/m/own002; first: " \
        "/m/own000) (first at clips.csv:5); kept once, as first listed" in problems


def test_a_class_list_fixes_the_outputs_and_leaves_other_classes_out(downloads, tmp_path,
                                                                     capsys):
    """`--classes` in either form: its order is the model's output order, a
    class_labels_indices.csv brings its mids (matched by name or mid), clips of unlisted
    classes are left out and said so, and a multi-label clip keeps its listed labels."""
    (tmp_path / "two.txt").write_text("violin\n\npiano\n")
    out = tmp_path / "two"
    assert prepare(downloads, out, "--classes", str(tmp_path / "two.txt")) == 0
    capsys.readouterr()
    mids, names = read_label_csv(out / "class_labels_indices.csv")
    assert names == ["violin", "piano"] and mids == {"/m/own000": 0, "/m/own001": 1}
    clips = {(Path(c.path).relative_to(out / "audio").parts[0], c.label_ids)
             for split in ("train", "eval")
             for c in load_manifest(out / f"{split}.json", out / "class_labels_indices.csv").clips}
    assert clips == {("violin", (0,)), ("piano", (1,))}
    problems = (out / "problems.txt").read_text()
    trumpets = len(audio_files(downloads / "trumpet"))
    assert problems.count("'trumpet' not in --classes") == trumpets > 0
    assert "clip left out" in problems
    values = json.loads((out / "prepared.json").read_text())["preset_values"]
    assert values["num_classes"] == 2

    (tmp_path / "labels.csv").write_text(
        "index,mid,display_name\n0,/m/07y_7,violin\n1,/m/05r5c,Piano\n")
    rows = ["file,labels", "piano/a.wav,/m/05r5c", "piano/b.mp3,/m/05r5c",
            "violin/a.wav,violin;trumpet", "violin/b.mp3,violin", "trumpet/a.wav,trumpet"]
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mids"
    assert prepare(downloads, out, "--lists", str(tmp_path / "clips.csv"),
                   "--classes", str(tmp_path / "labels.csv")) == 0
    capsys.readouterr()
    assert read_label_csv(out / "class_labels_indices.csv") == (
        {"/m/07y_7": 0, "/m/05r5c": 1}, ["violin", "Piano"])
    labels = sorted(c.label_ids for split in ("train", "eval") for c in
                    load_manifest(out / f"{split}.json", out / "class_labels_indices.csv").clips)
    assert labels == [(0,), (0,), (1,), (1,)]
    problems = (out / "problems.txt").read_text()
    assert "clips.csv:4: 'trumpet' not in --classes" in problems
    assert "dropped from the clip" in problems and "clips.csv:6: 'trumpet'" in problems


@pytest.mark.parametrize("case, extra, message", [
    ("empty", [], "no class found"),
    ("one clip a class", [], "no class has two clips"),
    ("one class", [], "one class found ('recordings'), and a classifier needs two; if the "),
    ("bad out", ["--out", "{tmp}/my sounds"], "is not a name a run.py override reads as text"),
    ("number out", ["--out", "{tmp}/2024"], "'2024' is not a name a run.py override reads"),
    ("fraction", ["--eval-fraction", "1.5"], "--eval-fraction 1.5"),
    ("header", ["--lists", "{tmp}/bad.csv"], "the header must name a file column"),
    ("semicolons", ["--lists", "{tmp}/excel.csv"], "it is 'file;label'; its columns are "
     "separated by semicolons (';'): save it comma-separated"),
    ("no rows", ["--lists", "{tmp}/empty.csv"], "empty.csv: no row with a file and a label"),
    ("classes: one", ["--classes", "{tmp}/one.txt"], "one.txt: one class listed"),
    ("classes: twice", ["--classes", "{tmp}/twice.txt"], "'cello' listed more than once"),
    ("classes: unknown", ["--classes", "{tmp}/other.txt"], "none of its classes has a clip; "
     "it names classes by folder name or CSV label (or mid), and the clips' classes are "
     "'piano', 'trumpet', 'violin'"),
    ("classes: typo", ["--classes", "{tmp}/typo.txt"], "typo.txt: no clip has class 'pianos', "
     "while the clips of 'piano' are left out as not listed: did you mean 'piano'?"),
])
def test_unusable_input_is_refused_with_the_fix(downloads, tmp_path, capsys, case, extra,
                                                message):
    src = tmp_path / "src"
    src.mkdir()
    if case == "one clip a class":
        for name in ("piano", "violin"):
            (src / name).mkdir()
            shutil.copy(downloads / name / "a.wav", src / name / "a.wav")
    if case == "one class":  # --src one level too high
        shutil.copytree(downloads, src / "recordings")
    if case.startswith("classes"):
        shutil.copytree(downloads, src, dirs_exist_ok=True)
    (tmp_path / "one.txt").write_text("piano\n")
    (tmp_path / "twice.txt").write_text("cello\npiano\ncello\n")
    (tmp_path / "other.txt").write_text("cello\nflute\n")
    (tmp_path / "typo.txt").write_text("violin\npianos\n")
    (tmp_path / "bad.csv").write_text("name,tag\na.wav,piano\n")
    (tmp_path / "excel.csv").write_text("file;label\na.wav;piano\n")  # a European Excel's
    (tmp_path / "empty.csv").write_text("file,label\n")
    extra = [x.format(tmp=tmp_path) for x in extra]
    args = ["folder", "--src", str(src), "--workers", "1", "--no-progress", *extra]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("out", "my sounds", "2024"))


def test_input_length_from_clip_lengths():
    assert kaldi_frames(16000) == 98 and kaldi_frames(160000) == 998 and kaldi_frames(399) == 0
    assert fitting_frames([98] * 20) == 128            # 1 s clips: Speech Commands' 128
    assert fitting_frames([498] * 20) == 512           # 5 s: ESC-50's 512
    assert fitting_frames([998] * 19 + [6000]) == 1024  # one long outlier does not count
    assert fitting_frames([998] * 10 + [6000] * 10) == 6016
