"""Evaluate a trained model on any labelled manifest, with the run's metric.

    python -m c2f.evaluate RUN_DIR                          # the run's own eval set
    python -m c2f.evaluate RUN_DIR --manifest other.json    # another manifest, the run's labels
    python -m c2f.evaluate model.pt --manifest m.json      # an exported file: its classes

Clips are scored as the run's evaluation scored them (same features, window, precision); the
manifest's labels are read against the run's labels CSV (an exported file carries its classes)
unless --labels names another with the same classes. Prints acc (and mAP, AUC, d' for
multi-label runs) and the eval loss; --out writes them as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from c2f.data.dataset import SKIP_HINT
from c2f.data.errors import DataError
from c2f.data.identity import file_digest
from c2f.data.manifest import load_manifest
from c2f.data.resolve import manifest_paths, several_labels
from c2f.epochs import metric_text
from c2f.spec import ConfigError, build_spec
from c2f.track import RunDir
from c2f.train.metrics import json_scores, left_out_classes
from c2f.train.records import left_out_warning
from c2f.trained import WEIGHTS, TrainedError, load_trained


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m c2f.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a finished run directory or an exported file")
    parser.add_argument("--manifest", type=Path, help="AST-format manifest (default: the "
                        "run's eval manifest)")
    parser.add_argument("--labels", type=Path, help="labels CSV (default: the run's)")
    parser.add_argument("--weights", choices=list(WEIGHTS), default="final")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable clips (counted) instead of stopping at the first")
    parser.add_argument("--per-class", action="store_true",
                        help="a row per class, worst first: its clips and recall and the class "
                             "it is most confused with (AP for multi-label runs); --out always "
                             "holds them")
    parser.add_argument("--out", type=Path, help="write the scores to this JSON file")
    return parser.parse_args(argv)


def default_data(model: Path) -> dict[str, Path]:
    """The run's own eval manifest and labels CSV, as the run recorded them; none for an
    exported file. A run from before that record has its stored config resolved here (its
    `${paths.root}` relative to this directory, as run.py resolved it) and the built-in
    dataset rendered if needed."""
    if not model.is_dir():
        return {}
    data = (RunDir(model).read_inference() or {}).get("data")
    if data:  # with its digest and classes' mids where the run recorded them
        return {"manifest": Path(data["eval_manifest"]), "labels": Path(data["labels_csv"]),
                **{key: data[key] for key in ("eval_digest", "class_mids") if key in data}}
    config = OmegaConf.load(model / "config.yaml")
    spec = build_spec(OmegaConf.to_container(config, resolve=True))
    paths = manifest_paths(spec.dataset, spec.data_dir)
    return {"manifest": paths["eval"], "labels": paths["labels"]}


def changed_since(own: dict) -> str | None:
    """A warning when the run's eval manifest is not the file it was scored on (a folder
    prepared again in place), else None."""
    manifest, recorded = own.get("manifest"), own.get("eval_digest")
    if recorded is None or file_digest(manifest) == recorded:
        return None
    return (f"WARNING: {manifest} changed since the run was scored on it (prepared again?): "
            "these are not the run's eval clips, so its own number is not shown beside them")


def run_reference(model: Path, weights: str, manifest: Path, own: Path | None) -> str:
    """The run's own number for the same weights and eval set, to compare with."""
    if own is None or manifest.resolve() != own.resolve():
        return ""
    summary = RunDir(model).read_summary() or {}
    value = summary.get("final") if weights == "final" else (summary.get("average") or {}).get(
        "value")
    return "" if value is None else f" (the run's own: {metric_text(value)})"


def print_per_class(rows: list[dict]) -> None:
    """The per-class rows, worst first (classes without a score last)."""
    key = "AP" if rows and "AP" in rows[0] else "recall"
    print(f"\n{key:>7}  {'clips':>6}  class" + ("  (most often predicted instead)"
                                                 if key == "recall" else ""))
    for row in sorted(rows, key=lambda r: (r[key] is None, r[key] or 0.0, r["class"])):
        value = "      -" if row[key] is None else f"{row[key]:7.4f}"
        other = f"  ({row['confused_with']})" if row.get("confused_with") else ""
        print(f"{value}  {row['clips']:6d}  {row['class']}{other}")


def classes_note(scores: dict, names: list[str]) -> tuple[str, str | None]:
    """Beside a multi-label metric: how many classes it averages ("", single-label), and the
    WARNING naming those the manifest leaves out (no positives, or no negatives), if any."""
    if "classes_scored" not in scores:
        return "", None
    positives = [row["clips"] for row in scores["per_class"]]
    left_out = left_out_classes(positives, scores["clips"], names)
    return (f" ({scores['classes_scored']} of {len(names)} classes scored)",
            left_out_warning(scores["classes_scored"], left_out,
                             "--per-class lists each class's AP ('-': left out)"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        trained = load_trained(args.model, args.weights, args.device)
        own = default_data(args.model)
        # a run that recorded its classes' mids reads labels by them, not by a CSV that may
        # have changed since (a folder prepared again with another class)
        manifest_path = args.manifest or own.get("manifest")
        labels = args.labels or (None if own.get("class_mids") else own.get("labels"))
        carried = trained.export_info.get("class_mids") if labels is None else None
        if manifest_path is None or (labels is None and carried is None):
            raise TrainedError("an exported model carries no eval set: give --manifest" + (
                "" if carried else " and --labels (this export, from an older c2f or a run "
                "whose label CSV was gone, does not carry its classes' mids)"))
        gone = [str(p) for p, given in ((manifest_path, args.manifest), (labels, args.labels))
                if given is None and p is not None and not Path(p).is_file()]
        if gone:
            raise TrainedError(f"the run's own eval data is no longer where it trained "
                               f"({', '.join(gone)}; moved?): give --manifest" +
                               ("" if carried else " and --labels"))
        changed = None if args.manifest else changed_since(own)
        if changed:  # said first: the manifest may now hold classes the model lacks
            print(changed, file=sys.stderr)
        manifest = load_manifest(manifest_path, labels or args.model, classes=carried and (
            carried, trained.class_names))
        found = None if trained.multilabel else several_labels(manifest)
        if found:  # scored by one class each, its first: a number that means nothing
            raise TrainedError(f"{found}, but the model is single-label (trained with "
                               "dataset.multilabel=false): give a manifest with one label per "
                               "clip")
        if changed:
            own = {}  # not the run's eval set: its own number is not shown beside
        scores = trained.evaluate(manifest, args.batch_size, args.skip_bad)
    except (TrainedError, DataError, ConfigError) as err:
        print("error: " + str(err).replace(SKIP_HINT, "add --skip-bad to evaluate without "
                                            "unusable clips (they are counted and listed)"),
              file=sys.stderr)
        return 2
    metric = scores["metric"]
    reference = run_reference(args.model, args.weights, manifest.path, own.get("manifest"))
    print(f"model: {trained.source}")
    scored, left_out = classes_note(scores, trained.class_names)
    print(f"{metric} {metric_text(scores['value'])} on {scores['clips']} clip(s) of "
          f"{manifest.path}{scored}{reference}")
    extra = [f"{k} {metric_text(scores[k])}" for k in ("acc", "mAP", "AUC", "d_prime")
             if k in scores and k != metric]
    print(", ".join([*extra, f"eval loss {scores['eval_loss']:.4f}"]))
    if args.per_class:
        print_per_class(scores["per_class"])
    if left_out:
        print(left_out, file=sys.stderr)
    if scores["skipped"]:
        print(f"WARNING: {len(scores['skipped'])} unreadable clip(s) skipped:", file=sys.stderr)
        for path, reason in scores["skipped"][:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps({**json_scores(scores), "model": trained.source,
                                        "manifest": str(manifest.path)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
