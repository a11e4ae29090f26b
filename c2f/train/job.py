"""One job: spec -> plan -> (skip if finished) -> data -> train -> summary."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import torch
import yaml

from c2f.compression import compression_class
from c2f.data.identity import eval_data_record
from c2f.data.resolve import resolve_data, train_clip_count
from c2f.epochs import metric_text
from c2f.files import atomic_write_text
from c2f.flops_cache import code_version
from c2f.models import model_family
from c2f.models.mixup import loaded_per_step
from c2f.plan import build_plan, flops_text, format_plan, format_recipe
from c2f.spec import ConfigError, RunSpec, config_hash, semantic_config, with_pretraining_run
from c2f.track import RunDir, RunHeld, RunLock
from c2f.tracker import Tracker, flat_config, lacks_epochs, replayable
from c2f.train.distributed import all_sum, device_for, init_world, world_from_env
from c2f.train.failures import interrupted
from c2f.train.graphs import graph_obstacle, use_graphs
from c2f.train.loop import PhaseLoop
from c2f.train.phase_data import data_bundle
from c2f.train.pretrain import PretrainLoop, pretrain_summary
from c2f.train.records import format_summary, summarize
from c2f.train.step import Diverged
from c2f.train.stopping import Interrupted, sigterm_saves, training
from c2f.train.trainer_changes import finished_otherwise, resumed_otherwise, used_now

DIVERGED = "diverged.json"  # where and why a run's loss stopped being finite


def _check_writable(run: RunDir) -> None:
    """Fail before any work when the run directory or its ckpt/ cannot be written, naming
    it; the probe file is removed whatever happened."""
    for folder in (run.path, run.ckpt_dir):
        probe = folder / f".write-test-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
        except OSError as err:
            raise ConfigError(f"cannot write {folder} ({err.strerror or err}); point "
                              "paths.runs_dir (or C2F_ROOT) at a writable folder with free "
                              "space") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()


def _check_drift(spec: RunSpec, run: RunDir) -> None:
    """A run directory made by another version of the code for the same id (its stored
    config no longer hashes to it, or says otherwise) is reported, never mixed."""
    stored_path = run.path / "config.yaml"
    if not stored_path.exists():
        return
    try:
        config = yaml.safe_load(stored_path.read_text()) or {}
        if not isinstance(config, dict):
            raise yaml.YAMLError(f"a YAML {type(config).__name__}, not a mapping of keys")
    except (OSError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: {err.problem}" if mark else str(err)
        raise ConfigError(
            f"run {spec.run_id}: {stored_path} is unreadable ({where}), so whether this folder "
            "was made by this config cannot be checked. If it was, delete that file: it is "
            f"written again from this command's config; otherwise move {run.path} away") from None
    try:  # the pretraining run a `pretrain:<phases>` fine-tuning run loaded, as it recorded it
        recorded = json.loads((run.path / "plan.json").read_text()).get("pretrained_run")
    except (OSError, ValueError, AttributeError):
        recorded = None
    stored = with_pretraining_run(semantic_config(config), (config.get("model") or {}).get(
        "pretrained"), recorded.split("/")[-1] if recorded else None)
    if config_hash(stored) == spec.run_id:
        return
    now = json.loads(json.dumps(spec.semantic, default=str))
    then = json.loads(json.dumps(stored, default=str))
    keys = sorted(k for k in _flat(now).keys() | _flat(then).keys()
                  if _flat(now).get(k) != _flat(then).get(k))
    listed = ", ".join(f"{k} (stored {_flat(then).get(k)!r}, now {_flat(now).get(k)!r})"
                       for k in keys[:8]) or "how the id is computed"
    raise ConfigError(
        f"run {spec.run_id}: {stored_path} was written by another version of c2f and differs "
        f"from this one's config in: {listed}. Its checkpoints would mix two recipes; move "
        f"{run.path} away to train this config anew, or check out the code that made it")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def diverged_before(spec: RunSpec, run: RunDir) -> ConfigError | None:
    """The error that refuses to train again a run whose loss stopped being finite (the same
    config would repeat it), None for any other run (and in a dry run)."""
    diverged = run.path / DIVERGED
    if spec.trainer.dry_run or not diverged.exists():
        return None
    try:
        where = json.loads(diverged.read_text())
    except (OSError, ValueError) as err:  # still a record that it diverged
        where = {"message": f"unreadable: {err}"}
    return ConfigError(
        f"run {spec.run_id} diverged before ({diverged}: {where.get('message', where)}). "
        "Relaunching the same config would repeat it; change optim.lr or optim.grad_clip "
        "(a new run), or delete that file to retry as it is (for example in another "
        "trainer.precision)")


def _finished(spec: RunSpec, run: RunDir, echo) -> dict | None:
    """The summary of a finished run (said so), None otherwise; refuses a diverged run."""
    refused = diverged_before(spec, run)
    if refused is not None:
        raise refused
    done = run.finished_summary()
    if done:
        echo(f"run {spec.run_id} already finished ({run.path}); best {done['metric']} "
             f"{metric_text(done['best'])}. Delete the folder to train it again."
             f"{finished_otherwise(spec, run)}"
             f"{_code_changed(spec, run, 'its results are the old code')}")
        return done
    return None


def _pretraining_run(spec: RunSpec) -> str | None:
    """`<group>/<id>` of the pretraining run whose checkpoint a fine-tuning run loads (the
    report pairs Table 6's rows by it); None for weights from elsewhere."""
    weights = Path(spec.model.pretrained) if spec.model.pretrained else None
    if weights is None or weights.parent.name != "ckpt" or \
            not (weights.parents[1] / "plan.json").is_file():
        return None
    return f"{weights.parents[2].name}/{weights.parents[1].name}"


def _code(spec: RunSpec) -> str:
    """The version of the code the run's plan depends on: its method's and model's modules and
    what they share, not another method's or model's (flops_cache.code_version)."""
    return code_version(spec.compression.name, spec.model.arch)


def _code_changed(spec: RunSpec, run: RunDir, consequence: str) -> str:
    """A note when the code of the run's method or model (or what methods and models share, a
    plugin's included: flops_cache's code_version) changed since the run was planned: a run's
    id is its config, not its code."""
    try:
        stored = json.loads((run.path / "plan.json").read_text()).get("code_version")
    except (OSError, ValueError, AttributeError):
        return ""
    if stored is None or stored in (_code(spec), code_version()):  # code_version(): all of
        return ""  # it, as plans made before versions per method and model hold
    return (f" Note: the code of its method or model (or what they share with others, or the "
            f"torch and timm versions) changed since this run was planned ({stored}, now "
            f"{_code(spec)}): {consequence}; 'group=<name>' trains it anew in a folder of "
            "its own if that matters.")


def epoch_samples(spec: RunSpec, clips: int | None) -> int | None:
    """The samples an epoch trains: its clips, capped by trainer.max_steps_per_epoch."""
    if clips is None or spec.trainer.max_steps_per_epoch is None:
        return clips
    return min(clips, spec.trainer.max_steps_per_epoch
               * loaded_per_step(spec.model.batch_mixup, spec.dataset.batch_size))


def print_dry_run(spec: RunSpec, plan, echo=print):
    """Print a dry run's plan and recipe; the plan, with its predicted compute where the
    clips can be counted without reading audio."""
    plan = dataclasses.replace(plan, train_samples=epoch_samples(
        spec, train_clip_count(spec.dataset)))
    echo(f"run {spec.run_id} -> {spec.run_dir}\n{format_plan(plan)}\n{format_recipe(spec)}\n"
         f"{_weights_note(spec)}(dry run: nothing trained)")
    return plan


def _weights_note(spec: RunSpec) -> str:
    """A dry run's note on pretrained weights a real launch would need and not find."""
    try:
        model_family(spec.model.arch).check_pretrained(spec.model)
    except ConfigError as err:
        return f"note: {err} (the dry run goes on; a launch stops here)\n"
    return ""


def run_job(spec: RunSpec, config_yaml: str, echo=print) -> dict | None:
    """Train `spec` in its run directory, resuming or skipping as needed; returns the summary.
    One process trains a run at a time: the run directory is locked (track.RunLock)."""
    run = RunDir(spec.run_dir)
    plan = build_plan(spec)
    done = _finished(spec, run, echo)
    if spec.trainer.dry_run:  # the plan, whether the run is trained yet or not
        print_dry_run(spec, plan, echo)
        return None
    if done:
        _complete_wandb(spec, run, done, echo)
        return done
    if spec.trainer.threads:
        torch.set_num_threads(spec.trainer.threads)
    world = init_world(spec.trainer.device)
    if spec.dataset.batch_size % world.size:
        raise ConfigError(f"`dataset.batch_size`={spec.dataset.batch_size} does not split over "
                          f"{world.size} processes; use a multiple of {world.size}")
    if spec.pretrain is None:  # trainer.cuda_graphs=true on this machine: before any data
        use_graphs(spec.trainer.cuda_graphs, graph_obstacle(
            device_for(world, spec.trainer.device), world.active, spec.trainer.compile))
    if not world.is_main:
        echo = _quiet
    lock, held = RunLock(run.path), None
    # a run another process trains is left before its data is read (a header check of every
    # clip); data that cannot be used fails before the run has a folder
    holder = lock.held_by() if world.is_main and not spec.trainer.wait_for_lock else None
    if all_sum([1 if holder else 0], world)[0]:
        raise lock.held_error() if holder else RunHeld(f"run {run.path} is held by another "
                                                       "process")
    if world.is_main:
        _check_drift(spec, run)
    resolved = resolve_data(spec.dataset, spec.data_dir, echo, spec.model_features,
                            unlabeled=spec.pretrain is not None)
    if world.is_main:
        _check_writable(run)
        try:
            lock.acquire(spec.trainer.wait_for_lock, echo)
        except RunHeld as err:
            held = err
    if all_sum([1 if held else 0], world)[0]:  # every rank of this job leaves
        raise held or RunHeld(f"run {run.path} is held by another process")
    try:
        return _finished(spec, run, echo) or _train(spec, plan, run, world, config_yaml, echo,
                                                    resolved)
    finally:
        lock.release()


def _train(spec: RunSpec, plan, run: RunDir, world, config_yaml: str, echo, resolved
           ) -> dict:
    """The loop (classification or pretraining) on `resolved` (resolve_data's manifests and
    feature settings), the summary."""
    if run.summary_path.exists() and run.read_summary() is None:
        echo(f"note: {run.summary_path} is unreadable; the run resumes from its checkpoint, "
             "which writes it again")
    train, evaluation, settings = resolved
    plan = dataclasses.replace(plan, train_samples=epoch_samples(spec, len(train.clips)))
    echo(f"run {spec.run_id} -> {run.path}\n{format_plan(plan)}\n{format_recipe(spec)}")
    if world.is_main:
        code = _code_changed(spec, run, "it resumes with the new code")
        if code:
            echo(code.strip())
        title = compression_class(spec.compression.name).title or spec.compression.name
        device = device_for(world, spec.trainer.device)
        run.create(config_yaml, plan.to_dict() | {"code_version": _code(spec),
                                                  "method_title": title,  # the report's
                                                  "pretrained_run": _pretraining_run(spec),
                                                  "trainer_used": used_now(spec, device)},
                   trainer_change=resumed_otherwise(spec, run, device, echo))
        run.write_inference(dataclasses.asdict(settings), train.class_names,
                            eval_data_record(evaluation))
    tracker = _tracker(spec, run, world.is_main, echo)
    exit_code, loop = 1, None
    try:
        data = data_bundle(train, evaluation, settings, spec.trainer,
                           progress=spec.trainer.progress and world.is_main)
        if spec.pretrain is not None:
            summary = _pretrain(spec, plan, data, run, tracker, echo, world)
            exit_code = 0
            return summary
        loop = PhaseLoop(spec, plan, data, run, tracker, echo, world)
        loop.skipped.update(train.dropped + evaluation.dropped)  # found before training
        try:
            # a stop signal saves the training first; W&B is told of a requeue before it
            with sigterm_saves(echo), training(on_preempt=tracker.preempting):
                records = loop.run()
        except Diverged as err:
            if world.is_main:
                atomic_write_text(run.path / DIVERGED,
                                  json.dumps({**err.where, "message": str(err)}))
            raise
        silent = {split: len(ids) for split, ids in loop.silent.items()}
        summary = summarize(spec, plan, records, loop.skipped, silent, evaluation)
        if world.is_main:
            _finish(run, summary, loop.skipped)
            tracker.summarize(summary)
        exit_code = 0
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM: W&B's run ends with the shell's code
        exit_code = getattr(stop, "EXIT_CODE", Interrupted.EXIT_CODE)
        raise interrupted(run.ckpt_dir / "last.pt", stop, world.rank) from None
    finally:
        tracker.close(exit_code)
    echo(format_summary(summary, records))
    return summary


def _tracker(spec: RunSpec, run: RunDir, main: bool, echo) -> Tracker:
    """The run's W&B run (rank 0's; the others log nothing)."""
    metric = "acc" if spec.pretrain is not None else spec.dataset.metric
    return Tracker(spec.logger.mode if main else "disabled", spec.logger.project,
                   spec.logger.entity, run.wandb_id() if main else spec.run_id, spec.group,
                   run.path, flat_config(spec.semantic, spec.group), spec.logger.tags,
                   metric, spec.logger.log_every_steps, log=echo)


def _complete_wandb(spec: RunSpec, run: RunDir, summary: dict, echo) -> None:
    """A finished run whose W&B files may lack epochs (an attempt killed before W&B wrote
    them, or trained with logger=disabled) logs them again, with its summary; a run whose last
    W&B attempt finished after its last epoch is not opened again."""
    records = replayable(run.read_metrics())
    if spec.logger.mode == "disabled" or not lacks_epochs(run.path, records) or \
            not world_from_env().is_main:
        return
    tracker = _tracker(spec, run, True, echo)
    try:
        unit = "evaluation" if spec.pretrain is not None else "epoch"
        echo(f"W&B: logged {tracker.replay(records)} {unit}(s) its files may lack")
        tracker.summarize(summary)
    finally:
        tracker.close(0)


def _pretrain(spec: RunSpec, plan, data, run: RunDir, tracker: Tracker, echo,
              world) -> dict:
    """A pretraining run (spec.pretrain): step-based phases, then its summary."""
    loop = PretrainLoop(spec, plan, data, run, tracker, echo, world,
                        device_for(world, spec.trainer.device))
    with sigterm_saves(echo), training(on_preempt=tracker.preempting):
        records = loop.run()
    summary = pretrain_summary(spec, records)
    if world.is_main:
        run.write_summary(summary)
        tracker.summarize(summary)
    echo(f"pretrained {summary['steps']} steps: masked-patch acc {summary['final']:.4f} (best "
         f"{summary['best']:.4f}); {flops_text(summary['flops'])}, "
         f"{summary['seconds']:.1f} s; weights in {run.ckpt_dir / 'last.pt'}")
    return summary


def _quiet(*args, **kwargs) -> None:
    """Ranks other than 0 print nothing."""


def _finish(run: RunDir, summary: dict, skipped: dict[str, str]) -> None:
    if skipped:
        (run.path / "skipped.txt").write_text(
            "".join(f"{path}\t{reason}\n" for path, reason in sorted(skipped.items())))
    run.write_summary(summary)
