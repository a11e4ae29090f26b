"""What the jobs a launcher starts inherit from it: environment variables, and the code they
run (a snapshot taken at launch, `snapshot=true`)."""
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path


@contextlib.contextmanager
def job_environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ inside, the previous values (or their absence) after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def snapshot_code(root: Path, dest: Path) -> Path:
    """Copy the repository's files (tracked and untracked, not ignored) to `dest`."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = root / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


# what a job imports from the code: run.py's task, c2f, and these plugins
CODE_NAMES = ("run.py", "c2f", "hydra_plugins")


def shadowed_by_launch_folder(folder: Path) -> list[str]:
    """The code that jobs launched from `folder` would import from there, not from the
    snapshot: submitit starts them with `python -m`, which puts their working folder (the
    launch folder) first on sys.path unless PYTHONSAFEPATH is set, and Python < 3.11 ignores
    PYTHONSAFEPATH. Nothing on Python >= 3.11."""
    if sys.version_info >= (3, 11):
        return []
    return [name for name in CODE_NAMES if (folder / name).exists()]


def code_environment(code_root: Path) -> AbstractContextManager[None]:
    """Jobs started inside import c2f, run.py's task and these plugins from `code_root`.

    SLURM and submitit's local executor pass this process's environment to the jobs;
    PYTHONSAFEPATH keeps the launch folder (often the repository itself) off their sys.path.
    """
    path = os.pathsep.join(filter(None, [str(code_root), os.environ.get("PYTHONPATH")]))
    return job_environ({"PYTHONPATH": path, "PYTHONSAFEPATH": "1"})
