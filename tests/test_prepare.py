"""`python -m c2f.data.prepare`: miniature downloads of every dataset in the publishers'
layouts (real audio in real containers, a missing file, a corrupt file, a bad list row) become
manifests that `run.py` trains on through the dataset's preset."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF
from omegaconf import OmegaConf

from c2f.data.manifest import load_manifest, read_label_csv
from c2f.data.prepare import DATASETS
from c2f.data.prepare.decode import DecodeError, Segment, decode
from c2f.data.prepare.sources import parse_youtube_name
from c2f.data.sampling import balanced_weights
from tests import dataset_layouts
from tests.conftest import ROOT, cli_env, read_metrics, run_cli, run_dirs
from tests.warm_python import run_python

FIXED_SECONDS = {"audioset": 10.0, "vggsound": 10.0, "kinetics_sounds": 10.0}
# the preset each prepared dataset trains through, and the overrides a miniature needs (the
# folder preset: tests/test_prepare_folder.py trains on the command its preparation prints)
PRESETS = {"audioset": ("audioset_full", 4), "vggsound": ("vggsound", 3),
           "voxceleb1": ("voxceleb1", 3), "kinetics_sounds": ("kinetics_sounds", 4),
           "esc50": ("esc50", 50), "speechcommands": ("speechcommands", 35)}


def prepare(name: str, layout: dataset_layouts.Layout, out: Path, *extra: str,
            check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "c2f.data.prepare", name, "--src", str(layout.src),
           "--out", str(out), "--workers", "2", "--no-progress", *layout.args, *extra]
    proc = run_python(cmd[1:], ROOT, cli_env(), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, tuple[dataset_layouts.Layout, Path, str]]:
    """Every miniature, built and prepared once into one data folder: name -> (layout, out,
    stdout of the first preparation)."""
    root = tmp_path_factory.mktemp("prepare")
    found = {}
    for name, build in dataset_layouts.LAYOUTS.items():
        layout = build(root / "downloads")
        out = root / "data" / name
        found[name] = (layout, out, prepare(name, layout, out).stdout)
    return found


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("name", list(dataset_layouts.LAYOUTS))
def test_preparation_counts_labels_audio_and_reports(prepared, name):
    layout, out, stdout = prepared[name]
    report = json.loads((out / "prepared.json").read_text())
    assert report["ok"] and report["classes"] == layout.classes
    assert {k: v["clips"] for k, v in report["manifests"].items()} == layout.expected
    mids, names = read_label_csv(out / "class_labels_indices.csv")
    assert len(names) == layout.classes
    # exactly the planted problems, each named with its list file and line or its path
    assert len(lines(out / "missing.txt")) == layout.missing == report["missing"]
    [failed] = lines(out / "failed.txt")
    assert "cannot decode" in failed and "export it again or drop it" in failed
    [problem] = lines(out / "problems.txt")
    assert problem.startswith(layout.problem)
    assert "converted" in stdout and f"missing {layout.missing}, failed 1" in stdout
    for manifest_name, count in layout.expected.items():
        manifest = load_manifest(out / f"{manifest_name}.json", out / "class_labels_indices.csv")
        assert len(manifest.clips) == count
        for clip in manifest.clips:
            info = soundfile.info(str(clip.path))
            assert info.samplerate == 16000 and info.channels == 1
            assert clip.path.suffix == ".flac" and out in clip.path.parents
            if name in FIXED_SECONDS:
                assert info.frames == 16000 * FIXED_SECONDS[name]
            assert all(0 <= i < layout.classes for i in clip.label_ids)
    assert set(report["statistics"]) == set(DATASETS[name].train_manifests)
    assert all(np.isfinite(s["mean"]) and s["std"] > 0 for s in report["statistics"].values())
    assert all(len(entry["sha256"]) == 64 for entry in report["lists"])


def test_label_ids_follow_the_lists(prepared):
    """Spot checks against the publishers' rows: AudioSet's two-label row, VGGSound's quoted
    label with a comma, VoxCeleb's speaker, ESC-50's target and Speech Commands' word order."""
    out = prepared["audioset"][1]
    doc = json.loads((out / "full_train.json").read_text())["data"]
    assert sum("," in e["labels"] for e in doc) == 1  # the one row with two mids
    vgg = prepared["vggsound"][1]
    mids, _ = read_label_csv(vgg / "class_labels_indices.csv")
    train = load_manifest(vgg / "train.json", vgg / "class_labels_indices.csv")
    assert {c.label_ids for c in train.clips} == {(0,), (1,), (2,)}
    assert "/m/vggsd001" in mids  # from the --classes CSV ("playing violin, fiddle")
    vox = prepared["voxceleb1"][1]
    for entry in json.loads((vox / "eval.json").read_text())["data"]:
        assert entry["wav"].split("/")[1] == entry["labels"]  # audio/<speaker>/... -> speaker
    esc = prepared["esc50"][1]
    for entry in json.loads((esc / "fold3_eval.json").read_text())["data"]:
        assert entry["wav"].startswith("audio/3-")  # fold k's clips are named k-...
        assert entry["labels"] == f"/m/07rwj{int(entry['wav'][-6]):02d}"
    sc = prepared["speechcommands"][1]
    _, words = read_label_csv(sc / "class_labels_indices.csv")
    assert words[:4] == ["backward", "follow", "five", "bed"]  # AST's order


def test_whole_video_is_cut_at_the_segment_start_and_a_cut_one_is_not(prepared):
    """AudioSet rows whose file is the whole video (`<id>.m4a`, `<id>.mp4` with a video
    stream) are cut at the row's start: the output is the phrase rendered there, to the
    sample, not the silence before it. A file named by bare id that holds the segment already
    cut (PANNs' `Y<id>.wav`, a mirror's `<id>.flac`; listed at 7 s) is taken from its start,
    not cut again at 7 s (which kept 3 s of it and padded 7 s of zeros)."""
    layout, out, stdout = prepared["audioset"]
    doc = json.loads((out / "full_train.json").read_text())["data"]
    # n: kind 0 (m4a, 22.05 kHz, stereo), kind 2 (mp4, 44.1 kHz), Y<id>.wav (32 kHz),
    # <id>.flac (48 kHz stereo)
    for n, source_rate, scale in ((0, 22050, 0.75), (2, 44100, 1.0), (4, 32000, 1.0),
                                  (7, 48000, 0.75)):
        wave, rate = soundfile.read(str(out / doc[n]["wav"]), dtype="float32")
        phrase = dataset_layouts.phrase(n % 3, 10.0, source_rate, n)
        expected = AF.resample(torch.from_numpy(phrase), source_rate, 16000).numpy()
        expected *= scale  # a stereo file holds (x, x/2): mean 0.75 x
        lag = int(np.argmax(np.correlate(wave[:16000], expected[:16000], "full"))) - 15999
        assert lag == 0, n
        assert np.corrcoef(wave, expected)[0, 1] > 0.99, n
    assert "10 source(s) named by bare YouTube id: 2 read as the segment already cut (no " \
        "longer than it), 8 as whole videos cut at the list's start" in stdout


def test_audioset_names_the_command_of_both_its_presets(prepared):
    """balanced_train.json and full_train.json feed audioset_balanced and audioset_full."""
    stdout = prepared["audioset"][2]
    assert "train with: python run.py dataset=audioset_balanced paths.data_dir=" in stdout
    assert "  or with: python run.py dataset=audioset_full paths.data_dir=" in stdout


@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".webm", ".mkv", ".mp3", ".ogg", ".flac",
                                    ".wav"])
def test_decode_cuts_any_container_to_the_sample(tmp_path, suffix):
    rate = 44100
    phrase = dataset_layouts.phrase(1, 2.0, rate, 7)
    source = dataset_layouts.write_media(
        tmp_path / f"clip{suffix}", np.concatenate([np.zeros(3 * rate, np.float32), phrase]),
        rate, stereo=True, video=suffix == ".mp4")
    wave, got = decode(source, Segment(3.0, 1.5))
    assert wave.size == round(1.5 * got)
    expected = phrase if got == rate else AF.resample(torch.from_numpy(phrase), rate, got).numpy()
    n = got // 2
    assert int(np.argmax(np.correlate(wave[:n], expected[:n] * 0.75, "full"))) - (n - 1) == 0
    with pytest.raises(DecodeError, match=r"holds 5\.0\d s of audio, the segment starts at 6\.00"):
        decode(source, Segment(6.0, 1.0))


def test_decode_refuses_video_without_sound_and_garbage(tmp_path):
    import av

    silent = tmp_path / "silent.mp4"
    with av.open(str(silent), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(
                np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(DecodeError, match="no audio stream"):
        decode(silent)
    with pytest.raises(DecodeError, match="cannot decode"):
        decode(dataset_layouts.corrupt(tmp_path / "broken.webm"))


@pytest.mark.parametrize("stem, parsed", [
    ("--PJHxphWEs", ("--PJHxphWEs", None)), ("Y--PJHxphWEs", ("--PJHxphWEs", None)),
    ("--PJHxphWEs_30.000_40.000", ("--PJHxphWEs", 30.0)),
    ("Y-_ab_cd-123_30000", ("-_ab_cd-123", 30000.0)),
    ("abcdefghijk_000030_000040", ("abcdefghijk", 30.0)),
    ("short", None), ("abcdefghijk_x", None),
    ("Cat video [--PJHxphWEs]", ("--PJHxphWEs", None)), ("A [b] [abc]", None)])
def test_youtube_file_names(stem, parsed):
    assert parse_youtube_name(stem) == parsed


def test_second_run_converts_nothing_and_resumes_what_was_lost(tmp_path):
    layout = dataset_layouts.esc50(tmp_path / "downloads")
    out = tmp_path / "esc50"
    first = prepare("esc50", layout, out)
    assert "converted 10, skipped 0" in first.stdout
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.suffix in (".flac", ".json", ".csv") and p.name != "prepared.json"}
    again = prepare("esc50", layout, out)
    assert "converted 0, skipped 10 already converted" in again.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing rewritten
    # a run stopped mid-way: two clips never finished, one left a partial file behind
    lost = sorted((out / "audio").glob("*.flac"))[:2]
    for path in lost:
        path.unlink()
    partial = out / "audio" / f".{lost[0].name}.partial-4242"
    partial.write_bytes(b"half a file")
    third = prepare("esc50", layout, out)
    assert "removed 1 partial file" in third.stdout and not partial.exists()
    assert "converted 2, skipped 8" in third.stdout
    assert all(path.exists() for path in lost)


def test_killed_preparation_leaves_only_whole_files_and_resumes(tmp_path):
    """SIGKILL in the middle of converting: every clip under its final name is whole, and
    the next run converts exactly the rest."""
    layout = dataset_layouts.esc50(tmp_path / "downloads", clips=40)
    out = tmp_path / "esc50"
    cmd = [sys.executable, "-m", "c2f.data.prepare", "esc50", "--src", str(layout.src),
           "--out", str(out), "--workers", "1", "--no-progress", "--no-stats"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((out / "audio").glob("*.flac"))) < 5 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((out / "audio").glob("*.flac"))
    assert 5 <= len(done) < 40, "the kill came too late to test anything"
    for path in done:
        wave, rate = soundfile.read(str(path))
        assert rate == 16000 and wave.shape == (5 * 16000,)
    resumed = prepare("esc50", layout, out)
    assert f"converted {40 - len(done)}, skipped {len(done)}" in resumed.stdout
    assert not list((out / "audio").glob(".*"))  # no partial file survives the next run


def test_deleted_sources_keep_their_converted_clips(tmp_path):
    """Users delete the downloads after converting; a later run keeps what it made."""
    layout = dataset_layouts.voxceleb1(tmp_path / "downloads")
    out = tmp_path / "voxceleb1"
    prepare("voxceleb1", layout, out)
    before = json.loads((out / "train.json").read_text())
    for path in (layout.src / "wav" / "id10001").rglob("*.wav"):
        path.unlink()
    proc = prepare("voxceleb1", layout, out)
    assert "missing 1," in proc.stdout  # only the clip that never had a file
    assert json.loads((out / "train.json").read_text()) == before


def test_limits_exit_codes_and_list_errors(tmp_path):
    layout = dataset_layouts.speechcommands(tmp_path / "downloads")
    out = tmp_path / "speechcommands"
    strict = prepare("speechcommands", layout, out, "--max-missing", "0", check=False)
    assert strict.returncode == 1 and "1 missing clips exceed --max-missing 0" in strict.stdout
    assert json.loads((out / "prepared.json").read_text())["ok"] is False
    assert (out / "train.json").exists()  # what was made is kept
    lenient = prepare("speechcommands", layout, out, "--max-failed", "10%")
    assert lenient.returncode == 0
    (layout.src / "testing_list.txt").unlink()
    broken = prepare("speechcommands", layout, tmp_path / "again" / "speechcommands",
                     check=False)
    assert broken.returncode == 2
    assert "cannot find testing_list.txt" in broken.stderr and "--lists" in broken.stderr
    empty = dataset_layouts.Layout(src=tmp_path / "empty")
    (empty.src / "meta").mkdir(parents=True)
    (empty.src / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,False,1,A\n")
    nothing = prepare("esc50", empty, tmp_path / "esc50", check=False)
    assert nothing.returncode == 1 and "no usable clip" in nothing.stdout


def test_audioset_sampler_weights_are_the_runs(prepared):
    out = prepared["audioset"][1]
    weights = np.loadtxt(out / "full_train_weight.csv", delimiter=",")
    manifest = load_manifest(out / "full_train.json", out / "class_labels_indices.csv")
    assert weights.shape == (9,)
    assert np.allclose(weights, balanced_weights(manifest).numpy())


def miniature_presets(folder: Path) -> list[str]:
    """A config group `mini` (one option per prepared dataset: its preset, with the class
    count of the miniature) so that one multirun trains them all in one process."""
    for name, (preset, classes) in PRESETS.items():
        fold = "\n  fold: 2" if name == "esc50" else ""
        (folder / "mini").mkdir(parents=True, exist_ok=True)
        (folder / "mini" / f"{name}.yaml").write_text(
            f"# @package _global_\ndefaults:\n  - override /dataset: {preset}\n"
            f"dataset:\n  num_classes: {classes}{fold}\n")
    return [f"hydra.searchpath=[file://{folder}]", f"+mini={','.join(PRESETS)}"]


@pytest.mark.slow
def test_every_prepared_dataset_trains_through_its_preset(prepared, tmp_path):
    """`run.py dataset=<preset> paths.data_dir=<prepared>`: one epoch each, a tiny model (one
    multirun over the presets: one process start instead of six)."""
    data_dir = next(iter(prepared.values()))[1].parent
    tiny = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "dataset.epochs=1",
            "dataset.batch_size=4", "optim.warmup_steps=1", "trainer.progress=false",
            "logger=disabled"]
    runs = tmp_path / "presets"
    proc = run_cli(["-m", *miniature_presets(tmp_path / "conf"), *tiny], runs, data_dir)
    trained = {OmegaConf.load(run / "config.yaml").dataset.name: run for run in run_dirs(runs)}
    for name, (preset, _) in PRESETS.items():  # librispeech: tests/test_pretrain.py
        [record] = [r for r in read_metrics(trained[preset])
                    if r.get("kind", "epoch") == "epoch"]
        assert record["epoch"] == 1 and record["samples"] == prepared[name][0].expected[
            {"audioset": "full_train", "esc50": "fold2_train"}.get(name, "train")]
        if name == "kinetics_sounds":  # no published statistics: the prepared ones are used
            stats = json.loads((prepared[name][1] / "prepared.json").read_text())["statistics"]
            assert f"mean {stats['train']['mean']:.4f}" in proc.stdout
            assert not (data_dir / "stats").exists()  # read from kinetics_sounds/stats
    # SSAST's pretraining data: AudioSet's and LibriSpeech's manifests joined
    runs = tmp_path / "pretrain"
    run_cli(["-cn", "pretrain", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
             "schedule.steps=[4]", "pretrain.eval_every=4", "pretrain.eval_clips=2",
             "dataset.batch_size=4", "dataset.num_classes=4", "logger=disabled",
             "trainer.progress=false"],
            runs, data_dir)
    [run] = run_dirs(runs)
    plan = json.loads((run / "plan.json").read_text())
    assert plan["train_samples"] == 9 + 6  # full_train.json + train960.json
    assert [r["step"] for r in read_metrics(run)] == [4]


def test_a_preparation_left_without_its_decorator_is_named_with_it(capsys):
    from c2f.data.prepare.__main__ import main as prepare_main
    from c2f.data.prepare.folder import Folder

    class Toy(Folder):  # @register_dataset forgotten
        name = "toy_sounds"

    assert prepare_main(["toy_sounds", "--src", "."]) == 2
    said = capsys.readouterr().err
    assert f"error: dataset 'toy_sounds': class Toy ({__file__}) is not registered; decorate " \
        "it with @register_dataset (datasets: " in said
    assert prepare_main(["esc5", "--src", "."]) == 2
    assert "unknown dataset 'esc5'; did you mean 'esc50'?" in capsys.readouterr().err


STOPPED_POOL = """
import multiprocessing, threading, time
from concurrent.futures import ProcessPoolExecutor
from c2f.data.prepare.engine import _stop
pool = ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork"))
results = pool.map(time.sleep, [0.05] * 200)
# chunks of 64 paths (~20 kB), as a large dataset's: queued, they fill the call queue's pipe
queued = pool.map(len, ["x" * 300] * 20000, chunksize=64)
next(results)
_stop(pool)
print(sum(type(t).__module__ == "concurrent.futures.process" for t in threading.enumerate()))
"""


def test_a_stopped_pool_leaves_no_thread_and_the_process_exits():
    """Ctrl-C while converting: no pool thread is left to close its wake-up pipe as CPython's
    exit hook writes to it ("Bad file descriptor"), and on 3.10 the exit no longer waits for
    ever on a full queue pipe that no worker reads (CPython's gh-94777, fixed in 3.11)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", STOPPED_POOL], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.split() == ["0"], done.stdout  # no executor thread left
