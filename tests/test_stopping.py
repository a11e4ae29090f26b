"""Stop signals held for the training's next checkpoint (c2f/train/stopping.py), each case in a
process of its own (real signals, real handlers and the watchdog thread) around a stand-in
for the phase loop: what the loop does between a signal and its checkpoint is the case."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT

PRELUDE = """
import os, signal, sys, time
from c2f.train import stopping
from c2f.train.stopping import Interrupted, Terminated
stopping.TERM_GRACE_S, stopping.STALL_S, stopping.PEER_S = {grace}, 0.5, 2.0
print("ready", flush=True)
def stop_agreed():  # the ranks of a DDP run agreed to stop at this checkpoint
    try:
        stopping.after_checkpoint(agreed=True)
        print("trained on")
    except Interrupted as stop:
        print("stopped:", type(stop).__name__, stop)
"""

CASES = {
    # the grace runs out while last.pt is written: the action waits for the write
    "slow checkpoint": ("""
        try:
            with stopping.sigterm_saves(), stopping.training():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                with stopping.saving():
                    time.sleep(2.0)
                    open(sys.argv[1], "w").write("whole")
                stopping.after_checkpoint()
        except Terminated:
            print("terminated with", open(sys.argv[1]).read())
        """, 0.5),
    # the main thread stays in C (a collective waiting for a peer that never comes): ended by
    # the watchdog, as SIG_DFL would have
    "blocked in C": ("""
        import multiprocessing
        import torch
        import torch.distributed as dist
        def peer(store, parent):  # joins the group, never reduces, ends with its parent
            dist.init_process_group("gloo", init_method=store, rank=1, world_size=2)
            while os.getppid() == parent:
                time.sleep(0.1)
        store = "file://" + sys.argv[1] + ".store"
        multiprocessing.get_context("fork").Process(target=peer,
                                                    args=(store, os.getpid())).start()
        dist.init_process_group("gloo", init_method=store, rank=0, world_size=2)
        with stopping.sigterm_saves(), stopping.training():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            dist.all_reduce(torch.ones(1))  # waits for gloo's timeout, 30 minutes
        """, 0.5),
    # no step comes, and a second SIGTERM 2 s after the first: ended at once
    "second sigterm": ("""
        with stopping.sigterm_saves(), stopping.training():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2.5)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """, 60.0),
    # no step comes while the main thread runs Python: acted on at the grace, as Terminated
    "grace": ("""
        try:
            with stopping.sigterm_saves(), stopping.training():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
        except Terminated:
            print("terminated at the grace")
        """, 0.5),
    # a signal held when the training ends (the run finished): dropped, the process goes on
    "held at the end": ("""
        with stopping.sigterm_saves(), stopping.training():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        time.sleep(1.0)
        print("went on; SIGTERM is", signal.getsignal(signal.SIGTERM))
        """, 0.5),
    # DDP ranks agreed to stop at a checkpoint for a peer's signal: this rank's own copy
    # never comes, or comes 0.5 s later; it stops either way rather than train on alone
    "a peer's signal": ("""
        import threading
        for late in (None, 0.5):
            with stopping.sigterm_saves(), stopping.training():
                if late:
                    threading.Timer(late, os.kill, (os.getpid(), signal.SIGTERM)).start()
                stop_agreed()
        """, 60.0),
    # a preemption signal whose action returns (submitit requeues from rank 0 only): this
    # rank waits for the requeue to end it, then stops
    "not the requeuing rank": ("""
        stopping.defer(signal.SIGUSR2, lambda s, f: print("not rank 0"), 0.5, preempts=True)
        with stopping.training():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.2)
            stop_agreed()
        """, 60.0),
    # SLURM signals every process of the job step, loader workers that are starting included
    # (with spawn and forkserver, Python 3.14's default, the whole start-up): they start with
    # the stop signals blocked, and ignore them once started
    "workers starting": ("""
        import threading
        from c2f.train.phase_data import WorkersStartBlocked
        stopping.defer(signal.SIGUSR2, lambda s, f: print("acted"), 60.0, preempts=True)
        with stopping.training():
            loader = WorkersStartBlocked(list(range(8)), batch_size=2, num_workers=2,
                                         multiprocessing_context="spawn",
                                         worker_init_fn=stopping.loader_guard())
            threading.Timer(0.3, os.killpg, (0, signal.SIGUSR2)).start()
            print("batches", [b.tolist() for b in loader], "held", stopping.pending())
        """, 60.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stop_signal_waits_for_the_checkpoint_within_its_grace(tmp_path, case):
    body, grace = CASES[case]
    script = PRELUDE.format(grace=grace) + textwrap.dedent(body)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          start_new_session=True)  # its own group, for os.killpg
    took, out, err = time.monotonic() - start, proc.stdout, proc.stderr
    assert out.startswith("ready"), out + err
    if case == "slow checkpoint":
        assert proc.returncode == 0 and "terminated with whole" in out, out + err
        assert "SIGTERM: saving the training at the next step" in out
    elif case == "blocked in C":
        assert proc.returncode == 143, out + err
        assert "no step came within 1 s (the main thread was blocked); stopped without a " \
               "new checkpoint" in err
        assert took < 30
    elif case == "second sigterm":
        assert proc.returncode == 143 and "terminated (SIGTERM): a second SIGTERM" in err, err
        assert took < 20
    elif case == "grace":
        assert proc.returncode == 0 and "terminated at the grace" in out, out + err
        assert "no step came within the grace time" in out
    elif case == "a peer's signal":
        assert proc.returncode == 0 and "trained on" not in out, out + err
        assert "stopped: Interrupted another rank got a stop signal\n" in out, out + err
        assert "stopped: Terminated \n" in out, out + err
        assert took < 10
    elif case == "workers starting":
        assert proc.returncode == 0, out + err
        assert "batches [[0, 1], [2, 3], [4, 5], [6, 7]] held True" in out, out + err
    elif case == "not the requeuing rank":
        assert proc.returncode == 0, out + err
        assert "not rank 0\nstopped: Interrupted the requeue did not end this rank" in out
    else:
        assert proc.returncode == 0, out + err
        assert "SIGTERM: came as the training ended; dropped" in out
        assert f"SIGTERM is {signal.SIG_DFL!s}" in out  # put back as it was
