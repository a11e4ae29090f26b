"""The model learns: a short real run on an easy subset of the built-in data beats chance."""
from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import TINY_TRAINING, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow
EASY = ("bass", "flute", "mallet")  # far apart in pitch range and timbre


def _easy_subset(tmp_path, data_dir) -> list[str]:
    """A three-class manifest dataset cut from the built-in clips."""
    from c2f.data.builtin import BuiltinParams, ensure_builtin

    paths = ensure_builtin(data_dir, BuiltinParams(train_per_class=30, eval_per_class=10,
                                                   clip_seconds=1.28))
    with open(paths["labels"]) as handle:
        rows = [r for r in csv.DictReader(handle) if r["display_name"] in EASY]
    mids = {r["mid"] for r in rows}
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(
        f"{i},{r['mid']},{r['display_name']}\n" for i, r in enumerate(rows)))
    out = []
    for split in ("train", "eval"):
        entries = json.loads(paths[split].read_text())["data"]
        keep = [{**e, "wav": str(paths[split].parent / e["wav"])} for e in entries
                if e["labels"] in mids]
        (tmp_path / f"{split}.json").write_text(json.dumps({"data": keep}))
        out.append(f"dataset.{split}_manifest={tmp_path / f'{split}.json'}")
    return [*out, f"dataset.labels_csv={labels}"]


def test_accuracy_above_chance_on_an_easy_subset(tmp_path, data_dir):
    runs = tmp_path / "runs"
    run_cli(["dataset=manifest", "dataset.num_classes=3", *_easy_subset(tmp_path, data_dir),
             *TINY_TRAINING, "dataset.epochs=12", "dataset.batch_size=10", "model.embed_dim=64",
             "model.depth=2", "optim.lr=1e-3", "compression=fshift", "schedule=2phase",
             "schedule.c=2", "logger=disabled", "seed=0"], runs, data_dir)
    [run] = run_dirs(runs)
    accuracy = max(r["acc"] for r in read_metrics(run) if r["final_phase"])
    assert accuracy > 0.55, f"eval accuracy {accuracy:.3f} on 3 classes (chance 0.333)"
