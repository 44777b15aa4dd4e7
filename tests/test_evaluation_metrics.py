"""Evaluation: metrics against hand-computed answers, threshold on validation, bootstrap, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pneumo_lib import decision
from pneumo_lib import evaluation as ev

# Ten test samples, worked by hand at threshold 0.5:
#   label: 0    0    0    0    0    0    1    1    1    1
#   p:     0.1  0.2  0.3  0.6  0.7  0.4  0.8  0.9  0.35 0.55
#   pred:  0    0    0    1    1    0    1    1    0    1
# TN=4 FP=2 FN=1 TP=3 -> accuracy 7/10, precision 3/5, recall 3/4, specificity 4/6, F1 2*.6*.75/1.35 = 2/3.
# ROC AUC: of the 24 (positive, negative) pairs, the positive scores higher in
#   0.8 -> 6, 0.9 -> 6, 0.55 -> 4 (above .1 .2 .3 .4), 0.35 -> 3 (above .1 .2 .3): 19/24.
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.4, 0.8, 0.9, 0.35, 0.55])


def test_binary_metrics_match_the_hand_computed_confusion_matrix():
    m = ev.binary_metrics(Y, P, 0.5)
    assert m["confusion"] == [[4, 2], [1, 3]]
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(19 / 24)
    assert m["n"] == 10 and m["threshold"] == 0.5


def test_vectorised_count_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(4)
    for _ in range(20):
        y = rng.integers(0, 2, 15)
        p = rng.random(15)
        sk = ev.binary_metrics(y, p, 0.5)
        (tn, fp), (fn, tp) = sk["confusion"]
        ours = ev._count_metrics(tp, fp, fn, tn)
        for name, value in ours.items():
            np.testing.assert_allclose(float(value), sk[name], equal_nan=True)


def test_average_precision_by_hand():
    # Ranked by score: .9(1) .8(1) .7(0) .6(0) .55(1) .4(0) .35(1) ...
    # AP = mean precision at each positive: (1/1 + 2/2 + 3/5 + 4/7) / 4
    expected = (1 + 1 + 3 / 5 + 4 / 7) / 4
    assert ev.binary_metrics(Y, P)["pr_auc"] == pytest.approx(expected)


def test_threshold_is_inclusive_and_single_class_aucs_are_nan():
    m = ev.binary_metrics([0, 1], [0.5, 0.5], 0.5)
    assert m["confusion"] == [[0, 1], [0, 1]]
    single = ev.binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert math.isnan(single["roc_auc"]) and math.isnan(single["specificity"])
    assert single["recall"] == pytest.approx(2 / 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        ev.binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="Labels must be 0 \\(NORMAL\\) or 1"):
        ev.binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        ev.binary_metrics([0, 1], [0.1, 1.2])


def test_youden_threshold_on_validation_by_hand():
    # Validation: negatives at .1 .2 .3 .65, positives at .6 .7 .8 .9.
    # Thresholds in (.3, .6]: TPR 1, FPR 1/4 -> J .75; in (.6, .65]: TPR 3/4, FPR 1/4 -> J .5;
    # in (.65, .7]: TPR 3/4, FPR 0 -> J .75. Two best ranges, midpoints .45 and .675:
    # the one closer to .5 wins -> .45.
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.65, 0.6, 0.7, 0.8, 0.9]
    assert ev.choose_threshold(y, p) == pytest.approx(0.45)
    # F1: (.3, .6] -> P 4/5 R 1 F1 .889; (.6, .65] -> P 3/4 R 3/4 F1 .75; (.65, .7] -> P 1 R .75
    # F1 .857 -> the range (.3, .6], midpoint .45.
    assert ev.choose_threshold(y, p, method="f1") == pytest.approx(0.45)
    with pytest.raises(ValueError, match="both classes"):
        ev.choose_threshold([1, 1], [0.2, 0.3])


@pytest.mark.parametrize("method", ["youden", "f1"])
def test_a_perfectly_separated_validation_split_gets_the_midpoint_of_the_gap(method):
    # Negatives .05 .2 .31, positives .47 .8 .93: every threshold in (.31, .47] separates them
    # (J = 1, F1 = 1); the rule returns the gap's midpoint (.31 + .47) / 2 = .39, not .47.
    y = [0, 0, 0, 1, 1, 1]
    assert ev.choose_threshold(y, [0.05, 0.2, 0.31, 0.47, 0.8, 0.93], method) == pytest.approx(0.39)
    # The same order, other scores in the gap: the same rule, (.1 + .9) / 2.
    assert ev.choose_threshold(y, [0.0, 0.05, 0.1, 0.9, 0.95, 1.0], method) == pytest.approx(0.5)


@pytest.mark.parametrize("y, p, expected", [
    # Saturated scores: the gap (0, 1] -> .5 (scikit-learn's curve would give 1.0 here).
    ([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0], 0.5),
    # Positives at 1.0, negatives at 0 and .1: the gap (.1, 1] -> .55, not 1.0.
    ([0, 0, 1, 1], [0.0, 0.1, 1.0, 1.0], 0.55),
    # A negative and a positive at 0: "all PNEUMONIA" needs a threshold <= 0 (refused), so the
    # best cut is (0, .2] (TPR 1/2, FPR 0, J .5) -> .1, not 0.0.
    ([0, 1, 1], [0.0, 0.0, 0.2], 0.1),
    # A score shared by a negative and a positive: thresholds in (.1, .5] give TPR 1, FPR 1/2;
    # in (.5, .9] TPR 1/2, FPR 0: both J = .5, one range (.1, .9] -> .5.
    ([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9], 0.5),
])
def test_the_chosen_threshold_is_never_0_or_1_and_the_decision_rule_accepts_it(y, p, expected):
    for method in ("youden", "f1"):
        t = ev.choose_threshold(y, p, method)
        assert 0.0 < t < 1.0 and decision.check_threshold(t) == t
        if method == "youden":
            assert t == pytest.approx(expected)


def test_unknown_threshold_methods_are_named():
    with pytest.raises(ValueError, match="Unknown threshold method 'roc'"):
        ev.choose_threshold([0, 1], [0.2, 0.8], method="roc")


def _old_binary_confusion(y, p, threshold):
    """The rule evaluation applied before it asked decision: ``p >= threshold``, by hand."""
    pred = np.asarray(p) >= threshold
    y = np.asarray(y) == 1
    return [[int(np.sum(~pred & ~y)), int(np.sum(pred & ~y))], [int(np.sum(~pred & y)), int(np.sum(pred & y))]]


def _old_bootstrap_ci(y, p, threshold, groups=None, rounds=200, seed=0, level=0.95):
    """bootstrap_ci as it was, with its own ``ps >= threshold`` (the reference for identity)."""
    from sklearn import metrics as skm

    y, prob = np.asarray(y), np.asarray(p, dtype=np.float64)
    samples = {m: [] for m in ev.METRICS}
    for idx in ev.bootstrap_indices(y.size, groups, rounds=rounds, seed=seed):
        ys, ps = y[idx], prob[idx]
        pred, pos = ps >= threshold, ys == 1
        counts = ev._count_metrics(np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & pos), np.sum(~pred & ~pos))
        for m, v in counts.items():
            samples[m].append(float(v))
        both = pos.any() and (~pos).any()
        samples["roc_auc"].append(skm.roc_auc_score(ys, ps) if both else math.nan)
        samples["pr_auc"].append(skm.average_precision_score(ys, ps) if both else math.nan)
    tail = (1 - level) / 2 * 100
    out = {}
    for m in ev.METRICS:
        v = np.asarray(samples[m])
        v = v[~np.isnan(v)]
        out[m] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) if v.size else (math.nan, math.nan)
    return out


# The hand example plus three images scored exactly at the threshold 0.35 (one NORMAL, two
# PNEUMONIA, one of them already in Y/P): at 0.35 they are called PNEUMONIA (the rule is inclusive).
#   label: 0   0   0   0   0   0   1   1   1    1    0    1
#   p:     .1  .2  .3  .6  .7  .4  .8  .9  .35  .55  .35  .35
#   pred:  0   0   0   1   1   1   1   1   1    1    1    1    -> TN 3, FP 4, FN 0, TP 5
Y_TIE = np.append(Y, [0, 1])
P_TIE = np.append(P, [0.35, 0.35])


def test_binary_metrics_decide_through_the_one_rule_with_identical_numbers(monkeypatch):
    m = ev.binary_metrics(Y_TIE, P_TIE, 0.35)
    assert m["confusion"] == [[3, 4], [0, 5]] == _old_binary_confusion(Y_TIE, P_TIE, 0.35)
    assert m["accuracy"] == pytest.approx(8 / 12) and m["specificity"] == pytest.approx(3 / 7)
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(5 / 9)
    for t in (0.35, 0.5, 0.134, 0.9):  # the hand example's metrics at 0.5 are checked above
        assert ev.binary_metrics(Y_TIE, P_TIE, t)["confusion"] == _old_binary_confusion(Y_TIE, P_TIE, t)
    calls = []
    real = decision.predicted_class
    monkeypatch.setattr(decision, "predicted_class", lambda p, t: calls.append(t) or real(p, t))
    assert ev.binary_metrics(Y_TIE, P_TIE, 0.35) == m
    assert calls == [0.35]


def test_bootstrap_intervals_decide_through_the_one_rule_with_identical_numbers(monkeypatch):
    groups = [f"patient{i // 2}" for i in range(Y_TIE.size)]
    for t, g in ((0.35, None), (0.35, groups), (0.5, None), (0.55, groups)):
        assert ev.bootstrap_ci(Y_TIE, P_TIE, t, groups=g, rounds=60, seed=2) == _old_bootstrap_ci(
            Y_TIE, P_TIE, t, groups=g, rounds=60, seed=2)
    calls = []
    real = decision.predicted_class
    monkeypatch.setattr(decision, "predicted_class", lambda p, t: calls.append(t) or real(p, t))
    ev.bootstrap_ci(Y_TIE, P_TIE, 0.35, rounds=5)
    assert calls == [0.35]  # every image decided once by the rule, then resampled


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_metrics_refuse_a_threshold_the_rule_refuses(bad):
    with pytest.raises(ValueError, match="threshold must be"):
        ev.binary_metrics(Y, P, bad)
    with pytest.raises(ValueError, match="threshold must be"):
        ev.bootstrap_ci(Y, P, bad, rounds=5)


def test_the_threshold_comes_from_validation_never_from_test():
    # Validation separates perfectly in the gap (0.6, 0.8]: threshold 0.7, its midpoint; on
    # test the best threshold would be 0.3.
    y_val, p_val = [0, 0, 1, 1], [0.5, 0.6, 0.8, 0.9]
    y_test, p_test = [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]
    e = ev.evaluate_predictions(y_test, p_test, y_val, p_val, bootstrap_rounds=20)
    assert e.threshold == pytest.approx(0.7)
    assert e.threshold_source == "validation (youden)"
    assert e.metrics["confusion"] == [[2, 0], [2, 0]]  # every test image below 0.7: predicted NORMAL
    assert e.metrics["roc_auc"] == pytest.approx(1.0)  # ranking is threshold-free
    assert e.val_metrics["accuracy"] == pytest.approx(1.0)
    fixed = ev.evaluate_predictions(y_test, p_test, threshold=0.25, bootstrap_rounds=20)
    assert fixed.threshold_source == "given" and fixed.metrics["accuracy"] == pytest.approx(1.0)
    default = ev.evaluate_predictions(y_test, p_test, bootstrap_rounds=20)
    assert default.threshold == 0.5 and default.threshold_source == "default 0.5"


def test_bootstrap_intervals_contain_the_estimate_narrow_with_more_data_and_repeat():
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n)
        p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)
        return y, p

    y_small, p_small = sample(60)
    y_big, p_big = sample(1000)
    small = ev.bootstrap_ci(y_small, p_small, 0.5, rounds=100, seed=1)
    big = ev.bootstrap_ci(y_big, p_big, 0.5, rounds=100, seed=1)
    point = ev.binary_metrics(y_big, p_big, 0.5)
    for m in ev.METRICS:
        lo, hi = big[m]
        assert lo <= point[m] <= hi
        assert hi - lo < small[m][1] - small[m][0]
    assert ev.bootstrap_ci(y_small, p_small, 0.5, rounds=50, seed=3) == ev.bootstrap_ci(
        y_small, p_small, 0.5, rounds=50, seed=3)
    # Perfect separation: every resample has AUC 1, so the interval is [1, 1].
    perfect = ev.bootstrap_ci([0, 0, 1, 1] * 5, [0.1, 0.2, 0.8, 0.9] * 5, 0.5, rounds=50)
    assert perfect["roc_auc"] == (1.0, 1.0)


class _FixedModel:
    """Stands in for a Keras model: returns fixed outputs batch by batch."""

    name = "fixed"

    def __init__(self, outputs):
        self.outputs, self.calls = list(outputs), 0

    def __call__(self, images, training=False):
        out = self.outputs[self.calls]
        self.calls += 1
        return out


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_predict_proba_reads_pneumonia_probability_for_both_heads(head):
    batches = [(np.zeros((2, 4, 4, 1)), np.array([0.0, 1.0])), (np.zeros((1, 4, 4, 1)), np.array([1.0]))]
    p1 = [np.array([0.2, 0.9]), np.array([0.7])]
    if head == "sigmoid":
        outputs = [p[:, None] for p in p1]
    else:
        outputs = [np.stack([1 - p, p], axis=1) for p in p1]
    y, p = ev.predict_proba(_FixedModel(outputs), batches)
    assert y.tolist() == [0, 1, 1]
    np.testing.assert_allclose(p, [0.2, 0.9, 0.7])


def test_comparison_table_names_models_references_and_provenance():
    a = ev.evaluate_predictions(Y, P, name="model A", threshold=0.5, bootstrap_rounds=30)
    b = ev.evaluate_predictions(Y, 1 - P, name="model B", threshold=0.5, bootstrap_rounds=30)
    table = ev.comparison_table(
        [a, b], caption="Test split of the phantom data, quick profile",
        references=[{"name": "Kermany et al. 2018 (real data; reference)", "accuracy": 0.928, "roc_auc": 0.968}],
    )
    text = str(table)
    assert text.splitlines()[0] == "Test split of the phantom data, quick profile"
    assert table.header == ["model", "threshold", "accuracy", "sensitivity", "specificity", "F1", "ROC AUC"]
    assert table.rows[0][0] == "model A" and table.rows[0][2].startswith("0.700 [")
    assert table.rows[1][6].startswith(f"{5 / 24:.3f}")  # reversed scores: AUC 1 - 19/24
    assert table.rows[2] == ["Kermany et al. 2018 (real data; reference)", "-", "0.928", "-", "-", "-", "0.968"]
    assert table.to_markdown().startswith("*Test split of the phantom data, quick profile*")
    with pytest.raises(ValueError, match="Unknown metric"):
        ev.comparison_table([a], caption="x", metrics=["auc"])


def test_plots_draw_one_curve_per_model():
    import matplotlib

    matplotlib.use("Agg")
    a = ev.evaluate_predictions(Y, P, name="A", bootstrap_rounds=20)
    b = ev.evaluate_predictions(Y, P ** 2, name="B", bootstrap_rounds=20)
    fig = ev.plot_curves([a, b])
    roc_ax, pr_ax = fig.axes
    assert [l.get_label() for l in roc_ax.get_legend().get_lines()][:2] == [
        f"A (AUC {a.metrics['roc_auc']:.3f})", f"B (AUC {b.metrics['roc_auc']:.3f})"]
    assert len(pr_ax.lines) == 2
    bars = ev.plot_comparison([a, b], metrics=["accuracy", "roc_auc"])
    assert len(bars.axes[0].patches) == 4


def test_patient_bootstrap_draws_whole_patients():
    groups = ["a", "a", "b", "c", "c", "c"]
    for idx in ev.bootstrap_indices(6, groups, rounds=30, seed=0):
        drawn = [groups[i] for i in idx]
        # Every drawn patient comes with all of its images: counts are multiples of its size.
        assert drawn.count("a") % 2 == 0 and drawn.count("c") % 3 == 0
    with pytest.raises(ValueError, match="5 groups for 6 images"):
        ev.bootstrap_indices(6, groups[:5])


def test_duplicated_patients_widen_the_interval_over_the_image_bootstrap():
    # 40 patients with 4 identical images each: as evidence, 40 cases, not 160.
    rng = np.random.default_rng(3)
    y_patient = np.repeat([0, 1], 20)
    p_patient = np.clip(0.5 + (y_patient - 0.5) * 0.3 + rng.normal(0, 0.25, 40), 0, 1)
    y, p = np.repeat(y_patient, 4), np.repeat(p_patient, 4)
    groups = np.repeat(np.arange(40), 4)
    by_image = ev.bootstrap_ci(y, p, 0.5, rounds=300, seed=0)
    by_patient = ev.bootstrap_ci(y, p, 0.5, groups=groups, rounds=300, seed=0)
    for m in ("accuracy", "recall", "specificity", "roc_auc"):
        width_image = by_image[m][1] - by_image[m][0]
        width_patient = by_patient[m][1] - by_patient[m][0]
        # sqrt(4) = 2 times wider in theory; demand at least 1.5.
        assert width_patient > 1.5 * width_image, (m, width_image, width_patient)
    # ... and the same as the image bootstrap of the 40 distinct cases, to sampling error.
    distinct = ev.bootstrap_ci(y_patient, p_patient, 0.5, rounds=300, seed=0)
    assert abs((distinct["roc_auc"][1] - distinct["roc_auc"][0])
               - (by_patient["roc_auc"][1] - by_patient["roc_auc"][0])) < 0.05
    e = ev.evaluate_predictions(y, p, threshold=0.5, groups=groups, bootstrap_rounds=20)
    assert e.ci_unit == "patient" and e.as_dict()["ci_unit"] == "patient"


def test_comparison_table_renders_html_with_intervals_apart_and_a_numeric_frame():
    a = ev.evaluate_predictions(Y, P, name="model <A>", threshold=0.5, bootstrap_rounds=30)
    table = ev.comparison_table([a], caption="Test split, phantom data, quick profile",
                                references=[{"name": "Kermany et al. 2018", "roc_auc": 0.968}])
    page = table._repr_html_()
    assert "<caption>Test split, phantom data, quick profile</caption>" in page
    assert "model &lt;A&gt;" in page  # escaped
    assert '0.700<br><span class="pneumo-ci">[' in page
    frame = table.to_frame()
    assert frame.loc["model <A>", ("accuracy", "value")] == pytest.approx(0.7)
    low, high = a.ci["accuracy"]
    assert frame.loc["model <A>", ("accuracy", "low")] == pytest.approx(low)
    assert frame.loc["model <A>", ("accuracy", "high")] == pytest.approx(high)
    assert frame.loc["Kermany et al. 2018", ("ROC AUC", "value")] == pytest.approx(0.968)
    assert np.isnan(frame.loc["Kermany et al. 2018", ("ROC AUC", "low")])
    assert frame.attrs["caption"].startswith("Test split")
