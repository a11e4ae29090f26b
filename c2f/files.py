"""Files written whole (a temp file, then a rename: readers see the old or the new content),
with the modes a plain mkdir() or open() gives, and why a write failed."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from c2f.spec_types import ConfigError


class RunFileError(ConfigError):
    """A run folder's file that cannot be read or written; the message names it and the fix."""


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask would, for a moment, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the process's umask (0o644 under the
    usual 022), so manifests and run files on a shared disk are readable by the group."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode a new folder gets from mkdir(): 0o777 less the umask (mkdtemp's is 0o700)."""
    return 0o777 & ~_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a half. It gets the
    mode a plain open() would give (mkstemp's own is 0o600: private to its owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file, then rename: a reader never sees half a file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as err:  # disk full, folder not writable: torch wraps the errno
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)  # half a file would keep a full disk full (or Ctrl-C)
        why = _write_failure(err, path.parent, written) if isinstance(err, Exception) else None
        if why is None and isinstance(err, RuntimeError):  # torch's writer, no cause shown
            why = " ".join(str(err).split())[:300]  # (a file-size limit, a quota)
        if why is None:  # not a write's failure (a payload that cannot be saved)
            raise
        kept = (f"the previous {path.name} is intact" if path.exists()
                else f"there is no earlier {path.name}")
        raise RunFileError(f"cannot write {path} ({why}); {kept}. Free space (or make the "
                           "folder writable) and run the same command again") from err


def _write_failure(err: BaseException, folder: Path, written: int) -> str | None:
    """Why a write into `folder` failed, found by asking the file system, not torch's text;
    None when the file system shows no cause (the error is not about writing)."""
    cause: BaseException | None = err
    while cause is not None:  # an OSError in the chain names its errno
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < max(written, 1 << 20):
        return f"No space left on device: {free / 2**20:.1f} MiB free in {folder}"
    probe = folder / f".write-test-{os.getpid()}"
    try:  # a file created in the folder says what the folder allows (root ignores modes)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as probe_err:
        return f"{folder}: {probe_err.strerror or probe_err}"
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None
