"""Grad-CAM differentiates the head only, with the same gradients as a full backward pass.

The gradient tape watches the target feature map (through the traced graph's tap), not the
images or the weights. These tests check that the compiled graph holds no backward pass
through the backbone and that the maps equal the independent reference of ``_cam_reference``
(a plain tape over the straightforward sub-model, the formulas in NumPy), also for a target
inside a residual block, where a skip connection crosses the cut. They also check the
benchmark's floor against a plain tape.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import _cam_reference as ref
from _cam_models import detector_model, disc_images, flat_mobilenet_v2
from pneumo_lib import cam, models
from pneumo_lib._tf import keras, tf
from pneumo_lib.cam import base, tracing
from pneumo_lib.cam.grad_cam import combine as grad_cam_combine
from pneumo_lib.cam.grad_cam_plus_plus import combine as grad_cam_pp_combine
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


def _compiled_op_counts(model, images, layer, combine) -> collections.Counter:
    """Op types of the compiled Grad-CAM graph of ``model`` (the graph ``grad_cam`` runs)."""
    cam.clear_cache()
    explain = cam.grad_cam if combine is grad_cam_combine else cam.grad_cam_plus_plus
    with cam.eager_calls(0):
        explain(model, images, layer=layer)
    explainer = base.explainer(model, layer, images.shape)
    graph = explainer._compiled_maps[(combine, True)].get_concrete_function().graph
    return collections.Counter(op.type for op in graph.get_operations())


@pytest.mark.parametrize("combine", [grad_cam_combine, grad_cam_pp_combine], ids=["gradcam", "gradcampp"])
def test_compiled_graph_has_no_backward_pass_through_the_backbone(mobilenet, rgb_images, combine):
    ops = _compiled_op_counts(mobilenet, rgb_images, None, combine)
    assert ops["Conv2D"] > 30  # the whole forward pass is there
    assert sum(ops[k] for k in _WEIGHT_GRADS) == 0, "weights must not be differentiated"
    # the target (out_relu) comes after the last convolution: nothing to differentiate but the head
    assert sum(ops[k] for k in _INPUT_GRADS) == 0


def test_a_mid_backbone_target_differentiates_only_the_layers_after_it(mobilenet, rgb_images):
    ops = _compiled_op_counts(mobilenet, rgb_images, "block_14_add", grad_cam_combine)
    # after block_14_add: blocks 15 and 16 (3 convolutions each) and Conv_1. TensorFlow's
    # convolution gradient also builds the weights' gradient of these 7 (unused, pruned when
    # the graph runs); none of the 45 convolutions before the target is differentiated.
    assert sum(ops[k] for k in _INPUT_GRADS) == 7
    assert sum(ops[k] for k in _WEIGHT_GRADS) <= 7


@pytest.fixture(scope="module")
def flat_mobilenet():
    return flat_mobilenet_v2(SIZE, seed=0)


@pytest.mark.parametrize("layer", ["out_relu", "block_14_add", "block_13_expand_relu"])
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "compiled"])
def test_maps_equal_the_independent_reference(flat_mobilenet, rgb_images, layer, eager):
    """``block_14_add`` feeds block 15's skip connection, which crosses the cut."""
    classes = ref.probabilities(ref.scores_and_features(flat_mobilenet, rgb_images, layer)[0])[:, 1] >= 0.5
    with cam.eager_calls(10**6 if eager else 0):
        for method, explain in (("gradcam", cam.grad_cam), ("gradcampp", cam.grad_cam_plus_plus)):
            expected = ref.reference_maps(method, flat_mobilenet, rgb_images, layer, classes.astype(int))
            assert expected.max() > 0  # a map with something in it, or the test proves nothing
            np.testing.assert_allclose(explain(flat_mobilenet, rgb_images, layer=layer), expected, atol=1e-4)


def test_a_tape_around_the_call_is_left_as_it_was():
    """A caller's own tape (and the thread's tap state) survive a Grad-CAM call inside it."""
    model = detector_model("nested")
    images = disc_images(2, seed=1)[0]
    x = tf.constant(images)
    with tf.GradientTape() as outer:
        outer.watch(x)
        cam.grad_cam(model, images)
        y = tf.reduce_sum(x * x)
    assert tracing.active_tape() is None
    np.testing.assert_allclose(outer.gradient(y, x).numpy(), 2 * images, rtol=1e-6)


def test_bench_floor_is_the_forward_and_backward_pass_to_the_layer():
    model = detector_model("flat")
    images = disc_images(3, seed=2)[0]
    to_layer, to_input = bench_cam.floors(model, "detector", images)
    features, grads = to_layer(images)
    graph = cam.feature_model(model, "detector")
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        scores, expected_features = graph(x, training=False)
        total = tf.reduce_sum(scores)
        output = tf.reduce_sum(model(x, training=False))
    np.testing.assert_allclose(features, expected_features.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grads, tape.gradient(total, expected_features).numpy(), rtol=1e-6)
    assert np.abs(grads).max() > 0
    np.testing.assert_allclose(to_input(images), tape.gradient(output, x).numpy(), rtol=1e-5, atol=1e-8)
