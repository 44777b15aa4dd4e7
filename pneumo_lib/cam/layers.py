"""Which layer to explain: every spatial layer of a model, the default target, a name resolved.

Layers of nested models are named by their path, ``"backbone/layer"``; wherever a layer is
asked for, its last part alone (``"block5_conv3"``) is accepted too when it is unambiguous.
"""

from __future__ import annotations

from pneumo_lib._tf import keras
from pneumo_lib.cam.cache import cached
from pneumo_lib.cam.tracing import LayerCall, model_input_shape, trace

#: Layer classes that compute convolutional features.
CONV_KINDS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
#: Layer classes whose 4-D output can be the automatically chosen target: convolutions,
#: activations and merges (pooling, dropout, normalisation and preprocessing are skipped).
FEATURE_KINDS = CONV_KINDS + (
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
    "Add", "Concatenate", "Multiply", "Average", "Maximum", "Subtract",
)


def layer_calls(model, input_shape=None) -> list[LayerCall]:
    """Every layer call of ``model`` in call order, nested models included (cached per model).

    Raises:
        ValueError: The model was never built, so its input shape is unknown.
    """
    shape = input_shape or model_input_shape(model)
    if shape is None:
        raise ValueError(
            f"Model {model.name!r} has never been built, so its input shape is unknown. "
            "Call it once on a batch (or pass images) first."
        )

    def build():
        records: list[LayerCall] = []
        trace(model, input_shape=shape, records=records)
        return records

    return cached(model, ("calls", tuple(shape)), build)


def spatial_layers(model: keras.Model) -> list[str]:
    """Names of every layer with a 4-D ``(N, h, w, c)`` output, in call order.

    Layers of nested models are listed as ``"backbone/layer"``. These are the names (or
    their last part) that the CAM functions accept as ``layer``.
    """
    return [c.name for c in layer_calls(model) if c.spatial]


def _auto_target(calls: list[LayerCall], model_name: str) -> LayerCall:
    seen_conv = False
    best = None
    for c in calls:
        seen_conv = seen_conv or c.kind in CONV_KINDS
        if seen_conv and c.spatial and not c.is_model and c.kind in FEATURE_KINDS:
            best = c
    if best is None:
        kinds = ", ".join(f"{c.name} ({c.kind})" for c in calls[:12])
        raise ValueError(
            f"Model {model_name!r} has no convolutional feature map to explain: the CAM methods "
            "need a layer with a spatial (N, h, w, c) output after a convolution. "
            f"Its layers: {kinds}."
        )
    return best


def target_call(model, layer: str | None = None, input_shape=None) -> LayerCall:
    """The :class:`LayerCall` of the layer to explain (``None``: the default target).

    Raises:
        ValueError: Unknown, ambiguous or non-spatial layer, or no convolutional layer at all.
    """
    calls = layer_calls(model, input_shape)
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


def resolve_layer(model: keras.Model, layer: str | None = None) -> str:
    """The full path (``"backbone/layer"`` or ``"layer"``) of the layer a CAM call explains.

    Args:
        model: A Keras image classifier.
        layer: A layer name or path as the CAM functions take it, or None (the default target).

    Raises:
        ValueError: As for the CAM functions' ``layer``.
    """
    return target_call(model, layer).name


def find_target_layer(model: keras.Model) -> str:
    """The layer the CAM methods explain by default, by name.

    The last spatial feature map that feeds the head: the last convolution, activation or
    merge layer with a 4-D output, searched inside nested models (pooling, dropout and
    normalisation layers are skipped). For the standard backbones this is ``block5_conv3``
    (VGG16), ``block5_conv4`` (VGG19), ``conv5_block3_out`` (ResNet50), ``out_relu``
    (MobileNetV2) and ``relu`` (DenseNet121). For a nested backbone the name inside the
    backbone is returned (:func:`resolve_layer` gives the full path).

    Raises:
        ValueError: The model has no convolutional feature map (for example a dense-only model).
    """
    return _auto_target(layer_calls(model), model.name).path[-1]
