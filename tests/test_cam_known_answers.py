"""CAM methods on models whose correct maps are known by construction (see _cam_models)."""

from __future__ import annotations

import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from pneumo_lib import cam
from pneumo_lib.cam import base
from pneumo_lib._tf import keras, tf

KINDS = ("flat", "nested", "sequential")
HEADS = ("sigmoid", "softmax")


@pytest.fixture(scope="module")
def discs():
    return disc_images(5, seed=3)


@pytest.fixture(scope="module", params=[(k, h) for k in KINDS for h in HEADS], ids=lambda p: f"{p[0]}-{p[1]}")
def model(request, tmp_path_factory):
    kind, head = request.param
    built = detector_model(kind, head)
    if kind != "sequential":
        return built
    path = tmp_path_factory.mktemp("saved") / "detector.keras"
    built.save(path)
    return keras.models.load_model(path)


def test_target_layer_is_the_detector_even_inside_a_nested_backbone(model):
    assert cam.find_target_layer(model) == "detector"


def test_discs_are_predicted_pneumonia_and_black_images_normal(model, discs):
    images, _, _ = discs
    labels, probs = cam.predict(model, np.concatenate([images, np.zeros_like(images[:2])]))
    assert labels.tolist() == [1] * 5 + [0, 0]
    assert probs.shape == (7, 2) and np.allclose(probs.sum(axis=1), 1.0)


@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_pneumonia_map_peaks_on_the_disc_and_normal_map_avoids_it(model, discs, method):
    images, masks, centres = discs
    explain = cam.METHODS[method]
    positive = explain(model, images, class_index=1)
    negative = explain(model, images, class_index=0)
    for maps in (positive, negative):
        assert maps.shape == (5, 32, 32) and maps.dtype == np.float32
        assert np.all(np.isfinite(maps)) and maps.min() >= 0.0 and maps.max() <= 1.0
    for i, (cy, cx) in enumerate(centres):
        peak = np.unravel_index(positive[i].argmax(), positive[i].shape)
        assert masks[i][peak], f"{method}: PNEUMONIA peak {peak} is off the disc at {(cy, cx)}"
        assert positive[i][cy, cx] == pytest.approx(1.0, abs=0.05)
        assert negative[i][cy, cx] == pytest.approx(0.0, abs=1e-6)
        # NORMAL evidence is the dark background: either the map lies there or it is all zero
        assert negative[i][masks[i]].sum() <= 0.05 * max(negative[i].sum(), 1e-12)


@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_default_class_is_the_predicted_one_per_image(model, discs, method):
    images, _, _ = discs
    batch = np.concatenate([images[:2], np.zeros_like(images[:1]), images[2:3]])
    explain = cam.METHODS[method]
    labels, _ = cam.predict(model, batch)
    assert np.array_equal(explain(model, batch), explain(model, batch, class_index=labels))


def test_methods_agree_across_model_kinds(discs):
    images, _, _ = discs
    reference = {m: f(detector_model("flat"), images, class_index=1) for m, f in cam.METHODS.items()}
    for kind in ("nested", "sequential"):
        other = detector_model(kind)
        for name, explain in cam.METHODS.items():
            np.testing.assert_allclose(explain(other, images, class_index=1), reference[name], atol=1e-5)


def test_library_call_equals_the_step_by_step_chapter_computation(discs):
    """The chapter's recipe: features, gradient of the logit, channel means, weighted sum."""
    images, _, _ = discs
    model = detector_model("flat")
    features_of = keras.Model(model.inputs, model.get_layer("detector").output)
    kernel, bias = model.get_layer("head").get_weights()
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        features = features_of(x)
        tape.watch(features)
        logit = tf.reduce_mean(features, axis=(1, 2)) @ kernel + bias
        normal_score = -logit[:, 0]
    grads = tape.gradient(normal_score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    raw = tf.nn.relu(tf.einsum("nhwk,nk->nhw", features, weights))
    up = tf.image.resize(raw[..., None], (32, 32))[..., 0].numpy()
    expected = up / up.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(cam.grad_cam(model, images, class_index=0), expected, atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_saturated_heads_are_explained_through_the_pre_activation_score(discs, head):
    """Weights x1000 saturate the sigmoid/softmax (its gradient underflows to 0); the
    maps through the logit must be unchanged."""
    images, _, _ = discs
    normal, saturated = detector_model("flat", head), detector_model("flat", head, scale=1000.0)
    assert np.all(cam.predict(saturated, images)[1][:, 1] == 1.0)
    for explain in (cam.grad_cam, cam.grad_cam_plus_plus):
        np.testing.assert_allclose(explain(saturated, images, class_index=1), explain(normal, images, class_index=1), atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_separate_activation_layer_gives_the_same_maps(discs, head):
    images, _, _ = discs
    fused, separate = detector_model("nested", head), detector_model("nested", head, separate_activation=True)
    for name, explain in cam.METHODS.items():
        for c in (0, 1):
            np.testing.assert_allclose(explain(separate, images, class_index=c), explain(fused, images, class_index=c), atol=1e-5)


def test_a_map_without_evidence_is_zeros_not_nan():
    model = detector_model("flat")
    black = np.zeros((2, 32, 32, 1), dtype=np.float32)
    for explain in cam.METHODS.values():
        maps = explain(model, black, class_index=1)
        assert np.all(maps == 0.0)


def test_batch_size_does_not_change_the_maps(discs):
    images, _, _ = discs
    model = detector_model("nested", "softmax")
    for explain in cam.METHODS.values():
        np.testing.assert_allclose(explain(model, images, batch_size=2), explain(model, images, batch_size=32), atol=1e-6)


def test_compiled_calls_give_the_eager_maps(discs):
    """The first calls on a model run eagerly, later ones compiled: same maps."""
    images, _, _ = discs
    model = detector_model("nested", "softmax")
    first = {name: explain(model, images) for name, explain in cam.METHODS.items()}
    for _ in range(base.EAGER_CALLS):
        cam.grad_cam(model, images[:1])
    for name, explain in cam.METHODS.items():
        np.testing.assert_allclose(explain(model, images), first[name], atol=1e-5)


def test_user_given_layer_inside_the_backbone_by_name_or_path(discs):
    images, _, _ = discs
    model = detector_model("nested")
    by_name = cam.grad_cam(model, images, layer="detector")
    by_path = cam.grad_cam(model, images, layer="backbone/detector")
    np.testing.assert_array_equal(by_name, by_path)
    np.testing.assert_array_equal(by_name, cam.grad_cam(model, images))
    assert cam.spatial_layers(model) == ["preprocess", "backbone/detector", "backbone"]


def test_overlay_is_rgb_uint8_and_blends_by_alpha():
    image = np.full((8, 8, 1), 0.5, dtype=np.float32)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    out = cam.overlay(image, heat, alpha=0.0)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.all(out == 128)
    full = cam.overlay(image[..., 0], np.ones((8, 8)), alpha=1.0, cmap="gray")
    assert np.all(full == 255)
    with pytest.raises(ValueError, match="alpha"):
        cam.overlay(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match="heatmap must be 2-D"):
        cam.overlay(image, heat[None])
