"""A warm interpreter for the tests' command lines: `python run.py ...` and `python -m c2f.X ...`
run in a process forked from one that has already imported what they import (torch, timm,
Hydra, c2f: ~5.5 s of a tiny run's ~9 s here), instead of a fresh interpreter each time.

The command is still a process of its own with its own argv, environment, working folder,
stdout and stderr, run as `python` runs it (`runpy`, `__main__`, exit code, traceback,
atexit); only the imports are shared. One server per pytest worker serves one command at a
time. A command whose environment changes how Python imports (PYTHONPATH, other PYTHON*
variables), or any command when C2F_TEST_FRESH=1, runs in a fresh interpreter instead:
`C2F_TEST_FRESH=1 make test` checks that nothing depends on the shared imports.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# imported once by the server: what run.py, the launchers and the c2f modules import
PRELOAD = ("run", "c2f.models.ast", "c2f.models.cnn14", "c2f.models.htsat", "c2f.models.ssast",
           "hydra_plugins.c2f_plugins.launchers", "c2f.evaluate", "c2f.predict",
           "c2f.report.cli", "c2f.data.prepare", "torchaudio", "submitit")

SERVER = r"""
import atexit, importlib, os, sys
replies = os.dup(1)
os.dup2(2, 1)  # what the imports might print goes to stderr, not into the replies
sys.path.insert(0, sys.argv[1])
from tests import warm_python
register = atexit.register
atexit.register = warm_python.note_exit_function(register)
for name in sys.argv[2].split(","):
    importlib.import_module(name)
atexit.register = register
warm_python.serve(replies)
"""

# Exit functions the imports registered that remove what every command shares: a temporary
# folder made at import (wandb's media folder) is the server's; a command must leave it.
SHARED_EXIT: list = []


def note_exit_function(register):
    """atexit.register, noting the cleanups of temporary folders made before any fork."""
    def noting(function, *args, **kwargs):
        if getattr(function, "__qualname__", "") == "TemporaryDirectory.cleanup":
            SHARED_EXIT.append(function)
        return register(function, *args, **kwargs)
    return noting


def serve(reply_fd: int) -> None:
    """The server's loop: a JSON request a line on stdin; the forked command's pid, then its
    exit code, a JSON line each on `reply_fd`. A command leaves the loop, and the server's
    code, by SystemExit: its interpreter then ends as `python` ends (threads joined, exit
    functions run, streams flushed)."""
    requests, replies = sys.stdin, os.fdopen(reply_fd, "w")
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                code = _child(request)
            except BaseException:  # noqa: BLE001  (its setup failed: said, and exit 1)
                import traceback

                traceback.print_exc()
                code = 1
            raise SystemExit(code)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


def _child(request: dict) -> int:
    """Become the command: its folder, environment, standard streams and argv; run it as
    `python` does; its exit code."""
    import io
    import runpy
    import traceback

    import torch

    for function in SHARED_EXIT:
        atexit.unregister(function)
    for finalizer in list(weakref.finalize._registry):  # the same, made as finalizers
        finalizer.atexit = False
    os.setpgid(0, 0)  # its own process group: a timed-out command is killed with its children
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    torch.set_num_threads(int(request["env"]["OMP_NUM_THREADS"]))
    torch.manual_seed(torch.initial_seed())  # a fresh interpreter's generator
    argv = request["argv"]
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = str(Path(argv[0]).resolve().parent)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (what python prints for an uncaught error)
        traceback.print_exc()
        return 1
    return 0


class WarmPython:
    """The server of this pytest worker, started at its first command."""

    def __init__(self, env: dict):
        self.env = {**env, "OMP_NUM_THREADS": "1"}  # no thread pools forked half-made
        self.proc = subprocess.Popen(  # unbuffered: `_reply` waits on the pipe itself
            [sys.executable, "-c", SERVER, str(ROOT), ",".join(PRELOAD)], cwd=ROOT,
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def fits(self, env: dict) -> bool:
        """Whether a command with `env` may run here: its imports would be the same."""
        keys = {k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)}
        return (self.proc.poll() is None and env.get("OMP_NUM_THREADS") == "1"
                and not any(k.startswith("PYTHON") for k in keys))

    def run(self, argv: list[str], cwd: Path, env: dict, timeout: float
            ) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out),
                       "stderr": str(err)}
            data = memoryview((json.dumps(request) + "\n").encode())
            while data:  # an unbuffered pipe may take part of it
                data = data[self.proc.stdin.write(data):]
            pid = _reply(self.proc, 60)["pid"]
            try:
                code = _reply(self.proc, timeout)["code"]
            except TimeoutError:
                try:
                    os.killpg(pid, 9)
                except ProcessLookupError:
                    pass
                _reply(self.proc, 60)
                raise subprocess.TimeoutExpired([sys.executable, *argv], timeout) from None
            return subprocess.CompletedProcess([sys.executable, *argv], code,
                                               out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))


def _reply(proc: subprocess.Popen, timeout: float) -> dict:
    """The server's next JSON line, waiting at most `timeout` seconds for it."""
    import selectors
    import time

    line, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            byte = proc.stdout.read(1)
            if not byte:
                raise RuntimeError("the warm interpreter ended")
            line += byte
    return json.loads(line)


_SERVER: WarmPython | None = None


def run_python(argv: list[str], cwd: Path, env: dict, timeout: float = 900
               ) -> subprocess.CompletedProcess:
    """`python ARGV` (a script and its arguments, or -m MODULE ...) as subprocess.run would run
    it with capture_output and text, through this worker's warm interpreter where it fits."""
    global _SERVER
    if os.environ.get("C2F_TEST_FRESH") == "1":
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    if _SERVER is None or _SERVER.proc.poll() is not None:
        _SERVER = WarmPython(env)
        atexit.register(_SERVER.proc.kill)
    if not _SERVER.fits(env):
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    return _SERVER.run(argv, cwd, env, timeout)
