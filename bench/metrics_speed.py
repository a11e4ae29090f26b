"""Scoring an evaluation (mAP, AUC, d') -> bench/results_metrics.md.

c2f's `multilabel_scores` (every class in one vectorized pass, c2f/train/metrics.py) against
the per-class scikit-learn calls it replaced (average_precision_score and roc_auc_score with
average=None, as AST's calculate_stats scores), on logits and multi-hot targets shaped as
AudioSet's (527 classes, about 1% positives): 2048 clips (the GPU bench's eval set) and
20000 (about AudioSet's eval set). scikit-learn twice: as c2f called it, on the scored
classes' columns picked by an index array (`logits[:, present]`, which numpy lays out column
by column: scikit-learn's per-class loop then ran several times slower), and on row-major
arrays. They alternate, each size in one process; the scores must agree.

    .venv/bin/python -m bench.metrics_speed --out bench/results_metrics.md [--rounds 2]
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch  # as in a run: scikit-learn's per-class loop was slowest in a torch process

from bench.results_table import cpu_model
from c2f.train.metrics import multilabel_scores


def sklearn_scores(logits: np.ndarray, targets: np.ndarray,
                   as_c2f_did: bool) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if as_c2f_did:  # c2f <= 2dc6a41: the scored classes' columns (here all) by index array
        present = np.arange(targets.shape[1])
        logits, targets = logits[:, present], targets[:, present]
    binary = targets > 0.5
    return (float(np.mean(average_precision_score(binary, logits, average=None))),
            float(np.mean(roc_auc_score(binary, logits, average=None))))


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results_metrics.md"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips", default="2048,20000")
    args = parser.parse_args(argv)
    rows = ["| clips x classes | c2f (s) | scikit-learn, as c2f called it (s) | speed-up | "
            "scikit-learn, row-major arrays (s) | mAP, c2f vs scikit-learn | mean AUC, c2f vs "
            "scikit-learn |", "|---|--:|--:|--:|--:|--:|--:|"]
    for clips in (int(c) for c in args.clips.split(",")):
        gen = torch.Generator().manual_seed(clips)
        logits = torch.randn(clips, 527, generator=gen).numpy()
        targets = (torch.rand(clips, 527, generator=gen) < 0.01).float().numpy()
        targets[0], targets[-1] = 1.0, 0.0  # every class scored
        ours, before, plain = [], [], []
        for _ in range(args.rounds):
            seconds, scores = timed(multilabel_scores, logits, targets)
            ours.append(seconds)
            seconds, reference = timed(sklearn_scores, logits, targets, True)
            before.append(seconds)
            plain.append(timed(sklearn_scores, logits, targets, False)[0])
        a, b = statistics.median(ours), statistics.median(before)
        rows.append(f"| {clips} x 527 | {a:.2f} | {b:.2f} | {b / a:.1f}x | "
                    f"{statistics.median(plain):.2f} | "
                    f"{scores['mAP']:.12f} vs {reference[0]:.12f} | "
                    f"{scores['AUC']:.12f} vs {reference[1]:.12f} |")
        print(rows[-1], flush=True)
    text = ["# Scoring an evaluation: c2f vs scikit-learn per class", "",
            f"- command: `python -m bench.metrics_speed {' '.join(argv)}`",
            f"- date: {datetime.date.today()}; {cpu_model()}, {torch.get_num_threads()} "
            f"threads; medians of {args.rounds} alternating rounds", "", *rows, ""]
    args.out.write_text("\n".join(text))


if __name__ == "__main__":
    main()
