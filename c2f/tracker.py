"""W&B logging of one run: its epochs against three x-axes, its steps, its phases.

Every run declares its metrics with `define_metric` against epochs, cumulative training FLOPs
and cumulative training seconds: the headline metric and the losses are logged as they are
(x-axis: epoch) and again as `flops/<name>` (x-axis: `flops_cum`) and `time/<name>` (x-axis:
`seconds_cum`), so a W&B line plot of `flops/acc` is already accuracy against FLOPs. The
training loss and learning rate are logged every `logger.log_every_steps` optimizer steps as
`step/loss` and `step/lr` (x-axis: `step/samples`, the samples seen). The first step of each
phase logs `phase/C` (the phase's compression factor), which marks the boundaries. W&B's own
step is the cumulative sample count, which only grows, so a resumed run's repeated steps are
dropped rather than duplicated. Tags name the dataset, model, method, C and schedule; runs of
one sweep share `group`.

W&B's service writes what `log` hands it some time later: a process killed meanwhile loses
those rows. So a run that resumes logs again the epochs W&B may lack (`replay`): after the step
an online run has (W&B's `run.step`), or, offline, where every attempt writes an
offline-run folder of its own, after the last epoch of an attempt that finished W&B's run
(`wandb/c2f-logged.json`, written after a `finish()` that returned).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from c2f.files import atomic_write_text

AXES = {"flops": "flops_cum", "time": "seconds_cum"}  # prefix -> x-axis key
CURVES = ("train_loss", "eval_loss")  # logged against every axis, with the run's metric
LOGGED = "c2f-logged.json"  # in <run>/wandb/: the last step a finished W&B attempt wrote


def logged_step(run_dir: Path) -> int:
    """The W&B step (samples_cum) up to which the run's epochs are surely in W&B's files: the
    last epoch of an attempt whose `finish()` returned; -1 where none did."""
    try:
        return int(json.loads((run_dir / "wandb" / LOGGED).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def replayable(records: list[dict]) -> list[dict]:
    """The records `replay` logs again: epochs, and pretraining evaluations (runs written
    before averaging existed have no `kind`)."""
    return [r for r in records if r.get("kind", "epoch") in ("epoch", "pretrain")]


def lacks_epochs(run_dir: Path, records: list[dict]) -> bool:
    """Whether W&B's files of the run may lack some of its epoch records."""
    return any(r["samples_cum"] > logged_step(run_dir) for r in records)


def flat_config(semantic: dict, group: str) -> dict[str, Any]:
    """Flat keys W&B can group by, next to the full config."""
    return {
        "dataset": semantic["dataset"]["name"], "model": semantic["model"]["name"],
        "method": semantic["compression"]["name"], "schedule": semantic["schedule"]["name"],
        "C": semantic["schedule"]["c"], "seed": semantic.get("seed"), "group": group,
        "full": semantic,
    }


def run_tags(config: dict, extra: tuple[str, ...] = ()) -> list[str]:
    """dataset:..., model:..., method:..., C:..., schedule:..., then the user's tags."""
    return [f"{key}:{config[key]}" for key in ("dataset", "model", "method", "C", "schedule")
            ] + list(extra)


def _opened(start, mode: str, log):
    """`start(mode)`. W&B's service is shared with the process this one inherits WANDB_SERVICE
    from (a notebook or script that used W&B, `wandb beta core start`, a test runner); an
    attempt of this run killed a moment ago leaves its run held there ("run ID ... is in use")
    for as long as that service lives. This process then leaves it and starts its own."""
    import wandb

    try:
        return start(mode)
    except Exception as err:  # wandb-core's ServerResponseError has no type of its own
        if "is in use" not in str(err):
            raise
    log(f"note: the W&B service this process shares ({wandb.env.SERVICE}) still holds the "
        "run for a killed attempt; starting a W&B service of this process's own")
    wandb.teardown()  # this process's connection to the shared service
    os.environ.pop(wandb.env.SERVICE, None)
    return start(mode)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _let_go_of_service() -> None:
    """W&B failed (its service killed, most likely): this process's end of the connection is
    closed now, quietly, or W&B's own exit hook prints a "Connection lost" traceback into the
    job's log as the process ends."""
    import wandb

    try:
        wandb.teardown()
    except Exception:  # noqa: BLE001 - the connection is broken: what teardown says of it
        pass


def _survives_wandb(default=None):
    """A Tracker method whose W&B call fails (W&B's service killed: SLURM signals every
    process of a job step, W&B's too; a network gone) says so once and ends W&B for this
    attempt: the training goes on, and the next start logs the epochs W&B lacks."""
    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - W&B records the training; it is not it
                if self.run is None:
                    raise
                self.run = None  # not finished: the next start sees what W&B lacks
                _let_go_of_service()
                self.log_line(f"warning: W&B stopped working ({type(err).__name__}: "
                              f"{_first_line(err)}); this attempt trains on without it, and "
                              "the next start logs the epochs W&B lacks")
                return default
        return guarded
    return wrap


class Tracker:
    """One W&B run per run folder (its `wandb_id`), resumable; `finish()` always called by
    `close`."""

    def __init__(self, mode: str, project: str, entity: str | None, run_id: str, group: str,
                 run_dir: Path, config: dict, tags: tuple[str, ...] = (), metric: str = "acc",
                 every_steps: int = 20, log=print):
        self.run, self.metric, self.every_steps, self.log_line = None, metric, every_steps, log
        self.run_dir, self.last_step = run_dir, -1
        if mode == "disabled":
            return
        import wandb

        def start(mode: str):
            return wandb.init(project=project, entity=entity, id=run_id, resume="allow",
                              mode=mode, dir=str(run_dir), group=group, job_type="train",
                              config=config, tags=run_tags(config, tags),
                              reinit="finish_previous",
                              settings=wandb.Settings(console="off", silent=True))
        try:
            try:
                self.run = _opened(start, mode, log)
            except wandb.errors.Error as err:
                if mode != "online":
                    raise
                # no key, no network (a compute node), a server that refuses: the training
                # the job came for goes on, logged where `wandb sync` uploads it from later
                log(f"warning: W&B online failed ({_first_line(err)}); logging offline "
                    f"instead: `wandb sync {run_dir / 'wandb'}/offline-run-*` uploads it later "
                    "(logger.mode=offline skips the attempt)")
                self.run = _opened(start, "offline", log)
        except Exception as err:  # noqa: BLE001 - W&B records the training; it is not it
            log(f"warning: W&B could not open run {run_id} ({_first_line(err)}); this attempt "
                "trains without it, and the next start logs the epochs W&B lacks")
            self.run = None
            return
        self._declare()

    @_survives_wandb()
    def _declare(self) -> None:
        run = self.run
        for axis in ("epoch", *AXES.values(), "step/samples"):
            run.define_metric(axis, hidden=False)
        better = "min" if self.metric.endswith("loss") else "max"
        run.define_metric(self.metric, step_metric="epoch", summary=better)
        for name in CURVES:
            run.define_metric(name, step_metric="epoch", summary="min")
        for prefix, axis in AXES.items():
            run.define_metric(f"{prefix}/*", step_metric=axis)
        run.define_metric("step/*", step_metric="step/samples")
        run.define_metric("phase/*", step_metric="step/samples")

    @_survives_wandb()
    def log(self, record: dict) -> None:
        """One epoch (or pretraining evaluation) record: its numbers, and the curves again
        against FLOPs and seconds."""
        if self.run is None:
            return
        numbers = {k: v for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for prefix, axis in AXES.items():
            if axis in numbers:
                numbers |= {f"{prefix}/{name}": numbers[name]
                            for name in (self.metric, *CURVES) if name in numbers}
        self.run.log(numbers, step=int(record["samples_cum"]))
        self.last_step = max(self.last_step, int(record["samples_cum"]))

    @_survives_wandb(0)
    def replay(self, records: list[dict]) -> int:
        """Log again the kept epoch (or pretraining) records W&B may lack (a killed attempt's,
        handed to W&B's service but not yet written); before any other row of this attempt.
        How many."""
        if self.run is None:
            return 0
        after = max(logged_step(self.run_dir), self.run.step - 1)  # online: W&B's last step
        again = [r for r in replayable(records) if r["samples_cum"] > after]
        # what W&B already holds counts as logged: close() then records it, so a finished
        # online run is not opened again on every relaunch to log nothing
        self.last_step = max(self.last_step, min(after, max(
            (r["samples_cum"] for r in records), default=-1)))
        for record in again:
            self.log(record)
        return len(again)

    def wants_step(self, step: int) -> bool:
        """Whether optimizer step `step` (of the phase, from 0) is one to log."""
        return self.run is not None and self.every_steps > 0 and step % self.every_steps == 0

    @_survives_wandb()
    def log_step(self, values: dict, samples_cum: int, phase_start: int | None = None) -> None:
        """Per-step values (loss, lr) as `step/<name>`; `phase_start`: the C of a phase whose
        first step this is (a boundary marker)."""
        if self.run is None:
            return
        row = {f"step/{k}": v for k, v in values.items()} | {"step/samples": samples_cum}
        if phase_start is not None:
            row["phase/C"] = phase_start
        self.run.log(row, step=samples_cum)

    @_survives_wandb()
    def summarize(self, summary: dict) -> None:
        """Scalars as they are; one level of mappings as `key/inner` (average/value, ...)."""
        if self.run is None:
            return
        for key, value in summary.items():
            inner = value.items() if isinstance(value, dict) else [(None, value)]
            for name, item in inner:
                if isinstance(item, (int, float, str)):
                    self.run.summary[key if name is None else f"{key}/{name}"] = item

    def preempting(self) -> None:
        """The job is about to be requeued (submitit, on a preemption or the time limit): W&B
        is told, so that it shows the run preempted. Offline, its files are also finished
        now: SLURM ends the job step, W&B's service with it, within seconds of the requeue
        (online, finishing could wait on the network; the next attempt logs what is lost)."""
        if self.run is None:
            return
        try:
            self.run.mark_preempting()
        except Exception:  # noqa: BLE001 - a label; the requeue is what matters
            return
        if getattr(self.run, "offline", False):
            self.close(exit_code=1)

    def close(self, exit_code: int = 0) -> None:
        """Finish the W&B run. A W&B that cannot finish (its service already stopped: a SLURM
        requeue's signal, a job cancelled) is said and passed over, so that the job's own
        outcome, a requeue (SystemExit) among them, is what its launcher sees; the offline
        files are kept either way."""
        if self.run is None:
            return
        run, self.run = self.run, None
        try:
            run.finish(exit_code=exit_code)
            if self.last_step > logged_step(self.run_dir):  # written, up to here
                atomic_write_text(self.run_dir / "wandb" / LOGGED,
                                  json.dumps({"step": self.last_step}))
        except Exception as err:  # noqa: BLE001 - any W&B failure: the training's result stands
            _let_go_of_service()
            self.log_line(f"warning: W&B could not finish this run's log ({type(err).__name__}"
                          f": {str(err).splitlines()[0] if str(err) else ''}); what it logged "
                          "is in the run's wandb/ folder")
