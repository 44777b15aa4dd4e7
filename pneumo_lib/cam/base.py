"""What every CAM method shares: the class to explain, batching, normalisation, :func:`predict`.

:class:`Explainer` holds the traced graph ``images -> (pre-activation scores, feature map)``
of one model and target layer (cached per model, see :mod:`pneumo_lib.cam.cache`). A
gradient method (Grad-CAM, Grad-CAM++) is one function ``combine(features, gradients) ->
(n, h, w)`` run by :func:`gradient_method`: one forward pass per batch and a backward pass
through the head only. A graph runs eagerly for its first :data:`EAGER_CALLS` batches and
compiled with ``tf.function`` after that (tracing a large backbone costs seconds, which a
few small calls should not pay). Inputs are checked by :mod:`pneumo_lib.cam.checks`.

The class explained by default is the one the project's rule predicts
(:mod:`pneumo_lib.decision`): PNEUMONIA when P(PNEUMONIA) >= the model's threshold (its
card's validation threshold, else 0.5, or an explicit ``threshold=``). Heads with more
than two units are explained at their arg-max.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import numpy as np

from pneumo_lib import decision
from pneumo_lib._tf import keras, tf
from pneumo_lib.cam.cache import cached
from pneumo_lib.cam.checks import check_batch_size, check_images, class_indices
from pneumo_lib.cam.layers import target_call
from pneumo_lib.cam.tracing import model_input_shape, tapped, trace

#: Calls a traced graph runs eagerly before it is compiled with ``tf.function`` (see :func:`eager_calls`).
EAGER_CALLS = 16

# --------------------------------------------------------------------------- scores -> classes


def probabilities_from_scores(scores) -> tf.Tensor:
    """Class probabilities ``float64 (N, K)`` from pre-activation scores ``(N, units)``.

    One unit: ``[1 - sigmoid, sigmoid]``; several: softmax. Computed in float64 by the same
    TensorFlow ops inside the CAM graphs and in :func:`predict`, so both apply the rule to
    the same numbers.
    """
    scores = tf.cast(scores, tf.float64)
    if scores.shape[-1] == 1:
        p = tf.sigmoid(scores[:, 0])
        return tf.stack([1.0 - p, p], axis=1)
    return tf.nn.softmax(scores, axis=-1)


def rule_classes(probabilities, threshold) -> tf.Tensor:
    """The rule on ``(N, K)`` probabilities: ``int32 (N,)``, 1 where P(PNEUMONIA) >= threshold.

    For ``K > 2`` (not a NORMAL/PNEUMONIA head) the arg-max.
    """
    if probabilities.shape[-1] == 2:
        return tf.cast(probabilities[:, 1] >= tf.cast(threshold, tf.float64), tf.int32)
    return tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)


def predicted_classes(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`rule_classes` in NumPy: :func:`pneumo_lib.decision.predicted_labels` (the threshold
    rule for two classes, the arg-max for more). Returns ``int64 (N,)``."""
    return decision.predicted_labels(probabilities, threshold)


# --------------------------------------------------------------------------- normalisation


def relu_upsample(maps, size) -> tf.Tensor:
    """ReLU, then bilinear upsampling (``tf.image.resize``, half-pixel centres) to ``size``."""
    maps = tf.nn.relu(tf.convert_to_tensor(maps, tf.float32))
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def scale_to_max(maps) -> tf.Tensor:
    """Each map divided by its own maximum (all-zero maps stay zero), clipped to ``[0, 1]``."""
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.clip_by_value(tf.math.divide_no_nan(maps, peak), 0.0, 1.0)


def normalize_maps(maps, size) -> np.ndarray:
    """The CAM methods' last step on raw maps: ReLU, bilinear upsampling, division by the maximum.

    Args:
        maps: ``(N, h, w)`` raw maps (any real values).
        size: ``(H, W)`` to upsample to.

    Returns:
        ``float32 (N, H, W)`` in ``[0, 1]``, each map's maximum 1 (or all zeros).
    """
    return scale_to_max(relu_upsample(maps, size)).numpy().astype(np.float32)


# --------------------------------------------------------------------------- the traced graph


@contextlib.contextmanager
def eager_calls(n: int) -> Iterator[None]:
    """Within the block, traced graphs run compiled after their first ``n`` calls (0: always).

    For benchmarks and tests; not meant to be changed while other threads explain.
    """
    global EAGER_CALLS
    saved, EAGER_CALLS = EAGER_CALLS, int(n)
    try:
        yield
    finally:
        EAGER_CALLS = saved


class Explainer:
    """The traced graph ``images -> (scores, feature map)`` of one model and target layer."""

    def __init__(self, model, layer: str | None, input_shape):
        target = target_call(model, layer, input_shape)
        self.graph = trace(model, input_shape=input_shape, target=target.path, preactivation=True)
        self.layer = target.name
        self.units = int(self.graph.outputs[0].shape[-1])
        self.n_classes = 2 if self.units == 1 else self.units
        images = tf.TensorSpec((None, *input_shape), tf.float32)
        self._signature = [images, tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.float64)]
        self._compiled_maps: dict = {}
        self._compiled_forward = tf.function(self._forward, input_signature=[images])
        self._calls = 0
        self._lock = threading.Lock()

    def _compiled(self) -> bool:
        with self._lock:
            self._calls += 1
            return self._calls > EAGER_CALLS

    def maps(self, combine: Callable, images, class_index, threshold, normalize: bool = True):
        """Heatmaps ``(n, H, W)`` of one batch: one forward and one backward pass,
        ``combine(features, gradients) -> (n, h, w)``, ReLU, upsampling (and scaling) in one graph."""

        def run(batch, classes, cut):
            features, grads = self.gradients(batch, classes, cut)
            maps = relu_upsample(combine(features, grads), tf.shape(batch)[1:3])
            return scale_to_max(maps) if normalize else maps

        if not self._compiled():
            return run(images, class_index, threshold)
        key = (combine, normalize)
        with self._lock:
            if key not in self._compiled_maps:
                self._compiled_maps[key] = tf.function(run, input_signature=self._signature)
            compiled = self._compiled_maps[key]
        return compiled(images, class_index, threshold)

    def forward(self, images):
        """``(pre-activation scores, features)`` for one batch, both float32 (also for a
        ``mixed_float16`` model)."""
        run = self._compiled_forward if self._compiled() else self._forward
        return run(images)

    def _forward(self, images):
        scores, features = self.graph(images, training=False)
        return tf.cast(scores, tf.float32), tf.cast(features, tf.float32)

    def target_scores(self, scores, class_index, threshold):
        """Per-image score of the explained class; ``class_index < 0`` means the rule's class."""
        predicted = rule_classes(probabilities_from_scores(scores), threshold)
        chosen = tf.where(class_index < 0, predicted, class_index)
        if self.units == 1:
            return scores[:, 0] * tf.cast(2 * chosen - 1, scores.dtype)
        return tf.gather(scores, chosen, axis=1, batch_dims=1)

    def gradients(self, images, class_index, threshold):
        """``(features, d score / d features)`` of one batch, the tape watching the feature map only.

        Both ``float32 (n, h, w, K)`` whatever the model computes in: a ``mixed_float16``
        model's float16 feature map and gradients are cast up (the gradients themselves are
        float16-accurate, about 3 significant digits), so every method combines in float32.
        """
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            with tapped(tape):
                scores, features = self.graph(images, training=False)
            target = self.target_scores(tf.cast(scores, tf.float32), class_index, threshold)
        grads = tape.gradient(target, features)
        if grads is None:  # the score does not depend on this layer
            grads = tf.zeros_like(features)
        return tf.cast(features, tf.float32), tf.cast(grads, tf.float32)


def explainer(model, layer, images_shape) -> Explainer:
    """The cached :class:`Explainer` of ``model`` for ``layer`` and batches of ``images_shape``."""
    input_shape = tuple(images_shape[1:])
    path = target_call(model, layer, input_shape).path
    return cached(model, ("explainer", path, input_shape), lambda: Explainer(model, layer, input_shape))


def feature_model(model, layer: str | None = None, *, input_shape=None) -> keras.Model:
    """The traced graph: a Keras model ``images -> [pre-activation scores (N, units), feature map (N, h, w, k)]``.

    The same graph the CAM functions run (cached). ``input_shape`` ``(H, W, C)`` defaults to
    the model's.
    """
    shape = tuple(input_shape) if input_shape is not None else model_input_shape(model)
    return explainer(model, layer, (None, *shape)).graph


def forward_all(ex: Explainer, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activation scores ``(N, units)`` and target-layer features ``(N, h, w, K)``, in batches."""
    chunks = [ex.forward(tf.constant(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return tuple(np.concatenate([c[j].numpy() for c in chunks]) for j in (0, 1))


def gradient_method(combine, model, images, *, layer, class_index, threshold, batch_size, normalize) -> np.ndarray:
    """Run a gradient method (``combine(features, grads) -> (n, h, w)``) over ``images`` in batches."""
    batch_size = check_batch_size(batch_size)
    images = check_images(model, images)
    cut = tf.constant(decision.model_threshold(model, threshold), tf.float64)
    ex = explainer(model, layer, images.shape)
    classes = class_indices(class_index, len(images), ex.n_classes)
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start : start + batch_size])
        out.append(ex.maps(combine, batch, tf.constant(classes[start : start + batch_size]), cut, normalize).numpy())
    return np.concatenate(out).astype(np.float32)


def predict(model, images, *, threshold=None, batch_size=32) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class (the project's rule) and class probabilities, from the pre-activation scores.

    Args:
        model: As for :func:`pneumo_lib.cam.grad_cam`.
        images: ``(N, H, W, C)`` float32 batch prepared for the model, values in ``[0, 1]``.
        threshold: None (the model's threshold, :func:`pneumo_lib.decision.model_threshold`)
            or a probability in (0, 1).
        batch_size: Images per forward pass.

    Returns:
        ``labels`` ``int64 (N,)``: 1 (PNEUMONIA) where P(PNEUMONIA) >= threshold, else 0 (for
        heads of more than two units, the arg-max), and ``probabilities`` ``float32 (N, K)``
        in ``[0, 1]``, rows summing to 1 (``K = 2`` for one sigmoid unit: ``[1 - p, p]``).

    Raises:
        ValueError: Bad images or threshold, or a model without a convolutional layer (this
            runs the same traced graph as the CAM methods).
    """
    batch_size = check_batch_size(batch_size)
    cut = decision.model_threshold(model, threshold)
    images = check_images(model, images)
    scores = forward_all(explainer(model, None, images.shape), images, batch_size)[0]
    probabilities = probabilities_from_scores(scores).numpy()
    return predicted_classes(probabilities, cut), probabilities.astype(np.float32)
