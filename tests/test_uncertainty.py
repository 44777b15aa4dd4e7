"""pneumo_lib.uncertainty: MC dropout with batch norm left alone, ensembles, risk-coverage, referral."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import uncertainty
from pneumo_lib._tf import keras


def _model(dropout: float | None = 0.5, batch_norm: bool = True, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    if dropout is not None:
        x = keras.layers.Dropout(dropout, name="drop")(x)
    logits = keras.layers.Dense(1, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prediction")(logits))
    if batch_norm:  # moving statistics far from any batch's, so batch statistics would show
        bn = model.get_layer("bn")
        bn.moving_mean.assign(np.full(4, 3.0, np.float32))
        bn.moving_variance.assign(np.full(4, 9.0, np.float32))
    return model


def _images(n=12, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)).astype(np.float32)


def test_mc_dropout_keeps_batch_norm_in_inference_mode():
    model = _model(dropout=0.0)
    x = _images()
    bn = model.get_layer("bn")
    before = [v.numpy().copy() for v in (bn.moving_mean, bn.moving_variance)]
    mean, std, entropy = uncertainty.mc_dropout(model, x, passes=5)
    for v, b in zip((bn.moving_mean, bn.moving_variance), before):
        np.testing.assert_array_equal(v.numpy(), b)
    inference = np.asarray(model(x, training=False))[:, 0]
    np.testing.assert_allclose(mean, inference, rtol=1e-6)
    np.testing.assert_array_equal(std, 0.0)  # rate 0: every pass identical
    # what model(x, training=True) would have done: batch statistics (other outputs), moved averages
    training_mode = np.asarray(model(x, training=True))[:, 0]
    assert not np.allclose(mean, training_mode, atol=1e-3)
    assert not np.array_equal(bn.moving_mean.numpy(), before[0])
    np.testing.assert_allclose(entropy, uncertainty.binary_entropy(mean))


def test_mc_dropout_samples_reproducibly_and_restores_the_model():
    model = _model(dropout=0.5)
    x = _images()
    first = uncertainty.mc_dropout(model, x, passes=20, seed=3)
    again = uncertainty.mc_dropout(model, x, passes=20, seed=3)
    other = uncertainty.mc_dropout(model, x, passes=20, seed=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert (first[1] > 0).all() and not np.array_equal(first[0], other[0])
    # afterwards the model is deterministic again
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(model(x, training=False)))
    assert "call" not in model.get_layer("drop").__dict__
    bn = model.get_layer("bn")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 3.0)


def test_mc_dropout_without_a_dropout_layer_says_so():
    with pytest.raises(ValueError, match="no dropout layer"):
        uncertainty.mc_dropout(_model(dropout=None), _images(), passes=3)
    with pytest.raises(ValueError, match="passes"):
        uncertainty.mc_dropout(_model(), _images(), passes=1)


def test_an_ensemble_of_identical_models_has_no_disagreement():
    model = _model(dropout=0.3)
    mean, std, entropy, mutual = uncertainty.ensemble([model, model, model], _images())
    np.testing.assert_allclose(std, 0.0, atol=1e-12)
    np.testing.assert_allclose(mutual, 0.0, atol=1e-12)
    assert (entropy > 0).all()


def test_ensemble_statistics_known_answers():
    # members 0.0 and 1.0: mean 0.5, entropy 1 bit, each member certain -> mutual information 1 bit
    mean, std, entropy, mutual = uncertainty.ensemble_statistics([[0.0, 0.5], [1.0, 0.5]])
    np.testing.assert_allclose(mean, [0.5, 0.5])
    np.testing.assert_allclose(std, [0.5, 0.0])
    np.testing.assert_allclose(entropy, [1.0, 1.0])
    np.testing.assert_allclose(mutual, [1.0, 0.0])
    different = uncertainty.ensemble([_model(seed=0), _model(seed=1)], _images())
    assert (different[1] > 0).any()
    with pytest.raises(ValueError, match="at least two"):
        uncertainty.ensemble([_model()], _images())


def test_risk_coverage_on_a_hand_built_case():
    # predictions at 0.5: [1, 1, 0, 0]; labels [1, 0, 0, 1] -> images 1 and 3 wrong.
    y = [1, 0, 0, 1]
    p = [0.9, 0.8, 0.1, 0.4]
    u = [0.1, 0.4, 0.2, 0.3]  # most certain first: 0, 2, 3, 1
    coverage, risk = uncertainty.risk_coverage(y, p, u)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.0, 1 / 3, 0.5])
    assert uncertainty.area_under_risk_coverage(coverage, risk) == pytest.approx((1 / 3 + 0.5) / 4)
    # the threshold is the project's rule: at 0.35 image 3 becomes right
    np.testing.assert_allclose(uncertainty.risk_coverage(y, p, u, threshold=0.35)[1], [0, 0, 0, 0.25])


def test_referral_refers_the_most_uncertain_and_scores_the_rest():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.45, 0.1, 0.2, 0.3, 0.55, 0.6, 0.4])
    u = uncertainty.binary_entropy(p)  # closest to 0.5 = most uncertain: 0.45, 0.55 then 0.6, 0.4
    table = uncertainty.referral(y, p, u, fractions=(0.0, 0.2, 0.4))
    assert list(table.index) == [0.0, 0.2, 0.4]
    assert table.loc[0.0, "accuracy"] == pytest.approx(0.8)
    assert table.loc[0.0, "sensitivity"] == pytest.approx(0.8)
    assert table.loc[0.2, "referred images"] == 2 and table.loc[0.2, "kept images"] == 8
    assert table.loc[0.2, ["sensitivity", "specificity", "accuracy"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc[0.2, "PNEUMONIA among referred"] == 0.5
    assert np.isnan(table.loc[0.0, "PNEUMONIA among referred"])
    with pytest.raises(ValueError, match="fraction"):
        uncertainty.referral(y, p, u, fractions=(1.0,))
    with pytest.raises(ValueError, match="one value per image"):
        uncertainty.referral(y, p, u[:3])
    with pytest.raises(ValueError, match="NaN"):
        uncertainty.risk_coverage(y, p, np.full(10, np.nan))


def test_threshold_entropy_peaks_at_the_threshold():
    p = np.array([0.1, 0.2, 0.5, 0.9])
    np.testing.assert_allclose(uncertainty.threshold_entropy(p, 0.5), uncertainty.binary_entropy(p))
    h = uncertainty.threshold_entropy(p, 0.2)
    assert h[1] == pytest.approx(1.0) and h.argmax() == 1
    # symmetric in logit distance from the threshold: logit(0.5) - logit(0.2) = logit(0.2) - logit(x)
    x = 1 / (1 + np.exp(-(2 * np.log(0.25) - 0.0)))
    np.testing.assert_allclose(uncertainty.threshold_entropy([0.5, x], 0.2)[0],
                               uncertainty.threshold_entropy([0.5, x], 0.2)[1])
    with pytest.raises(ValueError, match="threshold"):
        uncertainty.threshold_entropy(p, 1.0)
