"""Grad-CAM, Grad-CAM++ and Score-CAM for any Keras 3 image classifier.

The three methods share one signature::

    heatmaps = grad_cam(model, images, layer=None, class_index=None, batch_size=32)

* ``images``: a batch already prepared for the model, ``(N, H, W, C)`` float32
  (for the models of this library: values in ``[0, 1]``, the right channel count).
* returns ``(N, H, W)`` float32 maps in ``[0, 1]`` at the input's resolution; a map that is
  zero everywhere comes back as zeros, never NaN.
* ``layer=None`` picks the target layer with :func:`find_target_layer`; a name may also
  refer to a layer inside a nested backbone (``"block5_conv3"`` or ``"vgg16/block5_conv3"``).
* ``class_index=None`` explains the predicted class; an int or one int per image explains
  that class. Single-sigmoid heads are explained through the logit (class 1) or the negated
  logit (class 0, NORMAL); softmax heads through the pre-softmax score of the class.

How it works on models where the usual recipes fail (a backbone nested inside a functional
classifier, a Sequential model loaded from disk): the model is re-traced layer by layer on
fresh symbolic inputs, descending into nested models, with the existing layers (and so the
existing weights) reused. The trace yields one graph ``images -> (feature map, class scores)``
in which the head's sigmoid/softmax is skipped. Grad-CAM and Grad-CAM++ then need one forward
pass per batch and a backward pass through the head only: the gradient tape watches the feature
map itself (not the images or the weights), so nothing upstream of the target layer is
differentiated; Score-CAM runs mini-batches of masked copies of each image
through the same graph. Traced graphs are cached per model; a graph runs eagerly for its first
16 batches and compiled with ``tf.function`` after that (tracing a large backbone costs
seconds, which a few small calls should not pay).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pneumo_lib._tf import keras, tf

__all__ = [
    "grad_cam",
    "grad_cam_plus_plus",
    "score_cam",
    "find_target_layer",
    "spatial_layers",
    "predict",
    "overlay",
    "METHODS",
]

#: Layer classes that compute convolutional features.
_CONV_KINDS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
#: Layer classes whose 4-D output can be the automatically chosen target: convolutions,
#: activations and merges (pooling, dropout, normalisation and preprocessing are skipped).
_FEATURE_KINDS = _CONV_KINDS + (
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
    "Add", "Concatenate", "Multiply", "Average", "Maximum", "Subtract",
)
_PROBABILITY_ACTIVATIONS = ("sigmoid", "softmax")


# --------------------------------------------------------------------------- tracing


@dataclass(frozen=True)
class _LayerCall:
    """One layer call seen while tracing: its path through nested models and output shape."""

    path: tuple[str, ...]
    kind: str
    shape: tuple[Any, ...]
    is_model: bool

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 4


def _model_input_shape(model: keras.Model) -> tuple[Any, ...] | None:
    """``(H, W, C)`` of the model's single image input (entries may be None), or None if unknown."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        if len(inputs) != 1:
            raise ValueError(
                f"Model {model.name!r} has {len(inputs)} inputs; the CAM methods explain "
                "single-input image classifiers."
            )
        return tuple(inputs[0].shape[1:])
    try:
        return tuple(model.input_shape[1:])
    except (AttributeError, ValueError):
        return None


def _output_layer(model: keras.Model) -> Any:
    """The layer whose call produces the model's (single) output."""
    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    outputs = model.outputs
    if len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(outputs)} outputs; the CAM methods explain "
            "single-output classifiers."
        )
    return outputs[0]._keras_history[0]


def _activation_name(layer: Any) -> str:
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", "")


class _WithoutActivation(keras.layers.Layer):
    """Calls a layer (say ``Dense(1, activation="sigmoid")``) with its activation skipped.

    The wrapped layer and its weights are shared, not copied.
    """

    def __init__(self, inner: keras.layers.Layer):
        super().__init__(name=f"{inner.name}_preactivation")
        self.inner = inner

    def call(self, *args, **kwargs):
        saved = self.inner.activation
        self.inner.activation = keras.activations.linear
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.inner.activation = saved


#: The gradient tape that :class:`_Tap` layers watch, per thread (None: plain forward pass).
_ACTIVE_TAPE = threading.local()


class _Tap(keras.layers.Layer):
    """Identity on the target feature map that makes the active gradient tape watch it.

    Grad-CAM needs ``d score / d features`` only. With the tape watching the feature map
    itself (and neither the images nor the weights), it records only the head after the
    target layer, so the backward pass stops there: eagerly it is no longer a full backward
    pass through the backbone, and a compiled graph has no backbone gradients to prune.
    """

    def call(self, inputs):
        tape = getattr(_ACTIVE_TAPE, "tape", None)
        if tape is not None:
            tape.watch(inputs)
        return inputs


def _trace(model, *, input_shape, target=(), preactivation=False, records=None, prefix=()):
    """Re-trace ``model`` on a fresh ``keras.Input``, layer by layer, into nested models.

    Args:
        model: A Sequential or functional Keras model.
        input_shape: ``(H, W, C)`` of the fresh input (entries may be None).
        target: Path of layer names to capture (``("vgg16", "block5_conv3")``), or ``()``.
            Its (first) output passes through a :class:`_Tap` before the layers that use it.
        preactivation: Skip the sigmoid/softmax of the layer producing the output.
        records: A list that receives one :class:`_LayerCall` per traced layer call.
        prefix: Path of the enclosing models (for the records).

    Returns:
        A functional model from the fresh input to ``[output]`` or ``[output, feature map]``.
    """
    captured: list[Any] = []
    head = _output_layer(model) if preactivation else None

    def call(layer, *args, **kwargs):
        name = layer.name
        inside = bool(target) and target[0] == name and len(target) > 1
        if isinstance(layer, keras.Model) and (inside or layer is head or records is not None):
            sub = _trace(
                layer,
                input_shape=tuple(args[0].shape[1:]),
                target=target[1:] if inside else (),
                preactivation=layer is head,
                records=records,
                prefix=(*prefix, name),
            )
            outs = sub(args[0])
            out = outs[0]
            if inside:
                captured.append(outs[1])
        elif layer is head and _activation_name(layer) in _PROBABILITY_ACTIVATIONS:
            if type(layer).__name__ in ("Activation", "Softmax"):
                out = args[0]
            else:
                out = _WithoutActivation(layer)(*args, **kwargs)
        else:
            out = layer(*args, **kwargs)
        if records is not None and hasattr(out, "shape"):
            records.append(
                _LayerCall((*prefix, name), type(layer).__name__, tuple(out.shape), isinstance(layer, keras.Model))
            )
        if target == (name,):
            if not captured:
                out = _Tap(name=f"{name}_tap")(out)
            captured.append(out)
        return out

    inputs = keras.Input(shape=input_shape)
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        output = x
    else:
        clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
        inputs, output = clone.inputs[0], clone.outputs[0]
    if target and not captured:
        raise ValueError(f"Layer {'/'.join(target)!r} is not on the path from the input to the output.")
    return keras.Model(inputs, [output, *captured[:1]])


# --------------------------------------------------------------------------- target layers

_CACHE: "OrderedDict[tuple, tuple[weakref.ref, Any]]" = OrderedDict()
_CACHE_SIZE = 8


def _cached(model, key, build):
    """Per-model memo (a small LRU keyed by the model's identity)."""
    full_key = (id(model), *key)
    hit = _CACHE.get(full_key)
    if hit is not None and hit[0]() is model:
        _CACHE.move_to_end(full_key)
        return hit[1]
    value = build()
    _CACHE[full_key] = (weakref.ref(model), value)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _layer_calls(model, input_shape=None) -> list[_LayerCall]:
    shape = input_shape or _model_input_shape(model)
    if shape is None:
        raise ValueError(
            f"Model {model.name!r} has never been built, so its input shape is unknown. "
            "Call it once on a batch (or pass images) first."
        )

    def build():
        records: list[_LayerCall] = []
        _trace(model, input_shape=shape, records=records)
        return records

    return _cached(model, ("calls", shape), build)


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of every layer with a 4-D ``(N, h, w, c)`` output, in call order.

    Layers of nested models are listed as ``"backbone/layer"``. These are the names (or
    their last part) that the CAM functions accept as ``layer``.
    """
    return [c.name for c in _layer_calls(model) if c.spatial]


def _auto_target(calls: list[_LayerCall], model_name: str) -> _LayerCall:
    seen_conv = False
    best = None
    for c in calls:
        seen_conv = seen_conv or c.kind in _CONV_KINDS
        if seen_conv and c.spatial and not c.is_model and c.kind in _FEATURE_KINDS:
            best = c
    if best is None:
        kinds = ", ".join(f"{c.name} ({c.kind})" for c in calls[:12])
        raise ValueError(
            f"Model {model_name!r} has no convolutional feature map to explain: the CAM methods "
            "need a layer with a spatial (N, h, w, c) output after a convolution. "
            f"Its layers: {kinds}."
        )
    return best


def _resolve_layer(model, layer: str | None, input_shape=None) -> _LayerCall:
    calls = _layer_calls(model, input_shape)
    if layer is None:
        return _auto_target(calls, model.name)
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be a layer name (str) or None, got {layer!r}.")
    matches = [c for c in calls if c.name == layer or c.path[-1] == layer]
    matches = list({c.name: c for c in matches}.values())
    candidates = [c.name for c in calls if c.spatial]
    if not matches:
        shown = candidates[-15:]
        more = f" (the last {len(shown)} of {len(candidates)})" if len(candidates) > len(shown) else ""
        raise ValueError(
            f"No layer named {layer!r} in model {model.name!r} or its nested models. "
            f"Spatial layers you can pass{more}: {', '.join(shown) or 'none'}."
        )
    if len(matches) > 1:
        raise ValueError(
            f"Layer name {layer!r} is ambiguous in model {model.name!r}: "
            f"{', '.join(c.name for c in matches)}. Pass the full path."
        )
    found = matches[0]
    if not found.spatial:
        raise ValueError(
            f"Layer {found.name!r} has output shape {found.shape}, not a spatial feature map "
            f"(N, h, w, c). Spatial layers: {', '.join(candidates[-15:]) or 'none'}."
        )
    return found


def find_target_layer(model: keras.Model) -> str:
    """The layer the CAM methods explain by default, by name.

    The last spatial feature map that feeds the head: the last convolution, activation or
    merge layer with a 4-D output, searched inside nested models (pooling, dropout and
    normalisation layers are skipped). For the standard backbones this is ``block5_conv3``
    (VGG16), ``block5_conv4`` (VGG19), ``conv5_block3_out`` (ResNet50), ``out_relu``
    (MobileNetV2) and ``relu`` (DenseNet121). For a nested backbone the name inside the
    backbone is returned.

    Raises:
        ValueError: The model has no convolutional feature map (for example a dense-only model).
    """
    return _auto_target(_layer_calls(model), model.name).path[-1]


# --------------------------------------------------------------------------- explainer


#: Calls a traced graph runs eagerly before it is compiled with ``tf.function``.
_EAGER_CALLS = 16


class _Explainer:
    """The traced graph ``images -> (scores, feature map)`` of one model and target layer."""

    def __init__(self, model, target: _LayerCall, input_shape):
        self.graph = _trace(model, input_shape=input_shape, target=target.path, preactivation=True)
        self.layer = target.name
        self.units = int(self.graph.outputs[0].shape[-1])
        self.n_classes = 2 if self.units == 1 else self.units
        images = tf.TensorSpec((None, *input_shape), tf.float32)
        self._signature = [images, tf.TensorSpec((None,), tf.int32)]
        self._compiled_maps: dict = {}
        self._compiled_forward = tf.function(self._forward, input_signature=[images])
        self._calls = 0

    def _compiled(self) -> bool:
        """Run eagerly for the first ``_EAGER_CALLS`` batches, compiled after.

        Tracing a large backbone costs seconds; a few small calls are cheaper eagerly, while
        repeated use (a test split, Score-CAM, the app, the benchmark) runs the compiled graph.
        """
        self._calls += 1
        return self._calls > _EAGER_CALLS

    def maps(self, combine, images, class_index):
        """Heatmaps ``(n, H, W)`` in ``[0, 1]`` of one batch: one forward and one backward pass,
        ``combine(features, gradients) -> (n, h, w)``, ReLU, upsampling and scaling in one graph."""

        def run(batch, classes):
            features, grads, _ = self._gradients(batch, classes)
            return _normalise_tensor(combine(features, grads), tf.shape(batch)[1:3])

        if not self._compiled():
            return run(images, class_index)
        if combine not in self._compiled_maps:
            self._compiled_maps[combine] = tf.function(run, input_signature=self._signature)
        return self._compiled_maps[combine](images, class_index)

    def forward(self, images):
        """``(pre-activation scores, features)`` for one batch."""
        run = self._compiled_forward if self._compiled() else self._forward
        return run(images)

    def _forward(self, images):
        scores, features = self.graph(images, training=False)
        return scores, features

    def target_scores(self, scores, class_index):
        """Per-image score of the explained class; ``class_index < 0`` means predicted."""
        if self.units == 1:
            predicted = tf.cast(scores[:, 0] >= 0, tf.int32)
        else:
            predicted = tf.cast(tf.argmax(scores, axis=-1), tf.int32)
        chosen = tf.where(class_index < 0, predicted, class_index)
        if self.units == 1:
            target = scores[:, 0] * tf.cast(2 * chosen - 1, scores.dtype)
        else:
            target = tf.gather(scores, chosen, axis=1, batch_dims=1)
        return target, chosen

    def _gradients(self, images, class_index):
        # The tape watches only the feature map (through the graph's _Tap): it records the
        # head after the target layer and nothing upstream of it.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            outer, _ACTIVE_TAPE.tape = getattr(_ACTIVE_TAPE, "tape", None), tape
            try:
                scores, features = self.graph(images, training=False)
            finally:
                _ACTIVE_TAPE.tape = outer
            target, chosen = self.target_scores(scores, class_index)
        grads = tape.gradient(target, features)
        if grads is None:  # the score does not depend on this layer
            grads = tf.zeros_like(features)
        return features, grads, chosen


def _explainer(model, layer, images_shape) -> _Explainer:
    input_shape = tuple(images_shape[1:])
    target = _resolve_layer(model, layer, input_shape)
    return _cached(model, ("explainer", target.path, input_shape), lambda: _Explainer(model, target, input_shape))


# --------------------------------------------------------------------------- input checks


def _check_images(model, images) -> np.ndarray:
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"images must be a numeric array (N, H, W, C); got {type(images).__name__}.") from err
    if array.ndim == 3:
        raise ValueError(
            f"images must be a batch (N, H, W, C); got a 3-D array of shape {array.shape}. "
            "For one image add a batch axis (images[None]); for gray images without a "
            "channel axis add one (images[..., None])."
        )
    if array.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError("images is an empty batch (N = 0): nothing to explain.")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"images contain {bad} NaN or infinite values; clean or re-load them first.")
    expected = _model_input_shape(model)
    if expected is not None:
        if len(expected) != 3:
            raise ValueError(f"Model {model.name!r} takes inputs of shape {expected}, not images (H, W, C).")
        got = array.shape[1:]
        if expected[2] is not None and expected[2] != got[2]:
            raise ValueError(
                f"Model {model.name!r} expects {expected[2]} channel(s); images have {got[2]} "
                f"(shape {array.shape})."
            )
        if any(e is not None and e != g for e, g in zip(expected[:2], got[:2])):
            raise ValueError(
                f"Model {model.name!r} expects images of size {expected[0]}x{expected[1]}; "
                f"got {got[0]}x{got[1]} (shape {array.shape}). Resize them first."
            )
    return array


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def _class_indices(class_index, n: int, n_classes: int) -> np.ndarray:
    """One class per image as int32; -1 means "the predicted class"."""
    if class_index is None:
        return np.full(n, -1, dtype=np.int32)
    values = np.asarray(class_index)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"class_index must be None, an int or {n} ints (one per image); got {class_index!r}.")
    if values.min() < 0 or values.max() >= n_classes:
        raise ValueError(
            f"class_index must lie in 0..{n_classes - 1} for this model ({n_classes} classes); got {class_index!r}."
        )
    return values.astype(np.int32)


def _normalise_tensor(maps, size):
    """ReLU, bilinear upsampling to ``size`` and division by each map's maximum (zeros stay zeros)."""
    maps = tf.nn.relu(tf.convert_to_tensor(maps, tf.float32))
    maps = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.clip_by_value(tf.math.divide_no_nan(maps, peak), 0.0, 1.0)


def _normalise(maps, size) -> np.ndarray:
    """:func:`_normalise_tensor` as a float32 NumPy array."""
    return _normalise_tensor(maps, size).numpy().astype(np.float32)


def _gradient_method(combine, model, images, layer, class_index, batch_size) -> np.ndarray:
    batch_size = _check_batch_size(batch_size)
    images = _check_images(model, images)
    explainer = _explainer(model, layer, images.shape)
    classes = _class_indices(class_index, len(images), explainer.n_classes)
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start : start + batch_size])
        out.append(explainer.maps(combine, batch, tf.constant(classes[start : start + batch_size])).numpy())
    return np.concatenate(out)


def _grad_cam_combine(features, grads):
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * features, axis=-1)


def _grad_cam_pp_combine(features, grads):
    g2, g3 = grads**2, grads**3
    total = tf.reduce_sum(features, axis=(1, 2), keepdims=True)
    denominator = 2.0 * g2 + total * g3
    alpha = tf.math.divide_no_nan(g2, denominator)
    weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * features, axis=-1)


def grad_cam(model, images, *, layer=None, class_index=None, batch_size=32) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): gradient-weighted class activation maps.

    Each channel of the target layer's feature map ``A_k`` is weighted by the spatial mean of
    the gradient of the class score with respect to it; the map is ``ReLU(sum_k w_k A_k)``,
    upsampled to the input size and divided by its maximum.

    Args:
        model: A Keras image classifier (single-sigmoid or softmax head), possibly with a
            nested backbone or loaded from disk.
        images: ``(N, H, W, C)`` float32 batch prepared for the model.
        layer: Target layer name (may be inside a nested model); None: :func:`find_target_layer`.
        class_index: None (the predicted class), an int, or one int per image.
        batch_size: Images per forward/backward pass.

    Returns:
        ``(N, H, W)`` float32 heatmaps in ``[0, 1]``.

    Raises:
        ValueError: Bad images (shape, channels, empty, NaN), unknown layer, no spatial layer,
            bad class index or batch size.
    """
    return _gradient_method(_grad_cam_combine, model, images, layer, class_index, batch_size)


def grad_cam_plus_plus(model, images, *, layer=None, class_index=None, batch_size=32) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weighted gradients.

    Channel weights are ``sum_ij alpha_ij ReLU(dS/dA_ij)`` with
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (the closed form for an exponential score),
    which lets several separate regions of one class share the map. Same arguments, result
    and errors as :func:`grad_cam`.
    """
    return _gradient_method(_grad_cam_pp_combine, model, images, layer, class_index, batch_size)


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K)`` from pre-activation scores (sigmoid for one unit)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[-1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1).astype(np.float32)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _forward_all(explainer: _Explainer, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activation scores ``(N, units)`` and target-layer features ``(N, h, w, K)``."""
    chunks = [explainer.forward(tf.constant(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return tuple(np.concatenate([c[j].numpy() for c in chunks]) for j in (0, 1))


def _scores(explainer: _Explainer, images: np.ndarray, batch_size: int) -> np.ndarray:
    return _forward_all(explainer, images, batch_size)[0]


def predict(model, images, *, batch_size=32) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and class probabilities, computed from the pre-activation scores.

    Args:
        model: As for :func:`grad_cam`.
        images: ``(N, H, W, C)`` float32 batch prepared for the model.

    Returns:
        ``labels`` ``(N,)`` int (for one sigmoid unit: 1 when the logit is >= 0) and
        ``probabilities`` ``(N, K)`` float32 in ``[0, 1]``, rows summing to 1 (``K = 2`` for a
        single sigmoid unit: ``[1 - p, p]``).

    Raises:
        ValueError: Bad images, or a model without a convolutional layer (this runs the same
            traced graph as the CAM methods).
    """
    batch_size = _check_batch_size(batch_size)
    images = _check_images(model, images)
    explainer = _explainer(model, None, images.shape)
    scores = _scores(explainer, images, batch_size)
    labels = (scores[:, 0] >= 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
    return labels, _probabilities(scores)


def score_cam(model, images, *, layer=None, class_index=None, batch_size=32, max_channels=None) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): channels weighted by how much they raise the class score.

    Every channel ``A_k`` of the target layer is upsampled and min-max scaled to a mask
    ``M_k`` in ``[0, 1]``; the weight of the channel is the class probability of the masked
    image ``x * M_k`` minus that of the all-zero baseline image. The map is
    ``ReLU(sum_k w_k A_k)``, upsampled and scaled like :func:`grad_cam`. Channels that are zero
    everywhere get weight 0 without a forward pass, and constant channels (mask of ones)
    share one pass. Costs one forward pass per channel and image, in mini-batches of
    ``batch_size`` masked images.

    Args:
        model, images, layer, class_index, batch_size: As for :func:`grad_cam`.
        max_channels: None (all channels, the method as published) or only the channels with
            the largest spatial variance per image (the "Faster Score-CAM" shortcut).

    Returns:
        ``(N, H, W)`` float32 heatmaps in ``[0, 1]``.
    """
    batch_size = _check_batch_size(batch_size)
    if max_channels is not None and (not isinstance(max_channels, (int, np.integer)) or max_channels < 1):
        raise ValueError(f"max_channels must be None or a positive integer, got {max_channels!r}.")
    images = _check_images(model, images)
    explainer = _explainer(model, layer, images.shape)
    classes = _class_indices(class_index, len(images), explainer.n_classes)
    size = images.shape[1:3]
    scores, features = _forward_all(explainer, np.concatenate([np.zeros_like(images[:1]), images]), batch_size)
    baseline, scores, features = _probabilities(scores[:1])[0], scores[1:], features[1:]
    classes = np.where(classes >= 0, classes, _predicted(scores))
    maps = []
    own = _probabilities(scores)
    for i, (image, feature, cls) in enumerate(zip(images, features, classes)):
        weights = _score_cam_weights(explainer, image, feature, cls, (baseline[cls], own[i, cls]), batch_size, max_channels)
        maps.append(np.tensordot(feature, weights, axes=([2], [0])))
    return _normalise(np.stack(maps), size)


def _predicted(scores: np.ndarray) -> np.ndarray:
    return (scores[:, 0] >= 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)


def _score_cam_weights(explainer, image, features, cls, reference, batch_size, max_channels) -> np.ndarray:
    """Score-CAM channel weights ``(K,)`` for one image ``(H, W, C)`` and its features ``(h, w, K)``.

    ``reference`` holds the class probability of the zero baseline and of the image itself.
    """
    baseline, own = reference
    n_channels = features.shape[-1]
    low, high = features.min(axis=(0, 1)), features.max(axis=(0, 1))
    weights = np.zeros(n_channels, dtype=np.float64)
    varying = np.flatnonzero(high > low)
    if max_channels is not None and len(varying) > max_channels:
        spread = features.reshape(-1, n_channels)[:, varying].var(axis=0)
        varying = varying[np.argsort(-spread)[:max_channels]]
    constant = np.flatnonzero((high == low) & (high > 0))
    weights[constant] = own - baseline  # a constant positive channel masks nothing
    size = image.shape[:2]
    for start in range(0, len(varying), batch_size):
        channels = varying[start : start + batch_size]
        chunk = (features[..., channels] - low[channels]) / (high[channels] - low[channels])
        masks = tf.image.resize(chunk[None], size, method="bilinear")[0].numpy()
        masked = np.moveaxis(masks, -1, 0)[..., None] * image[None]
        probs = _probabilities(explainer.forward(tf.constant(masked.astype(np.float32)))[0].numpy())
        weights[channels] = probs[:, cls] - baseline
    return weights.astype(np.float32)


#: The CAM methods by the names the command line and the chapters use.
METHODS = {"gradcam": grad_cam, "gradcampp": grad_cam_plus_plus, "scorecam": score_cam}


# --------------------------------------------------------------------------- overlay


def overlay(image, heatmap, alpha=0.4, cmap="jet") -> np.ndarray:
    """Blend a heatmap over an image.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` float in ``[0, 1]`` (or uint8 0..255).
        heatmap: ``(h, w)`` float in ``[0, 1]``; resized to ``(H, W)`` if it differs.
        alpha: Weight of the coloured heatmap, in ``[0, 1]``.
        cmap: A Matplotlib colormap name.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    import matplotlib

    image = np.asarray(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        pass
    elif image.ndim == 2:
        image = image[..., None]
    else:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got shape {image.shape}.")
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w); got shape {heat.shape}.")
    if not np.all(np.isfinite(heat)) or not np.all(np.isfinite(image.astype(np.float32))):
        raise ValueError("image and heatmap must not contain NaN or infinite values.")
    rgb = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
    if heat.shape != rgb.shape[:2]:
        heat = tf.image.resize(heat[None, ..., None], rgb.shape[:2], method="bilinear").numpy()[0, ..., 0]
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * np.clip(rgb, 0.0, 1.0) + alpha * colours
    return np.round(blended * 255.0).astype(np.uint8)
