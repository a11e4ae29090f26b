"""A sweep's data checked where it is launched (c2f/data/launch_check.py): labels and class
count as the job checks them, a sample of the audio decoded; real files throughout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from c2f.data.errors import DataError
from c2f.data.launch_check import SAMPLE, check_dataset, sampled
from c2f.spec import ConfigError, DatasetSpec

CSV = "index,mid,display_name\n0,/m/a,dog\n1,/m/b,cat\n"


def folder(tmp_path: Path, clips: int = 20, bad: dict[int, str] | None = None) -> Path:
    """train.json / eval.json over `clips` real WAVs each; `bad` replaces clip i's file:
    'missing' (never written), 'nan' (NaN samples), 'cut' (a truncated WAV)."""
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "eval"):
        data = []
        for i in range(clips):
            path = audio / f"{split}{i}.wav"
            kind = (bad or {}).get(i) if split == "train" else None
            wave = 0.1 * rng.standard_normal(8000).astype(np.float32)
            if kind == "nan":
                wave[:] = np.nan
            if kind != "missing":
                soundfile.write(path, wave, 8000, subtype="FLOAT")
            if kind == "cut":
                path.write_bytes(path.read_bytes()[:2000])
            data.append({"wav": f"audio/{path.name}", "labels": "/m/a" if i % 2 else "/m/b"})
        (tmp_path / f"{split}.json").write_text(json.dumps({"data": data}))
    (tmp_path / "labels.csv").write_text(CSV)
    return tmp_path


def spec(root: Path, **more) -> DatasetSpec:
    return DatasetSpec(name="mine", kind="manifest", train_manifest=str(root / "train.json"),
                       eval_manifest=str(root / "eval.json"), labels_csv=str(root / "labels.csv"),
                       num_classes=2, **more)


def test_the_sample_spreads_over_the_manifest_from_its_first_clip_to_its_last():
    clips = list(range(100))
    picked = sampled(clips)
    assert len(picked) == SAMPLE and picked[0] == 0 and picked[-1] == 99
    assert picked == sorted(set(picked))
    assert sampled(clips[:3]) == [0, 1, 2]


def test_readable_data_passes_with_nothing_to_say(tmp_path):
    assert check_dataset(spec(folder(tmp_path)), tmp_path) == []


@pytest.mark.parametrize("kind, says", [("nan", "NaN"), ("cut", "truncated"),
                                        ("missing", "audio file not found")])
def test_a_sampled_clip_that_cannot_be_read_stops_every_job_naming_it_and_the_fix(tmp_path,
                                                                                  kind, says):
    root = folder(tmp_path, bad={19: kind})  # the last clip: always in the sample
    with pytest.raises(DataError) as err:
        check_dataset(spec(root), tmp_path)
    message = str(err.value)
    assert message.startswith(f"{root / 'train.json'}: 1 of {SAMPLE} sampled clip(s) cannot")
    assert str(root / "audio" / "train19.wav") in message and says in message
    assert "(data[19])" in message and "dataset.on_bad_audio=skip" in message


def test_with_on_bad_audio_skip_unreadable_clips_are_a_note(tmp_path):
    root = folder(tmp_path, bad={0: "nan"})
    [note] = check_dataset(spec(root, on_bad_audio="skip"), tmp_path)
    assert note.startswith(f"note: {root / 'train.json'}: 1 of {SAMPLE} sampled clip(s)")
    assert "train0.wav" in note and "will skip such clips" in note


def test_audio_this_machine_does_not_see_is_a_note_about_mounts_not_a_refusal(tmp_path):
    root = folder(tmp_path)
    for wav in (root / "audio").glob("eval*.wav"):
        wav.unlink()
    [note] = check_dataset(spec(root), tmp_path)
    assert note.startswith(f"note: {root / 'eval.json'}: none of {SAMPLE} sampled audio files")
    assert "mount" in note


def test_the_class_count_and_labels_are_checked_as_the_job_checks_them(tmp_path):
    root = folder(tmp_path)
    with pytest.raises(ConfigError, match=r"`dataset.num_classes`=3 but .*lists 2 classes"):
        check_dataset(DatasetSpec(**{**vars(spec(root)), "num_classes": 3}), tmp_path)
    data = json.loads((root / "eval.json").read_text())
    data["data"][4]["labels"] = "/m/a,/m/b"
    (root / "eval.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"data\[4\] has 2 labels"):
        check_dataset(spec(root), tmp_path)
    assert check_dataset(DatasetSpec(**{**vars(spec(root)), "multilabel": True}), tmp_path) == []
