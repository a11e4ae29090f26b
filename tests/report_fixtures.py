"""Hand-built run directories with known numbers, in the trainer's format."""
from __future__ import annotations

import json
from pathlib import Path

import yaml


def make_run(root: Path, name: str, *, values: list[float], phases: tuple[int, ...] = (1,),
             epochs: tuple[int, ...] | None = None, method: str = "none", seed: int = 0,
             dataset: str = "ds", model: str = "m", budget: int | None = None,
             flops: dict[int, int] | None = None, seconds: dict[int, float] | None = None,
             finished: bool = True, metric: str = "acc", average: float | None = None,
             fold: int | None = None, pretrained: str | None = None,
             setting: dict | None = None, device: str | None = None) -> Path:
    """A run whose epoch e has metric values[e-1]; per-epoch FLOPs/seconds depend on C only.

    By default an epoch at C costs 100/C FLOPs and 10/C seconds, so sums are easy by hand.
    `epochs` gives the epochs of each phase (default: all but the last phase have one epoch).
    `average` adds the record of a weight-averaged model with that metric, after the last epoch.
    `setting` adds config keys ({"optim": {"lr": 0.1}}), merged into its groups. `device`:
    the kind of device each epoch record says it ran on.
    """
    flops = flops or {c: 100 // c for c in (1, 2, 4, 8)}
    seconds = seconds or {c: 10.0 / c for c in (1, 2, 4, 8)}
    epochs = epochs or (*[1] * (len(phases) - 1), len(values) - len(phases) + 1)
    budget = budget or sum(epochs)
    path = root / "group" / name
    path.mkdir(parents=True)
    config = {"dataset": {"name": dataset, "epochs": budget, "metric": metric,
                          **({} if fold is None else {"fold": fold})},
              "model": {"name": model, "pretrained": pretrained},
              "compression": {"name": method},
              "schedule": {"name": "custom", "c": phases[0], "phases": list(phases)},
              "seed": seed}
    for group, keys in (setting or {}).items():
        config[group] = {**config.get(group, {}), **keys} if isinstance(keys, dict) else keys
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    plan = {"train_samples": 1, "predicted_flops": 0,
            "phases": [{"index": i, "method": method, "c": c, "epochs": n}
                       for i, (c, n) in enumerate(zip(phases, epochs))]}
    (path / "plan.json").write_text(json.dumps(plan))
    per_epoch = [(i, c) for i, (c, n) in enumerate(zip(phases, epochs)) for _ in range(n)]
    lines, f_cum, s_cum = [], 0, 0.0
    for epoch, value in enumerate(values, 1):
        phase, c = per_epoch[epoch - 1]
        f_cum += flops[c]
        s_cum += seconds[c]
        lines.append(json.dumps({
            "kind": "epoch", "run": name, "dataset": dataset, "model": model, "method": method,
            "seed": seed,
            "C": c, "phase": phase, "epoch": epoch, "final_phase": phase == len(phases) - 1,
            "metric": metric, "value": value, "flops": flops[c], "flops_cum": f_cum,
            "seconds": seconds[c], "seconds_cum": s_cum,
            **({} if device is None else {"device": device})}))
    if average is not None:
        lines.append(json.dumps({
            "kind": "average", "run": name, "dataset": dataset, "model": model, "seed": seed,
            "C": 1, "phase": len(phases) - 1, "epoch": len(values), "final_phase": True,
            "average": "epochs", "averaged_epochs": [len(values)], "metric": metric,
            "value": average, "flops": 0, "flops_cum": f_cum, "seconds": 0.0,
            "seconds_cum": s_cum}))
    (path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if finished:
        (path / "summary.json").write_text(json.dumps({"run": name, "status": "finished"}))
    return path


def make_pretraining_run(root: Path, name: str, *, phases: tuple[int, ...], method: str,
                         flops: int, seconds: float, steps: int = 100) -> Path:
    """A finished pretraining run whose last record carries these cumulative totals."""
    path = root / "group" / name
    path.mkdir(parents=True)
    config = {"dataset": {"name": "audioset_librispeech", "metric": "mAP"},
              "model": {"name": "ssast_base"}, "compression": {"name": method},
              "schedule": {"name": "custom", "phases": list(phases)},
              "pretrain": {"objective": "ssast"}, "seed": 0}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    plan = {"phases": [{"index": i, "c": c, "epochs": 0, "steps": steps}
                       for i, c in enumerate(phases)]}
    (path / "plan.json").write_text(json.dumps(plan))
    record = {"kind": "pretrain", "run": name, "C": phases[-1], "phase": len(phases) - 1,
              "step": steps, "global_step": steps * len(phases), "metric": "acc",
              "value": 0.5, "flops_cum": flops, "seconds_cum": seconds}
    (path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    (path / "summary.json").write_text(json.dumps({"run": name, "status": "finished",
                                                   "kind": "pretrain"}))
    return path
