"""Using what you trained: c2f.predict, c2f.evaluate and c2f.export on a finished run of the
built-in dataset reproduce the run's own final (and averaged) metrics, and an exported file
stands in for the run directory."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from c2f.data.audio import load_waveform
from c2f.data.manifest import load_manifest, read_label_csv
from c2f.trained import load_trained
from tests.conftest import ROOT, TINY, cli_env, read_metrics, run_cli, run_dirs
from tests.dataset_layouts import write_media
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
ARGS = [*TINY, "compression=fshift", "schedule=2phase", "schedule.c=4", "logger=disabled",
        "average=epochs", "average.start=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    runs = tmp_path_factory.mktemp("use") / "runs"
    run_cli(ARGS, runs, data_dir)
    [path] = run_dirs(runs)
    return path


@pytest.fixture(scope="module")
def eval_set(run) -> dict:
    """The run's own eval manifest and labels CSV."""
    from c2f.evaluate import default_data

    return default_data(run)


def cli(module: str, *args) -> subprocess.CompletedProcess:
    return run_python(["-m", module, *map(str, args)], ROOT, cli_env(), timeout=300)


def test_evaluate_reproduces_the_final_and_averaged_metrics(run, eval_set):
    records = read_metrics(run)
    final = [r for r in records if r["kind"] == "epoch"][-1]
    averaged = [r for r in records if r["kind"] == "average"][0]
    proc = cli("c2f.evaluate", run, "--out", run.parent / "scores.json", "--per-class")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((run.parent / "scores.json").read_text())
    assert scores["acc"] == final["acc"] and scores["clips"] == 22
    rows = scores["per_class"]  # the built-in eval set: 2 clips of each of 11 classes
    assert [r["clips"] for r in rows] == [2] * 11
    assert sum(r["right"] for r in rows) / 22 == final["acc"]
    worst = min(rows, key=lambda r: (r["recall"], r["class"]))
    assert f"{worst['recall']:7.4f}       2  {worst['class']}" in proc.stdout.split(
        "(most often predicted instead)")[1].splitlines()[1]
    assert scores["eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-6)
    assert f"(the run's own: {final['value']:.4f})" in proc.stdout
    trained = load_trained(run, "average", "cpu")
    manifest = load_manifest(eval_set["manifest"], eval_set["labels"])
    again = trained.evaluate(manifest)
    assert again["acc"] == averaged["acc"]
    assert again["eval_loss"] == pytest.approx(averaged["eval_loss"], rel=1e-6)


def test_evaluate_finds_the_runs_eval_set_without_literal_interpolations(run, eval_set,
                                                                          tmp_path):
    """The eval set the run recorded; for a run from before that record, its stored config
    resolved as run.py resolved it (`data_dir: ${.root}/data` is a path, not a folder named
    "${.root}")."""
    from c2f.evaluate import default_data

    recorded = json.loads((run / "inference.json").read_text())["data"]
    own = default_data(run)
    assert (own["manifest"], own["labels"]) == (eval_set["manifest"], eval_set["labels"])
    assert own["class_mids"] == sorted(read_label_csv(eval_set["labels"])[0],
                                       key=read_label_csv(eval_set["labels"])[0].get)
    assert len(own["eval_digest"]) == 40
    assert recorded["eval_manifest"] == str(eval_set["manifest"])
    legacy = tmp_path / "legacy"
    shutil.copytree(run, legacy)
    inference = json.loads((legacy / "inference.json").read_text())
    del inference["data"]
    (legacy / "inference.json").write_text(json.dumps(inference))
    data_dir = eval_set["manifest"].parent.parent
    config = re.sub(r"(?m)^  root: .*$", f"  root: {data_dir.parent}",
                    (legacy / "config.yaml").read_text())
    config = re.sub(r"(?m)^  data_dir: .*$", f"  data_dir: ${{.root}}/{data_dir.name}", config)
    assert "data_dir: ${.root}/" in config
    (legacy / "config.yaml").write_text(config)
    assert default_data(legacy) == {"manifest": eval_set["manifest"],
                                    "labels": eval_set["labels"]}


def test_evaluate_tells_a_folder_prepared_again_from_the_runs_own_eval_set(run, eval_set,
                                                                          tmp_path):
    """The run records its eval manifest's digest and its classes' mids: a manifest rewritten
    in place is scored with a warning and without the run's own number beside it; a label CSV
    that gained a class since does not stop the run's evaluation."""
    data = tmp_path / "data"
    shutil.copytree(eval_set["manifest"].parent, data)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    inference = json.loads((copy / "inference.json").read_text())
    inference["data"].update(eval_manifest=str(data / eval_set["manifest"].name),
                             labels_csv=str(data / eval_set["labels"].name))
    (copy / "inference.json").write_text(json.dumps(inference))
    csv = data / eval_set["labels"].name
    csv.write_text(csv.read_text().rstrip("\n") + "\n11,/m/new,Theremin\n")
    proc = cli("c2f.evaluate", copy)
    assert proc.returncode == 0, proc.stderr
    assert "(the run's own: " in proc.stdout and "WARNING" not in proc.stderr
    manifest = data / eval_set["manifest"].name
    entries = json.loads(manifest.read_text())
    entries["data"] = entries["data"][2:]
    manifest.write_text(json.dumps(entries))
    proc = cli("c2f.evaluate", copy)
    assert proc.returncode == 0, proc.stderr
    assert f"WARNING: {manifest} changed since the run was scored on it" in proc.stderr
    assert "on 20 clip(s)" in proc.stdout and "the run's own" not in proc.stdout
    # prepared again with a class the run never had: said, and the manifest refused
    entries["data"][0]["labels"] = "/m/new"
    manifest.write_text(json.dumps(entries))
    proc = cli("c2f.evaluate", copy)
    assert proc.returncode == 2 and "changed since the run was scored on it" in proc.stderr
    assert f"data[0] has label '/m/new', not one of the 11 classes the model of {copy} was " \
        "trained on; give a manifest of those classes" in proc.stderr


def test_a_run_whose_starting_weights_are_gone_still_predicts(run, eval_set, tmp_path, capsys):
    """Fine-tuned from a file since moved or deleted: the run's checkpoint holds the weights,
    so predict, evaluate and export do not need it."""
    from c2f.predict import main

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    config = (moved / "config.yaml").read_text()
    assert "  pretrained: null\n" in config
    (moved / "config.yaml").write_text(config.replace(
        "  pretrained: null\n", f"  pretrained: {tmp_path / 'gone' / 'deit.pth'}\n"))
    clip = load_manifest(eval_set["manifest"], eval_set["labels"]).clips[0].path
    assert main([str(run), str(clip), "--json"]) == 0
    expected = capsys.readouterr().out
    assert main([str(moved), str(clip), "--json"]) == 0
    assert capsys.readouterr().out == expected


def test_export_round_trips_and_predicts_like_the_run(run, eval_set, tmp_path):
    out = tmp_path / "model.pt"
    proc = cli("c2f.export", run, "--out", out)
    assert proc.returncode == 0 and out.is_file(), proc.stderr
    from_run, from_file = load_trained(run, device="cpu"), load_trained(out, device="cpu")
    saved = torch.load(run / "ckpt" / "last.pt", weights_only=True)["model"]
    for key, value in from_file.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert from_file.class_names == from_run.class_names
    for part in ("settings", "phase", "c"):
        assert getattr(from_file.frontend, part) == getattr(from_run.frontend, part)
    assert from_file.export_info["compression"] == "fshift"
    # C = 1 is every method's identity: the model needs no method's code at C = 1 (a plugin's
    # method, here one that is not installed, may have trained it)
    assert from_run.frontend.compression.name == "none"
    payload = torch.load(out, weights_only=True)
    torch.save(payload | {"compression": "a_plugins_method"}, tmp_path / "plugin.pt")
    elsewhere = load_trained(tmp_path / "plugin.pt", device="cpu")
    waves = [load_waveform(c.path) for c in load_manifest(eval_set["manifest"],
                                                          eval_set["labels"]).clips[:4]]
    import dataclasses

    from c2f.compression import create_compression

    with_method = dataclasses.replace(from_run, frontend=dataclasses.replace(
        from_run.frontend, compression=create_compression("fshift")))  # fshift's own C = 1
    assert torch.equal(elsewhere.logits(waves), with_method.logits(waves))
    # predict over the eval manifest, from the exported file: its top-1 accuracy is the run's
    proc = cli("c2f.predict", out, "--manifest", eval_set["manifest"], "--json", "--top", "1")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    manifest = load_manifest(eval_set["manifest"], eval_set["labels"])
    assert [line["path"] for line in lines] == [str(c.path) for c in manifest.clips]
    names = from_run.class_names
    hits = [names.index(line["top"][0]["class"]) == clip.label_ids[0]
            for line, clip in zip(lines, manifest.clips)]
    final = [r for r in read_metrics(run) if r["kind"] == "epoch"][-1]
    assert np.mean(hits) == final["acc"]
    # and the file evaluates to the same numbers as the run directory, with the classes it
    # carries (the mids of the run's label CSV, in index order)
    proc = cli("c2f.evaluate", out, "--manifest", eval_set["manifest"])
    assert proc.returncode == 0 and f"acc {final['acc']:.4f} on 22 clip(s)" in proc.stdout, \
        proc.stderr
    mids = read_label_csv(eval_set["labels"])[0]
    assert from_file.export_info["class_mids"] == sorted(mids, key=mids.get)
    # an export without them (an older c2f's) asks for the labels CSV
    payload = torch.load(out, weights_only=True)
    del payload["class_mids"]
    torch.save(payload, tmp_path / "older.pt")
    proc = cli("c2f.evaluate", tmp_path / "older.pt", "--manifest", eval_set["manifest"])
    assert proc.returncode == 2 and "give --manifest and --labels (this export" in proc.stderr


def test_exported_classes_are_in_index_order_and_absent_without_their_csv(tmp_path):
    """The carried mids follow the CSV's index column, not its row order; a run whose CSV is
    gone, or is no longer the one it trained with, exports none (evaluate then asks for
    --labels)."""
    from c2f.trained import _class_mids

    csv = tmp_path / "labels.csv"
    csv.write_text("index,mid,display_name\n1,/m/b,Bee\n0,/m/a,Ant\n2,/m/c,Cat\n")
    data = {"data": {"labels_csv": str(csv)}}
    assert _class_mids(data, ["Ant", "Bee", "Cat"]) == ["/m/a", "/m/b", "/m/c"]
    assert _class_mids(data, ["Ant", "Bee", "Cat", "Dog"]) is None  # another CSV since
    assert _class_mids(data, ["Bee", "Ant", "Cat"]) is None  # rows reordered since
    assert _class_mids({"data": {"labels_csv": str(tmp_path / "gone.csv")}},
                       ["Ant", "Bee", "Cat"]) is None


def test_long_stereo_8khz_clip_is_scored_in_windows(run, eval_set, tmp_path):
    """A clip 3.5 windows long, stereo, at 8 kHz: resampled, and with --windows scored as the
    mean of its windows' probabilities."""
    trained = load_trained(run, device="cpu")
    clip = load_manifest(eval_set["manifest"], eval_set["labels"]).clips[0].path
    wave = load_waveform(clip, 8000)[0].numpy()
    window = trained.window_samples * 8000 // trained.sample_rate
    long = np.tile(wave, int(np.ceil(3.5 * window / len(wave))))[: int(3.5 * window)]
    path = tmp_path / "long stereo.wav"
    soundfile.write(path, np.stack([long, 0.5 * long], axis=1), 8000)
    from c2f.predict import main, score

    probabilities, parts, seconds = score(trained, path, whole=True)
    assert parts == 4 and seconds == pytest.approx(3.5 * window / 8000, rel=1e-3)
    resampled = load_waveform(path, trained.sample_rate)
    size = trained.window_samples
    pieces = [resampled[:, i:i + size] for i in range(0, resampled.shape[1], size)]
    expected = trained.probabilities(trained.logits(pieces)).mean(dim=0).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    first, parts, _ = score(trained, path, whole=False)
    assert parts == 1 and not np.allclose(first, probabilities)
    assert main([str(run), str(path), "--top", "2"]) == 0


def test_timeline_lists_each_window_in_time(run, eval_set, tmp_path, capsys):
    """`--timeline`: one entry per window, back to back from 0 to the clip's end, each with
    the window's own top classes; their mean is the clip's score."""
    from c2f.predict import main

    trained = load_trained(run, device="cpu")
    clips = load_manifest(eval_set["manifest"], eval_set["labels"]).clips
    first, second = (load_waveform(c.path, 16000)[0].numpy() for c in clips[:2])
    size = trained.window_samples
    wave = np.concatenate([np.resize(first, size), np.resize(second, size), first[:size // 2]])
    soundfile.write(tmp_path / "two.wav", wave, 16000)
    assert main([str(run), str(tmp_path / "two.wav"), "--timeline", "--json", "--top",
                 str(len(trained.class_names))]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    steps = line["timeline"]
    window = size / 16000
    assert line["windows"] == len(steps) == 3
    assert [(s["start"], s["end"]) for s in steps] == [
        (0.0, round(window, 3)), (round(window, 3), round(2 * window, 3)),
        (round(2 * window, 3), round(len(wave) / 16000, 3))]
    scores = [{t["class"]: t["score"] for t in s["top"]} for s in steps]
    mean = {t["class"]: t["score"] for t in line["top"]}
    for name, value in mean.items():
        assert value == pytest.approx(np.mean([s[name] for s in scores]), abs=1e-6)
    # the first window is the first clip alone: scored as that clip is on its own
    alone, _, _ = score_file(trained, tmp_path, np.resize(first, size))
    assert scores[0] == pytest.approx(alone, abs=1e-5)


def score_file(trained, folder, samples):
    from c2f.predict import score

    soundfile.write(folder / "alone.wav", samples, 16000)
    probabilities, parts, seconds = score(trained, folder / "alone.wav", whole=True)
    return dict(zip(trained.class_names, probabilities.tolist())), parts, seconds


def test_a_folder_of_any_containers_is_scored(run, eval_set, tmp_path, capsys):
    """`predict RUN folder/`: every audio or video file under it, sorted, through PyAV where
    libsndfile cannot read the container; the same samples score the same in WAV and MOV."""
    from c2f.predict import main

    clip = load_manifest(eval_set["manifest"], eval_set["labels"]).clips[0].path
    wave = load_waveform(clip, 16000)[0].numpy()
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    soundfile.write(folder / "a.wav", wave, 16000, subtype="PCM_16")
    write_media(folder / "sub" / "b.mov", wave, 16000)
    (folder / "notes.txt").write_text("not audio")
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(str(folder / "sub" / "b.mov"))
    soundfile.write(folder / "quiet.wav", np.zeros(16000, np.float32), 16000)
    assert main([str(run), str(folder), "--json"]) == 0
    said = capsys.readouterr()
    lines = [json.loads(line) for line in said.out.splitlines()]
    assert f"note: {folder}: 1 file(s) left out, not audio by their suffix (.txt 1)" in said.err
    assert [line["path"] for line in lines] == [str(folder / "a.wav"), str(folder / "quiet.wav"),
                                                str(folder / "sub" / "b.mov")]
    assert lines[0]["top"] == lines[2]["top"]
    assert [line["silent"] for line in lines] == [False, True, False]
    assert main([str(run), str(folder / "quiet.wav")]) == 0  # its scores are said to be moot
    assert "(1.00 s, all-silent (mono): the scores say nothing of it)" in capsys.readouterr().out
    (folder / "quiet.wav").unlink()
    (folder / "a.wav").unlink()
    (folder / "sub" / "b.mov").unlink()
    assert main([str(run), str(folder)]) == 2
    assert "a folder without audio or video files" in capsys.readouterr().err


def test_unfinished_runs_and_wrong_inputs_are_refused_with_what_to_do(run, eval_set, tmp_path,
                                                                    capsys):
    from c2f.evaluate import main as evaluate
    from c2f.export import main as export
    from c2f.predict import main as predict

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()
    assert predict([str(unfinished), str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert "has not finished" in err and "launch its config again" in err
    assert export([str(unfinished)]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert evaluate([str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert predict([str(tmp_path / "junk.pt"), str(tmp_path / "a.wav")]) == 2
    assert "not a readable c2f model file" in capsys.readouterr().err
    no_average = tmp_path / "no_average"
    shutil.copytree(run, no_average)
    (no_average / "ckpt" / "average.pt").unlink()
    assert evaluate([str(no_average), "--weights", "average"]) == 2
    assert "average.pt is missing" in capsys.readouterr().err
    assert predict([str(run), str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not audio")
    assert predict([str(run), str(tmp_path / "notes.txt")]) == 1
    assert f"error: {tmp_path / 'notes.txt'}: not an audio file (no decoder reads it)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):  # the clip where the model goes
        predict([str(tmp_path / "a.wav")])
    assert f"{tmp_path / 'a.wav'} is an audio file; the first argument is the model" in \
        capsys.readouterr().err
    # a clip that cannot be read: evaluate's own flag is the fix it names
    entries = json.loads(eval_set["manifest"].read_text())["data"][:2]
    entries[0]["wav"] = str(eval_set["manifest"].parent / entries[0]["wav"])
    entries[1]["wav"] = str(tmp_path / "junk.pt")
    (tmp_path / "bad.json").write_text(json.dumps({"data": entries}))
    assert evaluate([str(run), "--manifest", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err and "add --skip-bad to evaluate without" in err
    assert "on_bad_audio" not in err
    # a multi-label manifest for a single-label model: not scored by each clip's first label
    entries = json.loads(eval_set["manifest"].read_text())["data"][:3]
    for entry in entries:
        entry["wav"] = str(eval_set["manifest"].parent / entry["wav"])
    mids = sorted(read_label_csv(eval_set["labels"])[0])
    entries[1]["labels"] = f"{mids[0]},{mids[1]}"
    (tmp_path / "multi.json").write_text(json.dumps({"data": entries}))
    assert evaluate([str(run), "--manifest", str(tmp_path / "multi.json")]) == 2
    assert f"{tmp_path / 'multi.json'}: data[1] has 2 labels (" in (err := capsys.readouterr(
        ).err) and "the model is single-label (trained with dataset.multilabel=false)" in err
    # the run's eval data moved away since it trained: the flags that name it now
    moved = tmp_path / "moved_data"
    shutil.copytree(run, moved)
    info = json.loads((moved / "inference.json").read_text())
    info["data"]["eval_manifest"] = str(tmp_path / "gone" / "eval.json")
    (moved / "inference.json").write_text(json.dumps(info))
    assert evaluate([str(moved)]) == 2
    err = capsys.readouterr().err  # the run carries its classes' mids: no --labels needed
    assert "the run's own eval data is no longer where it trained (" \
        f"{tmp_path / 'gone' / 'eval.json'}; moved?): give --manifest\n" in err


def test_predict_piped_into_head_ends_quietly(run, eval_set):
    """`python -m c2f.predict ... | head -n 1`: no traceback when the reader leaves early."""
    proc = subprocess.run(f"{sys.executable} -m c2f.predict {run} --manifest "
                          f"{eval_set['manifest']} | head -n 1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=cli_env({"PYTHONUNBUFFERED": "1"}))  # each line its own write
    assert proc.stdout.startswith("model: ") and proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
