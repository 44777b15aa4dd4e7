"""Grad-CAM differentiates the head only, with the same gradients as a full backward pass.

The gradient tape watches the target feature map (through the traced graph's tap), not the
images or the weights. These tests check that the compiled graph holds no backward pass
through the backbone and that the maps equal the textbook computation (a tape watching the
images and the weights), also for a target inside a residual block, where a skip connection
crosses the cut. They also check the benchmark's floor against the same reference.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from pneumo_lib import cam, models
from pneumo_lib._tf import keras, tf
from pneumo_lib.commands import bench_cam

SIZE = 64  # MobileNetV2's last feature maps are 2x2 (4x4 for block 13)
#: Backward-pass ops of convolutions: to their input, and to their weights.
_INPUT_GRADS = ("Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput")
_WEIGHT_GRADS = ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter")


@pytest.fixture(scope="module")
def mobilenet():
    # seeded: with some random weights a map is legitimately all zero, which proves nothing
    keras.utils.set_random_seed(0)
    return models.build_model("mobilenet_v2", SIZE, weights=None)


@pytest.fixture(scope="module")
def rgb_images():
    return np.random.default_rng(5).random((4, SIZE, SIZE, 3), dtype=np.float32)


def _compiled_op_counts(model, images, layer, combine, monkeypatch) -> collections.Counter:
    """Op types of the compiled Grad-CAM graph of ``model`` (the graph ``grad_cam`` runs)."""
    monkeypatch.setattr(cam, "_EAGER_CALLS", 0)
    cam._CACHE.clear()
    explain = cam.grad_cam if combine is cam._grad_cam_combine else cam.grad_cam_plus_plus
    explain(model, images, layer=layer)
    explainer = cam._explainer(model, layer, images.shape)
    graph = explainer._compiled_maps[combine].get_concrete_function().graph
    return collections.Counter(op.type for op in graph.get_operations())


def _textbook_maps(model, images, layer, combine) -> np.ndarray:
    """Grad-CAM maps with a tape that watches the images and the weights (the usual recipe)."""
    explainer = cam._explainer(model, layer, images.shape)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores, features = explainer.graph(x, training=False)
        target, _ = explainer.target_scores(scores, tf.fill([len(images)], -1))
    grads = tape.gradient(target, features)
    return cam._normalise(combine(features, grads), images.shape[1:3])


@pytest.mark.parametrize("combine", [cam._grad_cam_combine, cam._grad_cam_pp_combine], ids=["gradcam", "gradcampp"])
def test_compiled_graph_has_no_backward_pass_through_the_backbone(mobilenet, rgb_images, combine, monkeypatch):
    ops = _compiled_op_counts(mobilenet, rgb_images, None, combine, monkeypatch)
    assert ops["Conv2D"] > 30  # the whole forward pass is there
    assert sum(ops[k] for k in _WEIGHT_GRADS) == 0, "weights must not be differentiated"
    # the target (out_relu) comes after the last convolution: nothing to differentiate but the head
    assert sum(ops[k] for k in _INPUT_GRADS) == 0


def test_a_mid_backbone_target_differentiates_only_the_layers_after_it(mobilenet, rgb_images, monkeypatch):
    ops = _compiled_op_counts(mobilenet, rgb_images, "block_14_add", cam._grad_cam_combine, monkeypatch)
    # after block_14_add: blocks 15 and 16 (3 convolutions each) and Conv_1. TensorFlow's
    # convolution gradient also builds the weights' gradient of these 7 (unused, pruned when
    # the graph runs); none of the 45 convolutions before the target is differentiated.
    assert sum(ops[k] for k in _INPUT_GRADS) == 7
    assert sum(ops[k] for k in _WEIGHT_GRADS) <= 7


@pytest.mark.parametrize("layer", [None, "block_14_add", "block_13_expand_relu"])
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "compiled"])
def test_maps_equal_the_textbook_full_backward_pass(mobilenet, rgb_images, layer, eager, monkeypatch):
    """``block_14_add`` feeds block 15's skip connection, which crosses the cut."""
    monkeypatch.setattr(cam, "_EAGER_CALLS", 10**6 if eager else 0)
    cam._CACHE.clear()
    for explain, combine in ((cam.grad_cam, cam._grad_cam_combine), (cam.grad_cam_plus_plus, cam._grad_cam_pp_combine)):
        expected = _textbook_maps(mobilenet, rgb_images, layer, combine)
        assert expected.max() > 0  # a map with something in it, or the test proves nothing
        np.testing.assert_allclose(explain(mobilenet, rgb_images, layer=layer), expected, atol=1e-6)


def test_a_tape_around_the_call_is_left_as_it_was():
    """A caller's own tape (and the thread's tap state) survive a Grad-CAM call inside it."""
    model = detector_model("nested")
    images = disc_images(2, seed=1)[0]
    x = tf.constant(images)
    with tf.GradientTape() as outer:
        outer.watch(x)
        cam.grad_cam(model, images)
        y = tf.reduce_sum(x * x)
    assert getattr(cam._ACTIVE_TAPE, "tape", None) is None
    np.testing.assert_allclose(outer.gradient(y, x).numpy(), 2 * images, rtol=1e-6)


def test_bench_floor_is_the_forward_and_backward_pass_to_the_layer():
    model = detector_model("flat")
    images = disc_images(3, seed=2)[0]
    to_layer, to_input = bench_cam.floors(model, "detector", images)
    features, grads = to_layer(images)
    explainer = cam._explainer(model, "detector", images.shape)
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        scores, expected_features = explainer.graph(x, training=False)
        total = tf.reduce_sum(scores)
        output = tf.reduce_sum(model(x, training=False))
    np.testing.assert_allclose(features, expected_features.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grads, tape.gradient(total, expected_features).numpy(), rtol=1e-6)
    assert np.abs(grads).max() > 0
    np.testing.assert_allclose(to_input(images), tape.gradient(output, x).numpy(), rtol=1e-5, atol=1e-8)
