"""Stop signals that save the training first: SLURM's warning before a preemption or the time
limit (submitit's signal, USR2 by default) and SIGTERM (`scancel`, `kill`, a preemption
without a warning). Without this a stopped job loses what it trained since its last
checkpoint: up to `trainer.checkpoint_minutes` (30) of an AudioSet epoch.

A signal arriving while the phase loop trains is held: the loop writes last.pt after its next
step (or at the epoch's end, after evaluation), exactly as a `checkpoint_minutes` checkpoint,
so the run resumes bitwise from there; then the signal's own action runs (submitit requeues
the job; a plain SIGTERM ends the process with exit 143, as the shell's code for it). Outside
the loop (preparing data, starting up, SSAST pretraining, whose running sums live between its
evaluations) the action runs at once, as before. A step that does not come (the evaluation of
a large eval set, a stuck loader) holds the signal at most `grace_s`: then its action runs
without the checkpoint (SIGALRM).

Handlers are the process's: installed from the main thread, put back as they were by
`restore`. Under DDP every rank gets the signal (srun, torchrun): the ranks agree to
checkpoint as for `checkpoint_minutes` (c2f/train/progress.py).
"""
from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager

Action = Callable[[int, object], None]  # a signal handler: (signum, frame)

_actions: dict[int, tuple[Action, float]] = {}  # installed here: signum -> (action, grace_s)
_held: dict[int, Action] = {}  # received while training, waiting for the checkpoint
_training = False
_log: Callable[[str], None] = print


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _received(signum: int, frame) -> None:
    action, grace = _actions[signum]
    if not _training:
        action(signum, frame)
        return
    if signum in _held:
        return  # sent twice (a step signal that srun forwards as well): held once
    _held[signum] = action
    _log(f"{_name(signum)}: saving the training after this step, then acting on it "
         f"(at most {grace:g} s from now)")
    remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    if not remaining or remaining > grace:
        signal.setitimer(signal.ITIMER_REAL, grace)


def _timed_out(signum: int, frame) -> None:
    if _held:
        _log(f"no step came within the grace time: acting on {', '.join(map(_name, _held))} "
             "without a new checkpoint")
        _act(frame)


def _act(frame=None) -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
    while _held:
        signum, action = _held.popitem()
        action(signum, frame)


def defer(signum: int, action: Action, grace_s: float, log: Callable[[str], None] = print
          ) -> bool:
    """Hold `signum` during training until the next checkpoint, then run `action` (a signal
    handler); False where handlers cannot be installed (not the main thread)."""
    global _log
    if threading.current_thread() is not threading.main_thread():
        return False
    _actions[signum], _log = (action, float(grace_s)), log
    signal.signal(signal.SIGALRM, _timed_out)
    signal.signal(signum, _received)
    return True


def deferred(signum: int) -> bool:
    """Whether this module handles `signum` now."""
    return signal.getsignal(signum) is _received


def pending() -> bool:
    """Whether a stop signal waits for the next checkpoint."""
    return bool(_held)


def after_checkpoint() -> None:
    """The loop wrote last.pt: run the actions of the signals held for it."""
    if _held:
        _log(f"{', '.join(map(_name, _held))}: the training is saved")
        _act()


@contextmanager
def training():
    """While the phase loop trains: stop signals are held for its next checkpoint. Signals
    still held when it ends (the run finished) are acted on then; on an error, dropped."""
    global _training
    _training = True
    try:
        yield
    except BaseException:
        _held.clear()
        raise
    finally:
        _training = False
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
    _act()


def worker_init(signums: tuple[int, ...], _worker: int) -> None:
    """A DataLoader worker's `worker_init_fn` (`loader_guard`). SLURM signals every process of
    the job step, and a forked worker inherits the main process's handlers (submitit's
    requeue among them): the main process acts on the stop signals, a worker ignores them.
    SIGTERM still ends a worker when its parent sends it (the loader shutting its workers
    down, multiprocessing at exit): a thread waits for it and tells the sender."""
    for signum in signums:
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.SIG_IGN)
    if signal.SIGTERM in signums and hasattr(signal, "sigwaitinfo"):  # Linux, not macOS
        parent = os.getppid()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_terminated_by, args=(parent,), daemon=True,
                         name="c2f-sigterm").start()


def _terminated_by(parent: int) -> None:
    """Wait for SIGTERM; end this process on the parent's (or once the parent is gone)."""
    while True:
        sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
        if sender == parent or os.getppid() != parent:
            os._exit(0)  # as asked; a worker "killed by a signal" is an error to the loader


def loader_guard():
    """The `worker_init_fn` of a loader made now: None unless stop signals are held here."""
    return functools.partial(worker_init, tuple(_actions)) if _actions else None


TERM_GRACE_S = 20.0  # SLURM's KillWait (30 s by default) after SIGTERM, less a checkpoint's


def _terminate(signum: int, frame) -> None:
    from c2f.train.failures import Terminated

    raise Terminated()


@contextmanager
def sigterm_saves(log: Callable[[str], None] = print):
    """A plain SIGTERM (a local run, a job of one's own sbatch script; not under submitit,
    whose handler is left alone) saves the training, then ends the process (exit 143)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signal.SIGTERM: signal.SIG_DFL, signal.SIGALRM: signal.getsignal(signal.SIGALRM)}
    defer(signal.SIGTERM, _terminate, TERM_GRACE_S, log)
    try:
        yield
    finally:
        restore(saved)


def restore(saved: dict[int, object]) -> None:
    """Put back the handlers `saved` (signum -> handler, as signal.getsignal gave them)."""
    for signum, handler in saved.items():
        signal.signal(signum, handler)
        _actions.pop(signum, None)
