"""What a run writes: one metrics.jsonl record per epoch, the averaged model's record, and the
summary of a finished run."""
from __future__ import annotations

import functools
import os
import platform
import socket
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from c2f.data.manifest import Manifest, multi_hot
from c2f.epochs import best_record, final_phase, metric_text
from c2f.plan import Phase, PhasePlan, flops_text, flops_unit
from c2f.spec import RunSpec
from c2f.train.checkpoint import TrainState
from c2f.train.distributed import World, device_for
from c2f.train.metrics import chance_level, json_scores, left_out_classes, scored_classes


def epoch_records(records: list[dict]) -> list[dict]:
    """The per-epoch records (runs written before averaging existed have no `kind`)."""
    return [r for r in records if r.get("kind", "epoch") == "epoch"]


def average_record(records: list[dict]) -> dict | None:
    """The averaged model's record, if the run has one."""
    return next((r for r in records if r.get("kind") == "average"), None)


def machine(requested: str) -> dict:
    """`_machine` for this process's current thread count (a sweep in one process may set
    `trainer.threads` per job)."""
    return _machine(requested, torch.get_num_threads())


@functools.cache
def _machine(requested: str, threads: int) -> dict:
    """Where an epoch ran: the host, the model of the device (rank 0's: the one that writes
    the records) and the SLURM job. Wall-clock savings mean something only between runs of one
    kind of device; the report warns when a pair's differ, and a job's log is found by its id."""
    device = device_for(World(), requested)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        models = [line.split(":", 1)[1].strip() for line in
                  (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
                  if line.startswith("model name")]
        name = (models[0] if models else platform.processor() or "CPU") + \
            f" ({threads} threads)"
    return {"host": socket.gethostname(), "device": name,
            "slurm_job": os.environ.get("SLURM_JOB_ID")}


def _identity(spec: RunSpec, phase: Phase, state: TrainState, final: bool) -> dict:
    return {"run": spec.run_id, "dataset": spec.dataset.name, "model": spec.model.name,
            "method": spec.compression.name, "schedule": spec.schedule.name, "seed": spec.seed,
            "C": phase.c, "phase": phase.index, "epoch": state.epoch, "final_phase": final}


def epoch_record(spec: RunSpec, phase: Phase, epoch: int, state: TrainState, final: bool,
                 stats: dict, scores: dict, flops: int) -> dict:
    """The record of one epoch; `state` already counts it."""
    metric, scores = spec.dataset.metric, json_scores(scores)  # an undefined value is null
    return {"kind": "epoch", **_identity(spec, phase, state, final), "phase_epoch": epoch + 1,
            "metric": metric, "value": scores[metric], **scores,
            "train_loss": stats["train_loss"], "lr": stats["lr"],
            "flops": flops, "flops_cum": state.flops_cum,
            "seconds": stats["seconds"], "seconds_cum": state.seconds_cum,
            "samples": stats["samples"], "samples_cum": state.samples_cum,
            "skipped": stats["skipped"], **machine(spec.trainer.device),
            # good clips left untrained by DDP steps another rank's lost batch skipped
            **({"untrained": stats["untrained"]} if stats.get("untrained") else {})}


def averaged_record(spec: RunSpec, phase: Phase, state: TrainState, epochs: list[int],
                    scores: dict) -> dict:
    """The averaged model's record: costs are those of the last epoch it needed."""
    metric, scores = spec.dataset.metric, json_scores(scores)
    return {"kind": "average", **_identity(spec, phase, state, True),
            "average": spec.average.mode, "averaged_epochs": epochs,
            "metric": metric, "value": scores[metric], **scores,
            "flops": 0, "flops_cum": state.flops_cum, "seconds": 0.0,
            "seconds_cum": state.seconds_cum, "samples": 0, "samples_cum": state.samples_cum}


def eval_targets(evaluation: Manifest, skipped: dict[str, str]) -> np.ndarray:
    """The eval set's labels as its evaluations scored them, clips skipped as bad left out: from
    the manifest, without reading audio."""
    clips = [clip for clip in evaluation.clips if str(clip.path) not in skipped]
    return multi_hot(clips, evaluation.num_classes)  # as the evaluations' items carry them


def eval_set_summary(spec: RunSpec, evaluation: Manifest, skipped: dict[str, str]) -> dict:
    """What the eval set lets a metric mean: its chance level (metrics.chance_level) and, for
    multi-label runs, the classes mAP, AUC and d' average over and those they leave out."""
    targets = eval_targets(evaluation, skipped)
    chance = chance_level(targets, spec.dataset.metric)
    summary = {"chance": None if chance is None else round(chance, 4)}
    if spec.dataset.multilabel:
        summary |= {"classes_scored": len(scored_classes(targets)),
                    "classes_left_out": left_out_classes((targets > 0.5).sum(axis=0), len(targets),
                                                         evaluation.class_names)}
    return summary


def left_out_warning(scored: int | None, left_out: dict | None,
                     listed: str = "summary.json lists the classes left out",
                     shown: int = 5) -> str | None:
    """The WARNING when mAP, AUC and d' average `scored` classes and leave out those in
    `left_out` (left_out_classes), naming a few; `listed`: where the user finds them all."""
    count = sum(len(v) for v in (left_out or {}).values())
    if not count:
        return None
    why = "; ".join(f"{len(names)} with {reason}: {', '.join(names[:shown])}"
                    + (", ..." if len(names) > shown else "")
                    for reason, names in left_out.items() if names)
    return (f"WARNING: mAP, AUC and d' average {scored} of {scored + count} classes; the eval "
            f"set leaves {count} out ({why}). AST, PANNs and HTS-AT average all classes "
            "(scikit-learn scores a class without positives AP 0, one without negatives AP 1, "
            f"and AUC NaN for both), so theirs differ for the same predictions; {listed}")


def summarize(spec: RunSpec, plan: PhasePlan, records: list[dict], skipped: dict,
              silent: dict[str, int], evaluation: Manifest) -> dict:
    """Headline numbers of a finished run. Its best is the final phase's (the model the run
    delivers: predict, evaluate and export use the last phase's input); each phase's own best is
    in the per-phase table the run prints; `evaluation`'s labels give the chance level and the
    classes scored (eval_set_summary)."""
    metric = spec.dataset.metric
    epochs = epoch_records(records)
    final = final_phase(epochs) or epochs
    best = best_record(final) or {"value": None, "epoch": None}  # none with a metric
    last = epochs[-1]
    averaged = average_record(records)
    return {
        "run": spec.run_id, "status": "finished", "dataset": spec.dataset.name,
        "model": spec.model.name, "method": spec.compression.name,
        "schedule": spec.schedule.name, "phases": [p.c for p in plan.phases], "seed": spec.seed,
        "metric": metric, "loss": spec.dataset.loss, "best": best["value"],
        "best_epoch": best["epoch"], "final": last["value"], "epochs": last["epoch"],
        "flops": last["flops_cum"], "seconds": last["seconds_cum"],
        "average": None if averaged is None else {
            "mode": averaged["average"], "epochs": averaged["averaged_epochs"],
            "value": averaged["value"]},
        "skipped_clips": len(skipped), "silent_clips": silent,
        "untrained_clips": sum(r.get("untrained", 0) for r in epochs),
        "per_phase": [asdict(p.input) | {"c": p.c, "epochs": p.epochs} for p in plan.phases],
        **eval_set_summary(spec, evaluation, skipped),
    }


def epochs_text(epochs: list[int]) -> str:
    """Epochs as the summary prints them: `2..5` when consecutive (average=epochs), else each
    one, `2, 3, 5` (average=top_k's best epochs)."""
    whole = all(isinstance(e, int) for e in epochs)  # 12.3: 3/10 of epoch 13 (evals_per_epoch)
    if epochs and whole and list(epochs) == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}..{epochs[-1]}" if len(epochs) > 1 else str(epochs[0])
    return ", ".join(f"{e:g}" for e in epochs) or "none"


def format_summary(summary: dict, records: list[dict]) -> str:
    """The end-of-run table: one row per phase, then the headline."""
    epochs = epoch_records(records)
    phases = sorted({r["phase"] for r in epochs})
    phase_flops = [sum(r["flops"] for r in epochs if r["phase"] == phase) for phase in phases]
    scale, unit = flops_unit([*phase_flops, summary["flops"]])
    rows = [("phase", "C", "epochs", f"best {summary['metric']}", unit, "train s")]
    for phase, flops in zip(phases, phase_flops):
        mine = [r for r in epochs if r["phase"] == phase]
        rows.append((str(phase), str(mine[0]["C"]), str(len(mine)),
                     metric_text((best_record(mine) or {}).get("value")), f"{flops / scale:.3f}",
                     f"{sum(r['seconds'] for r in mine):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    metric = summary["metric"]
    best = f"best {metric} {summary['best']:.4f} at epoch {summary['best_epoch']}" \
        if summary["best_epoch"] is not None else f"no epoch has a defined {metric}"
    lines.append(f"{best} (final {metric_text(summary['final'])}, "
                 f"chance {metric_text(summary['chance'])}); "
                 f"{flops_text(summary['flops'])}, {summary['seconds']:.1f} s of training")
    averaged = average_record(records)
    if averaged:
        lines.append(f"averaged model ({averaged['average']}, epochs "
                     f"{epochs_text(averaged['averaged_epochs'])}): "
                     f"{summary['metric']} {metric_text(averaged['value'])}")
    left_out = left_out_warning(summary.get("classes_scored"), summary.get("classes_left_out"))
    if left_out:
        lines.append(left_out)
    silent = summary["silent_clips"]
    if any(silent.values()):
        lines.append(f"note: {silent['train']} training and {silent['eval']} eval clip(s) are "
                     "silent where the model hears them (all of a short clip, the start of a "
                     "long one); they were kept (silence is valid audio)")
    if summary["skipped_clips"]:
        lines.append(f"WARNING: {summary['skipped_clips']} bad clip(s) skipped; "
                     "see skipped.txt in the run directory")
    if summary.get("untrained_clips"):
        lines.append(f"WARNING: {summary['untrained_clips']} good clip(s) went untrained: "
                     "under DDP a step one rank's batch lost entirely (all its clips bad) is "
                     "skipped on every rank; epoch records count them (`untrained`)")
    return "\n".join(lines)
