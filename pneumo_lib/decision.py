"""The one rule that turns a model's score into "the predicted class".

Every consumer of a prediction (the CAM methods' default class, ``cam.predict``,
``pneumo explain``, the faithfulness metrics, evaluation, the explorer and the app) asks
this module, so one image gets one answer everywhere:

* a model has a **decision threshold** on P(PNEUMONIA): the one chosen on the validation
  split and stored in its model card (``card["evaluation"]["threshold"]``) when it has
  one, otherwise :data:`DEFAULT_THRESHOLD` (0.5);
* an explicit ``threshold=`` argument overrides it;
* the prediction is PNEUMONIA (1) when ``P(PNEUMONIA) >= threshold``, else NORMAL (0).
  For a two-unit softmax head P(PNEUMONIA) is the second unit's probability, so at 0.5
  this is the arg-max (ties go to PNEUMONIA, as they do for a sigmoid logit of 0).
* a **three-class** model (NORMAL, bacterial, viral) has no threshold: its prediction is
  the arg-max of its three probabilities. :func:`predicted_labels` is the one function that
  applies whichever rule fits the probabilities' shape; :func:`model_classes` and
  :func:`class_names` say how many classes a model has and what they are called.

A model loaded through :func:`pneumo_lib.training.load_model` or
:mod:`pneumo_lib.experiments` carries its card's threshold (:func:`attach_threshold`),
so functions that only get the model object still find it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from pneumo_lib.data import CLASSES
from pneumo_lib.data.subtypes import THREE_CLASSES

#: The threshold of a model without a validation threshold in its card.
DEFAULT_THRESHOLD = 0.5
#: Attribute under which a loaded model carries its card's threshold.
THRESHOLD_ATTRIBUTE = "pneumo_decision_threshold"


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float strictly inside (0, 1).

    Raises:
        ValueError: Not a number, NaN, or outside (0, 1) (a threshold of 0 or 1 would call
            every image, or none, PNEUMONIA).
    """
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}.") from None
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ValueError(
            f"threshold must be strictly between 0 and 1 (a probability of PNEUMONIA), got {threshold!r}. "
            "Use the model card's validation threshold (the default) or e.g. 0.5.")
    return value


def threshold_from_card(card: Mapping[str, Any] | None) -> float:
    """The validation threshold stored in a model card, else :data:`DEFAULT_THRESHOLD`.

    Args:
        card: A model card (:func:`pneumo_lib.training.read_card`), or ``None``/``{}``.

    Returns:
        A float in (0, 1).

    Raises:
        ValueError: The card stores a threshold outside (0, 1).
    """
    evaluation = (card or {}).get("evaluation") or {}
    value = evaluation.get("threshold")
    return DEFAULT_THRESHOLD if value is None else check_threshold(value)


def attach_threshold(model: Any, card: Mapping[str, Any] | None) -> Any:
    """Give a loaded model its card's threshold (see :func:`model_threshold`); returns the model."""
    setattr(model, THRESHOLD_ATTRIBUTE, threshold_from_card(card))
    return model


def model_threshold(model: Any = None, threshold: Any = None) -> float:
    """The threshold the rule uses for ``model``.

    Args:
        model: A Keras model, or ``None``. A model loaded by :func:`pneumo_lib.training.load_model`
            or :mod:`pneumo_lib.experiments` carries its card's validation threshold.
        threshold: An explicit threshold in (0, 1) that wins over the model's, or ``None``.

    Returns:
        ``threshold`` if given, else the model's card threshold, else :data:`DEFAULT_THRESHOLD`.

    Raises:
        ValueError: ``threshold`` outside (0, 1).
    """
    if threshold is not None:
        return check_threshold(threshold)
    stored = getattr(model, THRESHOLD_ATTRIBUTE, None) if model is not None else None
    return DEFAULT_THRESHOLD if stored is None else check_threshold(stored)


def pneumonia_probability(probabilities: Any) -> np.ndarray:
    """P(PNEUMONIA) from a head's probabilities.

    Args:
        probabilities: ``(N,)`` or ``(N, 1)`` sigmoid outputs, or ``(N, 2)`` class
            probabilities (column 1 = PNEUMONIA), values in [0, 1].

    Returns:
        ``float64 (N,)`` in [0, 1].

    Raises:
        ValueError: Another shape.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] in (1, 2):
        p = p[:, -1]
    if p.ndim == 2 and p.shape[1] == 3:
        raise ValueError(f"Expected probabilities of shape (N,), (N, 1) or (N, 2), got {np.shape(probabilities)}: a "
                         "three-class model (NORMAL, bacterial, viral) has no single P(PNEUMONIA); evaluate it "
                         "with pneumo_lib.three_classes (or `pneumo evaluate`, which reads its card).")
    if p.ndim != 1:
        raise ValueError(f"Expected probabilities of shape (N,), (N, 1) or (N, 2), got {np.shape(probabilities)}.")
    return p


def predicted_class(probabilities: Any, threshold: Any = DEFAULT_THRESHOLD) -> np.ndarray:
    """The rule: 1 (PNEUMONIA) where ``P(PNEUMONIA) >= threshold``, else 0 (NORMAL).

    Args:
        probabilities: As for :func:`pneumonia_probability`.
        threshold: In (0, 1); usually :func:`model_threshold` of the model.

    Returns:
        ``int64 (N,)`` of 0/1.
    """
    return (pneumonia_probability(probabilities) >= check_threshold(threshold)).astype(np.int64)


def predict_classes(model: Any, probabilities: Any, threshold: Any = None) -> np.ndarray:
    """:func:`predicted_class` at :func:`model_threshold` ``(model, threshold)``."""
    return predicted_class(probabilities, model_threshold(model, threshold))


# --------------------------------------------------------------------------- calibration

#: The temperature of a model without a fitted one in its card: probabilities unchanged.
DEFAULT_TEMPERATURE = 1.0
#: Attribute under which a loaded model carries its card's temperature.
TEMPERATURE_ATTRIBUTE = "pneumo_temperature"


def temperature_from_card(card: Mapping[str, Any] | None) -> float:
    """The temperature stored in a model card (``card["calibration"]["temperature"]``, written by
    :func:`pneumo_lib.calibration.calibrate`), else :data:`DEFAULT_TEMPERATURE` (1.0).

    Raises:
        ValueError: The card stores a temperature that is not a positive number.
    """
    from pneumo_lib.calibration import check_temperature

    value = ((card or {}).get("calibration") or {}).get("temperature")
    return DEFAULT_TEMPERATURE if value is None else check_temperature(value)


def attach_temperature(model: Any, card: Mapping[str, Any] | float | None) -> Any:
    """Give a model its card's temperature (or ``card`` itself when it is a number); returns the model.

    :func:`pneumo_lib.training.load_model` does this for every loaded model, so a model whose
    card has no ``calibration`` entry carries 1.0 and every probability stays as it was.
    Given a card (not a number), the model also gets the card's referral level
    (:func:`pneumo_lib.uncertainty.attach_referral_level`: ``card["referral"]``, else the
    default), which the explorer and the app compare an image's uncertainty with; it
    changes no decision.
    """
    from pneumo_lib.calibration import check_temperature

    value = check_temperature(card) if isinstance(card, (int, float)) else temperature_from_card(card)
    setattr(model, TEMPERATURE_ATTRIBUTE, value)
    if not isinstance(card, (int, float)):
        from pneumo_lib.uncertainty import attach_referral_level

        attach_referral_level(model, card)
    return model


def model_temperature(model: Any = None, temperature: Any = None) -> float:
    """The temperature to divide ``model``'s logits by for calibrated probabilities.

    Args:
        model: A Keras model or ``None``; loaded and cached models carry their card's value.
        temperature: An explicit ``T > 0`` that wins over the model's, or ``None``.

    Returns:
        ``temperature`` if given, else the model's, else :data:`DEFAULT_TEMPERATURE`.
    """
    from pneumo_lib.calibration import check_temperature

    if temperature is not None:
        return check_temperature(temperature)
    stored = getattr(model, TEMPERATURE_ATTRIBUTE, None) if model is not None else None
    return DEFAULT_TEMPERATURE if stored is None else check_temperature(stored)


def calibrated_pneumonia_probability(model: Any, scores: Any, temperature: Any = None) -> np.ndarray:
    """Calibrated P(PNEUMONIA) ``float64 (N,)`` from a model's pre-activation scores.

    Args:
        model: The model (for its temperature, :func:`model_temperature`), or ``None``.
        scores: Its logits: ``(N,)``/``(N, 1)`` (sigmoid unit) or ``(N, 2)`` (softmax head).
        temperature: Overrides the model's.
    """
    from pneumo_lib.calibration import apply_temperature

    return pneumonia_probability(apply_temperature(scores, model_temperature(model, temperature)))


def calibrated_threshold(model: Any = None, threshold: Any = None, temperature: Any = None) -> float:
    """The model's decision threshold moved onto the calibrated probability's scale.

    The threshold of a card was chosen on *uncalibrated* validation probabilities. Temperature
    scaling maps ``p`` to ``sigmoid(logit(p) / T)`` (for a softmax head too: the two classes'
    score difference is divided by ``T``), an increasing function, so comparing the
    calibrated probability with ``sigmoid(logit(threshold) / T)`` calls exactly the same
    images PNEUMONIA as the rule on the raw probability: the one prediction rule does not
    change when a consumer shows calibrated probabilities.
    """
    cut = model_threshold(model, threshold)
    T = model_temperature(model, temperature)
    return float(1.0 / (1.0 + math.exp(-math.log(cut / (1.0 - cut)) / T)))


# --------------------------------------------------------------------------- two or three classes

#: Class names of a two-class model, in label order (:data:`pneumo_lib.data.CLASSES`).
TWO_CLASS_NAMES: tuple[str, ...] = CLASSES
#: Class names of a three-class model, in label order (:data:`pneumo_lib.data.subtypes.THREE_CLASSES`).
THREE_CLASS_NAMES: tuple[str, ...] = THREE_CLASSES


def check_class_count(n_classes: Any, name: str = "classes") -> int:
    """``n_classes`` as an int, 2 (NORMAL, PNEUMONIA) or 3 (NORMAL, bacterial, viral).

    Args:
        n_classes: The value to check: a whole number (``int`` or NumPy integer, not a bool
            and not a float such as ``3.0``).
        name: What the caller calls it, for the message (e.g. ``"--classes"``).

    Raises:
        ValueError: Any other value, named: "<name> must be 2 (NORMAL, PNEUMONIA) or 3 ...".
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes not in (2, 3):
        raise ValueError(f"{name} must be 2 (NORMAL, PNEUMONIA) or 3 (NORMAL, bacterial, viral), got {n_classes!r}.")
    return int(n_classes)


def class_names(n_classes: Any) -> tuple[str, ...]:
    """The class names of a model with ``n_classes`` classes, in label order:
    :data:`TWO_CLASS_NAMES` for 2, :data:`THREE_CLASS_NAMES` for 3.

    Raises:
        ValueError: ``n_classes`` is not 2 or 3 (:func:`check_class_count`).
    """
    return TWO_CLASS_NAMES if check_class_count(n_classes) == 2 else THREE_CLASS_NAMES


def check_class_index(class_index: Any, n_classes: Any) -> int | None:
    """``class_index`` (the class whose map to draw) checked against a model's classes.

    Args:
        class_index: ``None`` (the predicted class) or an int in ``0..n_classes-1``.
        n_classes: 2 or 3 (:func:`model_classes`).

    Returns:
        ``None`` or the index as an int.

    Raises:
        ValueError: Anything else, naming the valid labels, e.g. ``0 = NORMAL, 1 = bacterial, 2 = viral``.
    """
    if class_index is None:
        return None
    names = class_names(n_classes)
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) or not 0 <= class_index < len(names):
        raise ValueError(f"class_index must be None (the predicted class) or an int in 0..{len(names) - 1} "
                         f"({', '.join(f'{k} = {c}' for k, c in enumerate(names))}), got {class_index!r}.")
    return int(class_index)


def model_classes(model: Any) -> int:
    """How many classes ``model`` predicts: 2 for one sigmoid unit or two softmax units, 3 for three.

    Args:
        model: A Keras classifier whose output is ``(N, units)``.

    Raises:
        ValueError: Another output shape (e.g. 4 units), naming the model and its output shape.
    """
    shape = tuple(getattr(model, "output_shape", ()) or ())
    units = shape[-1] if len(shape) == 2 else None
    if units not in (1, 2, 3):
        raise ValueError(
            f"Model {getattr(model, 'name', '?')!r} has output shape {shape}; expected (N, 1) = P(PNEUMONIA), "
            "(N, 2) = (NORMAL, PNEUMONIA) or (N, 3) = (NORMAL, bacterial, viral).")
    return 2 if units == 1 else int(units)


def predicted_labels(probabilities: Any, threshold: Any = None) -> np.ndarray:
    """The predicted class of each image, for two- or three-class probabilities: the one place
    that says which rule applies.

    * Two classes (``(N,)``/``(N, 1)`` sigmoid outputs or ``(N, 2)``): :func:`predicted_class`,
      1 (PNEUMONIA) where ``P(PNEUMONIA) >= threshold`` (``None``: :data:`DEFAULT_THRESHOLD`).
    * Three or more classes (``(N, K)``, ``K >= 3``, e.g. NORMAL, bacterial, viral): the arg-max
      of each row (ties go to the lower label). Such a model has no threshold: ``threshold``
      is not used (the callers pass the model's, which is a two-class notion).

    Args:
        probabilities: Values in [0, 1], shapes as above.
        threshold: For two classes, in (0, 1); ``None`` for :data:`DEFAULT_THRESHOLD`.

    Returns:
        ``int64 (N,)`` labels, in ``0..K-1``.

    Raises:
        ValueError: Another shape (named), or a bad two-class threshold.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] >= 3:
        return p.argmax(axis=1).astype(np.int64)
    return predicted_class(p, DEFAULT_THRESHOLD if threshold is None else threshold)
