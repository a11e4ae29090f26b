"""Environment variables set for the jobs a launcher starts (they inherit its environment)."""
import contextlib
import os
from collections.abc import Iterator


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
