"""A registry of named classes filled by a decorator, whose package's modules are all imported
on first use: adding a compression method or a model is one new file."""
from __future__ import annotations

import importlib
import pkgutil


class Registry:
    """Classes by name for one package (`c2f.compression`, `c2f.models`)."""

    def __init__(self, package: str, kind: str):
        self.package, self.kind = package, kind
        self.classes: dict[str, type] = {}
        self.loaded = False

    def register(self, name: str):
        """Class decorator: the class becomes available under `name` (and knows it)."""

        def wrap(cls: type) -> type:
            if name in self.classes and self.classes[name] is not cls:
                raise ValueError(f"{self.kind} `{name}` is registered twice")
            cls.name = name
            self.classes[name] = cls
            return cls

        return wrap

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self.classes)

    def get(self, name: str) -> type | None:
        self._load_all()
        return self.classes.get(name)

    def _load_all(self) -> None:
        if not self.loaded:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self.loaded = True
