"""What a folder of recordings may hold besides clean class folders: a class called `train`,
two recordings of one name, links, files cut short, fixed or deeper than 16 bits, an output
folder that cannot take the data, and a preparation of one's own with a stray label
(`python -m c2f.data.prepare folder`, c2f/data/prepare/)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile
from omegaconf import OmegaConf

from c2f.data.manifest import read_label_csv
from c2f.data.prepare.__main__ import main
from tests import dataset_layouts
from tests.test_prepare_folder import prepare, splits


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """The `folder` miniature (tests/dataset_layouts.py): piano, violin, trumpet folders."""
    return dataset_layouts.folder(tmp_path_factory.mktemp("own")).src


def test_truncated_and_changed_sources_and_a_class_never_scored(tmp_path, capsys):
    """A WAV cut short is refused as training would refuse it (not converted to half a clip);
    a source fixed after its conversion (another size) is converted again, a plain copy of the
    sources is not; a class whose only clip is in training is named as never scored."""
    import numpy as np
    import soundfile

    src = tmp_path / "src"
    wave = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    for name in ("a/1", "a/2", "a/3", "b/1", "b/2", "b/3", "c/1"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(src / f"{name}.wav", wave, 22050)
    whole = (src / "a" / "3.wav").read_bytes()
    (src / "a" / "3.wav").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    said = capsys.readouterr().out
    assert "truncated audio (header declares more data than the file holds)" in \
        (out / "failed.txt").read_text()
    assert not (out / "audio" / "a" / "3.flac").exists()
    assert "WARNING: eval.json has no clip of 1 class(es): c (never scored)" in said
    (src / "a" / "3.wav").write_bytes(whole)  # fixed: converted now
    soundfile.write(src / "b" / "1.wav", np.concatenate([wave, wave]), 22050)  # replaced
    assert prepare(src, out) == 0
    said = capsys.readouterr().out
    assert "1 source file(s) changed size since they were converted: converting them again" \
        in said
    twice = np.ceil(2 * 16000 * 16000 / 22050)  # 2 s of 22.05 kHz samples, at 16 kHz
    assert soundfile.info(str(out / "audio" / "b" / "1.flac")).frames == twice
    assert soundfile.info(str(out / "audio" / "a" / "3.flac")).frames > 0
    assert "converted 2, skipped 5 already converted" in said
    copied = tmp_path / "copied"  # a plain copy (new modification times, the same files)
    shutil.copytree(src, copied, copy_function=shutil.copy)
    assert prepare(copied, out) == 0
    assert "converted 0, skipped 7 already converted" in capsys.readouterr().out
    # a source overwritten by a broken copy: its earlier clip leaves the manifests, said so
    good = (copied / "b" / "2.wav").read_bytes()
    (copied / "b" / "2.wav").write_bytes(good[: len(good) // 3])
    assert prepare(copied, out) == 0
    assert f"WARNING: 1 clip(s) converted before fail now that their source changed (e.g. " \
        f"{copied / 'b' / '2.wav'}: truncated audio" in capsys.readouterr().out
    assert "b/2.flac" not in (out / "train.json").read_text() + (out / "eval.json").read_text()


def test_sources_of_more_than_16_bits_keep_them_and_cuts_at_full_scale_are_said(tmp_path,
                                                                              capsys):
    """A quiet 24-bit recording keeps its detail; a float source peaking beyond full scale is
    cut to +-1 in FLAC, which the preparation says, and kept as float with --format wav."""
    import numpy as np
    import soundfile

    src = tmp_path / "src"
    quiet = (3e-5 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)  # -90 dBFS
    hot = (4.0 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    for name, wave, subtype in (("a/quiet.wav", quiet, "PCM_24"), ("a/hot.wav", hot, "FLOAT"),
                                ("b/x.wav", quiet, "PCM_24"), ("b/y.wav", quiet, "PCM_24")):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(src / name, wave, 16000, subtype=subtype)
    square = np.sign(np.sin(np.arange(44100) * 0.05)) * 0.999  # resampled, it rings past 1:
    soundfile.write(src / "b" / "square.wav", square, 44100, subtype="PCM_16")  # not said
    assert prepare(src, tmp_path / "flac") == 0
    said = capsys.readouterr().out
    assert "WARNING: 1 clip(s) of 24-bit or float sources go beyond full scale and were cut to " \
        "+-1 (the loudest, a/hot, peaks at 4.00)" in said
    kept, _ = soundfile.read(tmp_path / "flac" / "audio" / "a" / "quiet.flac", dtype="float32")
    assert np.abs(kept - quiet).max() < 1e-6  # 16 bits: errors up to 1.5e-5, half the signal
    assert np.abs(soundfile.read(tmp_path / "flac" / "audio" / "a" / "hot.flac")[0]).max() <= 1
    assert prepare(src, tmp_path / "wav", "--format", "wav") == 0
    assert "beyond full scale" not in capsys.readouterr().out
    floats, _ = soundfile.read(tmp_path / "wav" / "audio" / "a" / "hot.wav", dtype="float32")
    assert np.abs(floats - hot).max() < 1e-5


def test_a_class_named_train_and_two_recordings_of_one_name(downloads, tmp_path, capsys):
    """ESC-50 has a class called `train`: a `train/` folder of clips is a class, not the
    training split. `x.mp3` beside `x.flac` are two recordings, both kept."""
    src = tmp_path / "vehicles"
    for name, label in (("train", "piano"), ("car", "violin"), ("plane", "trumpet")):
        (src / name).mkdir(parents=True)
        for file in ("a.wav", "b.mp3", "c.flac", "d.ogg"):
            shutil.copy(downloads / label / file.replace("d.ogg", "sub/d.ogg"),
                        src / name / file)
    shutil.copy(downloads / "violin" / "b.mp3", src / "car" / "a.mp3")  # beside car/a.wav
    shutil.copy(downloads / "violin" / "a.wav", src / "car" / "a.mp3.wav")  # and its name
    (src / "plane" / "z_link.wav").symlink_to(src / "plane" / "a.wav")  # one recording
    wave, rate = soundfile.read(src / "car" / "c.flac")
    soundfile.write(src / "car" / "e.caf", wave, rate, format="CAF")  # Apple's container
    for other in ("car/notes.txt", "plane/cover.jpg", "plane/take2.txt", "train/README"):
        (src / other).write_text("not audio")
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    log = capsys.readouterr().out
    _, names = read_label_csv(out / "class_labels_indices.csv")
    assert names == ["car", "plane", "train"]
    clips = splits(out)
    assert len(clips) == 15 and {"audio/car/a.wav.flac", "audio/car/a.mp3.flac",
                                 "audio/car/a.mp3.wav.flac", "audio/car/e.flac"} <= set(clips)
    assert "audio/train/b.flac" in clips
    problems = (out / "problems.txt").read_text()
    # the files that are not audio are counted by suffix, in the log and in problems.txt
    note = "4 file(s) left out, not audio by their suffix (.txt 2, .jpg 1, (no suffix) 1)"
    assert note in problems and note in log
    assert "listed again" not in problems and "audio/plane/z_link.flac" not in clips
    assert "plane/z_link.wav: the same file as plane/a.wav (a link); used once" in problems


def test_a_stray_file_keeps_the_split_layout_and_a_dangling_link_fails_alone(downloads,
                                                                           tmp_path, capsys):
    """train/<class>/ beside test/<class>/ with one file directly in train/ stays the split
    layout (the stray file is said); a link to a file that is gone is one failed clip, not the
    end of the preparation."""
    src = tmp_path / "split"
    for name in ("piano", "violin"):
        for file in ("a.wav", "b.mp3"):
            (src / "train" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(downloads / name / file, src / "train" / name / file)
        (src / "test" / name).mkdir(parents=True)
        shutil.copy(downloads / name / "c.flac", src / "test" / name / "c.flac")
    shutil.copy(downloads / "piano" / "a.wav", src / "train" / "stray.wav")
    (src / "train" / "piano" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    capsys.readouterr()
    assert sorted(splits(out).values()) == ["test", "test", "train", "train", "train", "train"]
    _, names = read_label_csv(out / "class_labels_indices.csv")
    assert names == ["piano", "violin"]
    assert "train/stray.wav: not inside a class folder" in (out / "problems.txt").read_text()
    assert "gone.wav\tcannot read it (No such file or directory)" in \
        (out / "failed.txt").read_text()


def test_a_prepared_folder_another_user_cannot_read_says_so(tmp_path, monkeypatch):
    """A lab's shared data folder that this user may not read: the error is about permissions
    (and names chmod), not "prepare the data there first"."""
    from c2f.prepared import fill_prepared
    from c2f.spec import ConfigError

    (tmp_path / "prepared.json").write_text("{}")
    real = Path.read_text

    def refuse(path, *args, **kwargs):
        if path.name == "prepared.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError, match=r"cannot be read by this user \(Permission denied\); "
                                          r"ask its owner .* \(chmod -R a\+rX "):
        fill_prepared(OmegaConf.create({"dataset": {"prepared": str(tmp_path)}}))


def test_an_output_folder_that_cannot_take_the_data_is_named_first(downloads, tmp_path, capsys):
    """--out that is --src, lies under a file, or (for a paper dataset) has a name its preset
    does not read: refused before any clip is converted, with the folder to give instead."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for argv, said in (
            (["folder", "--src", str(downloads), "--out", str(downloads)],
             "the output goes to a folder of its own, not into --src"),
            (["folder", "--src", str(downloads), "--out", str(blocker / "sounds")],
             f"cannot write there (Not a directory: {blocker}); choose a folder you can write"),
            (["esc50", "--src", str(downloads), "--out", str(tmp_path / "esc")],
             f"the esc50 preset reads ${{paths.data_dir}}/esc50/; name the folder esc50 (--out "
             f"{tmp_path / 'esc50'}) and train with paths.data_dir={tmp_path}")):
        assert main([*argv, "--workers", "1", "--no-progress"]) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "esc").exists() and not list(downloads.rglob("*.flac.partial*"))


def test_a_recipes_stray_label_is_refused_and_an_unheld_split_left_out(downloads, tmp_path):
    """A preparation of one's own (c2f/data/prepare/registry.py) whose entries carry a label
    its classes lack is refused before anything is converted (it crashed after converting
    every clip); clips of a split no manifest holds are left out and said."""
    from c2f.data.prepare import DatasetRecipe, Entry, ListError, Listing, Options
    from c2f.data.prepare import prepare as run_prepare
    from c2f.data.prepare.sources import Found

    class Tones(DatasetRecipe):
        name = preset = "tones"
        manifests = {"train": ("train",), "eval": ("eval",)}

        def __init__(self, labels, splits):
            super().__init__(downloads, [], None)
            self.labels, self.splits = labels, splits

        def read(self):
            files = sorted(downloads.glob("*/a.wav")) + sorted(downloads.glob("*/b.mp3"))
            entries = [Entry(key=f"{f.parent.name}_{f.stem}", labels=(self.labels[i % 2],),
                             split=self.splits[i % 3], where=f"meta.csv:{i + 2}",
                             ident=f.name, found=Found(f, True)) for i, f in enumerate(files)]
            return Listing(classes=[("/t/low", "low"), ("/t/high", "high")], entries=entries)

    said: list[str] = []
    with pytest.raises(ListError, match=r"tones: meta.csv:3 \(a.wav\): label '/t/mid' is not "
                                        r"among the 2 classes its read\(\) listed"):
        run_prepare(Tones(["/t/low", "/t/mid"], ["train"] * 3), Options(out=tmp_path / "a"),
                    said.append)
    assert not (tmp_path / "a").exists()
    summary = run_prepare(Tones(["/t/low", "/t/high"], ["train", "eval", "test"]),
                          Options(out=tmp_path / "b", stats=False, progress=False), said.append)
    assert "WARNING: 2 listed clip(s) of split(s) test go to no manifest (tones's manifests " \
        "hold eval, train); left out, not converted" in said
    assert summary.listed == 4 and len(list((tmp_path / "b" / "audio").glob("*.flac"))) == 4


def test_clips_longer_than_the_input_are_counted_with_what_the_model_sees(tmp_path, capsys):
    """A recording far longer than the rest sets no input length, and the user learns that
    only its first seconds are trained on."""
    import numpy as np
    import soundfile

    src = tmp_path / "src"
    wave = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    for n in range(30):
        (src / ("a" if n % 2 else "b")).mkdir(parents=True, exist_ok=True)
        soundfile.write(src / ("a" if n % 2 else "b") / f"{n}.flac", wave, 16000)
    soundfile.write(src / "a" / "long.flac", np.tile(wave, 30), 16000)
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    said = capsys.readouterr().out
    [line] = [x for x in said.splitlines() if x.startswith("input length:")]
    train = json.loads((out / "train.json").read_text())["data"]
    assert any("long" in entry["wav"] for entry in train)
    assert line == ("input length: 128 frames (1.28 s); 95% of the training clips fit in 128 "
                    f"frames; 1 of {len(train)} are longer (up to 29.98 s): the model sees the "
                    "first 1.28 s of each")


def test_voxceleb1_unzipped_as_its_two_archives_is_found(tmp_path, capsys):
    """`vox1_dev_wav.zip` and `vox1_test_wav.zip` each hold a top-level `wav/`: unzipped side by
    side under --src, every utterance is found by `idXXXXX/<video>/<n>.wav`; an utterance
    iden_split.txt does not list (VoxCeleb2 beside it) is counted as left out."""
    import numpy as np

    src, lines = tmp_path / "vox1", []
    wave = (0.3 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    for archive, split, speaker in (("vox1_dev_wav", 1, "id10001"), ("vox1_dev_wav", 2, "id10002"),
                                    ("vox1_test_wav", 3, "id10270")):
        relative = f"{speaker}/1zcIwhmdeo4/00001.wav"
        (src / archive / "wav" / relative).parent.mkdir(parents=True)
        soundfile.write(src / archive / "wav" / relative, wave, 16000)
        lines.append(f"{split} {relative}")
    (src / "iden_split.txt").write_text("\n".join(lines) + "\n")
    (src / "vox2" / "id00012" / "21Uxsk56VDQ").mkdir(parents=True)
    soundfile.write(src / "vox2" / "id00012" / "21Uxsk56VDQ" / "00001.wav", wave, 16000)
    out = tmp_path / "voxceleb1"
    assert main(["voxceleb1", "--src", str(src), "--out", str(out), "--workers", "1",
                 "--no-progress", "--no-stats"]) == 0
    assert "missing 0, failed 0; manifests: train.json 2, eval.json 1" in capsys.readouterr().out
    assert (out / "problems.txt").read_text().startswith(
        f"1 audio file(s) under {src} hold no clip of this dataset's lists and are left out "
        "('vox2/id00012/21Uxsk56VDQ/00001.wav')")


@pytest.mark.parametrize("workers", ["2", "1"])
def test_ctrl_c_says_what_is_kept_and_that_the_same_command_resumes(tmp_path, workers,
                                                                     capsys):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while converting:
    one line saying how many clips stand converted and that rerunning continues, exit 130, no
    traceback, no worker and no partial file left; the rerun converts only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    layout = dataset_layouts.esc50(tmp_path / "downloads", clips=40)
    out = tmp_path / "esc50"
    cmd = [sys.executable, "-m", "c2f.data.prepare", "esc50", "--src", str(layout.src),
           "--out", str(out), "--workers", workers, "--no-progress", "--no-stats"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,  # SIGINT as a terminal sends it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while len(list((out / "audio").glob("*.flac"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    [line] = stderr.strip().splitlines()
    done = len(list((out / "audio").glob("*.flac")))
    assert 3 <= done < 40, "the interrupt came too late to test anything"
    assert line == f"interrupted: {done} of 42 listed clips stand converted in {out / 'audio'} " \
        "and are kept; run the same command again to continue (it converts only the rest)"
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # no worker of the group is left
        os.killpg(proc.pid, 0)
    assert not list((out / "audio").glob(".*partial*"))
    assert main(cmd[3:]) == 0
    assert f"converted {40 - done}, skipped {done} already converted" in capsys.readouterr().out


def test_workers_end_with_a_killed_preparation(tmp_path):
    """kill -9 of the main process (the OOM killer's way) leaves no worker running on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    layout = dataset_layouts.esc50(tmp_path / "downloads", clips=40)
    out = tmp_path / "esc50"
    proc = subprocess.Popen([sys.executable, "-m", "c2f.data.prepare", "esc50", "--src",
                             str(layout.src), "--out", str(out), "--workers", "2",
                             "--no-progress", "--no-stats"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list((out / "audio").glob("*.flac"))) < 3 and time.time() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the workers outlived the killed preparation")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_renamed_list_is_named_not_passed_over(tmp_path, capsys):
    """--lists files are matched by their published names: a renamed one is refused, naming
    the names, rather than ignored for the copy under --src (or said missing)."""
    layout = dataset_layouts.voxceleb1(tmp_path / "downloads")
    renamed = tmp_path / "my_vox1_iden_split.txt"
    renamed.write_text("1 id10001/vid000abcd/00001.wav\n")
    out = str(tmp_path / "voxceleb1")
    args = ["voxceleb1", "--src", str(layout.src), "--lists", str(renamed), "--out", out,
            "--workers", "1", "--no-progress", "--no-stats"]
    assert main(args) == 2
    assert f"error: --lists {renamed}: voxceleb1 reads no list of that name (lists are matched " \
        "by file name: iden_split.txt, vox1_meta.csv); rename it" in capsys.readouterr().err
    (layout.src / "iden_split.txt").unlink()
    assert main(args) == 2
    assert "nor among --lists (--lists are matched by file name, and none of " \
        "my_vox1_iden_split.txt is named iden_split.txt: if one of them holds it, rename it " \
        "so)" in capsys.readouterr().err
