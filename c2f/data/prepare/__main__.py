"""Command line of `python -m c2f.data.prepare`; `--help` lists the datasets."""
from __future__ import annotations

import argparse
import difflib
import inspect
import json
import os
import shlex
import sys
from pathlib import Path

from c2f.data.prepare import DATASETS, DatasetRecipe, ListError, Options, prepare
from c2f.data.prepare.engine import Interrupted


def _limit(text: str) -> str:
    """--max-missing / --max-failed: "5%" or a count."""
    body = text[:-1] if text.endswith("%") else text
    try:
        value = float(body)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a count (100) or a percentage "
                                         "(5%)") from None
    if value < 0 or (not text.endswith("%") and value != int(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: a whole count >= 0 or a percentage")
    return text


def default_workers() -> int:
    """The CPUs this process may use (a SLURM allocation's, not the node's), less one."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 2)
    return max(1, usable - 1)


def parser() -> argparse.ArgumentParser:
    """One subcommand per registered dataset, each with the shared options and its own."""
    import c2f.data.prepare as package
    from c2f.registry import load_plugins

    load_plugins()  # a plugin's @register_dataset recipes (c2f/registry.py)
    top = argparse.ArgumentParser(prog="python -m c2f.data.prepare", description=package.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    subs = top.add_subparsers(dest="dataset", required=True, metavar="NAME")
    for name, recipe in DATASETS.items():
        sub = subs.add_parser(name, help=recipe.description, description=recipe.description)
        sub.add_argument("--src", type=Path, required=True,
                         help="folder holding the downloaded files (any layout below it)")
        sub.add_argument("--lists", type=Path, nargs="+", default=[],
                         help=f"the publisher's lists, if not under --src: {recipe.lists_help}")
        sub.add_argument("--out", type=Path,
                         help=recipe.out_help or f"output folder (default: $C2F_ROOT/data/"
                         f"{name}, the preset's " "${paths.data_dir}/" + name + ")")
        sub.add_argument("--workers", type=int, default=default_workers(),
                         help="decoding processes (default: the CPUs this process may use, "
                              "less one; a SLURM allocation's, not the node's)")
        sub.add_argument("--format", choices=("flac", "wav"), default="flac",
                         help="output audio format (16-bit; default flac)")
        sub.add_argument("--max-missing", type=_limit, metavar="N|P%",
                         help="exit 1 when more listed clips than this have no source file")
        sub.add_argument("--max-failed", type=_limit, metavar="N|P%",
                         help="exit 1 when more source files than this fail to decode")
        sub.add_argument("--no-stats", action="store_true",
                         help="skip the normalization statistics")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        recipe.add_arguments(sub)
    return top


def out_problem(recipe, src: Path, out: Path) -> str | None:
    """Why the output folder cannot take the preparation, or None: --src itself, a folder
    this user cannot write, or (for a paper dataset) a name its preset does not read."""
    if out.resolve() == src.resolve():
        return (f"the output goes to a folder of its own, not into --src; e.g. --out "
                f"data/{recipe.default_out_name()}")
    want = recipe.default_out_name()
    if recipe.out_named_by_preset and out.name != want and not _holds(out, recipe.name):
        return (f"the {recipe.preset} preset reads ${{paths.data_dir}}/{want}/; name the folder "
                f"{want} (--out {out.parent / want}) and train with paths.data_dir={out.parent} "
                f"(two versions side by side: --out /data/v2/{want}, paths.data_dir=/data/v2)")
    try:
        existing = next(p for p in (out, *out.parents) if p.exists())  # made later if missing
    except PermissionError as err:
        return (f"cannot write there (Permission denied: {err.filename}); choose a folder you "
                "can write")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "Not a directory" if not existing.is_dir() else "Permission denied"
        return (f"cannot write there ({why}: {existing}); choose a folder you can write (it is "
                "made if missing)")
    return None


def _holds(out: Path, dataset: str) -> bool:
    """Whether `out` already holds a preparation of `dataset` (made before the name mattered)."""
    try:
        return json.loads((out / "prepared.json").read_text()).get("dataset") == dataset
    except (OSError, ValueError, AttributeError):
        return False


def unknown_dataset(name: str) -> str | None:
    """What to say of a dataset name no recipe registered: a recipe class of that name left
    without its decorator, or the closest name; None for a registered name."""
    if name in DATASETS or name.startswith("-"):
        return None
    classes, found = [DatasetRecipe], []
    while classes:  # every recipe class defined, registered or not
        cls = classes.pop()
        classes += cls.__subclasses__()
        found += [cls] if getattr(cls, "name", None) == name else []
    if found:
        where = inspect.getsourcefile(found[0]) or found[0].__module__
        return (f"dataset {name!r}: class {found[0].__name__} ({where}) is not registered; "
                "decorate it with @register_dataset")
    near = difflib.get_close_matches(name, list(DATASETS), n=1, cutoff=0.75)
    return f"unknown dataset {name!r}; did you mean {near[0]!r}?" if near else None


def main(argv: list[str] | None = None) -> int:
    top = parser()
    first = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")),
                 None)
    said = unknown_dataset(first) if first else None
    if said:
        print(f"error: {said} (datasets: {', '.join(DATASETS)})", file=sys.stderr)
        return 2
    args = top.parse_args(argv)
    recipe_cls = DATASETS[args.dataset]
    if not args.src.is_dir():
        print(f"error: --src {args.src}: not a folder; point it at the downloaded files",
              file=sys.stderr)
        return 2
    given = [("--lists", p) for p in args.lists] + [
        (f"--{key.replace('_', '-')}", value) for key, value in vars(args).items()
        if isinstance(value, Path) and key not in ("src", "out")]
    for option, path in given:
        if not path.is_file():
            print(f"error: {option} {path}: no such file", file=sys.stderr)
            return 2
    if args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    recipe = recipe_cls(args.src, args.lists, args)
    args.out = out = args.out or Path(os.environ.get("C2F_ROOT", ".")) / "data" / \
        recipe.default_out_name()
    problem = out_problem(recipe, args.src, out)
    if problem:
        print(f"error: --out {out}: {problem}", file=sys.stderr)
        return 2
    options = Options(out=out, workers=args.workers, fmt=args.format,
                      max_missing=args.max_missing, max_failed=args.max_failed,
                      stats=not args.no_stats, progress=not args.no_progress)
    try:
        summary = prepare(recipe, options)
    except KeyboardInterrupt as err:  # Ctrl-C: what stands is kept, the same command resumes
        done = f"{err.done} of {err.listed} listed clips stand converted in {out / 'audio'} " \
            "and are kept" if isinstance(err, Interrupted) else "the clips converted so far " \
            f"in {out / 'audio'} are kept"
        print(f"interrupted: {done}; run the same command again to continue (it converts only "
              "the rest)", file=sys.stderr)
        return 130
    except ListError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder made unreadable or read-only meanwhile
        print(f"error: {err.filename or out}: {err.strerror or err}; the clips converted so far "
              "are kept: fix that (space, permissions) and run the same command again",
              file=sys.stderr)
        return 2
    if summary.ok:
        classes, expected = summary.classes, recipe_cls.expected_classes
        if expected and classes != expected:
            print(f"NOTE: {classes} classes, the {recipe_cls.preset} preset expects "
                  f"{expected}: add dataset.num_classes={classes} to run.py")
        found = recipe.run_overrides(out, classes)
        overrides = " ".join(shlex.quote(o) for o in found)
        print(f"prepared {args.dataset} in {out}; train with: python run.py {overrides}")
        for other in recipe.other_presets:  # AudioSet: the balanced and the full set
            alike = [f"dataset={other}" if o.startswith("dataset=") else o for o in found]
            print(f"  or with: python run.py {' '.join(shlex.quote(o) for o in alike)}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
