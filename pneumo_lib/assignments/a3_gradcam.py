"""Assignment 3, Grad-CAM from scratch: checked against :func:`pneumo_lib.cam.grad_cam`.

The student writes ``my_grad_cam(model, images, layer_name, class_index)``. Each check
builds small models the student has never seen (random weights from a fixed seed, built
like the library's models: preprocessing, features, ``"logits"`` Dense, ``"prediction"``
activation) and compares the student's maps with the library's on the same images:

* q1: a plain CNN with a sigmoid head, explained for PNEUMONIA at an inner conv layer;
* q2: a frozen backbone nested inside the classifier (the case most public recipes get
  wrong in Keras 3), sigmoid head explained for NORMAL (the negated logit);
* q3: a softmax head, one class per call.
"""

from __future__ import annotations

import numpy as np

from pneumo_lib.assignments.core import ____, Assignment, Question, Wrong

__all__ = ["q1", "q2", "q3", "____", "ASSIGNMENT", "unseen_model", "unseen_images"]

ID = "a3_gradcam"
#: Largest mean absolute difference per map allowed against the library's map.
TOLERANCE = 0.08


def unseen_images(n: int = 6, size: int = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``(n, size, size, channels)`` float32 test images in ``[0, 1]``: noise and bright blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = 0.3 * rng.random((n, size, size, 1))
    for i in range(n):
        for _ in range(3):
            cx, cy, r = rng.random(), rng.random(), 0.08 + 0.15 * rng.random()
            images[i, ..., 0] += 0.6 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return np.clip(np.repeat(images, channels, axis=-1), 0, 1).astype(np.float32)


def unseen_model(kind: str, seed: int = 0):
    """A small random model: ``"plain"``, ``"nested"`` (backbone ``tinynet`` inside) or ``"softmax"``.

    Returns:
        ``(model, layer_name)``: the model and the layer the check explains.
    """
    from pneumo_lib._tf import keras

    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D
    if kind == "nested":
        b_in = keras.Input((32, 32, 3), name="tinynet_input")
        b = conv(8, 3, padding="same", activation="relu", name="block1_conv")(b_in)
        b = keras.layers.MaxPooling2D(2, name="block1_pool")(b)
        b = conv(16, 3, padding="same", activation="relu", name="block2_conv")(b)
        b = conv(16, 3, padding="same", activation="relu", name="block3_conv")(b)
        backbone = keras.Model(b_in, b, name="tinynet")
        backbone.trainable = False
        inputs = keras.Input((32, 32, 3), name="image")
        x = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocessing")(inputs)
        x = backbone(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(0.2, name="dropout")(x)
        x = keras.layers.Dense(1, name="logits")(x)
        outputs = keras.layers.Activation("sigmoid", name="prediction")(x)
        return keras.Model(inputs, outputs, name="nested_classifier"), "block2_conv"
    if kind not in ("plain", "softmax"):
        raise ValueError(f"Unknown model kind {kind!r}: plain, nested or softmax.")
    units, activation = (1, "sigmoid") if kind == "plain" else (2, "softmax")
    inputs = keras.Input((32, 32, 1), name="image")
    x = conv(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = conv(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = conv(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(units, name="logits")(x)
    outputs = keras.layers.Activation(activation, name="prediction")(x)
    return keras.Model(inputs, outputs, name=f"{kind}_cnn"), "conv2"


def _compare(my_grad_cam, kind: str, class_index: int, seed: int) -> None:
    from pneumo_lib import cam

    model, layer = unseen_model(kind, seed)
    images = unseen_images(channels=model.inputs[0].shape[-1], seed=seed)
    want = cam.grad_cam(model, images, layer=layer, class_index=class_index)
    raw = my_grad_cam(model, images, layer, class_index)
    try:
        got = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise Wrong(f"Return the maps as an array (N, H, W); got {type(raw).__name__}.") from None
    if got.shape != want.shape:
        raise Wrong(f"For {len(images)} images of {images.shape[1]}x{images.shape[2]} px the maps must have "
                    f"shape {want.shape}; got {got.shape}. Upsample each map to the input size.")
    if not np.isfinite(got).all() or got.min() < -1e-4 or got.max() > 1 + 1e-4:
        raise Wrong(f"Maps must lie in [0, 1] (ReLU, then divide by each map's maximum); yours span "
                    f"[{np.nanmin(got):.3g}, {np.nanmax(got):.3g}].")
    error = np.abs(got - want).mean(axis=(1, 2))
    if error.max() <= TOLERANCE:
        return
    what = f"On a {kind} model (layer {layer!r}, class_index={class_index})"
    other = cam.grad_cam(model, images, layer=layer, class_index=1 - class_index)
    if np.abs(got - other).mean(axis=(1, 2)).max() <= TOLERANCE:
        raise Wrong(f"{what} your maps explain the other class. With one sigmoid unit the NORMAL score "
                    "is the negated logit; with softmax take the pre-softmax score of class_index.")
    default = cam.grad_cam(model, images, class_index=class_index)
    if cam.find_target_layer(model) != layer and np.abs(got - default).mean(axis=(1, 2)).max() <= TOLERANCE:
        raise Wrong(f"{what} your maps come from another layer: explain the layer named layer_name.")
    raise Wrong(f"{what} your maps differ from Grad-CAM's by {error.max():.2f} on average "
                f"(at most {TOLERANCE} allowed).")


q1 = Question(
    ID, "q1", "Grad-CAM on a plain CNN", ["my_grad_cam"],
    lambda f: _compare(f, "plain", 1, seed=3), points=2,
    hint="Record the forward pass in a tf.GradientTape (watch the images), take the logit (the "
         "input of the 'prediction' layer) as the score, get d score / d features, average the "
         "gradients over height and width to weight the channels, sum, ReLU, resize, divide by the maximum.",
)
q2 = Question(
    ID, "q2", "nested backbone, explained for NORMAL", ["my_grad_cam"],
    lambda f: _compare(f, "nested", 0, seed=4), points=2,
    hint="keras.Model(outer.inputs, inner_layer.output) fails when the layer sits inside a nested "
         "backbone: run the model layer by layer instead (descending into any layer that is itself a "
         "keras.Model) and keep the target layer's output. For NORMAL with one sigmoid unit use -logit.",
)
q3 = Question(
    ID, "q3", "softmax head", ["my_grad_cam"],
    lambda f: (_compare(f, "softmax", 1, seed=5), _compare(f, "softmax", 0, seed=5)), points=1,
    hint="With two softmax units the score of class c is the pre-softmax logit c (stop before the "
         "'prediction' layer), not the probability.",
)

ASSIGNMENT = Assignment(
    ID, "Assignment 3: Grad-CAM from scratch", 60,
    ("compute class scores, gradients and channel weights with `tf.GradientTape`",
     "reach a layer inside a backbone nested in a Keras 3 classifier",
     "explain the NORMAL class of a single-sigmoid model through the negated logit"),
    (q1, q2, q3),
)
