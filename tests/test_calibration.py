"""pneumo_lib.calibration: known answers for ECE, MCE, Brier, temperature scaling; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from pneumo_lib import calibration, decision


def test_ece_worked_out_by_hand_on_five_images():
    # 5 bins of width 0.2. Bin (0.0, 0.2]: p 0.1, 0.1, labels 0, 1 -> confidence 0.1, accuracy 0.5, gap 0.4.
    # Bin (0.6, 0.8]: p 0.7, labels 1 -> gap 0.3. Bin (0.8, 1.0]: p 0.9, 0.9, labels 1, 1 -> gap 0.1.
    # ECE = (2 * 0.4 + 1 * 0.3 + 2 * 0.1) / 5 = 0.26; MCE = 0.4.
    y = [0, 1, 1, 1, 1]
    p = [0.1, 0.1, 0.7, 0.9, 0.9]
    rel = calibration.reliability(y, p, bins=5)
    np.testing.assert_array_equal(rel.count, [2, 0, 0, 1, 2])
    np.testing.assert_allclose(rel.confidence[[0, 3, 4]], [0.1, 0.7, 0.9])
    np.testing.assert_allclose(rel.accuracy[[0, 3, 4]], [0.5, 1.0, 1.0])
    assert np.isnan(rel.confidence[1]) and np.isnan(rel.accuracy[2])
    assert calibration.expected_calibration_error(y, p, bins=5) == pytest.approx(0.26)
    assert calibration.maximum_calibration_error(y, p, bins=5) == pytest.approx(0.4)
    assert calibration.brier_score(y, p) == pytest.approx((0.01 + 0.81 + 0.09 + 0.01 + 0.01) / 5)


def test_all_ninety_percent_on_a_balanced_set_has_ece_point_four():
    y = np.array([0, 1] * 500)
    assert calibration.expected_calibration_error(y, np.full(1000, 0.9)) == pytest.approx(0.4)
    # the same through a two-unit softmax head's probabilities
    assert calibration.expected_calibration_error(y, np.column_stack([np.full(1000, 0.1), np.full(1000, 0.9)])) \
        == pytest.approx(0.4)


def test_a_perfectly_calibrated_predictor_has_ece_near_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=100_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert calibration.expected_calibration_error(y, p) < 0.01


def test_bins_agree_with_sklearn_calibration_curve():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=500), [0.0, 1.0, 0.2, 0.4]])  # bin edges included
    y = (rng.uniform(size=p.size) < p**2).astype(int)
    rel = calibration.reliability(y, p, bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    seen = rel.count > 0
    np.testing.assert_allclose(rel.accuracy[seen], prob_true)
    np.testing.assert_allclose(rel.confidence[seen], prob_pred)
    assert rel.count.sum() == p.size


def test_ece_interval_resamples_patients_and_contains_the_estimate():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    groups = np.repeat(np.arange(100), 3)
    low, high = calibration.ece_interval(y, p, groups=groups, rounds=100, seed=0)
    ece = calibration.expected_calibration_error(y, p)
    assert 0 <= low <= ece <= high <= 1
    assert (low, high) == calibration.ece_interval(y, p, groups=groups, rounds=100, seed=0)
    assert (low, high) != calibration.ece_interval(y, p, rounds=100, seed=0)  # images, not patients
    with pytest.raises(ValueError, match="one patient per image"):
        calibration.ece_interval(y, p, groups=groups[:10])


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature_sigmoid(true_temperature):
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, size=20_000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)  # calibrated at T = 1
    fitted = calibration.fit_temperature(z * true_temperature, y)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # (N, 1) logits, as a Dense(1) layer gives them
    assert calibration.fit_temperature((z * true_temperature)[:, None], y) == pytest.approx(fitted)


def test_fit_temperature_recovers_a_known_temperature_softmax():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, size=(20_000, 3))
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in prob])
    assert calibration.fit_temperature(z * 3.0, y) == pytest.approx(3.0, rel=0.05)


def test_temperature_scaling_keeps_the_ranking_and_the_decision():
    rng = np.random.default_rng(5)
    z = rng.normal(0, 4, size=2000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z / 3))).astype(int)
    T = calibration.fit_temperature(z, y)
    assert T > 2  # over-confident logits are softened
    raw, cal = calibration.apply_temperature(z, 1.0), calibration.apply_temperature(z, T)
    assert roc_auc_score(y, raw) == roc_auc_score(y, cal)
    assert calibration.expected_calibration_error(y, cal) < calibration.expected_calibration_error(y, raw) / 2
    # the one prediction rule: calibrated probability against the moved threshold = raw rule
    class Model:
        pass
    model = decision.attach_temperature(Model(), T)
    setattr(model, decision.THRESHOLD_ATTRIBUTE, 0.3)
    moved = decision.calibrated_threshold(model)
    np.testing.assert_array_equal(decision.predicted_class(raw, 0.3), decision.predicted_class(cal, moved))
    np.testing.assert_allclose(decision.calibrated_pneumonia_probability(model, z), cal)


def test_apply_temperature_shapes_and_softmax_two_units_match_sigmoid():
    z = np.array([[-1.0, 1.0], [0.5, 0.0]])
    two = calibration.apply_temperature(z, 2.0)
    assert two.shape == (2, 2)
    np.testing.assert_allclose(two.sum(axis=1), 1.0)
    np.testing.assert_allclose(two[:, 1], calibration.apply_temperature(z[:, 1] - z[:, 0], 2.0))
    assert calibration.apply_temperature(np.zeros((3, 1)), 1.0).shape == (3,)
    np.testing.assert_allclose(calibration.apply_temperature([1000.0, -1000.0], 1.0), [1.0, 0.0])


def test_default_temperature_is_one_and_cards_carry_theirs():
    class Model:
        pass
    m = Model()
    assert decision.model_temperature(m) == 1.0
    assert decision.temperature_from_card({"evaluation": {"threshold": 0.4}}) == 1.0
    decision.attach_temperature(m, {"calibration": {"temperature": 1.7}})
    assert decision.model_temperature(m) == 1.7
    assert decision.model_temperature(m, 2.0) == 2.0
    setattr(m, decision.THRESHOLD_ATTRIBUTE, 0.5)
    assert decision.calibrated_threshold(m) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature"):
        decision.temperature_from_card({"calibration": {"temperature": -1}})


@pytest.mark.parametrize("y, p, match", [
    ([0, 1], [0.2, 1.2], "within|lie in"),
    ([0, 1], [0.2, np.nan], "NaN"),
    ([0, 2], [0.2, 0.3], "0 \\(NORMAL\\) or 1"),
    ([], [], "empty"),
    ([0, 1, 1], [0.2, 0.3], "differ in length"),
])
def test_bad_input_is_named(y, p, match):
    with pytest.raises(ValueError, match=match):
        calibration.expected_calibration_error(y, p)


def test_bad_temperature_input_is_named():
    with pytest.raises(ValueError, match="both classes"):
        calibration.fit_temperature([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        calibration.fit_temperature(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="NaN"):
        calibration.fit_temperature([np.nan, 1.0], [0, 1])
    with pytest.raises(ValueError, match="temperature must be"):
        calibration.apply_temperature([1.0], 0)
    with pytest.raises(ValueError, match="bins"):
        calibration.reliability([0, 1], [0.1, 0.9], bins=0)
    with pytest.raises(ValueError, match="separate the classes perfectly"):
        calibration.fit_temperature([-5.0, -4.0, 4.0, 5.0], [0, 0, 1, 1])


def test_logits_without_information_get_the_highest_temperature_and_a_warning():
    # The logits point the wrong way on half of the images: no temperature beats flattening.
    z, y = np.array([-2.0, 2.0, -2.0, 2.0]), np.array([0, 0, 1, 1])
    with pytest.warns(calibration.CalibrationWarning, match="no information"):
        T = calibration.fit_temperature(z, y)
    assert T == calibration.TEMPERATURE_RANGE[1]
    assert np.allclose(calibration.apply_temperature(z, T), 0.5, atol=0.02)


def test_reliability_plot_draws_bars_and_the_diagonal():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = calibration.reliability([0, 1, 1, 0], [0.1, 0.8, 0.9, 0.3], bins=5)
    ax = rel.plot(label="toy")
    assert len(ax.patches) >= 3 and any("ECE" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close("all")
