"""Epoch-level timing of c2f's real phase loop, in one process.

`EpochBench` composes run configs through Hydra (as `run.py` does), prepares each dataset and
its audio cache once, and times training epochs of single-phase runs (schedule=baseline at
C): data loading, the frontend and the optimizer included, evaluation excluded, exactly the
`seconds` that metrics.jsonl records. Configurations are interleaved round by round, so a
shared machine's drift cancels in the ratios."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.data.resolve import resolve_data
from c2f.plan import build_plan
from c2f.prepared import complete_dataset
from c2f.spec import RunSpec, build_spec
from c2f.track import RunDir
from c2f.tracker import Tracker
from c2f.train.checkpoint import TrainState
from c2f.train.flops import batch_flops_per_sample
from c2f.train.loop import PhaseLoop
from c2f.train.phase_data import DataBundle, data_bundle

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_spec(overrides: list[str]) -> RunSpec:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return build_spec(OmegaConf.to_container(complete_dataset(cfg), resolve=True))


@dataclass
class Session:
    """One configuration's loop, model, optimizer and loaders, kept across rounds."""

    loop: PhaseLoop
    base_model: object  # the model itself (not wrapped or compiled)
    model: object
    optimizer: object
    data: object
    state: TrainState
    evaluable: object = None  # what evaluation calls (graphed where the loop graphs it)
    epochs: int = 0

    @property
    def flops_per_sample(self) -> int:
        """The plan's prediction (meta device), as the run's records use it."""
        return self.loop.plan.phases[0].flops_per_sample

    def counted_flops(self) -> int:
        """Counted on a real batch on the session's device (FlopCounterMode), as a run does."""
        return batch_flops_per_sample(self.base_model, self.data,
                                      lambda rows: self.loop._mix(rows, -1, -1, 0))

    def evaluate(self) -> dict:
        """One evaluation pass over the eval set, as the run makes after each epoch."""
        return self.loop._evaluate(self.evaluable or self.base_model, self.data)

    def epoch(self) -> dict:
        phase = self.loop.plan.phases[0]
        stats = self.loop._train_epoch(phase, self.epochs, self.base_model, self.model,
                                       self.optimizer, self.data, self.state)
        self.epochs += 1
        return stats


class EpochBench:
    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.bundles: dict[str, DataBundle] = {}

    def bundle(self, spec: RunSpec) -> DataBundle:
        """The dataset of `spec`, prepared and cached once per dataset config."""
        key = json.dumps(spec.semantic["dataset"], sort_keys=True) + str(spec.trainer.cache_audio)
        if key not in self.bundles:
            train, evaluation, settings = resolve_data(spec.dataset, spec.data_dir, print,
                                                       spec.model_features)
            self.bundles[key] = data_bundle(train, evaluation, settings, spec.trainer,
                                            progress=False)
        return self.bundles[key]

    def session(self, overrides: list[str]) -> Session:
        spec = compose_spec(overrides)
        plan = build_plan(spec)
        if len(plan.phases) != 1:
            raise ValueError(f"{overrides}: time single-phase runs (schedule=baseline)")
        run = RunDir(self.runs_dir / spec.run_id)
        tracker = Tracker("disabled", "", None, spec.run_id, "", run.path, {})
        loop = PhaseLoop(spec, plan, self.bundle(spec), run, tracker, log=lambda *a: None)
        phase = plan.phases[0]
        model, optimizer = loop._enter_phase(phase, None, None)
        trainable = loop.trainable(model)
        loop.evaluating = loop.evaluable(model)  # as run() sets it: in-epoch top-k candidates
        return Session(loop, model, trainable, optimizer, loop._phase_data(phase), TrainState(),
                       loop.evaluating)


def noise_manifest(folder: Path, clips: int, seconds: float, classes: int,
                   sample_rate: int = 16000, seed: int = 0, files: int = 256) -> dict[str, str]:
    """A multi-label AST-format dataset of coloured-noise WAVs (timing only; no signal):
    `clips` entries over `files` distinct files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = folder / "class_labels_indices.csv"
    labels.write_text("index,mid,display_name\n" + "".join(
        f"{i},/m/c{i},class {i}\n" for i in range(classes)))
    entries = []
    for i in range(clips):
        path = folder / f"clip{i % files:05d}.wav"
        if not path.exists():
            wave = np.cumsum(rng.standard_normal(int(seconds * sample_rate))) * 1e-3
            soundfile.write(path, (wave - wave.mean()).astype(np.float32), sample_rate,
                            subtype="PCM_16")
        mids = rng.choice(classes, size=rng.integers(1, 4), replace=False)
        entries.append({"wav": str(path), "labels": ",".join(f"/m/c{m}" for m in mids)})
    manifest = folder / "train.json"
    manifest.write_text(json.dumps({"data": entries}))
    return {"dataset.train_manifest": str(manifest), "dataset.eval_manifest": str(manifest),
            "dataset.labels_csv": str(labels), "dataset.num_classes": str(classes)}


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="c2f-bench-"))
