"""Stop signals that save the training first: SLURM's warning before a preemption or the time
limit (submitit's signal, USR2 by default) and SIGTERM (`scancel`, `kill`, a preemption
without a warning). Without this a stopped job loses what it trained since its last
checkpoint: up to `trainer.checkpoint_minutes` (30) of an AudioSet epoch.

A signal arriving while the phase loop trains is held: the loop writes last.pt at its next
step (under DDP the next step the ranks agree on, at most 20 later), exactly as a
`checkpoint_minutes` checkpoint, so the run resumes bitwise from there; during an epoch's
evaluation, at the next eval batch (under DDP the next one the ranks agree on, at most 20
later), with the epoch's training; then the signal's own action runs (submitit requeues the
job; a plain SIGTERM ends the process with exit 143, the shell's code for it). Under DDP every
rank stops at that checkpoint (`after_checkpoint`). Outside the loop (preparing data,
starting up) the action runs at once, as before; a signal held when the training ends is
dropped (the run finished).

A step that does not come within `grace_s` (the evaluation of a large eval set, a stuck
loader) does not hold the signal for ever: the action runs without a new checkpoint, unless
one is being written (it runs after the write). Python runs signal handlers in the main
thread between bytecodes only, so a watchdog thread sees the signals through
`signal.set_wakeup_fd` and keeps the time: at the grace it sends the main thread SIGALRM (the
action runs if the main thread is in Python), and a plain SIGTERM whose main thread stays
blocked in C (a collective waiting for a dead peer) ends the process 10 s later, as does a
second SIGTERM. The process's SIGALRM handler and wakeup fd are this module's meanwhile.

Handlers are installed from the main thread and put back as they were by `restore`.
"""
from __future__ import annotations

import functools
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

Action = Callable[[int, object], None]  # a signal handler: (signum, frame)

_actions: dict[int, tuple[Action, float]] = {}  # installed here: signum -> (action, grace_s)
_held: dict[int, Action] = {}  # received while training, waiting for the checkpoint
_seen: dict[int, bool] = {}  # the main thread's handler ran (the watchdog's bookkeeping)
_preempting: set[int] = set()  # signals whose action requeues the job
_on_preempt: list[Callable[[], None]] = []  # told first (W&B shows the run preempted)
_training = False
_saving = False  # a checkpoint is being written: the grace waits for it
_log: Callable[[str], None] = print
STALL_S = 10.0  # after the grace: a plain SIGTERM's main thread blocked in C is ended
AGAIN_S = 2.0  # a second SIGTERM later than this after the first ends the process at once
PEER_S = 5.0  # a DDP rank's wait for its own copy of a signal its peers stop for


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what the run keeps and how it resumes (run.py says it in
    one line and exits 130, as a shell does for SIGINT; c2f/train/failures.interrupted)."""

    EXIT_CODE = 130


class Terminated(Interrupted):
    """SIGTERM during training, after the training was saved (`sigterm_saves`)."""

    EXIT_CODE = 143
    WHAT = "terminated (SIGTERM)"


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _say(message: str) -> None:
    """A line from a signal handler: one that interrupted a print of the main thread must not
    raise (the buffered writer refuses a reentrant call)."""
    try:
        _log(message)
    except RuntimeError:
        pass


def _received(signum: int, frame) -> None:
    action, grace = _actions[signum]
    if not _training:
        _seen[signum] = True
        action(signum, frame)
        return
    if signum in _held:
        return  # sent twice (a step signal that srun forwards as well): held once
    _held[signum] = action
    _seen[signum] = True
    _say(f"{_name(signum)}: saving the training at the next step, then acting on it (at "
         f"most {grace:g} s from now)")
    if _watchdog is None:  # no wakeup fd to keep the time with: an interval timer
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        if not remaining or remaining > grace:
            signal.setitimer(signal.ITIMER_REAL, grace)


def _timed_out(signum: int, frame) -> None:
    if _held and not _saving:
        _say(f"no step came within the grace time: acting on {', '.join(map(_name, _held))} "
             "with the checkpoint there is")
        _act(frame)


def _act(frame=None) -> None:
    if _watchdog is None:
        signal.setitimer(signal.ITIMER_REAL, 0)
    while _held:
        signum, action = _held.popitem()
        if signum in _preempting:  # before the requeue: SLURM then ends the step in seconds
            for tell in _on_preempt:
                tell()
        action(signum, frame)


class _Watchdog:
    """Sees the deferred signals as they arrive, whatever the main thread does (the bytes
    Python's C handler writes to the wakeup fd), and keeps their grace time."""

    def __init__(self, end_stalled_sigterm: bool):
        self.end_stalled_sigterm, self.first, self.term_first = end_stalled_sigterm, {}, None
        self.read, write = os.pipe()
        os.set_blocking(write, False)
        self.write, self.stop = write, threading.Event()
        self.previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self.main = threading.main_thread().ident
        self.thread = threading.Thread(target=self._watch, daemon=True, name="c2f-stop-signals")
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.is_set():
            if select.select([self.read], [], [], 0.5)[0]:
                for signum in os.read(self.read, 512):
                    self._arrived(signum, time.monotonic())
            self._check(time.monotonic())

    def _arrived(self, signum: int, now: float) -> None:
        if signum not in _actions:
            return
        if signum == signal.SIGTERM and self.end_stalled_sigterm:
            if self.term_first is not None and now - self.term_first > AGAIN_S:
                self._end("a second SIGTERM")
            self.term_first = self.term_first or now
        self.first.setdefault(signum, [now, False])  # [arrival, SIGALRM sent]

    def _check(self, now: float) -> None:
        for signum, (arrival, alarmed) in list(self.first.items()):
            grace = _actions.get(signum, (None, 0.0))[1]
            if _seen.get(signum) and signum not in _held:  # acted on, or dropped
                del self.first[signum]
                _seen.pop(signum, None)
            elif _saving:
                continue
            elif now > arrival + grace and not alarmed:
                self.first[signum][1] = True
                signal.pthread_kill(self.main, signal.SIGALRM)  # runs once it is in Python
            elif signum == signal.SIGTERM and self.end_stalled_sigterm and \
                    now > arrival + grace + STALL_S:
                self._end(f"no step came within {grace + STALL_S:g} s (the main thread was "
                          "blocked)")

    def _end(self, why: str) -> None:
        os.write(2, f"terminated (SIGTERM): {why}; stopped without a new checkpoint; the "
                    "same command resumes from the last one\n".encode())
        os._exit(143)

    def close(self) -> None:
        """Stopped before the handlers are put back (its SIGALRM would then kill)."""
        self.stop.set()
        try:  # wakes its select at once (it waited up to 0.5 s); byte 0 is no signal: ignored
            os.write(self.write, b"\0")
        except BlockingIOError:  # the pipe is full: the select returns anyway
            pass
        self.thread.join()
        signal.set_wakeup_fd(self.previous)
        os.close(self.write)  # both ends closed here, after the wakeup fd is put back: a
        os.close(self.read)  # signal meanwhile still finds a pipe that takes its byte


_watchdog: _Watchdog | None = None


def defer(signum: int, action: Action, grace_s: float, log: Callable[[str], None] = print,
          end_stalled_sigterm: bool = False, preempts: bool = False) -> bool:
    """Hold `signum` during training until the next checkpoint, then run `action` (a signal
    handler; `preempts`: it requeues the job); False where handlers cannot be installed (not
    the main thread)."""
    global _log, _watchdog
    if threading.current_thread() is not threading.main_thread():
        return False
    _actions[signum], _log = (action, float(grace_s)), log
    if preempts:
        _preempting.add(signum)
    signal.signal(signal.SIGALRM, _timed_out)
    if _watchdog is None:
        other = signal.set_wakeup_fd(-1)
        if other != -1:  # someone else's (an asyncio loop): kept, and an interval timer used
            signal.set_wakeup_fd(other)
        else:
            _watchdog = _Watchdog(end_stalled_sigterm)
    signal.signal(signum, _received)
    return True


def deferred(signum: int) -> bool:
    """Whether this module handles `signum` now."""
    return signal.getsignal(signum) is _received


def pending() -> bool:
    """Whether a stop signal waits for the next checkpoint."""
    return bool(_held)


@contextmanager
def saving():
    """A checkpoint is being written: a grace time running out waits for it."""
    global _saving
    _saving = True
    try:
        yield
    finally:
        _saving = False


def after_checkpoint(agreed: bool | None = None) -> None:
    """The loop wrote last.pt: run the actions of the signals held for it. `agreed`, under
    DDP: whether the ranks agreed to stop here, for a signal one of them holds (if not, one
    that came since stays held for the next checkpoint they agree on). No rank trains on
    without the others: one the signal has not reached yet waits PEER_S for it (SLURM and
    torchrun signal every rank), and one whose action returns after a preemption signal
    (submitit requeues from rank 0 only) waits for the requeue to end the job."""
    if agreed is False:
        return
    if agreed and not _held:
        deadline = time.monotonic() + PEER_S
        while not _held and time.monotonic() < deadline:
            time.sleep(0.05)  # the handler runs between two sleeps
        if not _held:
            raise Interrupted("another rank got a stop signal")
    if not _held:
        return
    _log(f"{', '.join(map(_name, _held))}: the training is saved")
    waits = agreed and max((_actions[s][1] for s in _held if s in _preempting), default=0.0)
    _act()
    if waits:  # the action returned: not the rank that requeues
        time.sleep(waits)
        raise Interrupted("the requeue did not end this rank")


@contextmanager
def training(on_preempt: Callable[[], None] | None = None):
    """While the phase loop trains: stop signals are held for its next checkpoint, and
    `on_preempt` is called before a requeue. Signals still held when it ends are dropped:
    the run finished, or failed."""
    global _training
    _training = True
    _on_preempt[:] = [on_preempt] if on_preempt else []
    try:
        yield
    finally:
        _training = False
        _on_preempt.clear()
        if _held:
            _log(f"{', '.join(map(_name, _held))}: came as the training ended; dropped")
            _held.clear()
        if _watchdog is None and threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def starting_workers():
    """Around the start of a loader's workers (making its iterator): the stop signals are
    blocked, so that one coming while a worker starts waits in it for `worker_init`, which
    ignores it, instead of running the handler it inherited (fork) or the default action,
    which ends it (spawn and forkserver, Python 3.14's default: the whole start-up). The
    main process gets its own copy once they are started."""
    if not _actions or threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(_actions))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def worker_init(signums: tuple[int, ...], _worker: int) -> None:
    """A DataLoader worker's `worker_init_fn` (`loader_guard`). SLURM signals every process of
    the job step, and a forked worker inherits the main process's handlers (submitit's
    requeue among them) and wakeup fd: the main process acts on the stop signals, a worker
    ignores them (one that came as it started waits, blocked: `starting_workers`). SIGTERM
    still ends a worker when its parent sends it (the loader shutting its workers down,
    multiprocessing at exit): a thread waits for it and tells the sender."""
    global _training
    signal.set_wakeup_fd(-1)  # the parent's watchdog reads that pipe
    _training = False
    _held.clear()
    signal.setitimer(signal.ITIMER_REAL, 0)
    for signum in signums:
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.SIG_IGN)
    waits = hasattr(signal, "sigwaitinfo") and signal.SIGTERM in signums  # Linux, not macOS
    if waits:
        parent = os.getppid()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_terminated_by, args=(parent,), daemon=True,
                         name="c2f-sigterm").start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(signums) - ({signal.SIGTERM} if waits
                                                              else set()))


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
    defer(signal.SIGTERM, _terminate, TERM_GRACE_S, log, end_stalled_sigterm=True)
    try:
        yield
    finally:
        restore(saved)


def restore(saved: dict[int, object]) -> None:
    """Put back the handlers `saved` (signum -> handler, as signal.getsignal gave them), and
    the wakeup fd once no signal is deferred any more."""
    global _watchdog, _log
    if _watchdog is not None and not set(_actions) - set(saved):
        _watchdog.close()
        _watchdog = None
    for signum, handler in saved.items():
        signal.signal(signum, handler)
        _actions.pop(signum, None)
        _preempting.discard(signum)
    if not _actions:
        _log = print
        _seen.clear()
