"""Manifest and label-CSV loading: good round trips and every malformed case."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from c2f.data import DataError, check_files, load_manifest, read_label_csv

CSV = 'index,mid,display_name\n0,/m/dog,Dog\n1,/m/cat,"Cat, domestic"\n2,/m/car,Car\n'


def write_csv(folder: Path, text: str = CSV) -> Path:
    """Write a label CSV and return its path."""
    path = folder / "class_labels_indices.csv"
    path.write_text(text)
    return path


def write_manifest(folder: Path, data: object, name: str = "train.json") -> Path:
    """Write a manifest JSON document and return its path."""
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def write_wav(path: Path, seconds: float = 0.1) -> Path:
    """Write a short non-silent 16 kHz WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    return path


def test_label_csv_reads_quoted_names(tmp_path: Path) -> None:
    mids, names = read_label_csv(write_csv(tmp_path))
    assert mids == {"/m/dog": 0, "/m/cat": 1, "/m/car": 2}
    assert names == ["Dog", "Cat, domestic", "Car"]


def test_label_csv_orders_names_by_index(tmp_path: Path) -> None:
    text = "index,mid,display_name\n1,/m/b,B\n0,/m/a,A\n"
    mids, names = read_label_csv(write_csv(tmp_path, text))
    assert mids == {"/m/a": 0, "/m/b": 1}
    assert names == ["A", "B"]


def test_good_manifest_round_trip(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "abs.wav"
    data = {
        "data": [
            {"wav": "audio/a.wav", "labels": "/m/dog"},
            {"wav": str(absolute), "labels": "/m/cat, /m/car", "extra": 7},
        ]
    }
    sub = tmp_path / "lists"
    sub.mkdir()
    m = load_manifest(write_manifest(sub, data), write_csv(tmp_path))
    assert m.num_classes == 3
    assert m.class_names[1] == "Cat, domestic"
    assert m.clips[0].path == sub / "audio" / "a.wav"
    assert m.clips[0].label_ids == (0,)
    assert m.clips[1].path == absolute
    assert m.clips[1].label_ids == (1, 2)
    assert [c.line for c in m.clips] == [0, 1]


BAD_MANIFESTS = [
    ({"items": []}, ["train.json", '"data"']),
    ({"data": {"wav": "a.wav"}}, ["train.json", "list"]),
    ({"data": []}, ["train.json", "empty"]),
    (
        {"data": [{"wav": "a.wav", "labels": "/m/dog"}, {"labels": "/m/dog"}]},
        ["train.json", "data[1]", "'wav'"],
    ),
    ({"data": [{"wav": "a.wav"}]}, ["train.json", "data[0]", "'labels'"]),
    ({"data": [{"wav": "a.wav", "labels": " , "}]}, ["train.json", "data[0]", "empty labels"]),
    (
        {"data": [{"wav": "a", "labels": "/m/dog"}] * 3
        + [{"wav": "b", "labels": "/m/dog,/m/cow"}]},
        ["train.json", "data[3]", "/m/cow", "class_labels_indices.csv"],
    ),
    ({"data": ["a.wav"]}, ["train.json", "data[0]"]),
]


@pytest.mark.parametrize(("data", "needles"), BAD_MANIFESTS)
def test_bad_manifest_names_file_and_entry(
    tmp_path: Path, data: object, needles: list[str]
) -> None:
    with pytest.raises(DataError) as err:
        load_manifest(write_manifest(tmp_path, data), write_csv(tmp_path))
    for needle in needles:
        assert needle in str(err.value)


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('{"data": [\n  {"wav": "a.wav", "labels": "/m/dog"}\n  {"wav": "b.wav"}\n]}')
    with pytest.raises(DataError, match=r"train\.json: invalid JSON at line 3 column 3"):
        load_manifest(path, write_csv(tmp_path))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.json: manifest not found"):
        load_manifest(tmp_path / "nope.json", write_csv(tmp_path))


BAD_CSVS = [
    ("", "header"),
    ("idx,mid,name\n0,/m/a,A\n", "header"),
    ("index,mid,display_name\n", "no classes"),
    ("index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n", ":3: duplicate index 0"),
    ("index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n", ":3: duplicate mid '/m/a'"),
    ("index,mid,display_name\n0,/m/a,Cat, domestic\n", ":2: expected 3 columns"),
    ("index,mid,display_name\nzero,/m/a,A\n", ":2: index 'zero'"),
    ("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n", "missing [1]"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_CSVS)
def test_bad_label_csv(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(DataError) as err:
        read_label_csv(write_csv(tmp_path, text))
    assert "class_labels_indices.csv" in str(err.value)
    assert needle in str(err.value)


def test_missing_label_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="labels.csv: label CSV not found"):
        read_label_csv(tmp_path / "labels.csv")


def make_mixed_manifest(tmp_path: Path, num_missing: int = 1) -> Path:
    """A manifest with two good WAVs, an empty WAV, a corrupt file, a truncated WAV and
    missing files."""
    write_wav(tmp_path / "good1.wav")
    write_wav(tmp_path / "good2.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....not really a wav file at all")
    (tmp_path / "zero.wav").write_bytes(b"")  # an interrupted copy
    whole = (tmp_path / "good1.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[:len(whole) // 3])  # one stopped part way
    names = ["good1.wav", "empty.wav", "corrupt.wav", "good2.wav", "zero.wav", "cut.wav"]
    names += [f"missing{i}.wav" for i in range(num_missing)]
    return write_manifest(tmp_path, {"data": [{"wav": n, "labels": "/m/dog"} for n in names]})


def test_check_files_skip_drops_bad_files_with_reasons(tmp_path: Path) -> None:
    m = load_manifest(make_mixed_manifest(tmp_path), write_csv(tmp_path))
    kept, bad = check_files(m, on_bad="skip")
    assert [c.path.name for c in kept.clips] == ["good1.wav", "good2.wav"]
    assert [c.line for c in kept.clips] == [0, 3]
    assert len(m.clips) == 7  # the input manifest is untouched
    assert len(bad) == 5
    by_name = {Path(b.split(" ")[0]).name: b for b in bad}
    assert "zero-length" in by_name["empty.wav"]
    assert by_name["zero.wav"].endswith("empty file (0 bytes)")
    assert kept.dropped[0] == (str(tmp_path / "empty.wav"), "zero-length audio (0 frames) "
                               f"(data[1] of {tmp_path / 'train.json'})")
    assert "unreadable" in by_name["corrupt.wav"]
    assert "not found" in by_name["missing0.wav"]
    assert "truncated audio (header declares more data" in by_name["cut.wav"]


def test_check_files_fail_lists_at_most_ten(tmp_path: Path) -> None:
    m = load_manifest(make_mixed_manifest(tmp_path, num_missing=12), write_csv(tmp_path))
    with pytest.raises(DataError) as err:
        check_files(m)
    text = str(err.value)
    assert "16 of 18 audio files are bad" in text
    assert "empty.wav" in text and "corrupt.wav" in text
    assert "... and 6 more" in text
    assert text.count("missing") == 6
    assert "dataset.on_bad_audio=skip" in text


def test_check_files_passes_good_manifest(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    doc = {"data": [{"wav": "a.wav", "labels": "/m/car"}]}
    m = load_manifest(write_manifest(tmp_path, doc), write_csv(tmp_path))
    kept, bad = check_files(m)
    assert bad == [] and [(c.path, c.label_ids) for c in kept.clips] == \
        [(c.path, c.label_ids) for c in m.clips]
    assert kept.clips[0].seconds == 0.1  # its length, from the header


def test_check_files_rejects_unknown_mode(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    doc = {"data": [{"wav": "a.wav", "labels": "/m/car"}]}
    m = load_manifest(write_manifest(tmp_path, doc), write_csv(tmp_path))
    with pytest.raises(ValueError, match="'fail', 'skip'"):
        check_files(m, on_bad="ignore")


def test_pretraining_manifests_may_leave_out_labels(tmp_path: Path) -> None:
    """Self-supervised pretraining reads clips without labels; a label given is still
    checked against the CSV, and a classification run still needs one."""
    csv_path = write_csv(tmp_path)
    entries = [{"wav": "a.wav"}, {"wav": "b.wav", "labels": ""},
               {"wav": "c.wav", "labels": "/m/dog"}]
    path = write_manifest(tmp_path, {"data": entries})
    manifest = load_manifest(path, csv_path, unlabeled=True)
    assert [c.label_ids for c in manifest.clips] == [(), (), (0,)]
    assert manifest.clips[0].path == (tmp_path / "a.wav").resolve()
    with pytest.raises(DataError, match=r"data\[0\] has no 'labels' key"):
        load_manifest(path, csv_path)
    bad = write_manifest(tmp_path, {"data": [{"wav": "d.wav", "labels": "/m/nope"}]}, "b.json")
    with pytest.raises(DataError, match="unknown label '/m/nope'.*; fix the label or add it"):
        load_manifest(bad, csv_path, unlabeled=True)
    named = write_manifest(tmp_path, {"data": [{"wav": "d.wav", "labels": "Dog"}]}, "n.json")
    with pytest.raises(DataError, match="unknown label 'Dog' not in .*; labels are mids: 'Dog' "
                                        "is the display_name of '/m/dog', so write '/m/dog'"):
        load_manifest(named, csv_path)


def test_clips_with_several_labels_are_refused_by_single_label_training(tmp_path: Path) -> None:
    """Trained as single-label (its first class each), a multi-label manifest would quietly
    lose its other labels: the first such entry is named, and the settings that fit it."""
    from c2f.data.resolve import resolve_data
    from c2f.spec import ConfigError, DatasetSpec

    data = [{"wav": "a.wav", "labels": "/m/dog"}, {"wav": "b.wav", "labels": "/m/dog,/m/cat"},
            {"wav": "c.wav", "labels": "/m/car,/m/cat"}]
    manifest = write_manifest(tmp_path, {"data": data})
    dataset = DatasetSpec(name="mine", kind="manifest", train_manifest=str(manifest),
                          eval_manifest=str(manifest), labels_csv=str(write_csv(tmp_path)),
                          num_classes=3, norm_mean=0.0, norm_std=1.0)
    with pytest.raises(ConfigError) as err:
        resolve_data(dataset, tmp_path)
    assert str(err.value) == (
        f"{manifest}: data[1] has 2 labels ('Dog', 'Cat, domestic'), as do 1 more entries, but "
        "dataset.multilabel=false (one label per clip). For multi-label data add "
        "dataset.multilabel=true dataset.loss=bce dataset.metric=mAP (AST's AudioSet recipe); "
        "else give each entry one label")
    # multi-label training takes them (and goes on to check the audio, which is missing here)
    with pytest.raises(DataError, match="none of its 3 audio files exists"):
        resolve_data(dataclasses.replace(dataset, multilabel=True), tmp_path)


def test_a_manifest_whose_audio_is_nowhere_here_asks_about_mounts(tmp_path: Path) -> None:
    """Every file missing (a data folder not mounted on a compute node): skipping bad clips
    is no answer, so the message asks where the audio is, naming what of its path exists."""
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,/m/a,A\n")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"data": [
        {"wav": f"/scratch/me/audio/{name}.wav", "labels": "/m/a"} for name in "xyz"]}))
    with pytest.raises(DataError) as err:
        check_files(load_manifest(manifest, labels), "skip")
    said = str(err.value)
    assert "none of its 3 audio files exists on" in said and "/scratch/me/audio/x.wav" in said
    assert "(they lie under /scratch/me/audio; of that path only / exists here)" in said
    assert "mounted on this machine" in said and "on_bad_audio" not in said


def test_clips_longer_than_the_input_are_counted_before_training(tmp_path: Path) -> None:
    """The model sees the first target_length frames of a clip (AST's crop): a user of long
    recordings is told how many clips that cuts and the longest, before training starts."""
    from c2f.data.resolve import resolve_data
    from c2f.spec import DatasetSpec
    from tests.dataset_layouts import write_media

    for name, seconds in (("a.wav", 1.0), ("b.wav", 3.0), ("c.wav", 1.28), ("d.wav", 7.5)):
        write_wav(tmp_path / name, seconds)
    tone = (0.3 * np.sin(np.arange(5 * 16000) * 0.05)).astype(np.float32)
    write_media(tmp_path / "e.m4a", tone, 16000)  # its length from PyAV's header
    train = write_manifest(tmp_path, {"data": [{"wav": n, "labels": "/m/dog"}
                                               for n in ("a.wav", "b.wav", "c.wav")]})
    evaluation = write_manifest(tmp_path, {"data": [{"wav": "d.wav", "labels": "/m/cat"},
                                                    {"wav": "a.wav", "labels": "/m/dog"},
                                                    {"wav": "e.m4a", "labels": "/m/dog"}]},
                                "eval.json")
    dataset = DatasetSpec(name="mine", kind="manifest", train_manifest=str(train),
                          eval_manifest=str(evaluation), labels_csv=str(write_csv(tmp_path)),
                          num_classes=3, norm_mean=0.0, norm_std=1.0, target_length=128)
    said: list[str] = []
    train_manifest, _, _ = resolve_data(dataset, tmp_path, log=said.append)
    assert said == ["note: 1 of 3 training and 2 of 3 eval clip(s) are longer than the input "
                    "(1.28 s, dataset.target_length=128); the model sees the first 1.28 s of "
                    "each (the longest: 7.5 s). To use all of them, cut the "
                    "recordings into clips, or raise dataset.target_length"]
    assert [c.seconds for c in train_manifest.clips] == [1.0, 3.0, 1.28]
    said.clear()
    resolve_data(dataclasses.replace(dataset, target_length=1024), tmp_path, log=said.append)
    assert said == []
