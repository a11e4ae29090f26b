"""A trained model, ready to use: rebuilt from a finished run directory, or from the single
file `python -m c2f.export` writes. `c2f.predict`, `c2f.evaluate` and `c2f.export` build on it.

The model is the run's last phase (its input shape, compression and C), with its final
weights (ckpt/last.pt) or its averaged ones (ckpt/average.pt); its features are the run's own
(sample rate, fbank or log-mel, normalization statistics: `inference.json` in the run
directory), so a clip is scored exactly as the run's evaluation scored it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from c2f import __version__
from c2f.compression import PhaseInput, create_compression
from c2f.data.dataset import Item, SpectrogramDataset, collate_skipping
from c2f.data.errors import DataError
from c2f.data.frontend import EMPTY, FeatureSettings, Frontend
from c2f.data.manifest import Manifest, read_label_csv
from c2f.files import atomic_torch_save
from c2f.models import build_model
from c2f.models.weights_file import weights_differ
from c2f.plan import build_plan
from c2f.registry import PluginError
from c2f.spec import ConfigError, build_model_spec, build_spec
from c2f.track import RunDir
from c2f.train.metrics import classification_loss, evaluate_scores, per_class_scores
from c2f.train.precision import Precision, for_evaluation

FORMAT = "c2f-model/1"  # the layout of an exported file
WEIGHTS = {"final": "last.pt", "average": "average.pt"}


class TrainedError(Exception):
    """A run directory or file that cannot give a model; the message says why and what to do."""


@dataclass
class Trained:
    """A model in eval mode on its device, with the frontend of the run's last phase."""

    model: torch.nn.Module
    frontend: Frontend
    class_names: list[str]
    multilabel: bool
    metric: str  # the run's metric: acc | mAP
    loss: str  # ce | bce
    precision: Precision  # the run's evaluation precision: scored as the run scored
    device: torch.device
    source: str  # where it came from, for messages: "<run dir> (final weights)"
    export_info: dict  # what an export file holds besides the weights

    @property
    def sample_rate(self) -> int:
        return self.frontend.settings.sample_rate

    @property
    def window_samples(self) -> int:
        """Samples of audio the model sees at once (longer clips are cut, as in evaluation)."""
        return self.frontend.samples

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid per class for multi-label runs, softmax over classes otherwise."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def logits(self, waves: list[torch.Tensor], batch_size: int = 16) -> torch.Tensor:
        """Logits [N, classes] of mono waveforms [1, L] at `sample_rate`, each cut or padded
        to the model's window as the run's evaluation does."""
        out = []
        for start in range(0, len(waves), batch_size):
            items = [self._item(wave) for wave in waves[start:start + batch_size]]
            out.append(self._forward(collate_skipping(items)))
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names))

    def _item(self, wave: torch.Tensor) -> Item:
        clip, offset = self.frontend.clip(wave, None)
        length = self.frontend.valid_samples(wave) if self.frontend.on_device else clip.shape[0]
        return Item(clip, length, offset, torch.zeros(4, dtype=torch.int64),
                    torch.zeros(len(self.class_names)), 0, False, EMPTY, 0, 0, 1.0)

    def _forward(self, batch: dict) -> torch.Tensor:
        def moved(key: str) -> torch.Tensor:
            return batch[key].to(self.device)
        inputs = self.frontend.batch(moved("input"), moved("length"), moved("offset"), None)
        with self.precision.autocast():
            return self.model(inputs).float().cpu()

    @torch.no_grad()
    def evaluate(self, manifest: Manifest, batch_size: int = 32, skip_bad: bool = False,
                 progress=None) -> dict:
        """The run's metrics on a labelled manifest: acc (and mAP, AUC, d' for multi-label),
        eval_loss, and how many clips were scored and skipped."""
        if manifest.num_classes != len(self.class_names):
            raise TrainedError(
                f"{manifest.path} has {manifest.num_classes} classes, the model "
                f"{len(self.class_names)}; give the labels csv the run was trained with")
        frontend = dataclasses.replace(
            self.frontend, settings=dataclasses.replace(self.frontend.settings,
                                                        skip_bad=skip_bad))
        loader = DataLoader(SpectrogramDataset(manifest, frontend, train=False),
                            batch_size=batch_size, collate_fn=collate_skipping)
        logits, targets, skipped = [], [], []
        for batch in (progress(loader) if progress else loader):
            skipped += batch["skipped"]
            if batch["size"]:
                logits.append(self._forward(batch))
                targets.append(batch["target"])
        if not logits:
            raise TrainedError(f"no usable clip in {manifest.path}")
        logits_t, targets_t = torch.cat(logits), torch.cat(targets)
        scores = evaluate_scores(logits_t.numpy(), targets_t.numpy(), self.multilabel)
        return {"metric": self.metric, "value": scores[self.metric], **scores,
                "eval_loss": float(classification_loss(self.loss, logits_t, targets_t)),
                "clips": len(logits_t),
                "per_class": per_class_scores(logits_t.numpy(), targets_t.numpy(),
                                              self.multilabel, self.class_names),
                "skipped": [(clip.path, clip.reason) for clip in skipped]}

    def export(self, path: Path) -> Path:
        """One file: the weights and everything `load_trained` needs to rebuild the model."""
        payload = {"format": FORMAT, "c2f_version": __version__, **self.export_info,
                   "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()}}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(payload, path)
        return path


def load_trained(path: str | Path, weights: str = "final", device: str = "auto") -> Trained:
    """A finished run directory (its `weights`: final or average) or an exported file."""
    path = Path(path)
    target = torch.device(device if device != "auto" else
                          "cuda" if torch.cuda.is_available() else "cpu")
    if path.is_file():
        return _from_export(path, target)
    if not (path / "config.yaml").is_file():
        raise TrainedError(f"{path} is neither a run directory (no config.yaml in it) nor a "
                           "file written by python -m c2f.export")
    return _build(_run_info(path, weights), _run_weights(path, weights), target,
                  f"{path} ({weights} weights)")


def _run_info(path: Path, weights: str) -> dict:
    """What an export holds, from a finished run directory."""
    if weights not in WEIGHTS:
        raise TrainedError(f"weights={weights!r}: choose one of {', '.join(WEIGHTS)}")
    run = RunDir(path)
    config = yaml.safe_load((path / "config.yaml").read_text())
    try:
        spec = build_spec(config)
    except ConfigError as err:
        raise TrainedError(f"{path / 'config.yaml'}: {err} (written by another version of "
                           "c2f? use that version, or export the model with it)") from None
    if spec.pretrain is not None:
        raise TrainedError(f"{path} is a pretraining run: it has no classifier. Fine-tune it "
                           f"first (model.pretrained={path}) and use that run")
    if not run.finished_summary():
        done = len(run.read_metrics())
        raise TrainedError(
            f"{path} has not finished ({done} epoch record(s) in metrics.jsonl, no finished "
            "summary.json): launch its config again to finish it (it resumes from its "
            "checkpoint), then use it")
    inference = run.read_inference()
    if inference is None:
        raise TrainedError(f"{run.inference_path} is missing (the run was trained by a c2f "
                           "older than this command): train it again with this version")
    # the weights it started from are in its checkpoint: the plan must not need that file
    # (moved or deleted since), nor a pretraining run it referred to
    trained = dataclasses.replace(spec.model, pretrained=None, require_pretrained=False)
    try:
        phases = build_plan(dataclasses.replace(spec, model=trained)).phases
    except (ConfigError, PluginError) as err:
        raise TrainedError(f"{path}: its model cannot be built here: {err}") from None
    final = phases[-1]
    model_config = dict(config["model"], pretrained=None, require_pretrained=False)
    return {"model": model_config, "num_classes": spec.dataset.num_classes,
            "num_mel_bins": spec.num_mel_bins, "phase_input": dataclasses.asdict(final.input),
            "c": final.c, "compression": spec.compression.name,
            "compression_options": [list(pair) for pair in spec.compression.options],
            "settings": inference["settings"], "class_names": inference["class_names"],
            "class_mids": _class_mids(inference, inference["class_names"]),
            "multilabel": spec.dataset.multilabel, "metric": spec.dataset.metric,
            "loss": spec.dataset.loss,
            # a run from before trainer.eval_precision evaluated in its training precision
            "precision": for_evaluation(spec.trainer.precision, (config.get("trainer") or {})
                                        .get("eval_precision", "train")),
            "run_id": path.name, "weights": weights, "phases": [p.c for p in phases]}


def _class_mids(inference: dict, names: list[str]) -> list[str] | None:
    """The mids of the run's label CSV in index order, so that an exported model reads a
    manifest's labels without that CSV; None when the CSV is gone or no longer the one the
    run trained with (its display names, in order, are the run's class names). A run records
    them itself (inference.json); one from before that, only its CSV's path."""
    if (inference.get("data") or {}).get("class_mids"):
        return list(inference["data"]["class_mids"])
    csv = (inference.get("data") or {}).get("labels_csv")
    try:
        index, shown = read_label_csv(csv) if csv else ({}, [])
    except DataError:
        return None
    return sorted(index, key=index.get) if shown == list(names) else None


def _run_weights(path: Path, weights: str) -> dict:
    file = path / "ckpt" / WEIGHTS[weights]
    if not file.is_file():
        hint = ("the run averaged no model (average=none); use the final weights"
                if weights == "average" else "its checkpoint is gone; train it again")
        raise TrainedError(f"{file} is missing: {hint}")
    payload = torch.load(file, map_location="cpu", weights_only=True)
    return payload["model"] if weights == "final" else payload


def _from_export(path: Path, device: torch.device) -> Trained:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().split(". ")[0].splitlines()[0][:200] if str(err) else ""
        raise TrainedError(f"{path} is not a readable c2f model file ({type(err).__name__}: "
                           f"{first}); give a run directory or a file written by python -m "
                           "c2f.export") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TrainedError(f"{path} is not a file written by python -m c2f.export "
                           f"(format {FORMAT})")
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "format", "c2f_version")}
    return _build(info, payload["state_dict"], device, f"{path} (exported from run "
                                                        f"{info['run_id']})")


def _build(info: dict, state_dict: dict, device: torch.device, source: str) -> Trained:
    phase = PhaseInput(**{**info["phase_input"], "patch": tuple(info["phase_input"]["patch"])})
    # exports written before compression options had none
    options = tuple(tuple(pair) for pair in info.get("compression_options", ()))
    try:
        model = build_model(build_model_spec(info["model"]), num_classes=info["num_classes"],
                            num_mel_bins=info["num_mel_bins"], frames=phase.model_frames,
                            patch=phase.patch, c=info["c"])
        # C = 1 is every method's identity (Compression's contract): a model whose last phase
        # is at C = 1 needs no method's code where it is used
        compression = create_compression("none") if info["c"] == 1 else \
            create_compression(info["compression"], options)
    except (ValueError, PluginError) as err:  # ConfigError is a ValueError
        raise TrainedError(f"{source}: its model cannot be built here: {err}") from None
    differ = weights_differ(model, state_dict, info["model"]["arch"])
    if differ:
        raise TrainedError(f"{source}: {differ}restore the code it was trained with, or train "
                           "it anew with this code")
    model.load_state_dict(state_dict)
    settings = FeatureSettings(**info["settings"])
    frontend = Frontend(settings, phase, compression, info["c"], on_device=True)
    return Trained(model.to(device).eval(), frontend, list(info["class_names"]),
                   bool(info["multilabel"]), info["metric"], info["loss"],
                   Precision(info["precision"], device), device, source, info)

