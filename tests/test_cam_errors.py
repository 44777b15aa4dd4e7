"""Bad input to the CAM functions: each a clear error naming what was wrong."""

from __future__ import annotations

import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from pneumo_lib import cam
from pneumo_lib._tf import keras


@pytest.fixture(scope="module")
def model():
    return detector_model("nested")


@pytest.fixture(scope="module")
def images():
    return disc_images(2)[0]


def test_dense_only_model_has_nothing_to_explain(images):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1.0)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x))
    dense_only = keras.Model(inputs, outputs, name="dense_only")
    with pytest.raises(ValueError, match="'dense_only' has no convolutional feature map"):
        cam.find_target_layer(dense_only)
    for explain in cam.METHODS.values():
        with pytest.raises(ValueError, match="no convolutional feature map"):
            explain(dense_only, images)


def test_unknown_layer_lists_the_candidates(model, images):
    with pytest.raises(ValueError, match=r"No layer named 'block5_conv3'.*backbone/detector"):
        cam.grad_cam(model, images, layer="block5_conv3")


def test_non_spatial_layer_is_refused(model, images):
    with pytest.raises(ValueError, match="'head' has output shape .* not a spatial feature map"):
        cam.score_cam(model, images, layer="head")


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "expects 1 channel"),
        (np.zeros((2, 48, 48, 1), np.float32), "expects images of size 32x32; got 48x48"),
        (np.zeros((32, 32, 1), np.float32), r"3-D array of shape \(32, 32, 1\).*images\[None\]"),
        (np.zeros((2, 32, 32), np.float32), r"3-D array of shape \(2, 32, 32\).*images\[\.\.\., None\]"),
        (np.zeros((2, 1, 32, 32, 1), np.float32), r"must have shape \(N, H, W, C\)"),
        (np.zeros((0, 32, 32, 1), np.float32), "empty batch"),
        (np.full((2, 32, 32, 1), np.nan, np.float32), "2048 NaN or infinite"),
        ("not an image", "numeric array"),
        (np.full((2, 32, 32, 1), 200, np.uint8), r"integer dtype uint8 .*values in \[0, 1\].*images / 255\.0"),
        (np.full((2, 32, 32, 1), 3, np.int64), "integer dtype int64"),
        (np.full((2, 32, 32, 1), 255.0, np.float32), r"values in \[0, 1\].*from 255 to 255.*divide by 255\.0"),
        (np.full((2, 32, 32, 1), -0.5, np.float32), r"values in \[0, 1\].*from -0\.5 to -0\.5"),
    ],
    ids=["channels", "size", "single-image", "gray-batch", "rank-5", "empty", "nan", "string",
         "uint8", "int64", "float-0-255", "negative"],
)
def test_bad_images(model, bad, message):
    for explain in cam.METHODS.values():
        with pytest.raises(ValueError, match=message):
            explain(model, bad)
    with pytest.raises(ValueError, match=message):
        cam.predict(model, bad)


@pytest.mark.parametrize("class_index", [2, -1, [0], [0, 1, 1], 0.5])
def test_bad_class_index(model, images, class_index):
    with pytest.raises(ValueError, match="class_index"):
        cam.grad_cam(model, images, class_index=class_index)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size(model, images, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cam.grad_cam_plus_plus(model, images, batch_size=batch_size)


def test_rounding_just_outside_the_range_is_accepted(model, images):
    """Resampling can overshoot 1 by a rounding error; that is not a 0-255 image."""
    nudged = np.clip(images, 0, 1) * (1 + 1e-6)
    np.testing.assert_allclose(cam.grad_cam(model, nudged), cam.grad_cam(model, images), atol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -1, "high"])
def test_bad_threshold(model, images, threshold):
    for explain in (*cam.METHODS.values(), cam.predict):
        with pytest.raises(ValueError, match="threshold"):
            explain(model, images, threshold=threshold)


def test_bad_max_channels(model, images):
    with pytest.raises(ValueError, match="max_channels"):
        cam.score_cam(model, images, max_channels=0)


def test_multi_output_model_is_refused(images):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    two = keras.Model(inputs, [keras.layers.Dense(1)(x), keras.layers.Dense(1)(x)], name="two_heads")
    with pytest.raises(ValueError, match="2 outputs"):
        cam.grad_cam(two, images)
