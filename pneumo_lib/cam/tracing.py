"""Re-tracing a Keras model into one graph ``images -> (pre-activation scores, feature map)``.

Where the usual recipes fail (a backbone nested inside a functional classifier, a Sequential
model loaded from disk), the model is re-traced layer by layer on a fresh symbolic input,
descending into nested models, with the existing layers (and so the existing weights)
reused. In the traced graph the head's sigmoid/softmax is skipped, and the target feature
map passes through a :class:`Tap` that lets a gradient tape watch it.

Nothing here mutates the model: the head's activation is skipped by calling the layer's own
``call`` on a read-only view whose ``activation`` is linear (:class:`WithoutActivation`), so
several threads may explain, or simply run, one shared model at the same time.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from pneumo_lib._tf import keras

#: Activations of an output layer that the CAM methods skip (they explain the score before it).
PROBABILITY_ACTIVATIONS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class LayerCall:
    """One layer call seen while tracing: its path through nested models and output shape."""

    path: tuple[str, ...]
    kind: str
    shape: tuple[Any, ...]
    is_model: bool

    @property
    def name(self) -> str:
        """``"backbone/layer"`` path (just ``"layer"`` at the top level)."""
        return "/".join(self.path)

    @property
    def spatial(self) -> bool:
        """True for a 4-D ``(N, h, w, c)`` output."""
        return len(self.shape) == 4


def model_input_shape(model: keras.Model) -> tuple[Any, ...] | None:
    """``(H, W, C)`` of the model's single image input (entries may be None), or None if unknown.

    Raises:
        ValueError: The model has several inputs.
    """
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


def output_layer(model: keras.Model) -> Any:
    """The layer whose call produces the model's (single) output.

    Raises:
        ValueError: The model has several outputs.
    """
    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    outputs = model.outputs
    if len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(outputs)} outputs; the CAM methods explain "
            "single-output classifiers."
        )
    return outputs[0]._keras_history[0]


def activation_name(layer: Any) -> str:
    """``"sigmoid"``, ``"softmax"``, ... of a layer (``""`` when it has none)."""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", "")


class _LinearView:
    """Read-only stand-in for a layer: every attribute is the layer's, except a linear activation."""

    def __init__(self, layer: Any):
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name: str) -> Any:
        if name == "activation":
            return keras.activations.linear
        return getattr(object.__getattribute__(self, "_layer"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name!r}: the view of layer {self._layer.name!r} is read-only")


class WithoutActivation(keras.layers.Layer):
    """Calls a layer (say ``Dense(1, activation="sigmoid")``) with its activation skipped.

    The wrapped layer and its weights are shared, not copied, and never modified: the layer's
    own ``call`` runs on a view whose ``activation`` is linear, so another thread calling the
    original layer at the same time still gets its sigmoid.

    Raises:
        ValueError: (when traced) a quantized layer, whose ``call`` is not the float one.
    """

    def __init__(self, inner: keras.layers.Layer):
        # The wrapped layer's own dtype policy (a float32 head stays float32 in a
        # mixed_float16 model, and under any global policy).
        super().__init__(name=f"{inner.name}_preactivation", dtype=inner.dtype_policy)
        self.inner = inner

    def call(self, *args, **kwargs):
        if getattr(self.inner, "quantization_mode", None):
            raise ValueError(
                f"Layer {self.inner.name!r} is quantized ({self.inner.quantization_mode}); the CAM "
                "methods explain float heads. Explain the float model before quantizing it."
            )
        return type(self.inner).call(_LinearView(self.inner), *args, **kwargs)


#: The gradient tape that :class:`Tap` layers watch, per thread (None: plain forward pass).
_ACTIVE_TAPE = threading.local()


@contextlib.contextmanager
def tapped(tape) -> Iterator[None]:
    """Within the block, the :class:`Tap` layers of this thread make ``tape`` watch their input.

    Nested uses restore the outer tape (or none) on exit.
    """
    outer = getattr(_ACTIVE_TAPE, "tape", None)
    _ACTIVE_TAPE.tape = tape
    try:
        yield
    finally:
        _ACTIVE_TAPE.tape = outer


def active_tape():
    """The tape :class:`Tap` layers of this thread watch now, or None."""
    return getattr(_ACTIVE_TAPE, "tape", None)


class Tap(keras.layers.Layer):
    """Identity on the target feature map that makes the active gradient tape watch it.

    Grad-CAM needs ``d score / d features`` only. With the tape watching the feature map
    itself (and neither the images nor the weights), it records only the head after the
    target layer, so the backward pass stops there: eagerly it is no longer a full backward
    pass through the backbone, and a compiled graph has no backbone gradients to prune.
    """

    def call(self, inputs):
        tape = active_tape()
        if tape is not None:
            tape.watch(inputs)
        return inputs


def trace(model, *, input_shape, target=(), preactivation=False, records=None, prefix=()):
    """Re-trace ``model`` on a fresh ``keras.Input``, layer by layer, into nested models.

    Args:
        model: A Sequential or functional Keras model.
        input_shape: ``(H, W, C)`` of the fresh input (entries may be None).
        target: Path of layer names to capture (``("vgg16", "block5_conv3")``), or ``()``.
            Its (first) output passes through a :class:`Tap` before the layers that use it.
        preactivation: Skip the sigmoid/softmax of the layer producing the output.
        records: A list that receives one :class:`LayerCall` per traced layer call.
        prefix: Path of the enclosing models (for the records).

    Returns:
        A functional model from the fresh input to ``[output]`` or ``[output, feature map]``.

    Raises:
        ValueError: ``target`` is not on the path from the input to the output.
    """
    captured: list[Any] = []
    head = output_layer(model) if preactivation else None

    def call(layer, *args, **kwargs):
        name = layer.name
        inside = bool(target) and target[0] == name and len(target) > 1
        if isinstance(layer, keras.Model) and (inside or layer is head or records is not None):
            sub = trace(
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
        elif layer is head and activation_name(layer) in PROBABILITY_ACTIVATIONS:
            if type(layer).__name__ in ("Activation", "Softmax"):
                out = args[0]
            else:
                out = WithoutActivation(layer)(*args, **kwargs)
        else:
            out = layer(*args, **kwargs)
        if records is not None and hasattr(out, "shape"):
            records.append(
                LayerCall((*prefix, name), type(layer).__name__, tuple(out.shape), isinstance(layer, keras.Model))
            )
        if target == (name,):
            if not captured:
                # The target layer's dtype policy: the tap never casts the feature map
                # (a global mixed_float16 policy would otherwise halve a float32 model's).
                out = Tap(name=f"{name}_tap", dtype=getattr(layer, "dtype_policy", None))(out)
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
