"""Learning-rate schedule per phase, and evaluation metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from c2f.spec import OptimSpec
from c2f.train.metrics import evaluate_scores
from c2f.train.optim import lr_at


def test_warmup_then_multistep_as_in_ast():
    spec = OptimSpec(lr=1.0, warmup_steps=4, scheduler="multistep", milestones_start=2,
                     milestones_step=2, gamma=0.5)
    assert [lr_at(spec, step, 0, 100) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert [lr_at(spec, 50, epoch, 100) for epoch in range(7)] == [1, 1, .5, .5, .25, .25, .125]


def test_warmup_in_stairs_is_asts():
    """AST's src/traintest.py (and SSAST's traintest_mask.py), transcribed: the rate is set
    to step / 1000 x lr at every 50th step up to 1000, and is 0 for the first 50 steps."""
    spec = OptimSpec(lr=2.0, warmup_steps=1000, warmup_stairs=20, scheduler="constant")
    lr, expected = 2.0, []
    for global_step in range(1300):
        if global_step <= 1000 and global_step % 50 == 0:
            lr = (global_step / 1000) * 2.0
        expected.append(lr)
    assert [lr_at(spec, step, 0, 10**6) for step in range(1300)] == pytest.approx(expected)


def test_cosine_and_constant():
    cosine = OptimSpec(lr=2.0, scheduler="cosine")
    assert lr_at(cosine, 0, 0, 10) == 2.0
    assert lr_at(cosine, 5, 0, 10) == pytest.approx(1.0)
    assert lr_at(cosine, 10, 0, 10) == pytest.approx(0.0)
    assert lr_at(OptimSpec(lr=3.0, scheduler="constant"), 7, 9, 10) == 3.0


def test_single_label_accuracy_uses_argmax_of_soft_targets():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    targets = np.array([[0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert evaluate_scores(logits, targets, multilabel=False) == {"acc": pytest.approx(2 / 3)}


def test_multilabel_map_auc_and_d_prime():
    # class 0: scores rank both positives first (AP 1, AUC 1); class 1: one positive ranked
    # second of three (AP 0.5, AUC 0.5); class 2 has no positive and is left out.
    logits = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.1, 0.2, 0.0]])
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    scores = evaluate_scores(logits, targets, multilabel=True)
    assert scores["mAP"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["AUC"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["classes_scored"] == 2  # every record says over how many classes
    from scipy.stats import norm

    assert scores["d_prime"] == pytest.approx(math.sqrt(2) * norm.ppf(0.75))


@pytest.mark.parametrize("ties", ["none", "many", "all"])
def test_ap_and_auc_of_all_classes_at_once_equal_scikit_learns(ties):
    """c2f scores every class in one pass (sklearn's per-class loop held a GPU evaluation for
    seconds); tied scores are one threshold, as sklearn's curves make them."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from c2f.train.metrics import ranking_scores

    rng = np.random.default_rng(3)
    scores = rng.standard_normal((150, 40)).astype(np.float32)
    if ties == "many":
        scores = np.round(scores, 1)
    elif ties == "all":
        scores[:, :] = scores[0]
    binary = rng.random((150, 40)) < np.linspace(0.02, 0.9, 40)
    binary[0], binary[-1] = True, False
    ap, auc = ranking_scores(scores, binary)
    np.testing.assert_allclose(ap, average_precision_score(binary, scores, average=None),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(auc, roc_auc_score(binary, scores, average=None),
                               rtol=0, atol=1e-12)


def test_non_finite_logits_are_refused_with_a_way_out():
    from c2f.train.metrics import ranking_scores

    logits = np.array([[0.1, np.nan], [0.3, 0.2]])
    with pytest.raises(ValueError, match="NaN or inf.*cannot be ranked"):
        ranking_scores(logits, np.array([[True, False], [False, True]]))


def test_per_class_rows_of_an_eval_set_without_a_scored_class_hold_no_ap():
    """One clip (or every clip with the same labels): no class has both positives and
    negatives; each row says so (AP null) instead of failing."""
    from c2f.train.metrics import per_class_scores

    rows = per_class_scores(np.array([[0.3, -1.0]]), np.array([[1.0, 0.0]]), True, ["a", "b"])
    assert rows == [{"class": "a", "clips": 1, "AP": None}, {"class": "b", "clips": 0, "AP": None}]


def test_per_class_rows_add_up_to_the_accuracy_and_the_map():
    from sklearn.metrics import average_precision_score

    from c2f.train.metrics import per_class_scores

    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    predicted = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2, 0])  # d has no clip
    targets = np.eye(4)[truth]
    logits = np.eye(4)[predicted] + 0.01 * rng.random((10, 4))
    rows = per_class_scores(logits, targets, False, names)
    assert [(r["class"], r["clips"], r["right"]) for r in rows] == [
        ("a", 4, 2), ("b", 2, 1), ("c", 4, 3), ("d", 0, 0)]
    assert [r["confused_with"] for r in rows] == ["b", "c", "a", None]
    assert rows[3]["recall"] is None
    assert sum(r["right"] for r in rows) / 10 == evaluate_scores(logits, targets, False)["acc"]
    multi = (rng.random((40, 4)) < 0.3).astype(np.float32)
    multi[:, 3] = 0  # a class never present: no AP, left out of the mAP
    scores = rng.normal(size=(40, 4)) + multi
    rows = per_class_scores(scores, multi, True, names)
    assert rows[3]["AP"] is None and [r["clips"] for r in rows] == multi.sum(0).astype(int).tolist()
    for k in range(3):
        assert rows[k]["AP"] == pytest.approx(average_precision_score(multi[:, k], scores[:, k]))
    assert np.mean([r["AP"] for r in rows[:3]]) == pytest.approx(
        evaluate_scores(scores, multi, True)["mAP"])


def test_a_perfect_auc_gives_an_infinite_d_prime_written_as_null():
    """AST's d' is sqrt(2) norm.ppf(AUC): infinite at AUC 1. The scores keep it; what runs and
    c2f.evaluate write is strict JSON, where it is null (Python's json would write Infinity,
    which JSON.parse and other strict readers refuse)."""
    import json

    from c2f.train.metrics import json_scores

    logits = np.array([[0.9, 0.1], [0.1, 0.8], [0.2, 0.7]])
    targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=float)
    scores = evaluate_scores(logits, targets, multilabel=True)
    assert scores["AUC"] == 1.0 and scores["d_prime"] == math.inf
    written = json.dumps(json_scores(scores), allow_nan=False)  # strict: raises on inf
    assert json.loads(written) == {"acc": 1.0, "mAP": 1.0, "AUC": 1.0, "d_prime": None,
                                   "classes_scored": 2}


def eval_manifest(labels: list[tuple[int, ...]], classes: int):
    """An eval manifest with these label ids per clip (no audio: nothing reads it)."""
    from pathlib import Path

    from c2f.data.manifest import Clip, Manifest

    return Manifest(Path("eval.json"), [Clip(Path(f"{i}.wav"), ids, i)
                                        for i, ids in enumerate(labels)],
                    [f"class{k}" for k in range(classes)])


def one_clip_record(spec, plan, epoch: int, scores: dict) -> dict:
    """The metrics.jsonl record of final-phase epoch `epoch` with these scores."""
    from c2f.train.checkpoint import TrainState
    from c2f.train.records import epoch_record

    stats = {"train_loss": 0.5, "lr": 0.1, "seconds": 1.0, "samples": 4, "skipped": 0}
    return epoch_record(spec, plan.phases[-1], epoch - 1, TrainState(epoch=epoch), True, stats,
                        scores, 10)


def test_an_undefined_map_is_null_in_the_record_and_never_the_best_epoch():
    """One eval clip: no class has both positives and negatives, so the mAP is undefined. Its
    record is strict JSON (`value` was NaN), and the run's best is an epoch with a metric
    (a NaN first epoch stayed the max whatever followed)."""
    import json

    from c2f.plan import build_plan
    from c2f.train.records import format_summary, summarize
    from tests.test_batch_mixup import spec_of

    spec = spec_of("dataset=builtin_multilabel")
    plan = build_plan(spec)
    undefined = evaluate_scores(np.array([[0.3, -1.0]]), np.array([[1.0, 0.0]]), True)
    record = one_clip_record(spec, plan, 1, undefined)
    assert json.loads(json.dumps(record, allow_nan=False))["value"] is None
    later = one_clip_record(spec, plan, 2, {"acc": 1.0, "mAP": 0.25})
    evaluation = eval_manifest([(0,)], spec.dataset.num_classes)
    summary = summarize(spec, plan, [record, later], {}, {"train": 0, "eval": 0}, evaluation)
    assert (summary["best"], summary["best_epoch"]) == (0.25, 2)
    alone = summarize(spec, plan, [record], {}, {"train": 0, "eval": 0}, evaluation)
    assert (alone["best"], alone["best_epoch"]) == (None, None)
    assert "no epoch has a defined mAP (final undefined" in format_summary(alone, [record])


def test_expected_random_ap_is_exact_over_every_ranking():
    """random_ap against sklearn's AP averaged over all C(7, 3) placements of 3 positives
    among 7 untied scores; the prevalence (3/7) the audit's chance guess started from is low."""
    from itertools import combinations

    from sklearn.metrics import average_precision_score

    from c2f.train.metrics import random_ap

    scores = np.arange(7, 0, -1.0)
    aps = [average_precision_score(np.isin(np.arange(7), chosen), scores)
           for chosen in combinations(range(7), 3)]
    assert random_ap(3, 7) == pytest.approx(np.mean(aps)) and random_ap(3, 7) > 3 / 7 + 0.05


def test_an_infinite_d_prime_prints_as_inf_and_only_nan_or_null_as_undefined():
    """Review 6 F9: perfectly separated scores give d' +inf (AST's norm.ppf(1)), not undefined."""
    from c2f.epochs import metric_text

    scores = evaluate_scores(np.array([[2.0, -1.0], [-1.0, 2.0]]), np.eye(2), True)
    assert scores["d_prime"] == math.inf and metric_text(scores["d_prime"]) == "inf"
    assert metric_text(-math.inf) == "-inf" and metric_text(0.25) == "0.2500"
    assert metric_text(math.nan) == metric_text(None) == "undefined"


def test_chance_is_random_scores_map_and_the_majority_share():
    """mAP: the mean of the scored classes' random_ap (the class without positives is no part
    of it); acc: the commonest class's share, not 1/K."""
    from c2f.train.metrics import chance_level, random_ap

    multi = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=float)
    assert chance_level(multi, "mAP") == pytest.approx((random_ap(2, 4) + random_ap(3, 4)) / 2)
    single = np.eye(3)[[0, 0, 0, 1]]
    assert chance_level(single, "acc") == 0.75


def test_a_multilabel_run_scored_by_acc_gets_the_chance_of_acc():
    """Review 6 F4: the chance follows dataset.metric, not dataset.multilabel: a multi-label eval
    set scored by acc has the best constant prediction's accuracy, not the random-scores mAP."""
    from c2f.train.metrics import accuracy, chance_level

    multi = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=float)
    best_constant = max(accuracy(np.tile(np.eye(3)[k], (5, 1)), multi) for k in range(3))
    assert chance_level(multi, "acc") == pytest.approx(best_constant) == 0.4
    assert chance_level(multi, "acc") != pytest.approx(chance_level(multi, "mAP"))


def test_map_on_a_single_label_dataset_is_refused_naming_the_key():
    """Review 6 F4: it passed validation, then failed with KeyError 'mAP' after epoch 1."""
    from c2f.spec import ConfigError
    from tests.test_batch_mixup import spec_of

    with pytest.raises(ConfigError, match=r"`dataset.metric`: mAP .* multi-label.*metric=acc"):
        spec_of("dataset.metric=mAP")


def test_random_ap_is_about_prevalence_plus_the_harmonic_excess():
    """Review 6 F11: the approximation the docstring and README give, p + (1-p)(H_n-1)/n, is
    within 0.1% of the exact value at (39, 220) and 3% at (2, 20); p + ln(n)/n is 3% and 12%
    high."""
    from c2f.train.metrics import random_ap

    for m, n, within in ((39, 220, 0.001), (2, 20, 0.03)):
        p, excess = m / n, sum(1 / k for k in range(2, n + 1)) / n
        assert random_ap(m, n) == pytest.approx(p + (1 - p) * excess, rel=within)
        assert p + math.log(n) / n > 1.025 * random_ap(m, n)


def test_the_summary_counts_scored_classes_and_warns_naming_those_left_out():
    """builtin_multilabel (11 classes) on an eval set where class 1 is in every clip scored and
    classes 3..10 in none: mAP averages 2 classes; the summary and its table say which not."""
    from c2f.plan import build_plan
    from c2f.train.metrics import random_ap
    from c2f.train.records import format_summary, summarize
    from tests.test_batch_mixup import spec_of

    spec = spec_of("dataset=builtin_multilabel")
    plan = build_plan(spec)
    evaluation = eval_manifest([(0, 1), (1, 2), (2,), (1, 2)], 11)
    record = one_clip_record(spec, plan, 1, {"acc": 0.5, "mAP": 0.6})
    summary = summarize(spec, plan, [record], {"2.wav": "bad"}, {"train": 0, "eval": 0},
                        evaluation)
    assert summary["classes_scored"] == 2
    assert summary["classes_left_out"] == {
        "no positives": [f"class{k} (#{k})" for k in range(3, 11)],
        "no negatives": ["class1 (#1)"]}  # clip 2, skipped as bad, was its only negative
    assert summary["chance"] == round((random_ap(1, 3) + random_ap(2, 3)) / 2, 4)
    printed = format_summary(summary, [record])
    assert "WARNING: mAP, AUC and d' average 2 of 11 classes; the eval set leaves 9 out (8 " \
        "with no positives: class3 (#3), class4 (#4), class5 (#5), class6 (#6), class7 (#7), " \
        "...; 1 with no negatives: class1 (#1))" in printed


def test_evaluate_says_how_many_classes_its_map_averages_and_warns_of_the_rest():
    """Review 6 F8: a manifest without a class's clips gave a mAP over fewer, unsaid."""
    from c2f.evaluate import classes_note
    from c2f.train.metrics import evaluate_scores, per_class_scores

    targets, logits = np.array([[0, 1, 1], [0, 0, 1.0]]), np.array([[0, 2, 1], [1, 0, 2.0]])
    scores = {**evaluate_scores(logits, targets, True), "clips": 2,
              "per_class": per_class_scores(logits, targets, True, ["a", "b", "c"])}
    scored, warning = classes_note(scores, ["a", "b", "c"])
    assert scored == " (1 of 3 classes scored)" and warning.startswith(
        "WARNING: mAP, AUC and d' average 1 of 3 classes; the eval set leaves 2 out (1 with no "
        "positives: a (#0); 1 with no negatives: c (#2))")
