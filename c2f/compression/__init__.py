"""Registry of temporal compression methods: `@register`, `create_compression`, `list_compressions`.

Every module in this folder is imported on first use, so a new method is one new file.
"""
from __future__ import annotations

from c2f.compression.base import BaseInput, Compression, PhaseInput
from c2f.registry import Registry

_REGISTRY = Registry("c2f.compression", "compression", Compression,
                     own=("fshift", "none", "patch", "pool"))
register = _REGISTRY.register  # class decorator: `compression=<name>`


def list_compressions() -> list[str]:
    return _REGISTRY.names()


def compression_class(name: str) -> type[Compression]:
    """The class registered as `name` (what it is, without building it with options)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(_REGISTRY.unknown(name))
    return cls


def create_compression(name: str, options: tuple = ()) -> Compression:
    """The method registered as `name`, with its own `options` (frozen (key, value) pairs:
    `spec.compression.options`); ConfigError for keys it does not take."""
    return compression_class(name)(options)


__all__ = ["BaseInput", "Compression", "PhaseInput", "register", "compression_class",
           "create_compression",
           "list_compressions"]
