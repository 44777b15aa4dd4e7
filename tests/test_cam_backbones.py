"""Every CAM method on every backbone family (random weights, small inputs), batch sizes 1 and 5.

The backbones are nested inside a functional classifier, as transfer-learning models are
built, which is where the usual Keras recipes fail. Score-CAM runs on the 4 most varied
channels per image here (``max_channels``) to keep the suite fast; the full method is
checked on the known-answer models.
"""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import cam
from pneumo_lib._tf import keras

APPS = keras.applications
FAMILIES = {
    "vgg16": (APPS.VGG16, "block5_conv3"),
    "vgg19": (APPS.VGG19, "block5_conv4"),
    "resnet50": (APPS.ResNet50, "conv5_block3_out"),
    "mobilenetv2": (APPS.MobileNetV2, "out_relu"),
    "densenet121": (APPS.DenseNet121, "relu"),
}
SIZES = (32, 64)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    build, layer = FAMILIES[request.param]
    backbone = build(weights=None, include_top=False, input_shape=(None, None, 3))
    backbone.trainable = False
    classifiers = {}
    for size in SIZES:
        inputs = keras.Input((size, size, 3))
        x = backbone(keras.layers.Rescaling(2.0, offset=-1.0)(inputs))
        outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
        classifiers[size] = keras.Model(inputs, outputs)
    return request.param, layer, classifiers


def test_standard_target_layer_is_found_inside_the_nested_backbone(family):
    name, layer, classifiers = family
    assert cam.find_target_layer(classifiers[SIZES[0]]) == layer
    assert f"{classifiers[SIZES[0]].layers[2].name}/{layer}" in cam.spatial_layers(classifiers[SIZES[0]])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_every_method_batch_1_and_5(family, size, method):
    name, _, classifiers = family
    model = classifiers[size]
    images = np.random.default_rng(size).random((5, size, size, 3), dtype=np.float32)
    kwargs = {"max_channels": 4} if method == "scorecam" else {}
    explain = cam.METHODS[method]
    five = explain(model, images, **kwargs)
    one = explain(model, images[:1], **kwargs)
    assert five.shape == (5, size, size) and one.shape == (1, size, size)
    assert five.dtype == np.float32 and np.all(np.isfinite(five))
    assert five.min() >= 0.0 and five.max() <= 1.0
    assert all(m.max() in (0.0, 1.0) for m in five), "each map is scaled to a maximum of 1 (or all zero)"
    np.testing.assert_allclose(one[0], five[0], atol=1e-4)
