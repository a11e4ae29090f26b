"""Registry of temporal compression methods: `@register`, `create_compression`, `list_compressions`.

Every module in this folder is imported on first use, so a new method is one new file.
"""
from __future__ import annotations

import importlib
import pkgutil

from c2f.compression.base import BaseInput, Compression, PhaseInput

_REGISTRY: dict[str, type[Compression]] = {}
_LOADED = False


def register(name: str):
    """Class decorator: make a Compression available as `compression=<name>`."""

    def wrap(cls: type[Compression]) -> type[Compression]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"compression `{name}` is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _LOADED = True


def list_compressions() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def create_compression(name: str) -> Compression:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown compression `{name}`; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


__all__ = ["BaseInput", "Compression", "PhaseInput", "register", "create_compression",
           "list_compressions"]
