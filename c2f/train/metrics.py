"""Evaluation metrics: accuracy (single-label); mAP, AUC and d' (multi-label), via scikit-learn."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch
import torch.nn.functional as F


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy against the argmax of (possibly multi-hot) targets."""
    return float(np.mean(logits.argmax(axis=1) == targets.argmax(axis=1)))


def multilabel_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """mAP and mean AUC over the classes that have both positives and negatives; d'."""
    present = [k for k in range(targets.shape[1]) if 0 < targets[:, k].sum() < len(targets)]
    if not present:
        return {"mAP": float("nan"), "AUC": float("nan"), "d_prime": float("nan")}
    # imported here: scikit-learn takes a second to import, which every run.py process (and
    # every test that starts one) would pay even when it never computes a mAP
    from sklearn.metrics import average_precision_score, roc_auc_score

    binary = targets[:, present] > 0.5
    scores = logits[:, present]
    ap = average_precision_score(binary, scores, average=None)
    auc = roc_auc_score(binary, scores, average=None)
    mean_auc = float(np.mean(auc))
    return {"mAP": float(np.mean(ap)), "AUC": mean_auc,
            "d_prime": math.sqrt(2.0) * normal_quantile(mean_auc)}


def per_class_scores(logits: np.ndarray, targets: np.ndarray, multilabel: bool,
                     names: list[str]) -> list[dict]:
    """One row per class: its clips and, single-label, the share of them predicted right
    (`recall`) and the class most often predicted instead; multi-label, its average precision
    (`AP`, null for a class without both positives and negatives). The single-label rows'
    right answers sum to the accuracy's; the AP of the present classes averages to the mAP."""
    rows = []
    if multilabel:
        from sklearn.metrics import average_precision_score

        for k, name in enumerate(names):
            positives = int((targets[:, k] > 0.5).sum())
            ap = float(average_precision_score(targets[:, k] > 0.5, logits[:, k])) \
                if 0 < targets[:, k].sum() < len(targets) else None
            rows.append({"class": name, "clips": positives, "AP": ap})
        return rows
    truth, predicted = targets.argmax(axis=1), logits.argmax(axis=1)
    for k, name in enumerate(names):
        mine = predicted[truth == k]
        wrong = np.bincount(mine[mine != k], minlength=len(names))
        rows.append({"class": name, "clips": len(mine), "right": int((mine == k).sum()),
                     "recall": float(np.mean(mine == k)) if len(mine) else None,
                     "confused_with": names[int(wrong.argmax())] if wrong.any() else None})
    return rows


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
