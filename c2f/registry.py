"""A registry of named classes filled by a decorator, whose package's modules are all imported
on first use: adding a compression method or a model is one new file.

The file may also live in a package of your own: a package that declares a module in the
`c2f.plugins` entry-point group (`[project.entry-points."c2f.plugins"]` in its pyproject.toml,
`mine = "my_package.c2f_methods"`) has that module imported with c2f's own, so its `@register`
and `@register_model` classes are found, and a `conf/` folder beside the module is added to
Hydra's config search path (`conf/compression/<name>.yaml`, `conf/model/<preset>.yaml`).
"""
from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import sys
import sysconfig
import traceback
from pathlib import Path

PLUGIN_GROUP = "c2f.plugins"


class PluginError(ImportError):
    """A declared plugin that cannot be found or imported; the message names its package."""


class DuplicateName(PluginError):
    """Two classes registered under one name; the message names both files."""


# the modules that hold c2f's registries (as `_REGISTRY`): each one's own modules register
# before any plugin, whichever registry is asked first, so a plugin's clash is the plugin's
REGISTRY_MODULES = ("c2f.compression", "c2f.models.registry")


def same_definition(known: type | None, cls: type) -> bool:
    """Whether `cls` is `known` or its definition run again (its module imported again, after
    an import that failed partway): no clash under one name."""
    return known is cls or known is not None and (known.__module__, known.__qualname__) == (
        cls.__module__, cls.__qualname__)


class Registry:
    """Classes by name for one package (`c2f.compression`, `c2f.models`)."""

    def __init__(self, package: str, kind: str, base: type, own: tuple[str, ...] = ()):
        self.package, self.kind, self.base = package, kind, base  # base: what classes subclass
        self.own = own  # the modules of the package that c2f ships (a name clash's message)
        self.classes: dict[str, type] = {}
        self.loaded = self.own_loaded = False

    def register(self, name: str):
        """Class decorator: the class becomes available under `name` (and knows it)."""

        def wrap(cls: type) -> type:
            known = self.classes.get(name)
            if known is not None and not same_definition(known, cls):
                raise DuplicateName(self._clash(name, known, cls))
            cls.name = name
            self.classes[name] = cls
            return cls

        return wrap

    def _clash(self, name: str, first: type, second: type) -> str:
        """Which files register `name`, the one c2f ships last, and what to do."""
        own = {f"{self.package}.{module}" for module in self.own}
        first, second = sorted((first, second), key=lambda cls: cls.__module__ in own)
        said = f"{self.kind} `{name}` is registered by both {_file(first)} and {_file(second)}"
        if second.__module__ not in own:
            return said + ": rename one of them"
        folder = first.__module__.rpartition(".")[0] == self.package
        return said + " (c2f's own): rename yours" + (
            f" (every module of {self.package.replace('.', '/')}/ is imported: the clash "
            "stops every run)" if folder else "")

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self.classes)

    def get(self, name: str) -> type | None:
        self._load_all()
        return self.classes.get(name)

    def _load_all(self) -> None:
        if not self.loaded:
            self._load_own()
            load_plugins()
            self.loaded = True

    def _load_own(self) -> None:
        """Import every module of the package (their decorators register c2f's own classes)."""
        if not self.own_loaded:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                name = f"{self.package}.{module.name}"
                try:
                    importlib.import_module(name)
                except DuplicateName:
                    raise
                except Exception as err:  # a new file's mistake: named, as a plugin's is
                    where = Path(package.__path__[0]) / (
                        module.name if module.ispkg else f"{module.name}.py")
                    raise PluginError(f"{self.kind} module {where} failed to import: "
                                      f"{type(err).__name__}: {err}{raised_at(err)}; fix it or "
                                      "move it out of "
                                      "the folder (every module there is imported)") from err
            self.own_loaded = True

    def unknown(self, name: str) -> str:
        """Why nothing is registered as `name`, for a message: a module of the folder that
        defines a class for it but registers nothing (a forgotten decorator), the closest name,
        those there are, modules in subfolders (never imported), and where a plugin's would
        come from."""
        names = self.names()
        silent = self._unregistered(name)
        near = difflib.get_close_matches(name, names, n=1)
        said = f"unknown {self.kind} {name!r}"
        if silent:
            said += (f"; {_shown(silent[0])} defines {silent[1]} but registers nothing: "
                     "decorate its class with "
                     f"@{'register_model' if self.kind == 'model' else 'register'}({name!r})")
        if near:
            said += f"; did you mean {near[0]!r}?"
        said += f" (available: {', '.join(names)})"
        folder = Path(importlib.import_module(self.package).__path__[0])
        nested = sorted(f"{sub.name}/" for sub in folder.iterdir() if sub.is_dir() and any(
            path.name != "__init__.py" for path in sub.rglob("*.py")))
        if nested:
            said += (f"; modules in subfolders of {_shown(folder)}/ are not imported "
                     f"({', '.join(nested)}): move the file up into {_shown(folder)}/")
        return said + ("" if silent else plugins_hint())

    def _unregistered(self, name: str) -> tuple[Path, str] | None:
        """(file, class) of a module of the folder that defines a subclass of the registry's
        base for `name` (the module or the class named for it: my_cnn.py's ConvNetFamily for
        convnet) but registers nothing (a forgotten decorator); None otherwise (a helper module
        such as ssast.py or base.py defines none)."""
        modules = [module for key, module in sorted(sys.modules.items())
                   if key.startswith(f"{self.package}.") and module is not None]
        registering = {cls.__module__ for cls in self.classes.values()}
        for module in sorted(modules, key=lambda m: m.__name__ != f"{self.package}.{name}"):
            if module.__name__ in registering or not getattr(module, "__file__", None):
                continue
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, self.base) and \
                        value is not self.base and value.__module__ == module.__name__ and \
                        _same(name, module.__name__.rpartition(".")[2], value.__name__):
                    return Path(module.__file__), value.__name__
        return None


def _same(name: str, *candidates: str) -> bool:
    """Whether `name` (convnet) reads as one of `candidates` (convnet, ConvNetFamily, conv_net)."""
    def plain(text: str) -> str:
        return text.lower().replace("_", "").removesuffix("family")
    return any(difflib.SequenceMatcher(None, plain(name), plain(text)).ratio() >= 0.8
               for text in candidates)


def _file(cls: type) -> str:
    """The file a class is defined in, relative to c2f's checkout when it is in it."""
    try:
        return _shown(Path(inspect.getsourcefile(cls) or cls.__module__))
    except TypeError:
        return cls.__module__


def _shown(path: Path) -> str:
    path, root = path.resolve(), Path(__file__).resolve().parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def raised_at(err: BaseException) -> str:
    """" (at file:line)" of the innermost frame of `err` in c2f's or a user's code (not in
    Python's, torch's or timm's), the line of a model or method that failed; "" when none."""
    libraries = [Path(sysconfig.get_paths()["stdlib"]).resolve(),
                 *(Path(sys.modules[name].__file__).resolve().parent
                   for name in ("torch", "timm") if name in sys.modules)]
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        path = Path(frame.filename)
        if not frame.filename.startswith("<") and not any(
                path.resolve().is_relative_to(library) for library in libraries):
            return f" (at {_shown(path)}:{frame.lineno})"
    return ""


def plugins_hint() -> str:
    """What an unknown name may be missing: the plugins there are, or that there are none."""
    names = [entry.value for entry in _plugin_entries()]
    found = f"loaded: {', '.join(names)}" if names else "none is installed"
    return (f" (a method or model of a package of your own needs that package installed in "
            f"this environment, declared in the {PLUGIN_GROUP} entry-point group; {found})")


def _plugin_entries() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)


def _where(entry: importlib.metadata.EntryPoint) -> str:
    package = entry.dist.name if entry.dist is not None else "an installed package"
    return (f"c2f plugin {entry.name!r} = {entry.value!r} (entry point of {package}, group "
            f"{PLUGIN_GROUP})")


@functools.cache
def plugin_folders() -> tuple[Path, ...]:
    """The folder of each plugin module (its `conf/` and its sources), without importing it
    (its parent package is imported, whose __init__ may register classes: after c2f's own)."""
    folders = []
    if _plugin_entries():
        _load_own_registries()
    for entry in _plugin_entries():
        try:
            spec = importlib.util.find_spec(entry.module)
        except DuplicateName as err:
            raise DuplicateName(f"{_where(entry)}: {err}") from None
        except (ImportError, ValueError) as err:
            raise PluginError(f"{_where(entry)}: {err}; install its package again or "
                              "uninstall it") from None
        if spec is None:
            raise PluginError(f"{_where(entry)}: no module {entry.module!r} found; install "
                              "its package again or uninstall it")
        locations = list(spec.submodule_search_locations or [])  # a (namespace) package
        folders.append(Path(locations[0]) if spec.origin is None and locations
                       else Path(spec.origin).parent)
    return tuple(folders)


def _load_own_registries() -> None:
    for module in REGISTRY_MODULES:
        importlib.import_module(module)._REGISTRY._load_own()


@functools.cache
def load_plugins() -> tuple[str, ...]:
    """Import every plugin module (its decorators register its classes); their names."""
    _load_own_registries()
    plugin_folders()  # a missing module fails with its entry point named
    for entry in _plugin_entries():
        try:
            importlib.import_module(entry.module)
        except DuplicateName as err:
            raise DuplicateName(f"{_where(entry)}: {err}") from None
        except Exception as err:
            raise PluginError(f"{_where(entry)} failed to import: {type(err).__name__}: "
                              f"{err}") from err
    return tuple(entry.module for entry in _plugin_entries())
