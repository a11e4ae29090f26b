"""End to end through the real CLI: phases, metrics, W&B offline, resume after a kill, skip."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch

from tests import wandb_log
from tests.conftest import (
    ROOT,
    TINY,
    cli_command,
    cli_env,
    kill_after_records,
    read_metrics,
    run_cli,
    run_dirs,
)

pytestmark = pytest.mark.slow
TWO_PHASE = [*TINY, "logger=disabled", "compression=fshift", "schedule=2phase", "schedule.c=2"]
# AST's weight averaging over the final phase's epochs 3..6 (of 2 + 4); training that draws
# from the CPU RNG (stochastic depth: timm leaves a single block's rate at 0)
AVERAGED = [*TWO_PHASE, "dataset.epochs=6", "average=epochs", "average.start=3",
            "model.depth=2", "model.drop_path=0.3"]
FIELDS = {"run", "dataset", "model", "method", "C", "phase", "phase_epoch", "epoch", "metric",
          "value", "acc", "train_loss", "eval_loss", "lr", "flops", "flops_cum", "seconds",
          "seconds_cum", "samples", "samples_cum"}


def test_two_phase_run_metrics_and_wandb_offline(tmp_path, data_dir):
    runs = tmp_path / "runs"
    proc = run_cli([*TINY, "logger=wandb", "compression=patch_pi", "schedule=2phase",
                    "schedule.c=4", "logger.log_every_steps=2", "logger.tags=[mine]"], runs,
                   data_dir)
    assert "phase" in proc.stdout and "FLOPs/sample" in proc.stdout  # the plan is printed
    assert "Warning" not in proc.stderr, proc.stderr  # a user's first run prints no warnings
    [run] = run_dirs(runs)
    records = read_metrics(run)
    assert [(r["phase"], r["C"], r["phase_epoch"]) for r in records] == [
        (0, 4, 1), (1, 1, 1), (1, 1, 2), (1, 1, 3)]
    for record in records:
        assert FIELDS <= set(record) and record["metric"] == "acc"
        assert 0.0 <= record["value"] <= 1.0 and record["samples"] == 44
    cum = [r["flops_cum"] for r in records]
    assert cum == sorted(cum) and cum[-1] == sum(r["flops"] for r in records)
    plan = json.loads((run / "plan.json").read_text())
    for record in records:  # the plan's predicted FLOPs agree with the counted ones
        phase = plan["phases"][record["phase"]]
        assert record["flops"] == phase["flops_per_sample"] * record["samples"]
    assert records[0]["flops"] < 0.5 * records[1]["flops"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4
    # its best is the final phase's: the model predict, evaluate and export deliver
    assert summary["best"] == max(r["value"] for r in records if r["final_phase"])
    assert plan["wandb_id"].startswith(f"{run.name}-")  # one W&B run per run folder
    [log] = list(run.glob(f"wandb/offline-run-*/run-{plan['wandb_id']}.wandb"))
    check_wandb_log(log, records)

    from c2f.flops_cache import code_version

    now = code_version("patch_pi", "ast")
    assert plan["code_version"] == now  # the code it was planned with: its method's and model's
    (run / "plan.json").write_text(json.dumps(plan | {"code_version": "0ld"}))
    again = run_cli([*TINY, "logger=wandb", "compression=patch_pi", "schedule=2phase",
                     "schedule.c=4", "logger.log_every_steps=2", "trainer.precision=bf16"],
                    runs, data_dir)
    assert "already finished" in again.stdout
    # the methods' or models' code changed since: its id is its config, so it is said
    assert "Note: the code of its method or model (or what they share with others, or the " \
        f"torch and timm versions) changed since this run was planned (0ld, now {now}): its " \
        "results are the old code" in again.stdout
    # the same run, asked for in another precision: said why it is not trained again
    assert "Your trainer.precision=bf16 (the run's: auto) is not part of a run's identity" \
        in again.stdout and "'group=<name>' trains it in a folder of its own" in again.stdout
    assert read_metrics(run) == records
    # a dry run of the finished run still shows its plan ("plan only" means the plan)
    plan_only = run_cli([*TINY, "compression=patch_pi", "schedule=2phase", "schedule.c=4",
                         "trainer.dry_run=true"], runs, data_dir)
    assert "already finished" in plan_only.stdout and "(dry run: nothing trained)" in \
        plan_only.stdout and "shift ms  patch  grid" in plan_only.stdout


def test_wandb_online_without_a_key_logs_offline_and_trains(tmp_path, data_dir):
    """A compute node without W&B credentials (HOME without .netrc, no WANDB_API_KEY): the
    real wandb refuses online mode; the job trains anyway and logs offline for `wandb sync`."""
    runs = tmp_path / "runs"
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_INIT_TIMEOUT": "20"}
    proc = run_cli([*TINY, "logger=wandb", "logger.mode=online", "dataset.epochs=2",
                    "trainer.max_steps_per_epoch=2"], runs, data_dir, env=env)
    [run] = run_dirs(runs)
    # the plan's prediction counts the steps the cap leaves: 2 of 4 batches of 11 clips
    assert "over 2 epochs of 22 samples" in proc.stdout
    plan = json.loads((run / "plan.json").read_text())
    assert plan["predicted_flops"] == sum(r["flops"] for r in read_metrics(run))
    assert "warning: W&B online failed (" in proc.stdout, proc.stdout
    assert f"logging offline instead: `wandb sync {run / 'wandb'}/offline-run-*`" in proc.stdout
    records = read_metrics(run)
    assert len(records) == 2
    [log] = list(run.glob(f"wandb/offline-run-*/run-{run.name}-*.wandb"))
    assert [h["acc"] for h in wandb_log.history(log) if "acc" in h] == \
        [r["acc"] for r in records]


def check_wandb_log(log, records: list[dict]) -> None:
    """The offline run as W&B will upload it: epochs against three declared x-axes, the
    training loss every 2 steps, a marker at each phase's first step, tags and group."""
    history = wandb_log.history(log)
    epochs = [h for h in history if "acc" in h]
    assert [h["acc"] for h in epochs] == [r["acc"] for r in records]
    assert [(h["flops/acc"], h["flops_cum"]) for h in epochs] == [
        (r["acc"], r["flops_cum"]) for r in records]
    assert [(h["time/eval_loss"], h["seconds_cum"]) for h in epochs] == [
        (r["eval_loss"], r["seconds_cum"]) for r in records]
    declared = wandb_log.metrics(log)
    assert declared["acc"] == {"step_metric": "epoch", "summary": ["max"]}
    assert declared["flops/*"]["step_metric"] == "flops_cum"
    assert declared["time/*"]["step_metric"] == "seconds_cum"
    assert declared["step/*"]["step_metric"] == "step/samples"
    steps = [h for h in history if "step/loss" in h]
    # 4 steps (of 11 clips) per epoch, logged at every even step of each phase
    assert len(steps) == 2 * len(records)
    seen = [h["step/samples"] for h in steps]
    assert seen == sorted(seen) and seen[0] == 11 and seen[-1] == 44 * len(records) - 11
    assert [h["phase/C"] for h in history if "phase/C" in h] == [4, 1]
    run = wandb_log.run_record(log)
    assert {"dataset:builtin", "method:patch_pi", "C:4", "schedule:2phase", "mine"} <= set(
        run.tags)
    assert run.run_group == "default" and run.job_type == "train"


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir) -> list[dict]:
    """AVERAGED trained without a stop, every epoch's checkpoint kept; checked here."""
    runs = tmp_path_factory.mktemp("straight")
    run_cli([*AVERAGED, "trainer.keep_checkpoints=all"], runs, data_dir)
    [first] = run_dirs(runs)
    expected = read_metrics(first)
    assert [r["phase"] for r in expected] == [0, 0, 1, 1, 1, 1, 1]
    assert expected[-1]["kind"] == "average" and expected[-1]["averaged_epochs"] == [3, 4, 5, 6]
    # the averaged model is the mean of the final phase's epoch models, as AST's validate_wa
    models = [torch.load(first / "ckpt" / f"epoch{e:04d}.pt", weights_only=True)["model"]
              for e in (3, 4, 5, 6)]
    averaged = torch.load(first / "ckpt" / "average.pt", weights_only=True)
    for key, tensor in averaged.items():
        torch.testing.assert_close(tensor, sum(m[key] for m in models) / 4, msg=key)
    summary = json.loads((first / "summary.json").read_text())
    assert summary["average"] == {"mode": "epochs", "epochs": [3, 4, 5, 6],
                                  "value": expected[-1]["value"]}
    return expected


@pytest.mark.parametrize("kill_after, inside", [(2, False), (4, False), (3, True)],
                         ids=["at-phase-boundary", "mid-phase-epoch-boundary",
                              "mid-phase-mid-epoch"])
def test_killed_run_resumes_to_the_same_metrics_and_average(tmp_path, data_dir, straight,
                                                            kill_after, inside):
    """Killed after the coarse phase's last epoch, after the fine phase's second, or inside
    the fine phase's second epoch after a checkpoint there (every step with
    trainer.checkpoint_minutes=0): the same metrics, bitwise. The resumed run's persistent
    loader makes its first iterator in a later epoch of the phase than the straight run's: it
    takes no draw from the training's RNG."""
    expected = straight
    killed = tmp_path / "killed"
    kill_after_records([*AVERAGED, *(["trainer.checkpoint_minutes=0"] if inside else [])],
                       kill_after, killed, data_dir, inside_epoch=inside)
    [run] = run_dirs(killed)
    assert not (run / "summary.json").exists()
    assert len(read_metrics(run)) < len(expected)
    # resumed with two persistent loader workers (real ones: cached clips would load in the
    # main process): the items do not depend on who makes them
    proc = run_cli([*AVERAGED, "trainer.num_workers=2", "trainer.cache_audio=false"], killed,
                   data_dir)
    last = re.escape(str(run / "ckpt" / "last.pt"))
    done = re.search(rf"resuming from {last} \((\d+) epoch\(s\) done\)", proc.stdout)
    # killed between an epoch's metrics and its checkpoint, the epoch is trained again
    assert done and int(done.group(1)) in ({kill_after} if inside else {kill_after - 1,
                                                                        kill_after})
    assert ("resuming phase 1's epoch" in proc.stdout) == inside
    assert "resumes with" not in proc.stdout  # workers and the audio cache change no number
    resumed = read_metrics(run)
    same = ("kind", "value", "train_loss", "eval_loss", "flops", "flops_cum", "samples", "lr",
            "C", "averaged_epochs")
    assert [{k: r.get(k) for k in same} for r in resumed] == [{k: r.get(k) for k in same}
                                                              for r in expected]


SAVED = re.compile(r"terminated \(SIGTERM\): (\d+) epoch\(s\)(?: and (?:(\d+) step\(s\) of epoch "
                   r"\d+(?: \(its evaluation after them redone on resume\))?|the training of "
                   r"epoch \d+ \((\d+) steps; evaluated on resume\)))? "
                   r"saved in \S+last\.pt; the same command resumes")


def terminate_after(args: list[str], epochs: int, runs, data_dir, wait_s: float = 0.0,
                    steps: int = 0):
    """Start `run.py ARGS` in a process group of its own and SIGTERM the group (loader workers
    included, as SLURM signals a job step) `wait_s` after last.pt holds `epochs` epochs (and
    `steps` steps of the next): what last.pt held then, (epochs, steps) saved as the run said,
    and its stdout."""
    from c2f.train.checkpoint import saved_state

    proc = subprocess.Popen(cli_command(args, runs, data_dir), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
                            start_new_session=True)
    deadline, state = time.monotonic() + 300, None
    while not (state and (state["epoch"], (state.get("progress") or {}).get("steps", 0)) >=
               (epochs, steps)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.01)
        state = next((saved_state(p) for p in runs.glob("*/*/ckpt")), None)
    time.sleep(wait_s)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-2000:] + err[-3000:]
    said = SAVED.search(err)
    assert said and "Traceback" not in err, err[-3000:]
    saved = (int(said.group(1)), int(said.group(2) or said.group(3) or 0))
    assert saved > (state["epoch"], 0)  # written at the signal: more than last.pt held then
    return saved, out


def test_a_sigterm_saves_the_training_then_ends_the_run(tmp_path, data_dir, straight):
    """SIGTERM (`kill`, `scancel`, a preemption without a warning) once the run trains past
    epoch 3: with no checkpoint due (trainer.checkpoint_minutes is 30), the run saves last.pt
    after the step it is in, says what it saved and exits 143; the same command resumes to
    the same metrics, bitwise."""
    args = [*AVERAGED, "trainer.num_workers=2", "trainer.cache_audio=false"]
    runs = tmp_path / "runs"
    saved, out = terminate_after(args, 3, runs, data_dir)
    assert "SIGTERM: saving the training at the next step" in out
    [run] = run_dirs(runs)
    resumed = run_cli(args, runs, data_dir)
    assert ("resuming phase 1's epoch" in resumed.stdout) == (saved[1] > 0)
    same = ("kind", "value", "train_loss", "eval_loss", "flops_cum", "samples", "lr", "C")
    assert [{k: r.get(k) for k in same} for r in read_metrics(run)] == [
        {k: r.get(k) for k in same} for r in straight]


def test_a_sigterm_during_evaluation_saves_the_epochs_training(tmp_path, data_dir):
    """An eval set that takes most of each epoch (330 clips against 44 to train on), so that
    the SIGTERM almost always comes while an epoch is evaluated: the epoch's training is
    saved before its evaluation ends (a checkpoint after its last step), and the resumed run
    evaluates it and goes on to the uninterrupted run's metrics, bitwise."""
    args = [*TWO_PHASE, "dataset.builtin.eval_per_class=30"]
    run_cli(args, tmp_path / "straight", data_dir)
    expected = read_metrics(run_dirs(tmp_path / "straight")[0])
    runs = tmp_path / "runs"
    terminate_after(args, 1, runs, data_dir, wait_s=0.3)  # into the next evaluation
    [run] = run_dirs(runs)
    run_cli(args, runs, data_dir)
    same = ("kind", "value", "train_loss", "eval_loss", "flops_cum", "samples", "lr", "C")
    assert [{k: r.get(k) for k in same} for r in read_metrics(run)] == [
        {k: r.get(k) for k in same} for r in expected]


def test_top_k_from_inside_the_epochs_resumes_to_the_same_average(tmp_path, data_dir):
    """average.evals_per_epoch=4 (HTS-AT: 10): the model after each quarter of a final-phase
    epoch is evaluated and ranked; the average is the mean of the k files kept. A SIGTERM
    during one of these evaluations saves the training before it at once (an evaluation of
    AudioSet's eval set can outlast a signal's grace), and the resumed run evaluates that part
    again: the same records and average, bitwise."""
    args = [*TWO_PHASE, "dataset.epochs=4", "average=top_k", "average.k=3",
            "average.evals_per_epoch=4", "trainer.checkpoint_minutes=0",
            "trainer.num_workers=2", "trainer.cache_audio=false",  # the eval loader's workers
            "model.depth=2", "model.drop_path=0.3",  # training that draws from the CPU RNG
            "dataset.builtin.eval_per_class=8", "dataset.eval_batch_size=1"]  # long evaluations
    run_cli(args, tmp_path / "straight", data_dir)
    [first] = run_dirs(tmp_path / "straight")
    expected = read_metrics(first)
    averaged = expected[-1]
    assert averaged["kind"] == "average" and len(averaged["averaged_epochs"]) == 3
    assert any(e != int(e) for e in averaged["averaged_epochs"]), averaged  # inside an epoch
    kept = sorted((first / "ckpt" / "top").glob("*.pt"))
    assert len(kept) == 3
    mean = torch.load(first / "ckpt" / "average.pt", weights_only=True)
    files = [torch.load(path, weights_only=True) for path in kept]
    for key, tensor in mean.items():
        torch.testing.assert_close(tensor, sum(f[key] for f in files) / 3, msg=key)
    runs = tmp_path / "runs"
    # last.pt after epoch 3's first step (and its part 1): the signal comes in its second step
    # or the evaluation after it (88 batches), which stops at its next batch (on a loaded
    # machine the signal may come a step later, in the third part)
    saved, _ = terminate_after(args, 2, runs, data_dir, steps=1)
    from c2f.train.checkpoint import saved_position

    assert saved in ((2, 2), (2, 3)) and f"{saved[1]} step(s) of epoch 3 (its evaluation " \
        "after them redone on resume)" in saved_position(run_dirs(runs)[0] / "ckpt"), saved
    run_cli(args, runs, data_dir)
    same = ("kind", "value", "train_loss", "eval_loss", "averaged_epochs", "samples")
    assert [{k: r.get(k) for k in same} for r in read_metrics(run_dirs(runs)[0])] == [
        {k: r.get(k) for k in same} for r in expected]
