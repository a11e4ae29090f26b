"""Config values checked against the annotations of c2f/spec.py's dataclasses, so that a value
of the wrong kind (`optim.lr=abc`, `dataset.epochs=true`, `model.patch=[16]`) fails naming its
key and what the key takes, instead of as a TypeError inside a later check or in training."""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


@functools.cache
def field_types(cls) -> dict[str, Any]:
    """The resolved annotation of each field of dataclass `cls`."""
    return typing.get_type_hints(cls)


def matches(value: Any, hint: Any) -> bool:
    """Whether a resolved config value (lists for tuples, mappings for nested dataclasses) can
    stand for `hint`. Integers pass as floats; booleans pass only as booleans."""
    if hint is typing.Any:
        return True
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(matches(value, option) for option in args)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(matches, value, args))
    if hint is type(None):
        return value is None
    if hint is bool or isinstance(value, bool):
        return hint is bool and isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float))
    if dataclasses.is_dataclass(hint) or hint is dict:
        return isinstance(value, Mapping) or isinstance(value, hint)
    return isinstance(value, hint) if isinstance(hint, type) else True


NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
         dict: "a mapping", type(None): "null"}


def describe(hint: Any) -> str:
    """What `hint` takes, in words: "an integer or null", "a list of 2 integers", ..."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in args)
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} " + " and ".join(
            sorted({describe(a).removeprefix("an ").removeprefix("a ") + "s" for a in args}))
    return NAMES.get(hint, "a mapping" if dataclasses.is_dataclass(hint) else str(hint))
