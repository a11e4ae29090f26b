"""Write a finished run's model to one file that loads without the run directory.

    python -m c2f.export RUN_DIR                    # -> RUN_DIR/model.pt (final weights)
    python -m c2f.export RUN_DIR --weights average --out ast_fshift.pt

The file holds the weights and what rebuilding the model needs: the model config, the last
phase's input shape, compression and C, the feature settings (sample rate, fbank or log-mel,
normalization), the class names and the metric. `c2f.predict` and `c2f.evaluate` take it in
place of a run directory; in Python:

    from c2f.trained import load_trained
    model = load_trained("model.pt")                  # model.logits([waveform, ...])
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from c2f.data.errors import DataError
from c2f.spec import ConfigError
from c2f.trained import WEIGHTS, TrainedError, load_trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c2f.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run directory")
    parser.add_argument("--weights", choices=list(WEIGHTS), default="final")
    parser.add_argument("--out", type=Path, help="the file to write (default: RUN/model.pt, "
                        "or RUN/model_average.pt)")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        print(f"error: {args.run} is not a run directory", file=sys.stderr)
        return 2
    try:
        trained = load_trained(args.run, args.weights, "cpu")
    except (TrainedError, DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run / ("model.pt" if args.weights == "final" else
                                  "model_average.pt")
    try:
        trained.export(out)
    except ConfigError as err:  # the folder cannot take the file (RunFileError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB): run {trained.export_info['run_id']}, "
          f"{args.weights} weights, {len(trained.class_names)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
