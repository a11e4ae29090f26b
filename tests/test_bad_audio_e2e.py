"""Bad clips through the real CLI: fail fast naming the file, or skip, count and list them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from tests.conftest import TINY_TRAINING, run_cli, run_dirs

pytestmark = pytest.mark.slow


def _manifest_dataset(tmp_path, data_dir):
    """A manifest dataset: real clips from the built-in set, one missing file, one NaN file."""
    from c2f.data.builtin import BuiltinParams, ensure_builtin

    paths = ensure_builtin(data_dir, BuiltinParams(train_per_class=4, eval_per_class=2,
                                                   clip_seconds=1.28))
    train = json.loads(paths["train"].read_text())["data"]
    for entry in train:
        entry["wav"] = str((paths["train"].parent / entry["wav"]).resolve())
    nan_wav = tmp_path / "nan.wav"
    soundfile.write(nan_wav, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    label = train[0]["labels"]
    train += [{"wav": str(tmp_path / "missing.wav"), "labels": label},
              {"wav": str(nan_wav), "labels": label}]
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"data": train}))
    return [f"dataset.train_manifest={manifest}", f"dataset.eval_manifest={paths['eval']}",
            f"dataset.labels_csv={paths['labels']}"]


ARGS = ["dataset=manifest", "dataset.num_classes=11", "dataset.epochs=1",
        "dataset.norm_mean=-8.0", "dataset.norm_std=6.0", *TINY_TRAINING]


def test_fail_fast_names_the_missing_file(tmp_path, data_dir):
    proc = run_cli([*ARGS, *_manifest_dataset(tmp_path, data_dir), "logger=disabled"],
                   tmp_path / "runs", data_dir, check=False)
    assert proc.returncode == 2
    assert "missing.wav" in proc.stderr and "on_bad" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained, not even an empty run folder


def test_skip_counts_and_lists_bad_clips(tmp_path, data_dir):
    runs = tmp_path / "runs"
    proc = run_cli([*ARGS, *_manifest_dataset(tmp_path, data_dir), "logger=disabled",
                    "dataset.on_bad_audio=skip"], runs, data_dir)
    assert "missing.wav" in proc.stdout  # reported up front by the manifest check
    [run] = run_dirs(runs)
    summary = json.loads((run / "summary.json").read_text())
    # the missing file, dropped by the check before training, is listed with the NaN clip,
    # which only decoding found
    assert summary["skipped_clips"] == 2
    listed = (run / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(tmp_path / "missing.wav"),
                                                       str(tmp_path / "nan.wav")]
    assert "file not found (data[44] of" in listed[0] and "NaN" in listed[1]
    assert listed[1].endswith(f"(data[45] of {tmp_path / 'train.json'})")  # found decoding
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["skipped"] == 1 and record["samples"] == 44


def test_silent_clips_train_evaluate_and_are_counted(tmp_path, data_dir):
    """Digital silence is valid audio (AudioSet has it): kept in training and evaluation,
    counted in the log and summary. The run also uses BCE on single-label data, as the
    paper's VGGSound recipe does (dataset.loss=bce)."""
    from c2f.data.builtin import BuiltinParams, ensure_builtin

    paths = ensure_builtin(data_dir, BuiltinParams(train_per_class=4, eval_per_class=2,
                                                   clip_seconds=1.28))
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(20480, dtype=np.float32), 16000)
    late = tmp_path / "late.wav"  # a tone after 1.5 s of silence: the model hears 1.28 s
    soundfile.write(late, np.concatenate([np.zeros(24000), 0.3 * np.sin(np.arange(16000) * 0.1)]
                                         ).astype(np.float32), 16000)
    manifests = {}
    for split in ("train", "eval"):
        entries = json.loads(paths[split].read_text())["data"]
        for entry in entries:
            entry["wav"] = str((paths[split].parent / entry["wav"]).resolve())
        entries.append({"wav": str(silence), "labels": entries[0]["labels"]})
        if split == "train":
            entries.append({"wav": str(late), "labels": entries[0]["labels"]})
        manifests[split] = tmp_path / f"{split}.json"
        manifests[split].write_text(json.dumps({"data": entries}))
    runs = tmp_path / "runs"
    proc = run_cli([*ARGS, f"dataset.train_manifest={manifests['train']}",
                    f"dataset.eval_manifest={manifests['eval']}",
                    f"dataset.labels_csv={paths['labels']}", "dataset.loss=bce",
                    "logger=disabled"], runs, data_dir)
    assert "2 training and 1 eval clip(s) are silent where the model hears them" in proc.stdout
    [run] = run_dirs(runs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["silent_clips"] == {"train": 2, "eval": 1} and summary["skipped_clips"] == 0
    assert summary["loss"] == "bce"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["samples"] == 46  # 44 clips + the silent one + the one silent at its start
    assert np.isfinite(record["eval_loss"]) and record["eval_loss"] < 1.0  # BCE, not CE (~2.4)


def test_a_queued_sweep_checks_a_sample_of_its_audio_before_any_job_starts(tmp_path,
                                                                           data_dir):
    """launcher=submitit_local (as launcher=slurm): the NaN clip, last of the manifest and so
    in the sample, stops both jobs at launch, before either waits for a slot or a node."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", "launcher=submitit_local", "seed=0,1", *ARGS,
                    *_manifest_dataset(tmp_path, data_dir), "logger=disabled"],
                   runs, data_dir, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 of 2 job(s) cannot run; nothing was started:" in proc.stderr
    assert f"{tmp_path / 'nan.wav'}: audio contains NaN" in proc.stderr
    assert "dataset.on_bad_audio=skip" in proc.stderr and "(jobs #0 seed=0, #1 seed=1)" in \
        proc.stderr
    assert run_dirs(runs) == [] and "Traceback" not in proc.stderr
