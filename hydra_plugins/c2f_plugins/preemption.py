"""SLURM's preemption and timeout warning, handled once per job (found by the load test)."""
import logging
import os
import signal

log = logging.getLogger(__name__)


def handle_preemption_once() -> None:
    """Make submitit's preemption/timeout handler ignore the signal while it handles it.

    SLURM can deliver the warning signal twice within milliseconds (a step signal reaches the
    task and is forwarded by srun); submitit's handler, entered again while it writes its
    checkpoint pickle, fails ("A temporary saved file already exists") and the job ends
    instead of being requeued. The first signal checkpoints, requeues and exits; the rest are
    dropped. The signal is submitit's own (SUBMITIT_PREEMPT_SIGNAL, USR2 by default). Found
    by tests/test_slurm_load.py."""
    signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
    handler = signal.getsignal(signum)
    if not callable(handler) or getattr(handler, "c2f_once", False):
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
    signal.signal(signum, once)
