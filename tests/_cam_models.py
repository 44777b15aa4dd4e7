"""Known-answer models and images for the CAM and faithfulness tests.

The "bright-blob detector" has fixed weights, so its correct maps are known by construction:

* ``detector`` (3x3 convolution, ReLU): channel 0 = ``relu(mean3x3(x) - 0.5)`` fires on
  bright pixels, channel 1 = ``relu(0.5 - mean3x3(x))`` on dark ones;
* global average pooling, then a head whose logit is ``100 * bright - 2 * dark``.

So on a black image with one white disc the PNEUMONIA (class 1) map must peak on the disc,
and the NORMAL (class 0) map, which follows the negated logit, must be zero on the disc and
positive on the dark background. A disc image is predicted as class 1, a black image as 0.
"""

from __future__ import annotations

import numpy as np

from pneumo_lib._tf import keras

SIZE = 32
RADIUS = 4
#: Head weights: rows = (bright, dark) channel, columns = classes.
SIGMOID_KERNEL = np.array([[100.0], [-2.0]], dtype=np.float32)
SOFTMAX_KERNEL = np.array([[-50.0, 50.0], [1.0, -1.0]], dtype=np.float32)


def _detector_weights() -> list[np.ndarray]:
    kernel = np.zeros((3, 3, 1, 2), dtype=np.float32)
    kernel[..., 0], kernel[..., 1] = 1.0 / 9.0, -1.0 / 9.0
    return [kernel, np.array([-0.5, 0.5], dtype=np.float32)]


def _head(head: str, scale: float = 1.0, separate_activation: bool = False) -> list:
    units = 1 if head == "sigmoid" else 2
    if separate_activation:
        return [keras.layers.Dense(units, name="head"), keras.layers.Activation(head, name="head_activation")]
    return [keras.layers.Dense(units, activation=head, name="head")]


def _set_known_weights(model, head: str, scale: float) -> None:
    conv = _find(model, "detector")
    conv.set_weights(_detector_weights())
    kernel = SIGMOID_KERNEL if head == "sigmoid" else SOFTMAX_KERNEL
    _find(model, "head").set_weights([kernel * scale, np.zeros(kernel.shape[1], dtype=np.float32)])


def _find(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return _find(layer, name)
            except KeyError:
                pass
    raise KeyError(name)


def detector_model(kind: str = "flat", head: str = "sigmoid", *, scale: float = 1.0, separate_activation: bool = False, size: int = SIZE):
    """The bright-blob detector as a ``"flat"`` functional model, with a ``"nested"`` backbone,
    or as a ``"sequential"`` model (``head`` ``"sigmoid"`` or ``"softmax"``; ``scale``
    multiplies the head's weights, e.g. to saturate the sigmoid)."""
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="detector")
    head_layers = _head(head, scale, separate_activation)
    if kind == "sequential":
        model = keras.Sequential(
            [keras.Input((size, size, 1)), conv, keras.layers.GlobalAveragePooling2D(name="pool"), *head_layers],
            name="sequential_detector",
        )
    else:
        inputs = keras.Input((size, size, 1), name="image")
        if kind == "nested":
            inner = keras.Input((None, None, 1))
            backbone = keras.Model(inner, conv(inner), name="backbone")
            x = backbone(keras.layers.Rescaling(1.0, name="preprocess")(inputs))
        elif kind == "flat":
            x = conv(inputs)
        else:
            raise ValueError(kind)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        for layer in head_layers:
            x = layer(x)
        model = keras.Model(inputs, x, name=f"{kind}_detector")
    _set_known_weights(model, head, scale)
    return model


def disc_images(n: int, *, size: int = SIZE, radius: int = RADIUS, seed: int = 0):
    """``n`` black images ``(n, size, size, 1)`` with one white disc each, the disc masks
    ``(n, size, size)`` and the centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.integers(radius + 2, size - radius - 2, size=(n, 2))
    masks = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2 for cy, cx in centres])
    return masks[..., None].astype(np.float32), masks, [tuple(c) for c in centres]


def flat_mobilenet_v2(size: int = 64, seed: int = 0):
    """MobileNetV2 (``weights=None``, seeded) as a *flat* functional classifier with a
    ``logits`` -> sigmoid head, so that its layers are reachable by ``model.get_layer``
    (what the independent reference in ``_cam_reference`` needs). Target layer: ``out_relu``."""
    keras.utils.set_random_seed(seed)
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    logits = keras.layers.Dense(1, name="logits")(x)
    return keras.Model(backbone.input, keras.layers.Activation("sigmoid", name="prediction")(logits),
                       name="flat_mobilenet_v2")


def known_logit_model(weight: float = 10.0, bias: float = -5.0, size: int = 8):
    """``(N, size, size, 1)`` gray -> 1x1 identity convolution, average pooling, one sigmoid unit.

    On a uniform image of gray ``g`` the logit (layer ``"logits"``) is ``weight * g + bias``
    exactly: with the defaults, gray 0.5 gives logit 0 (P = 0.5) and gray 0.9 logit 4 (P = 0.982).
    """
    inputs = keras.Input((size, size, 1), name="image")
    conv = keras.layers.Conv2D(1, 1, name="conv")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(conv(inputs))
    dense = keras.layers.Dense(1, name="logits")
    out = keras.layers.Activation("sigmoid", name="prediction")(dense(x))
    model = keras.Model(inputs, out, name="known_logit")
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    dense.set_weights([np.full((1, 1), weight, np.float32), np.full(1, bias, np.float32)])
    return model
