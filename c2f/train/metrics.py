"""Evaluation metrics: accuracy (single-label); mAP, AUC and d' (multi-label), computed for all
classes at once (scikit-learn's per-class average_precision_score and roc_auc_score, the
tests' reference, took 9 s for AudioSet's 527 classes on 2048 clips as c2f called them: on a
GPU, evaluation waited on it, bench/gpu_runs/h200_2026-11-29_sections.md section 4d)."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch
import torch.nn.functional as F


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy against the argmax of (possibly multi-hot) targets."""
    return float(np.mean(logits.argmax(axis=1) == targets.argmax(axis=1)))


def scored_classes(targets: np.ndarray) -> np.ndarray:
    """The classes mAP, AUC and d' average over: those with both positives and negatives in the
    eval set (a class without either has no ranking to score). AST's calculate_stats
    (src/utilities/stats.py), PANNs and HTS-AT average over all classes instead: scikit-learn
    scores an empty class AP 0 and AUC NaN (older versions raise), so on an eval set that
    lacks some classes their mAP is lower than c2f's and their AUC undefined."""
    positives = (targets > 0.5).sum(axis=0)
    return np.flatnonzero((positives > 0) & (positives < len(targets)))


def multilabel_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """mAP and mean AUC over the scored classes (`scored_classes`, counted in
    `classes_scored`); d' from the mean AUC, as AST's traintest.py. Scores rank the logits;
    AST ranks float32 sigmoids, which tie above a logit of ~17 and otherwise rank alike."""
    present = scored_classes(targets)
    if not len(present):
        return {"mAP": float("nan"), "AUC": float("nan"), "d_prime": float("nan"),
                "classes_scored": 0}
    ap, auc = ranking_scores(logits[:, present], targets[:, present] > 0.5)
    mean_auc = float(np.mean(auc))
    return {"mAP": float(np.mean(ap)), "AUC": mean_auc,
            "d_prime": math.sqrt(2.0) * normal_quantile(mean_auc), "classes_scored": len(present)}


def ranking_scores(scores: np.ndarray, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column (class): average precision and ROC AUC of `scores` against the boolean
    `binary`, equal to scikit-learn's average_precision_score and roc_auc_score (tied scores
    form one threshold; each column needs positives and negatives). AP: the mean over
    positives of the precision at their tie group's end; AUC: Mann-Whitney's U over P x N,
    ties ranked by their mean (the ROC curve's trapezoids). Classes go in blocks of 64: a
    block's arrays stay small (AudioSet's 20000 eval clips: 10 MB each)."""
    scores, binary = np.asarray(scores), np.asarray(binary, bool)
    if not np.isfinite(scores).all():
        raise ValueError("the model's outputs hold NaN or inf for some clips (its weights "
                         "diverged, or its forward overflowed in a reduced precision): they "
                         "cannot be ranked")
    blocks = [_ranking_block(np.ascontiguousarray(scores[:, k:k + 64].T, np.float64),
                             np.ascontiguousarray(binary[:, k:k + 64].T))
              for k in range(0, scores.shape[1], 64)]
    return (np.concatenate([ap for ap, _ in blocks] or [np.zeros(0)]),
            np.concatenate([auc for _, auc in blocks] or [np.zeros(0)]))


def _ranking_block(scores: np.ndarray, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ranking_scores` of a row per class."""
    n = scores.shape[1]
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    hits = np.take_along_axis(binary, order, axis=1).astype(np.float64)
    clips = np.arange(n)
    ends = np.ones(ranked.shape, bool)  # the last clip of each group of tied scores
    ends[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    starts = np.ones(ranked.shape, bool)
    starts[:, 1:] = ends[:, :-1]
    end = np.minimum.accumulate(np.where(ends, clips, n)[:, ::-1], axis=1)[:, ::-1]
    start = np.maximum.accumulate(np.where(starts, clips, -1), axis=1)
    true_pos = np.cumsum(hits, axis=1)
    precision = np.take_along_axis(true_pos, end, axis=1) / (end + 1)
    positives = true_pos[:, -1]
    ap = (hits * precision).sum(axis=1) / positives
    rank = n - (start + end) / 2.0  # 1 = lowest score; ties share their mean rank
    auc = ((hits * rank).sum(axis=1) - positives * (positives + 1) / 2) / \
        (positives * (n - positives))
    return ap, auc


def per_class_scores(logits: np.ndarray, targets: np.ndarray, multilabel: bool,
                     names: list[str]) -> list[dict]:
    """One row per class: its clips and, single-label, the share of them predicted right
    (`recall`) and the class most often predicted instead; multi-label, its average precision
    (`AP`, null for a class without both positives and negatives). The single-label rows'
    right answers sum to the accuracy's; the AP of the present classes averages to the mAP."""
    rows = []
    if multilabel:
        present = scored_classes(targets)
        aps = dict(zip(present.tolist(), ranking_scores(logits[:, present],
                                                        targets[:, present] > 0.5)[0]))
        for k, name in enumerate(names):
            ap = aps.get(k)
            rows.append({"class": name, "clips": int((targets[:, k] > 0.5).sum()),
                         "AP": None if ap is None else float(ap)})
        return rows
    truth, predicted = targets.argmax(axis=1), logits.argmax(axis=1)
    for k, name in enumerate(names):
        mine = predicted[truth == k]
        wrong = np.bincount(mine[mine != k], minlength=len(names))
        rows.append({"class": name, "clips": len(mine), "right": int((mine == k).sum()),
                     "recall": float(np.mean(mine == k)) if len(mine) else None,
                     "confused_with": names[int(wrong.argmax())] if wrong.any() else None})
    return rows


def random_ap(positives: int, clips: int) -> float:
    """The expected average precision of random (untied) scores for a class with `positives`
    of `clips`: (H_n + (m-1)/(n-1) (n - H_n)) / n, H_n the n-th harmonic number (the mean over
    positives of the expected precision at their rank). It is the prevalence m/n plus about
    ln(n)/n: on the 220 clips of builtin_multilabel's eval set 0.196, not the prevalence 0.177."""
    harmonic = float(np.sum(1.0 / np.arange(1, clips + 1)))
    return (harmonic + (positives - 1) / (clips - 1) * (clips - harmonic)) / clips


def chance_level(targets: np.ndarray, metric: str) -> float | None:
    """The `metric`'s score for a model that does not listen, at its best: for mAP the expected
    mAP of random scores over the scored classes (`random_ap`; constant scores would score only
    the prevalence), None where no class is scored; for acc (multi-label too: `accuracy` checks
    the argmax of the multi-hot target) the share of its commonest argmax class, what always
    naming that class scores (random guesses score 1/K, never more, and the two agree on a
    balanced eval set)."""
    if metric == "mAP":
        counts = (targets > 0.5).sum(axis=0)[scored_classes(targets)]
        return float(np.mean([random_ap(int(m), len(targets)) for m in counts])) \
            if len(counts) else None
    return float(np.bincount(targets.argmax(axis=1)).max() / len(targets))


def left_out_classes(positives, clips: int, names: list[str]) -> dict[str, list[str]]:
    """The classes `scored_classes` leaves out, by why: no positives among the eval set's
    `clips`, or no negatives (every clip has them); `positives`: each class's clips."""
    positives = np.asarray(positives)
    return {why: [f"{names[k]} (#{k})" for k in np.flatnonzero(which)] for why, which in
            (("no positives", positives == 0), ("no negatives", positives == clips))}


def normal_quantile(p: float) -> float:
    """The standard normal's inverse CDF (scipy's norm.ppf): +-inf at 1 and 0."""
    if p >= 1.0 or p <= 0.0:
        return math.inf if p >= 1.0 else -math.inf
    return NormalDist().inv_cdf(p)


def json_scores(scores: dict) -> dict:
    """Scores as strict JSON holds them: an infinite d' (AUC 1 or 0, where AST's norm.ppf gives
    +-inf) and the mAP, AUC and d' of an eval set without a class that has both positives and
    negatives (NaN) become null, which every JSON reader takes; Python's json would write
    `Infinity` and `NaN`."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in scores.items()}


def evaluate_scores(logits: np.ndarray, targets: np.ndarray, multilabel: bool) -> dict[str, float]:
    """All metrics for a dataset kind; `acc` is always reported, mAP etc. for multi-label."""
    scores = {"acc": accuracy(logits, targets)}
    if multilabel:
        scores |= multilabel_scores(logits, targets)
    return scores


def classification_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`dataset.loss`: bce (multi-label) or ce. CE takes soft targets (mixup's λ/1-λ), where
    AST's src/traintest.py takes their argmax; no preset mixes CE with mixup (ESC-50 and
    VoxCeleb1 train with mixup 0), so the two agree wherever the recipes meet."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)
