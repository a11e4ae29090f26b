"""Run one dataset preparation: convert what is missing in parallel, then write manifests,
labels, statistics and the reports (missing.txt, failed.txt, problems.txt, prepared.json)."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from c2f.data.prepare.convert import Task, convert_task, init_worker
from c2f.data.prepare.converted import already_converted, read_sizes, record_sizes
from c2f.data.prepare.decode import remove_partials
from c2f.data.prepare.duplicates import held_out, unique_entries
from c2f.data.prepare.registry import DatasetRecipe, Entry, ListError, Listing
from c2f.files import atomic_write_text

AUDIO_DIR = "audio"
LABELS_CSV = "class_labels_indices.csv"
MAX_SHOWN = 10  # lines of each problem list printed; the files hold them all


@dataclass(frozen=True)
class Options:
    """How to prepare: where to, in what format, how many processes, when to give up."""

    out: Path
    workers: int = 1
    fmt: str = "flac"
    sample_rate: int = 16000
    max_missing: str | None = None   # "5%" or a count; None: any number is tolerated
    max_failed: str | None = None
    stats: bool = True
    progress: bool = True


@dataclass
class Summary:
    """What a preparation found and did; `ok` is False when the exit code should say so."""

    listed: int = 0
    classes: int = 0
    converted: int = 0
    skipped: int = 0
    missing: list[Entry] = field(default_factory=list)
    failed: list[tuple[Entry, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    manifests: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # why `ok` is False

    @property
    def ok(self) -> bool:
        return not self.reasons


def output_path(out: Path, entry: Entry, fmt: str) -> Path:
    """Where an entry's converted clip lives."""
    return out / AUDIO_DIR / f"{entry.key}.{fmt}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while converting: how many listed clips stand converted (kept) of how many."""

    def __init__(self, done: int, listed: int):
        super().__init__(done, listed)
        self.done, self.listed = done, listed


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a pool at once: queued clips cancelled, the workers' current ones abandoned (their
    temporary files are removed by the caller), no worker left behind."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown drops it
    manager = getattr(pool, "_executor_manager_thread", None)  # and these
    calls = getattr(pool, "_call_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)
    if calls is not None and sys.version_info < (3, 11):  # CPython 3.11's fix (gh-94777): the
        calls._reader.close()  # queue's feeder stays blocked on a full pipe no worker reads
    if manager is not None and manager.is_alive():  # it closes its wake-up pipe as it ends:
        manager.join(5)  # ended before the interpreter's exit writes to it ("Bad file descriptor")


def _convert(todo: list[Entry], recipe: DatasetRecipe, options: Options
             ) -> tuple[dict[str, str], dict[str, float], Counter]:
    """Convert `todo` (in a process pool when workers > 1); failure reason by entry key, the
    peak of each clip cut to full scale, and how bare-id sources were read (convert.py)."""
    reading = getattr(recipe.args, "bare_id_files", None) or "auto"
    tasks = [Task(str(e.found.path), str(output_path(options.out, e, options.fmt)),
                  e.segment(recipe.duration).start, recipe.duration, options.sample_rate,
                  options.fmt, None if e.found.trimmed else reading, e.length) for e in todo]
    bar = dict(total=len(tasks), unit="clip", desc=f"converting {recipe.name}",
               disable=not options.progress or not tasks, dynamic_ncols=True)
    if options.workers <= 1 or len(tasks) < 2:
        results = [convert_task(t) for t in tqdm(tasks, **bar)]
    else:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        chunk = max(1, min(64, len(tasks) // (options.workers * 8)))
        pool = ProcessPoolExecutor(options.workers, mp_context=context,
                                   initializer=init_worker, initargs=(os.getpid(),))
        try:  # not `with`: its exit would wait for every queued clip after a Ctrl-C
            results = list(tqdm(pool.map(convert_task, tasks, chunksize=chunk), **bar))
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown()
    return ({e.key: why for e, (why, _, _) in zip(todo, results) if why is not None},
            {e.key: cut for e, (_, cut, _) in zip(todo, results) if cut},
            Counter(how for _, _, how in results if how))


def _limit(text: str | None, count: int, total: int) -> bool:
    """Whether `count` of `total` exceeds a limit given as "5%" or as a count."""
    if text is None:
        return False
    if text.endswith("%"):
        return count > float(text[:-1]) / 100 * total
    return count > int(text)


def _write_lines(path: Path, lines: list[str]) -> None:
    """A report file, or none when there is nothing to report (a stale one is removed)."""
    if lines:
        atomic_write_text(path, "\n".join(lines) + "\n")
    else:
        path.unlink(missing_ok=True)


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an identical file untouched, so reruns keep its time stamp."""
    if not (path.exists() and path.read_text() == text):
        atomic_write_text(path, text)


def _labels_csv(classes: list[tuple[str, str]]) -> str:
    """AST's class_labels_indices.csv."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["index", "mid", "display_name"])
    for index, (mid, name) in enumerate(classes):
        writer.writerow([index, mid, name])
    return text.getvalue()


def _manifest_json(entries: list[Entry], fmt: str) -> str:
    """AST's manifest format, paths relative to the manifest so the folder can move."""
    data = [{"wav": f"{AUDIO_DIR}/{e.key}.{fmt}", "labels": ",".join(e.labels)}
            for e in entries]
    return json.dumps({"data": data}, indent=1) + "\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _statistics(recipe: DatasetRecipe, options: Options, written: dict[str, Path],
                frames: int, log) -> dict[str, dict]:
    """Normalization statistics of each training manifest, cached in out/stats where the
    dataset presets find them (c2f.data.stats.cached_stats)."""
    from c2f.data.manifest import load_manifest
    from c2f.data.stats import STATS_DIR, cached_stats

    found = {}
    for name in recipe.train_manifests:
        if name not in written:
            continue
        manifest = load_manifest(written[name], options.out / LABELS_CSV)
        settings = dict(sample_rate=options.sample_rate, num_mel_bins=128, frame_shift_ms=10.0,
                        target_length=frames)
        mean, std = cached_stats(options.out / STATS_DIR, manifest, **settings)
        log(f"normalization statistics of {name}: mean {mean:.7f}, std {std:.7f}")
        found[name] = {"mean": mean, "std": std, **settings}
    return found


def _held(recipe: DatasetRecipe, listing: Listing, log) -> list[Entry]:
    """The entries a manifest will hold. A label the listing's classes lack is a recipe's
    mistake, refused before anything is converted; clips of a split no manifest holds are
    left out, said."""
    known = dict(listing.classes)
    for entry in listing.entries:
        stray = [mid for mid in entry.labels if mid not in known]
        if stray:
            raise ListError(f"{recipe.name}: {entry.where} ({entry.ident}): label {stray[0]!r} "
                            f"is not among the {len(known)} classes its read() listed; every "
                            "label of an entry must be in Listing.classes")
    held = {split for splits in recipe.manifests.values() for split in splits}
    kept = [e for e in listing.entries if e.split in held]
    if len(kept) < len(listing.entries):
        splits = sorted({e.split for e in listing.entries} - held)
        log(f"WARNING: {len(listing.entries) - len(kept)} listed clip(s) of split(s) "
            f"{', '.join(splits)} go to no manifest ({recipe.name}'s manifests hold "
            f"{', '.join(sorted(held))}); left out, not converted")
    return kept


def _class_balance(name: str, counts: Counter, classes: list[str], log,
                   training: bool = True) -> None:
    """How a manifest's clips spread over the classes: the classes it lacks, named (a training
    manifest: the model keeps an output for each, never trained towards; an evaluation one:
    never scored), and for training the range per class."""
    empty = [c for c in classes if not counts.get(c)]
    if empty:
        log(f"WARNING: {name}.json has no clip of {len(empty)} class(es): "
            f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}"
            + ("" if training else " (never scored)"))
    present = [counts[c] for c in classes if counts.get(c)]
    if not present or not training:
        return
    low, high = min(present), max(present)
    uneven = "; dataset.balanced_sampler=true draws the classes evenly (AST's sampler)" \
        if high >= 10 * low else ""
    log(f"{name}.json: {low} to {high} clips a class{uneven}")


def prepare(recipe: DatasetRecipe, options: Options, log=print) -> Summary:
    """Prepare `recipe`'s dataset into `options.out`; see the module docstring."""
    started = time.time()
    out = options.out
    listing: Listing = recipe.read()  # refuses unusable lists before anything is written
    if recipe.unused_lists():  # a renamed --lists file would else be passed over
        raise ListError(recipe.unused_lists())
    entries = _held(recipe, listing, log)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(problems=list(listing.problems), classes=len(listing.classes))
    entries = unique_entries(entries, summary.problems, held_out(recipe))
    summary.listed = len(entries)
    stale = remove_partials(out / AUDIO_DIR)
    if stale:
        log(f"removed {stale} partial file(s) a stopped run left in {out / AUDIO_DIR}")
    sizes = read_sizes(out / AUDIO_DIR)  # converted.py: what stands, what changed since
    converted, changed = already_converted(
        entries, {e.key: output_path(out, e, options.fmt) for e in entries}, sizes,
        recipe.recheck_sources)
    if changed:
        log(f"{len(changed)} source file(s) changed size since they were converted: converting "
            "them again")
    done = [e for e in entries if e.key in converted]
    todo = [e for e in entries if e.found is not None and e.key not in converted]
    summary.missing = [e for e in entries if e.found is None and e.key not in converted]
    summary.skipped = len(done)
    log(f"{recipe.name}: {len(entries)} clips listed, {len(summary.missing)} without a source "
        f"file under {recipe.src}; {summary.skipped} already converted (skipped), "
        f"{len(todo)} to convert with {options.workers} worker(s)")
    try:
        failures, clipped, readings = _convert(todo, recipe, options)
    except KeyboardInterrupt:  # what the workers finished stands under its final name
        remove_partials(out / AUDIO_DIR)
        made = sum(output_path(out, e, options.fmt).exists() for e in todo)
        raise Interrupted(len(done) + made, len(entries)) from None
    if readings:
        log(f"{sum(readings.values())} source(s) named by bare YouTube id: "
            f"{readings['segment']} read as the segment already cut (no longer than it), "
            f"{readings['video']} as whole videos cut at the list's start "
            f"(--bare-id-files {getattr(recipe.args, 'bare_id_files', None) or 'auto'})")
    if clipped:
        loudest = max(clipped, key=clipped.get)
        log(f"WARNING: {len(clipped)} clip(s) of 24-bit or float sources go beyond full scale "
            f"and were cut to +-1 (the loudest, {loudest}, peaks at {clipped[loudest]:.2f}); "
            "training on them hears the clipping: --format wav keeps them as float")
    by_key = {e.key: e for e in todo}
    lost = [key for key in failures if key in changed]
    if lost:
        log(f"WARNING: {len(lost)} clip(s) converted before fail now that their source changed "
            f"(e.g. {by_key[lost[0]].found.path}: {failures[lost[0]]}); they leave the "
            "manifests: restore their sources and prepare again to keep them")
    if recipe.recheck_sources:
        record_sizes(out / AUDIO_DIR, sizes, [e for e in todo if e.key not in failures])
    summary.failed = [(by_key[key], reason) for key, reason in failures.items()]
    summary.converted = len(todo) - len(failures)
    usable = recipe.final_splits([  # in list order, so manifests do not depend on the workers
        e for e in entries
        if e.key in converted or (e.found is not None and e.key not in failures)])
    split_of = {e.key: e.split for e in usable}

    _write_lines(out / "missing.txt", [f"{e.ident}\t{e.where}" for e in summary.missing])
    _write_lines(out / "failed.txt",
                 [f"{e.found.path}\t{reason}\t{e.where}" for e, reason in summary.failed])
    _write_lines(out / "problems.txt", summary.problems)
    _write_if_changed(out / LABELS_CSV, _labels_csv(listing.classes))
    written: dict[str, Path] = {}
    per_class: dict[str, dict[str, int]] = {}
    names = dict(listing.classes)
    for name, splits in recipe.manifests.items():
        chosen = [e for e in usable if e.split in splits]
        summary.manifests[name] = len(chosen)
        if not chosen:
            log(f"WARNING: manifest {name} has no usable clip; not written")
            (out / f"{name}.json").unlink(missing_ok=True)
            continue
        written[name] = out / f"{name}.json"
        _write_if_changed(written[name], _manifest_json(chosen, options.fmt))
        counts = Counter(names[mid] for e in chosen for mid in e.labels)
        per_class[name] = dict(sorted(counts.items()))
        if len(names) > 1:
            _class_balance(name, counts, list(names.values()), log,
                           training=name in recipe.train_manifests)
    chosen = {n: [e for e in usable if e.split in s] for n, s in recipe.manifests.items()
              if n in written}
    extras = recipe.extra_outputs(out, chosen)
    frames = recipe.target_frames(out, chosen, options.fmt, log)
    stats = _statistics(recipe, options, written, frames, log) \
        if options.stats and written else {}

    total = max(1, summary.listed)
    if not written:
        summary.reasons.append("no usable clip: nothing was written")
    if _limit(options.max_missing, len(summary.missing), total):
        summary.reasons.append(f"{len(summary.missing)} missing clips exceed --max-missing "
                               f"{options.max_missing}")
    if _limit(options.max_failed, len(summary.failed), total):
        summary.reasons.append(f"{len(summary.failed)} failed clips exceed --max-failed "
                               f"{options.max_failed}")
    from c2f import __version__

    report = {
        "dataset": recipe.name, "c2f_version": __version__,
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "src": str(recipe.src),
        "lists": [{"path": str(p), "sha256": _sha256(p)} for p in listing.sources],
        "format": options.fmt, "sample_rate": options.sample_rate,
        "clip_seconds": recipe.duration, "classes": len(listing.classes),
        "listed": summary.listed, "missing": len(summary.missing),
        "failed": len(summary.failed), "problems": len(summary.problems),
        "usable": len(usable), "converted_this_run": summary.converted,
        "clipped_this_run": len(clipped),
        "skipped_this_run": summary.skipped, "seconds_this_run": round(time.time() - started, 1),
        "splits": {split: {"listed": sum(split_of.get(e.key, e.split) == split
                                         for e in entries),
                           "usable": sum(e.split == split for e in usable)}
                   for split in sorted({split_of.get(e.key, e.split) for e in entries})},
        "manifests": {name: {"clips": summary.manifests[name], "file": f"{name}.json",
                             "per_class": per_class.get(name, {})}
                      for name in recipe.manifests},
        "extra_files": [p.name for p in extras], "target_length": frames, "statistics": stats,
        "preset_values": recipe.preset_values(out, len(listing.classes)),
        "run_overrides": recipe.run_overrides(out, len(listing.classes)),
        "ok": summary.ok, "errors": summary.reasons,
    }
    atomic_write_text(out / "prepared.json", json.dumps(report, indent=1) + "\n")
    _print_summary(summary, out, log)
    return summary


def _print_summary(summary: Summary, out: Path, log) -> None:
    """Counts, the first lines of each problem list, and where the full lists are."""
    for title, lines, file in (
            ("missing (no source file)", [f"{e.ident} ({e.where})" for e in summary.missing],
             "missing.txt"),
            ("failed to decode", [f"{e.found.path}: {r}" for e, r in summary.failed],
             "failed.txt"),
            ("list problems", summary.problems, "problems.txt")):
        if lines:
            log(f"{len(lines)} {title}, all in {out / file}:")
            for line in lines[:MAX_SHOWN]:
                log(f"  {line}")
            if len(lines) > MAX_SHOWN:
                log(f"  ... and {len(lines) - MAX_SHOWN} more")
    made = ", ".join(f"{name}.json {n}" for name, n in summary.manifests.items())
    log(f"converted {summary.converted}, skipped {summary.skipped} already converted, "
        f"missing {len(summary.missing)}, failed {len(summary.failed)}; manifests: {made}")
    for reason in summary.reasons:
        log(f"ERROR: {reason}")


__all__ = ["Options", "Summary", "Interrupted", "prepare", "output_path", "ListError", "AUDIO_DIR",
           "LABELS_CSV"]
