"""Failures that real sweeps meet, against real processes and files: a loss that blows up,
checkpoints that a dying node or a full disk left unreadable, and two launches of one run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from c2f.files import atomic_write_text
from c2f.track import RunLock
from tests.conftest import (
    ROOT,
    TINY,
    cli_command,
    cli_env,
    kill_after_records,
    read_metrics,
    run_cli,
    run_dirs,
    start_cli,
)
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
BASE = [*TINY, "logger=disabled", "dataset.epochs=5"]  # room after each kill point
SAME = ("value", "train_loss", "eval_loss", "flops", "flops_cum", "samples", "lr", "C")


def test_nan_loss_stops_at_its_step_keeps_the_last_good_checkpoint_and_is_not_repeated(
        tmp_path, data_dir):
    """From epoch 2 on the learning rate is infinite (gamma = inf): the first update of that
    epoch makes the weights infinite and the next loss NaN."""
    args = [*BASE, "optim.gamma=inf", "optim.milestones_start=1"]
    runs = tmp_path / "runs"
    first = run_cli(args, runs, data_dir, check=False)
    assert first.returncode == 3
    steps = 4  # 44 clips in batches of 11
    assert (f"the training loss became NaN at phase 0 (C = 1), epoch 2, step {steps + 2} of "
            "the phase") in first.stderr
    assert "lower optim.lr, set optim.grad_clip" in first.stderr
    [run] = run_dirs(runs)
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # the good epoch is kept
    state = torch.load(run / "ckpt" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 1
    assert json.loads((run / "diverged.json").read_text())["step"] == steps + 2
    again = run_cli(args, runs, data_dir, check=False)
    assert again.returncode == 2 and "diverged before" in again.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1]  # nothing was trained again
    # a sweep relaunch lists it when launched and starts no job for it
    sweep = run_cli(["-m", *args], runs, data_dir, check=False)
    text = sweep.stdout + sweep.stderr
    assert sweep.returncode != 0
    assert "1 of 1 run(s) diverged before, not started again" in text, text[-3000:]
    assert f"-> {run / 'diverged.json'}" in text and "Launching 0 jobs locally" in text
    assert "1 of 1 job(s) failed" in text and "ConfigError: run" in text
    assert [r["epoch"] for r in read_metrics(run)] == [1]


def truncate(path) -> None:
    """What a node dying mid-write leaves on a filesystem without atomic rename."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_unreadable_checkpoints_fall_back_to_the_newest_readable_one(tmp_path, data_dir):
    """last.pt and the newest kept checkpoint truncated: the run resumes from the one before,
    trims metrics.jsonl to it, and ends with the straight run's metrics."""
    args = [*BASE, "trainer.keep_checkpoints=all"]
    straight = tmp_path / "straight"
    run_cli(args, straight, data_dir)
    expected = read_metrics(run_dirs(straight)[0])
    runs = tmp_path / "runs"
    kill_after_records(args, 3, runs, data_dir)  # epochs 1 and 2 are checkpointed by then
    [run] = run_dirs(runs)
    kept = sorted((run / "ckpt").glob("epoch*.pt"))
    truncate(run / "ckpt" / "last.pt")
    truncate(kept[-1])
    proc = run_cli(args, runs, data_dir)
    assert "unreadable" in proc.stdout and "resuming from" in proc.stdout
    fallback = kept[-2]
    assert f"{fallback.name} ({int(fallback.stem[5:])} epoch(s) done)" in proc.stdout
    assert [{k: r[k] for k in SAME} for r in read_metrics(run)] == \
        [{k: r[k] for k in SAME} for r in expected]


def test_two_launches_of_one_run_one_trains_the_other_leaves_or_waits(tmp_path, data_dir):
    """This test process holds the run (as a first launch would, with a real OS lock); a
    second launch says who holds it and leaves without touching it, or waits and trains."""
    args = [*TINY, "logger=disabled"]
    runs = tmp_path / "runs"
    dry = run_cli([*args, "trainer.dry_run=true"], runs, data_dir)
    run = Path(dry.stdout.split(" -> ")[1].split()[0])
    holder = RunLock(run)
    holder.acquire()
    second = run_cli(args, runs, data_dir, check=False)
    assert second.returncode == 2
    assert f"is being trained by pid {os.getpid()} on host" in second.stderr
    assert not (run / "metrics.jsonl").exists()  # left alone
    waiter = start_cli([*args, "trainer.wait_for_lock=true"], runs, data_dir)
    seen = []
    for line in waiter.stdout:  # until it says it waits (or ends: the asserts below tell)
        seen.append(line)
        if "waiting for it" in line:
            break
    assert f"held by pid {os.getpid()}" in "".join(seen)
    holder.release()
    out, err = waiter.communicate(timeout=600)
    assert waiter.returncode == 0, err
    assert len(read_metrics(run)) == 4 and "best acc" in out
    assert not (run / ".lock").read_text().strip()  # released when it ended


def test_a_killed_holder_never_blocks_a_relaunch(tmp_path, data_dir):
    args = [*TINY, "logger=disabled"]
    runs = tmp_path / "runs"
    kill_after_records(args, 1, runs, data_dir)
    [run] = run_dirs(runs)
    assert json.loads((run / ".lock").read_text())["pid"]  # the dead holder's note is there
    proc = run_cli(args, runs, data_dir)
    assert "being trained by" not in proc.stderr and len(read_metrics(run)) == 4


def test_the_lock_probe_sees_a_live_holder_only(tmp_path):
    """`held_by`, as a relaunched sweep asks it: another open file of this process holds the
    lock as another process would (flock locks belong to the open file)."""
    lock = RunLock(tmp_path)
    assert lock.held_by() is None  # never locked: no lock file
    lock.acquire()
    assert lock.held_by() == lock.holder() and f"pid {os.getpid()} on host" in lock.holder()
    assert RunLock(tmp_path).held_by() == lock.holder()
    lock.release()
    assert RunLock(tmp_path).held_by() is None
    # a killed holder's note stays, its lock does not: not held
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "gone", "since": "then"}))
    assert RunLock(tmp_path).held_by() is None
    again = RunLock(tmp_path)
    again.acquire()  # and the probe left nothing locked
    again.release()


# What flock answers on Lustre mounted without -o flock, put in the process's fcntl module
# (no such file system here): the trainer and the sweep's probe must carry on without locks.
NO_FLOCK = """import errno, fcntl, os, runpy, sys
def flock(fd, operation):
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
fcntl.flock = flock
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_runs_folder_without_locks_trains_and_a_summary_cut_short_is_written_again(
        tmp_path, data_dir):
    """Two mishaps of cluster file systems: no file locks (the run trains unlocked, saying
    so), and a finished run's summary.json cut short (a sweep relaunch, whose launcher reads
    it first, resumes the run, which trains nothing and writes the summary again)."""
    args = [*TINY, "logger=disabled", "dataset.epochs=2"]
    runs = tmp_path / "runs"
    cmd = cli_command(args, runs, data_dir)
    proc = subprocess.run([cmd[0], "-c", NO_FLOCK, *cmd[1:]], cwd=ROOT, capture_output=True,
                          text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = run_dirs(runs)
    assert f"warning: the file system of {run} has no file locks (flock: Function not " \
        "implemented; Lustre without -o flock" in proc.stdout
    assert len(read_metrics(run)) == 2 and (run / "summary.json").exists()
    assert not (run / ".lock").read_text().strip()  # its note is cleared at the end

    records, summary = read_metrics(run), json.loads((run / "summary.json").read_text())
    truncate(run / "summary.json")
    proc = run_cli(["-m", *args], runs, data_dir)
    assert f"note: {run / 'summary.json'} is unreadable; the run resumes from its checkpoint" \
        in proc.stdout
    assert "resuming from" in proc.stdout and "(2 epoch(s) done)" in proc.stdout
    assert read_metrics(run) == records
    assert json.loads((run / "summary.json").read_text()) == summary


def test_the_lock_probe_without_file_locks(tmp_path, monkeypatch):
    import errno
    import fcntl

    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "h", "since": "then"}))
    answer = errno.ENOLCK  # NFS without its lock service

    def flock(fd, operation):
        raise OSError(answer, os.strerror(answer))
    monkeypatch.setattr(fcntl, "flock", flock)
    assert RunLock(tmp_path).held_by() is None  # no process can hold it either
    answer = errno.EBADF  # anything else is a real error
    with pytest.raises(OSError):
        RunLock(tmp_path).held_by()


def test_a_sweep_relaunch_skips_held_runs_and_lists_them(tmp_path, data_dir):
    args = [*TINY, "logger=disabled", "dataset.epochs=2", "schedule=2phase"]
    runs = tmp_path / "runs"
    dry = run_cli([*args, "compression=fshift", "trainer.dry_run=true"], runs, data_dir)
    held = Path(dry.stdout.split(" -> ")[1].split()[0])
    holder = RunLock(held)
    holder.acquire()
    try:
        proc = run_cli(["-m", *args, "compression=fshift,pool_avg"], runs, data_dir,
                       check=False)
    finally:
        holder.release()
    text = proc.stdout + proc.stderr
    # found when the sweep is launched: only the other run is started
    assert "1 of 2 run(s) are being trained by other processes, not started" in text, text
    assert f"-> {held} (by pid {os.getpid()} on host" in text
    assert "Launching 1 jobs locally" in text
    assert "1 run(s) skipped, held by other processes:" in text
    assert "compression=fshift" in text.split("skipped, held")[1].splitlines()[1]
    assert "job(s) failed" not in text
    # skipped, not failed: exit 0, no traceback
    assert proc.returncode == 0 and "Traceback" not in text and "Error executing job" not in text
    trained = [r for r in run_dirs(runs) if (r / "summary.json").exists()]
    assert len(trained) == 1 and trained[0] != held


def in_small_shm(cmd: list[str], megabytes: int) -> list[str]:
    """`cmd` in a mount namespace of its own whose /dev/shm holds `megabytes` (a container's
    small shared memory; the rest of the machine keeps its own)."""
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={megabytes}m tmpfs /dev/shm '
            '&& exec "$@"', "sh", *cmd]


def test_loader_workers_out_of_shared_memory_say_what_to_change(tmp_path, data_dir):
    probe = subprocess.run(in_small_shm(["true"], 1), capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    args = [*TINY, "logger=disabled", "dataset.epochs=2", "trainer.frontend=worker",
            "trainer.cache_audio=false"]  # every batch from the workers, through /dev/shm
    runs = tmp_path / "runs"
    proc = subprocess.run(in_small_shm(cli_command([*args, "trainer.num_workers=2"], runs,
                                                   data_dir), 1),
                          cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: the data loader's 2 worker process(es) ran out of shared memory (/dev/shm: " \
        in proc.stderr and "Relaunch with trainer.num_workers=0" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_cli([*args, "trainer.num_workers=0"], runs, data_dir)  # as the message says
    [run] = run_dirs(runs)
    assert len(read_metrics(run)) == 2 and (run / "summary.json").exists()


def test_an_unwritable_runs_folder_is_named_before_training(tmp_path, data_dir):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the runs folder should be")
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, "logger=disabled",
           f"paths.runs_dir={blocker / 'runs'}", f"paths.data_dir={data_dir}",
           f"paths.root={tmp_path}"]
    proc = run_python(cmd[1:], ROOT, cli_env(), timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write {blocker / 'runs'}" in proc.stderr
    assert "paths.runs_dir" in proc.stderr


def test_config_drift_is_reported_not_mixed(tmp_path, data_dir):
    """A run directory whose stored config another version of c2f wrote for the same id."""
    args = [*TINY, "logger=disabled"]
    runs = tmp_path / "runs"
    kill_after_records(args, 1, runs, data_dir)
    [run] = run_dirs(runs)
    stored = run / "config.yaml"
    stored.write_text(stored.read_text().replace("gamma: 0.7", "gamma: 0.5"))
    proc = run_cli(args, runs, data_dir, check=False)
    assert proc.returncode == 2
    assert "written by another version of c2f" in proc.stderr
    assert "optim.gamma (stored 0.5, now 0.7)" in proc.stderr
    assert len(read_metrics(run)) == 1  # nothing mixed in


def test_a_preemption_signal_is_handled_once_and_its_requeue_outlives_a_second_one():
    """SLURM can send its warning signal twice; the second must neither re-enter submitit's
    handler nor kill the `scontrol requeue` child it runs (tests/test_slurm_load.py met both)."""
    from c2f.train import stopping
    from hydra_plugins.c2f_plugins.preemption import handle_preemption_once

    check = ("import signal; print(*(signal.getsignal(s) == signal.SIG_IGN "
             "for s in (signal.SIGUSR2, signal.SIGTERM)))")
    seen = []

    def submitit_handler(signum, frame):  # stands in for checkpoint_and_try_requeue
        os.kill(os.getpid(), signal.SIGUSR2)  # the doubled warning, mid-handling
        child = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
        seen.append(child.stdout.split())  # what `scontrol requeue` would inherit

    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM,
                                              signal.SIGALRM)}
    try:
        signal.signal(signal.SIGUSR2, submitit_handler)
        handle_preemption_once(30.0)
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):  # the handler runs in this thread, between bytecodes
            if seen:
                break
            subprocess.run(["true"])
    finally:
        stopping.restore(saved)
    assert seen == [["True", "True"]]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_written_whole_get_the_mode_the_umask_gives(tmp_path, umask):
    """Run files and prepared manifests (written to a temporary name, then renamed) are as
    readable as a plain open() would make them: a lab's shared runs or data folder is readable
    by the group, not private to whoever wrote it."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("a")
    finally:
        os.umask(old)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o666 & ~umask \
        == (tmp_path / "plain.txt").stat().st_mode & 0o777
