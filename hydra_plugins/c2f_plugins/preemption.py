"""SLURM's preemption and timeout warning: the training saved first, then handled once per job
(found by the load test)."""
import logging
import os
import signal

from c2f.train import stopping

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(message, flush=True)  # the job's .out log, before the process may be killed


def warning_grace_s(signal_delay_s: float | None) -> float:
    """How long the warning signal waits for the training's next step: a third of its lead
    on the time limit (submitit_local's own lead, 30 s, is in the job's environment)."""
    local = os.environ.get("SUBMITIT_LOCAL_SIGNAL_DELAY_S")
    return max(5.0, float(local or signal_delay_s or 90) / 3)  # 90: submitit's SLURM default


def handle_preemption_once(grace_s: float) -> None:
    """Make submitit's preemption/timeout handler wait for the training's next checkpoint (at
    most `grace_s`; c2f/train/stopping.py), and ignore the signal while it handles it. So
    does submitit's SIGTERM handler (it only logs the signal): the training is saved at its
    next step, in case SLURM's SIGKILL follows.

    SLURM can deliver the warning signal twice within milliseconds (a step signal reaches the
    task and is forwarded by srun); submitit's handler, entered again while it writes its
    checkpoint pickle, fails ("A temporary saved file already exists") and the job ends
    instead of being requeued. The first signal checkpoints, requeues and exits; the rest are
    dropped. The signal is submitit's own (SUBMITIT_PREEMPT_SIGNAL, USR2 by default). Found
    by tests/test_slurm_load.py."""
    signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
    handler = signal.getsignal(signum)
    if not callable(handler) or stopping.deferred(signum) or getattr(handler, "c2f_once", False):
        return
    handling = False

    def once(number, frame):
        nonlocal handling
        if handling:
            log.warning(f"{signal.Signals(number).name} again while handling it: ignored")
            return
        handling = True
        # submitit requeues with `scontrol requeue`, a child process; the requeue itself sends
        # TERM to the job's processes, which killed scontrol before it exited on a busy
        # controller (CalledProcessError: the job was requeued but reported failed), and so
        # did the doubled warning signal arriving while scontrol ran. Ignored here, both stay
        # ignored in that child; this process only logged TERM and drops the doubled signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(number, signal.SIG_IGN)
        handler(number, frame)

    once.c2f_once = True
    if not stopping.defer(signum, once, grace_s, _say, preempts=True):  # not the main thread:
        return  # left as it is
    term = signal.getsignal(signal.SIGTERM)
    if callable(term) and signum != signal.SIGTERM and not stopping.deferred(signal.SIGTERM):
        stopping.defer(signal.SIGTERM, term, grace_s, _say)
