"""Reading a `model.pretrained` file: any PyTorch state dict, unwrapped, or a ConfigError that
names the file and what it should be (a text file, a truncated download, a pickle of another
kind), instead of a traceback from inside torch.load."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from c2f.spec import ConfigError


def read_state_dict(path: str | Path, wrappers: tuple[str, ...], expected: str
                    ) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint `path`, unwrapped from the first of `wrappers` present
    ({"model": ...}, {"state_dict": ...}); memory-mapped where the file allows it, so reading
    a shape costs little. `expected`: what the file should hold, for the error."""
    path = Path(path).expanduser()
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_size, stat.st_mtime_ns, wrappers, expected)


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime_ns: int, wrappers: tuple[str, ...], expected: str
          ) -> dict[str, torch.Tensor]:
    how = (f"expected {expected}, saved with torch.save(model.state_dict(), ...); download it "
           "again if it was cut short, or fix model.pretrained")
    try:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files of torch's legacy format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (any unreadable file says the same)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"`model.pretrained`={path}: not a PyTorch checkpoint c2f can read "
                          f"({type(err).__name__}: {reason[:200]}); {how}") from None
    for wrapper in wrappers:
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)} \
        if isinstance(raw, dict) else {}
    if not tensors:
        raise ConfigError(f"`model.pretrained`={path}: holds no tensors by name (a "
                          f"{type(raw).__name__}); {how}")
    return tensors


class LeftAtInit(list):
    """What loading a checkpoint left: the model's parameter names left at init, sorted (the
    list a family's `load_pretrained` returns), and `unused`, the file's tensors the model did
    not take, by name, each with why (another shape, or no such parameter: a token, a head, a
    feature extractor's buffer the model does not have)."""

    def __init__(self, left, unused: dict[str, str] | None = None):
        super().__init__(sorted(left))
        self.unused = dict(unused or {})


def take_usable(state: dict[str, torch.Tensor], model: torch.nn.Module
                ) -> tuple[dict[str, torch.Tensor], LeftAtInit]:
    """The tensors of `state` that `model` takes (same name and shape), and what is left."""
    target = model.state_dict()
    usable, unused = {}, {}
    for key, value in state.items():
        if key not in target:
            unused[key] = "not in this model"
        elif value.shape != target[key].shape:
            unused[key] = f"shape {list(value.shape)}, this model's {list(target[key].shape)}"
        else:
            usable[key] = value
    return usable, LeftAtInit(set(target) - set(usable), unused)


def loaded_note(path: str, left: list[str]) -> str:
    """The log line of a loaded checkpoint: the model's names left at init and the file's
    tensors not used (a family's own loader may return a plain list: then those alone)."""
    text = f"loaded {path}; left at init: {', '.join(left) or '-'}"
    unused = sorted(getattr(left, "unused", {}).items())
    if unused:
        shown = ", ".join(f"{key} ({why})" for key, why in unused[:8])
        more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
        text += f"; not used from the file: {shown}{more}"
    return text
