"""Every CAM formula checked against answers computed without the library.

(a) Tiny Keras models with fixed weights whose maps are worked out by hand below (2x2 feature
    maps, so the upsampling to the 2x2 input is the identity).
(b) The NumPy re-implementation from the papers in ``_cam_reference`` (no code shared with
    :mod:`pneumo_lib.cam`; Keras only gives activations and gradients) on real models: the
    paper CNN (target ``block5_conv``, 4x4 at 64 px, upsampled x16) and a flat MobileNetV2
    (``out_relu``, 2x2 at 64 px; for Score-CAM ``block_16_project``, 320 channels instead of
    1280), random weights. Tolerance: max abs difference 1e-4 on the normalised maps and 1e-4
    of the raw maximum on the raw ones (``normalize=False``), both after the same bilinear
    upsampling (half-pixel centres, implemented in the reference in NumPy and checked
    against ``tf.image.resize``).

What the library implements, so what is checked: Grad-CAM++ with the closed-form pixel
weights for an exponential score (Chattopadhay et al. 2018, eq. 19: first-order gradients
only, the factor exp(S) dropped); Score-CAM with ``w_k = p_c(x * M_k) - p_c(black image)``,
the increase of confidence of Wang et al. 2020 (eq. 4-5) with ``p_c`` the class probability
and no softmax across channels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import _cam_reference as ref
from _cam_models import flat_mobilenet_v2
from pneumo_lib import cam, decision, models
from pneumo_lib._tf import keras

# --------------------------------------------------------------------------- (a) by hand


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def gap_model():
    """x (2x2x1) -> 1x1 conv: A0 = 2x, A1 = 1 - x -> global average pooling -> logit = m0 - 2 m1.

    On X = [[1, 0], [0, 0.5]]: A0 = [[2, 0], [0, 1]], A1 = [[0, 1], [1, 0.5]], mean 0.75 and
    0.625, logit = 0.75 - 1.25 = -0.5, P(PNEUMONIA) = sigmoid(-0.5) = 0.3775.
    In general logit = 2 mean(x) - 2 (1 - mean(x)) = 4 mean(x) - 2.
    """
    inputs = keras.Input((2, 2, 1))
    conv = keras.layers.Conv2D(2, 1, name="features")
    x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    logits = keras.layers.Dense(1, name="logits")
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prediction")(logits(x)))
    conv.set_weights([np.array([[[[2.0, -1.0]]]], np.float32), np.array([0.0, 1.0], np.float32)])
    logits.set_weights([np.array([[1.0], [-2.0]], np.float32), np.zeros(1, np.float32)])
    return model


def flatten_model():
    """x (2x2x1) -> 1x1 conv: A = 4x (one channel) -> flatten -> logit = sum_ij v_ij A_ij,
    v = [[1, -1], [0.5, 2]], so dS/dA = v varies over the map (unlike under pooling)."""
    inputs = keras.Input((2, 2, 1))
    conv = keras.layers.Conv2D(1, 1, name="features")
    logits = keras.layers.Dense(1, name="logits")
    x = logits(keras.layers.Flatten()(conv(inputs)))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prediction")(x))
    conv.set_weights([np.full((1, 1, 1, 1), 4.0, np.float32), np.zeros(1, np.float32)])
    logits.set_weights([np.array([[1.0], [-1.0], [0.5], [2.0]], np.float32), np.zeros(1, np.float32)])
    return model


X = np.array([[1.0, 0.0], [0.0, 0.5]], np.float32).reshape(1, 2, 2, 1)
#: For the flatten model: A = 4 X2 = [[1, 2], [3, 0]], sum 6, logit = 1 - 2 + 1.5 + 0 = 0.5.
X2 = np.array([[0.25, 0.5], [0.75, 0.0]], np.float32).reshape(1, 2, 2, 1)


def test_grad_cam_by_hand():
    model = gap_model()
    # Class 1, S = logit: dS/dA0 = 1/4, dS/dA1 = -2/4 everywhere; weights = their means.
    # 0.25 A0 - 0.5 A1 = [[0.5, -0.5], [-0.5, 0]] -> ReLU [[0.5, 0], [0, 0]].
    np.testing.assert_allclose(cam.grad_cam(model, X, class_index=1, normalize=False)[0], [[0.5, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(cam.grad_cam(model, X, class_index=1)[0], [[1, 0], [0, 0]], atol=1e-6)
    # Class 0, S = -logit: -0.25 A0 + 0.5 A1 = [[-0.5, 0.5], [0.5, 0]] -> ReLU, / 0.5.
    np.testing.assert_allclose(cam.grad_cam(model, X, class_index=0, normalize=False)[0], [[0, 0.5], [0.5, 0]], atol=1e-6)
    np.testing.assert_allclose(cam.grad_cam(model, X, class_index=0)[0], [[0, 1], [1, 0]], atol=1e-6)
    # Flatten head: g = v, mean 0.625; 0.625 A = [[0.625, 1.25], [1.875, 0]].
    np.testing.assert_allclose(cam.grad_cam(flatten_model(), X2, class_index=1, normalize=False)[0],
                               [[0.625, 1.25], [1.875, 0]], atol=1e-6)


def test_grad_cam_plus_plus_by_hand():
    model = gap_model()
    # Class 1: g0 = 1/4, sum A0 = 3: alpha0 = (1/16) / (2/16 + 3/64) = 4/11, w0 = 4 * 4/11 * 1/4 = 4/11;
    # g1 = -1/2 < 0: ReLU(g1) = 0, so w1 = 0 whatever alpha1 (= 4/3). Map (4/11) A0 = [[8/11, 0], [0, 4/11]].
    np.testing.assert_allclose(cam.grad_cam_plus_plus(model, X, class_index=1, normalize=False)[0],
                               [[8 / 11, 0], [0, 4 / 11]], atol=1e-6)
    np.testing.assert_allclose(cam.grad_cam_plus_plus(model, X, class_index=1)[0], [[1, 0], [0, 0.5]], atol=1e-6)
    # Class 0: g0 = -1/4 -> w0 = 0; g1 = 1/2, sum A1 = 2.5: alpha1 = (1/4) / (1/2 + 2.5/8) = 4/13,
    # w1 = 4 * 4/13 * 1/2 = 8/13. Map (8/13) A1 = [[0, 8/13], [8/13, 4/13]].
    np.testing.assert_allclose(cam.grad_cam_plus_plus(model, X, class_index=0, normalize=False)[0],
                               [[0, 8 / 13], [8 / 13, 4 / 13]], atol=1e-6)
    # Flatten head, g = v, sum A = 6: alpha = g^2 / (2 g^2 + 6 g^3) = 1 / (2 + 6 g):
    # g = 1 -> 1/8, g = 0.5 -> 1/5, g = 2 -> 1/14 (g = -1 has ReLU(g) = 0).
    # w = 1/8 * 1 + 1/5 * 0.5 + 1/14 * 2 = 103/280; map = w A = w [[1, 2], [3, 0]].
    w = 103 / 280
    np.testing.assert_allclose(cam.grad_cam_plus_plus(flatten_model(), X2, class_index=1, normalize=False)[0],
                               [[w, 2 * w], [3 * w, 0]], atol=1e-6)


def test_score_cam_by_hand():
    model = gap_model()
    # Masks (min-max of A): M0 = [[1, 0], [0, 0.5]], M1 = [[0, 1], [1, 0.5]].
    # X M0 = [[1, 0], [0, 0.25]], mean 0.3125 -> logit 4 * 0.3125 - 2 = -0.75;
    # X M1 = [[0, 0], [0, 0.25]], mean 0.0625 -> logit -1.75; black image -> logit -2.
    w0 = _sigmoid(-0.75) - _sigmoid(-2.0)  # 0.20162
    w1 = _sigmoid(-1.75) - _sigmoid(-2.0)  # 0.02884
    # Map w0 A0 + w1 A1 = [[2 w0, w1], [w1, w0 + 0.5 w1]] (all positive).
    expected = np.array([[2 * w0, w1], [w1, w0 + 0.5 * w1]])
    np.testing.assert_allclose(cam.score_cam(model, X, class_index=1, normalize=False)[0], expected, atol=1e-6)
    np.testing.assert_allclose(cam.score_cam(model, X, class_index=1)[0], expected / (2 * w0), atol=1e-6)
    # Class 0: p0 = 1 - p1, so its weights are -w0, -w1: every pixel negative, the map empty.
    assert np.all(cam.score_cam(model, X, class_index=0) == 0.0)


def test_default_class_follows_the_threshold_by_hand():
    """P(PNEUMONIA) of X is sigmoid(-0.5) = 0.3775: NORMAL at 0.5, PNEUMONIA at 0.3."""
    model = gap_model()
    labels, probs = cam.predict(model, X)
    assert labels.tolist() == [0] and probs[0, 1] == pytest.approx(_sigmoid(-0.5), abs=1e-6)
    assert cam.predict(model, X, threshold=0.3)[0].tolist() == [1]
    np.testing.assert_allclose(cam.grad_cam(model, X)[0], [[0, 1], [1, 0]], atol=1e-6)  # NORMAL's map
    np.testing.assert_allclose(cam.grad_cam(model, X, threshold=0.3)[0], [[1, 0], [0, 0]], atol=1e-6)
    carded = decision.attach_threshold(gap_model(), {"evaluation": {"threshold": 0.3}})
    assert cam.predict(carded, X)[0].tolist() == [1]
    for explain in cam.METHODS.values():
        np.testing.assert_array_equal(explain(carded, X), explain(model, X, class_index=1))
        np.testing.assert_array_equal(explain(carded, X, threshold=0.5), explain(model, X, class_index=0))


# --------------------------------------------------------------------------- (b) the NumPy reference


@pytest.fixture(scope="module", params=["paper_cnn", "mobilenet_v2"])
def real(request):
    """(model, target layer, images): random weights, seeded, 64 px, two images."""
    if request.param == "paper_cnn":
        keras.utils.set_random_seed(1)
        model, layer = models.build_model("paper_cnn", 64, weights=None), "block5_conv"
    else:
        model, layer = flat_mobilenet_v2(64, seed=0), "out_relu"
    channels = model.inputs[0].shape[-1]
    images = np.random.default_rng(3).random((2, 64, 64, channels), dtype=np.float32)
    return model, layer, images


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "scorecam"])
def test_library_matches_the_reference_on_real_models(real, method):
    model, layer, images = real
    explain = cam.METHODS[method]
    classes_to_check = (0, 1)
    if method == "scorecam":  # one forward pass per channel and image: one image
        images = images[:1]
        if model.name == "flat_mobilenet_v2":  # 1280 channels at out_relu: a layer of 320, the predicted class
            layer, classes_to_check = "block_16_project", (int(cam.predict(model, images)[0][0]),)
    peaks = []
    for c in classes_to_check:
        classes = np.full(len(images), c)
        before_relu = ref.reference_raw(method, model, images, layer, classes)
        raw, expected = (ref.finish(before_relu, (64, 64), normalize) for normalize in (False, True))
        got_raw = explain(model, images, layer=layer, class_index=c, normalize=False)
        peaks.append(float(expected.max()))
        assert got_raw.shape == raw.shape == (len(images), 64, 64)
        scale = max(float(raw.max()), 1e-30)
        np.testing.assert_allclose(got_raw / scale, raw / scale, atol=1e-4)
        if method != "scorecam":  # (Score-CAM's normalised maps: checked by hand above; its passes are costly)
            np.testing.assert_allclose(explain(model, images, layer=layer, class_index=c), expected, atol=1e-4)
    assert max(peaks) > 0, "a map with something in it, or the test proves nothing"


def test_default_class_is_the_reference_rule_on_a_real_model(real):
    model, layer, images = real
    scores, _ = ref.scores_and_features(model, images, layer)
    p = ref.probabilities(scores)[:, 1]
    threshold = float(np.sort(p)[0] + np.ptp(p) / 2) if np.ptp(p) > 0 else 0.5  # splits the two images
    classes = (p >= threshold).astype(int)
    assert cam.predict(model, images, threshold=threshold)[0].tolist() == classes.tolist()
    np.testing.assert_allclose(cam.grad_cam(model, images, layer=layer, threshold=threshold),
                               ref.reference_maps("gradcam", model, images, layer, classes), atol=1e-4)


def test_reference_bilinear_is_tensorflows():
    """The reference's NumPy bilinear equals tf.image.resize (half-pixel centres) on random maps."""
    from pneumo_lib._tf import tf

    maps = np.random.default_rng(0).random((2, 3, 5)).astype(np.float32)
    for size in ((12, 20), (64, 64), (3, 5), (7, 4)):
        expected = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0].numpy()
        np.testing.assert_allclose(ref.bilinear(maps, size), expected, atol=1e-6)
