"""How a run's trainer settings changed between its starts. They are outside its identity (how
it trains, not what), so a relaunch may change them; those that may change its numbers are
said on a resume and kept in plan.json (`trainer_changes`), since config.yaml holds only the
latest, and a finished run relaunched otherwise says how it was trained.

Settings are compared as they acted: `trainer.precision=auto` is bf16 on one GPU and fp16 on
another (c2f/train/precision.py), so each start records its own in plan.json
(`trainer_used`); a run from before that record is read from config.yaml, resolved here."""
from __future__ import annotations

import dataclasses

import torch
import yaml

from c2f.spec import RunSpec
from c2f.track import RunDir, RunFileError
from c2f.train.checkpoint import saved_state
from c2f.train.precision import for_evaluation, resolve

# settings a resume may change without changing a number (tests/test_run_e2e.py resumes
# bitwise with other workers, reading files instead of cached clips)
SAME_NUMBERS = {"trainer.num_workers", "trainer.cache_audio", "trainer.keep_checkpoints",
                "trainer.checkpoint_minutes"}
NOT_SETTINGS = ("dry_run", "progress", "wait_for_lock")


def acting(trainer: dict, device: torch.device) -> dict:
    """`trainer` as it acts on `device`: the device `auto` picks, the precision `auto`
    resolves to, and evaluation's (a config from before `trainer.eval_precision` evaluated in
    its training precision)."""
    precision = trainer.get("precision", "auto")
    evaluation = for_evaluation(precision, trainer.get("eval_precision", "train"))
    return {**trainer, "device": device.type if trainer.get("device", "auto") == "auto"
            else trainer["device"], "precision": _resolved(precision, device),
            "eval_precision": _resolved(evaluation, device)}


def _resolved(precision: str, device: torch.device) -> str:
    """`resolve`, where the device is there to ask (a CUDA device on a machine without one
    is refused later, with its own message)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return precision
    return resolve(precision, device)


def used_now(spec: RunSpec, device: torch.device) -> dict:
    """This start's settings as they act, for plan.json's `trainer_used`."""
    return acting(dataclasses.asdict(spec.trainer), device)


def _configured(run: RunDir) -> dict | None:
    """The trainer settings config.yaml gives (the run's last start's, as typed)."""
    try:
        stored = (yaml.safe_load((run.path / "config.yaml").read_text()) or {}).get("trainer")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return stored if isinstance(stored, dict) else None


def _used_before(run: RunDir, device: torch.device) -> dict | None:
    try:
        recorded = (run.read_plan() or {}).get("trainer_used")
    except RunFileError:
        recorded = None
    if isinstance(recorded, dict):
        return recorded
    stored = _configured(run)
    return acting(stored, device) if stored is not None else None


def changes(spec: RunSpec, run: RunDir, device: torch.device | None) -> dict[str, list]:
    """The settings this command trains with otherwise than the run's last start did:
    `trainer.<key>` -> [then, now]; as they acted on `device`, or as typed (None)."""
    before = _configured(run) if device is None else _used_before(run, device)
    if before is None:
        return {}
    now = dataclasses.asdict(spec.trainer) if device is None else used_now(spec, device)
    return {f"trainer.{key}": [before[key], now[key]] for key in sorted(now)
            if key in before and key not in NOT_SETTINGS and before[key] != now[key]}


def resumed_otherwise(spec: RunSpec, run: RunDir, device: torch.device, echo) -> dict | None:
    """A resume with settings that may change the run's numbers (bf16 after fp32 epochs):
    said, and returned for plan.json's `trainer_changes`; None otherwise."""
    saved = saved_state(run.ckpt_dir)
    changed = {key: pair for key, pair in changes(spec, run, device).items()
               if key not in SAME_NUMBERS} if saved is not None else {}
    if not changed:
        return None
    listed = ", ".join(f"{key}={now} (before: {then})" for key, (then, now) in changed.items())
    echo(f"note: run {spec.run_id} resumes with {listed}: not part of its identity, but what "
         "it trains from here may compute otherwise; plan.json keeps the change "
         "(trainer_changes)")
    after = {"after_epochs": saved["epoch"]} if "epoch" in saved else \
        {"after_steps": saved.get("global_step")}  # pretraining's
    return after | {"changed": changed}


def finished_otherwise(spec: RunSpec, run: RunDir) -> str:
    """For a finished run relaunched with other settings than its config.yaml's (as typed:
    the same command on another machine is not "other settings"): which, and how to train
    this command's in a folder of its own; "" when none differ."""
    differ = [f"{key}={now} (the run's: {then})"
              for key, (then, now) in changes(spec, run, None).items()]
    if not differ:
        return ""
    verb = "is" if len(differ) == 1 else "are"
    return (f" Your {', '.join(differ)} {verb} not part of a run's identity (how a run trains, "
            "not what it trains); 'group=<name>' trains it in a folder of its own.")
