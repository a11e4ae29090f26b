"""Reading a `model.pretrained` file: any PyTorch state dict, unwrapped, or a ConfigError that
names the file and what it should be (a text file, a truncated download, a pickle of another
kind), instead of a traceback from inside torch.load."""
from __future__ import annotations

import errno
import functools
import pickle
import re
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
    how = f"expected {expected}; download it again if it was cut short, or fix model.pretrained"
    try:
        try:
            raw = _load(path)
        except pickle.UnpicklingError as err:
            if "GLOBAL numpy." not in str(err):
                raise
            # PANNs' main.py saves its sampler's numpy arrays beside the model ({'iteration',
            # 'model', 'sampler'}): numpy's array reconstruction only, never arbitrary code
            with torch.serialization.safe_globals(_numpy_globals()):
                raw = _load(path)
    except Exception as err:  # noqa: BLE001  (any unreadable file says the same)
        raise ConfigError(f"`model.pretrained`={path}: not a PyTorch checkpoint c2f can read "
                          f"({_text_file(path) or f'{type(err).__name__}: {_reason(err)}'}); "
                          f"{how}") from None
    for wrapper in wrappers:
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)} \
        if isinstance(raw, dict) else {}
    if not tensors:
        raise ConfigError(f"`model.pretrained`={path}: holds no tensors by name (a "
                          f"{type(raw).__name__}{_layout(raw)}); {how}")
    return tensors


def _load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise
    except Exception:  # noqa: BLE001  legacy files cannot be memory-mapped, and a broken file
        # fails mapping with a bare OSError: read it plainly, which says what is wrong
        return torch.load(path, map_location="cpu", weights_only=True)


def _numpy_globals() -> list:
    """What numpy arrays and scalars unpickle through (under numpy 2's names and numpy 1's)."""
    import numpy as np

    try:  # numpy 2; numpy 1.26 has `numpy._core` only as import stubs
        from numpy._core import multiarray as core
    except ImportError:
        from numpy.core import multiarray as core
    found: list = [np.ndarray, np.dtype, core._reconstruct, core.scalar]
    for name in ("_reconstruct", "scalar"):  # the names pickles of either numpy carry
        found += [(getattr(core, name), f"numpy.{where}.multiarray.{name}")
                  for where in ("core", "_core")]
    # the dtype classes (numpy.dtypes.Int64DType, ...; numpy < 1.25 has no numpy.dtypes)
    return found + sorted({type(np.dtype(code)) for code in np.typecodes["All"]}, key=str)


# the line of torch's message that says what is wrong with the file (the first one often
# says only that loading failed, and another advises weights_only=False, which c2f never does)
TELLING = ("Unsupported global", "invalid load key", "central directory", "PytorchStreamReader",
           "Ran out of input", "zip archive", "Unsupported operand")


def _reason(err: Exception) -> str:
    if isinstance(err, EOFError) or (isinstance(err, OSError) and err.errno == errno.EINVAL):
        # what torch's archive reader says of a zip cut short (the latter on some file systems)
        return "the file ends before its data does, as a download cut short"
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and "weights_only` set to `False" not in line]
    telling = [line for line in lines if any(word in line for word in TELLING)]
    reason = (telling or lines or [type(err).__name__])[0].split(". ")[0]
    return reason.removeprefix("WeightsUnpickler error: ")[:300]


def _text_file(path: str) -> str | None:
    """`a text file, not a checkpoint (it starts: ...)` for a saved web page or error text."""
    try:
        with open(path, "rb") as f:
            head = f.read(80)
    except OSError:
        return None
    if not head or any(b < 9 or 13 < b < 32 for b in head):
        return None
    start = head.decode("utf-8", "replace").split("\n")[0][:60]
    return f"a text file, not a checkpoint: it starts {start!r}, as a saved web page or error does"


# the families whose official files a checkpoint's names betray, for a file given to another
FAMILIES = (("conv_block1.", "PANNs' CNN14 ({'model': ...}; model=cnn14)"),
            ("layers.0.blocks.", "HTS-AT's ({'state_dict': {'sed_model.*'}}; model=htsat)"),
            ("vit.blocks.", "c2f's AST (vit.*; model=ast_base, ast_tiny or ssast_base)"),
            ("v.blocks.", "AST's (module.v.*; model=ast_base)"),
            ("blocks.0.attn.", "a timm ViT/DeiT (model=ast_base)"))


def _layout(raw) -> str:
    """`; its top-level keys: ...; it looks like ...` for a dict that held no tensor where the
    model looks: what the file is, to tell a file of another model from a broken one."""
    if not isinstance(raw, dict) or not raw:
        return ""
    keys = ", ".join(repr(k) for k in list(raw)[:6]) + (", ..." if len(raw) > 6 else "")
    names = [str(k) for v in (raw, *raw.values()) if isinstance(v, dict) for k in v]
    return f"; its top-level keys: {keys}{looks_like(names)}"


def looks_like(names) -> str:
    """`; it looks like <family>'s checkpoint` for tensor names of a known family, else ""."""
    family = next((what for mark, what in FAMILIES if any(mark in n for n in names)), None)
    return f"; it looks like {family}" if family else ""


class LeftAtInit(list):
    """What loading a checkpoint left: the model's parameter names left at init, sorted (the
    list a family's `load_pretrained` returns), and `unused`, the file's tensors the model did
    not take, by name, each with why (another shape, or no such parameter: a token, a head, a
    feature extractor's buffer the model does not have)."""

    def __init__(self, left, unused: dict[str, str] | None = None):
        super().__init__(sorted(left))
        self.unused = dict(unused or {})
        self.adapted: list[str] = []  # what the loader changed to fit ("the positional ...")


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
    for change in getattr(left, "adapted", []):
        text += f"; {change}"
    return text


def weights_differ(model: torch.nn.Module, state: dict, arch: str) -> str:
    """When a state dict c2f saved for this model (a checkpoint, an export) does not fit the
    model its code builds now, the start of a one-line message naming the names that differ;
    "" when it fits."""
    own = model.state_dict()
    extra, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    resized = [f"{key} {list(state[key].shape)} (now {list(own[key].shape)})"
               for key in sorted(set(own) & set(state))
               if getattr(state[key], "shape", None) != getattr(own[key], "shape", None)]
    parts = [f"{what}: {_few(names)}" for what, names in (
        ("not in the model", extra), ("missing from the weights", missing),
        ("of other shapes", resized)) if names]
    return "" if not parts else (
        f"the saved weights do not fit `model.arch={arch}` as its code builds it now (its code "
        f"changed since they were saved): {'; '.join(parts)}; ")


def _few(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
