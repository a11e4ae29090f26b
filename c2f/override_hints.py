"""Did-you-mean hints for command-line overrides that name no key of the config.

Hydra refuses `schedule.cc=4` or `compresion=fshift` with "Key 'cc' is not in struct" (and
suggests `+schedule.cc=4`, which c2f would then refuse too). After such a failure run.py calls
`unknown_override_hints(sys.argv[1:])`: it composes the same config (the config name and the
group choices of the command line, through Hydra's compose API) and, for each override whose
key is not in it, names the closest key or group that is.
"""
from __future__ import annotations

import difflib
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"


def split_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(config name, overrides) of run.py's command line; flags and their values dropped."""
    name, overrides, rest = "config", [], list(argv)
    takes_value = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir",
                   "--experimental-rerun", "-c", "--cfg", "-p", "--package"}
    while rest:
        arg = rest.pop(0)
        if arg in ("-cn", "--config-name") and rest:
            name = rest.pop(0)
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif arg in takes_value and rest:
            rest.pop(0)
        elif not arg.startswith("-"):
            overrides.append(arg)
    return name, overrides


def _first_value(override) -> str | None:
    """The value to compose with: a sweep's first choice; None for a value too odd to use."""
    if override.is_sweep_override():
        values = list(override.sweep_string_iterator())
        return values[0] if values else None
    value = override.value()
    return value if isinstance(value, str) else None


def _closest(word: str, choices) -> str | None:
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return found[0] if found else None


def _missing(cfg, key: str) -> tuple[str, list[str]] | None:
    """(the first missing part of dotted `key`, the keys beside it); None when `key` exists or
    leads into a value that is not a mapping (Hydra says that itself)."""
    from omegaconf import DictConfig

    node, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None
        if part not in node.keys():  # (`in node` is False for a key whose value is ???)
            return ".".join(parts[:depth + 1]), [str(k) for k in node.keys()]
        node = node._get_node(part)
    return None


def _quoting_hints(raw: list[str], sweep: bool) -> list[str]:
    """For each override Hydra's grammar refuses because its value holds `=` (PANNs'
    `Cnn14_mAP=0.431.pth`, Lightning's `l-epoch=9-mAP=0.470.ckpt`): the quoted form; in a
    sweep (`sweep`: -m), a list of values a,b quoted one by one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, hints = OverridesParser.create(), []
    for override in raw:
        key, _, value = override.partition("=")
        if "=" not in value or value[:1] in "'\"":
            continue
        try:
            parser.parse_overrides([override])
        except Exception:  # a sweep's values (a,b) are quoted one by one
            parts = value.split(",") if sweep and "(" not in value else [value]
            quoted = ",".join(f'"{part}"' for part in parts)
            hints.append(f"`{override}`: Hydra reads the `=` in its value as syntax; quote the "
                         f"value (and the whole argument for the shell): '{key}={quoted}'")
    return hints


def unknown_override_hints(argv: list[str]) -> list[str]:
    """One line per override of `argv` whose key the composed config lacks, with the closest
    key or config group; [] when every key exists or the config cannot be composed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name, raw = split_argv(argv)
    try:
        parsed = OverridesParser.create().parse_overrides(raw)
    except Exception:  # a syntax error: Hydra's own message points at it; a value with `=`
        return _quoting_hints(raw, any(a in ("-m", "--multirun") for a in argv))  # (a
        # checkpoint's file name) needs quotes, which we say
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = set(loader.list_groups("")) | {f"hydra/{g}" for g in loader.list_groups("hydra")}
        chosen, keys = [], []
        for override in parsed:
            if override.is_add() or override.is_delete() or override.is_force_add():
                continue
            key = override.key_or_group
            value = _first_value(override)
            if key in groups:
                if value is not None and value in loader.get_group_options(key):
                    chosen.append(f"{key}={value}")
            else:
                keys.append(key)
        if not keys:
            return []
        try:
            cfg = compose(name, overrides=chosen, return_hydra_config=True)
        except Exception:
            return []
    hints = []
    for key in keys:
        missing = _missing(cfg, key)
        if missing is None:
            continue
        part, beside = missing
        prefix, _, last = part.rpartition(".")
        pool = beside + (sorted(g for g in groups if "/" not in g) if not prefix else [])
        near = _closest(last, pool)
        where = f"of `{prefix}`" if prefix else "of the config, nor a config group"
        hint = f"`{key}`: `{last}` is not a key {where}"
        hints.append(hint + (f"; did you mean `{prefix + '.' if prefix else ''}{near}`?"
                             if near else ""))
    return hints
