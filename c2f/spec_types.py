"""Config values checked against the annotations of c2f/spec.py's dataclasses, so that a value
of the wrong kind (`optim.lr=abc`, `dataset.epochs=true`, `model.patch=[16]`) fails naming its
key and what the key takes, instead of as a TypeError inside a later check or in training; and
the `options` of a model or method, the keys its own dataclass reads."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """An impossible or malformed configuration; the message names the key and the fix."""


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


def build_dataclass(cls, node: Any, key: str, preset: str | None = None):
    """Build dataclass `cls` from a mapping, naming unknown or missing keys (and the preset's
    `name:`, when given, for a missing one)."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"`{key}` must be a mapping, got {type(node).__name__}: {node!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(node) - set(fields))
    if unknown:
        nested = key.split(".")[-1] in unknown  # `dataset.dataset`: a preset package mistake
        near = {u: difflib.get_close_matches(u, list(fields), n=1, cutoff=0.75) for u in unknown}
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{key}.{u}' for u in unknown)}; "
            + "".join(f"did you mean `{key}.{n[0]}` for `{u}`? " for u, n in near.items() if n)
            + f"allowed: {', '.join(sorted(fields))}"
            + (f" (a preset that holds a `{key}:` block needs `# @package _global_` as its "
               "first line, as conf/dataset/esc50.yaml has)" if nested else "")
            + (f" (a model family's or method's own keys go under `{key}.options:`)"
               if "options" in fields and not all(near.values()) else "")
        )
    required = [f.name for f in fields.values() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in node]
    if required:
        group, missing = key.split(".")[0], ", ".join(f"`{key}.{r}`" for r in required)
        under = f" under `{key.split('.', 1)[1]}:`" if "." in key else ""
        which = (f"{preset!r} (conf/{group}/<preset>.yaml, its `name: {preset}`)" if preset
                 else f"(conf/{group}/<option>.yaml, chosen as {group}=<option>)")
        raise ConfigError(f"{missing} is missing: the {group} preset {which} needs a line "
                          f"`{required[0]}: ...`"
                          f"{under}, or give {key}.{required[0]}=... on the command line")
    kwargs, hints = {}, field_types(cls)
    for name, value in node.items():
        if value == "???":  # OmegaConf's mandatory value, left unset
            raise ConfigError(f"`{key}.{name}` has no value: give it on the command line "
                              f"({key}.{name}=...; `python -m c2f.data.prepare` prints the "
                              "command that trains on the data it makes)")
        if not matches(value, hints[name]):
            raise ConfigError(f"`{key}.{name}`: takes {describe(hints[name])}, got {value!r}")
        if isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"`{key}`: {err}") from None


def build_nested(cls, node: Any, key: str, **inner) -> Any:
    """`cls` from a mapping, with each field named in `inner` (a mapping too, or None) built
    as the dataclass given for it."""
    built = build_dataclass(cls, node, key)
    nested = {field: build_dataclass(inner_cls, getattr(built, field), f"{key}.{field}")
              for field, inner_cls in inner.items() if getattr(built, field) is not None}
    return dataclasses.replace(built, **nested)


def with_frozen_options(node: Any, key: str) -> Any:
    """`node` (a group's mapping) with its `options` mapping frozen for a frozen dataclass:
    sorted (key, value) pairs, lists as tuples."""
    if not isinstance(node, Mapping) or "options" not in node:
        return node
    options = node["options"] if node["options"] is not None else {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"`{key}.options` must be a mapping of its own keys "
                          f"({key}.options.<key>=...), got {options!r}")
    return {**node, "options": tuple(sorted((str(k), _frozen(v, f"{key}.options.{k}"))
                                            for k, v in options.items()))}


def _frozen(value: Any, key: str) -> Any:
    """A config value as a hashable one: lists as tuples; mappings are refused."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item, key) for item in value)
    if isinstance(value, Mapping):
        raise ConfigError(f"`{key}`: an option takes a value or a list, not a mapping")
    return value


def own_options(cls: type | None, options: tuple, key: str, owner: str,
                preset: str | None = None) -> Any:
    """`options` (frozen pairs) as the dataclass `cls` of `owner` (defaults filled), naming
    unknown, missing or mistyped keys; None when `owner` has no options and none are given."""
    if cls is None:
        if options:
            raise ConfigError(f"`{key}.options`: {owner} has no options of its own, got "
                              f"{', '.join(name for name, _ in options)}; its settings are "
                              f"{key}.* keys")
        return None
    return build_dataclass(cls, dict(options), f"{key}.options", preset)
