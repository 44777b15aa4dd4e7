"""One explanation of one image, as the explorer, the app and the chapters show it (no widgets).

:func:`explain` predicts an image by the project's rule (:mod:`pneumo_lib.decision`: PNEUMONIA
when P(PNEUMONIA) >= the model's threshold) and explains that class with a CAM method of
:mod:`pneumo_lib.cam`. It also works out the *calibrated* P(PNEUMONIA) that the explorer and
the app show: ``sigmoid(logit / T)`` with the temperature ``T`` fitted on the validation split
and stored in the model card (:func:`pneumo_lib.calibration.calibrate`,
:func:`pneumo_lib.decision.calibrated_pneumonia_probability`); a model without a fitted
temperature has ``T = 1`` and is shown as *uncalibrated*. Temperature scaling is monotone, so
the predicted class (the rule on the raw probability) is the one the calibrated probability
gives at the calibrated threshold (:func:`pneumo_lib.decision.calibrated_threshold`).
It also says how *unsure* the model is about the image: :attr:`Explanation.uncertainty` is
:func:`pneumo_lib.uncertainty.threshold_entropy` of the model's probability at its decision
threshold (the chapter "How sure is the model?"'s referral measure, in bits: 1 at the
threshold, towards 0 away from it), and :attr:`Explanation.refer` flags the image
"Uncertain: refer to a radiologist" when it is above the model's referral level (its card's,
computed on the validation split by :func:`pneumo_lib.uncertainty.calibrate_referral`, else
:data:`pneumo_lib.uncertainty.DEFAULT_REFERRAL_LEVEL`). The flag comes with the class, never
instead of it.

A **three-class** model (softmax over NORMAL, bacterial, viral, :mod:`pneumo_lib.three_classes`)
goes through the same :func:`explain`: its prediction is the arg-max of the three probabilities
(:func:`pneumo_lib.decision.predicted_labels`; no threshold), :class:`Explanation` carries all
three probabilities and the class names, the CAM explains the predicted class (or the one given
with ``class_index=``), and the two-class notions do not apply: no temperature (the probabilities
are shown as the model gives them, :data:`THREE_CLASS_CALIBRATION_NOTE`) and no referral flag
(:data:`THREE_CLASS_REFERRAL_NOTE`).
:func:`explanation_figure` draws an explanation with matplotlib and
:func:`png_bytes` encodes images for a page. The ipywidgets views of :mod:`pneumo_lib.widgets`
are built on these functions; this module imports neither ipywidgets nor a browser.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumo_lib import cam, decision, uncertainty
from pneumo_lib.data import CLASSES

#: CAM methods offered, display name -> function name in :mod:`pneumo_lib.cam`.
METHODS: dict[str, str] = {
    "Grad-CAM": "grad_cam",
    "Grad-CAM++": "grad_cam_plus_plus",
    "Score-CAM": "score_cam",
}
#: Side in pixels of the images shown on a page (the model input is upscaled for display).
DISPLAY_SIZE = 320
#: What a three-class model's probabilities are (the calibration phrase of its result line).
THREE_CLASS_CALIBRATION_NOTE = ("uncalibrated: temperature scaling is fitted for two-class models only, "
                                "so a three-class model has no temperature")
#: The referral line of a three-class model's explanation.
THREE_CLASS_REFERRAL_NOTE = ("No referral flag for a three-class model: the referral level (the entropy of "
                             "P(PNEUMONIA) at the decision threshold) is a two-class notion, and this model has "
                             "no decision threshold.")


@dataclass(frozen=True)
class Explanation:
    """A prediction and its CAM explanation for one image.

    Attributes:
        image: The model input, ``float32 (S, S, C)`` in ``[0, 1]``.
        probability: Two classes: P(PNEUMONIA) in ``[0, 1]``. Three classes: the probability of
            the predicted class (the largest of :attr:`class_probabilities`).
        heatmap: The CAM of :attr:`explained`, ``float32 (S, S)`` in ``[0, 1]`` (divided by its maximum).
        overlay: The heatmap blended over the image, ``uint8 (S, S, 3)``.
        method: CAM function name (a value of :data:`METHODS`).
        layer: Name of the explained layer, or ``None`` for the method's default.
        threshold: Probability at or above which the prediction is PNEUMONIA, in (0, 1), on the
            scale of ``probability`` (the model's own, uncalibrated one); ``None`` for a
            three-class model (its prediction is the arg-max).
        temperature: The model's temperature ``T > 0`` (:func:`pneumo_lib.decision.model_temperature`);
            1.0 when the model card holds no fitted temperature (uncalibrated), and for a
            three-class model (temperature scaling is a two-class notion here).
        calibrated_probability: ``sigmoid(logit / T)`` in ``[0, 1]``, the probability shown;
            ``None`` when ``T = 1`` (then it is ``probability``).
        referral: The model's referral level and where it came from
            (:func:`pneumo_lib.uncertainty.model_referral_level`); the default level without one
            (unused for a three-class model).
        class_probabilities: Every class's probability in label order, each in ``[0, 1]``, summing
            to 1: ``(P(NORMAL), P(PNEUMONIA))`` or ``(P(NORMAL), P(bacterial), P(viral))``; ``None``
            (an explanation built by hand) means the two classes ``(1 - probability, probability)``.
        class_names: The class names in label order (:func:`pneumo_lib.decision.class_names`):
            ``("NORMAL", "PNEUMONIA")`` or ``("NORMAL", "bacterial", "viral")``.
        explained_class: The label the heatmap explains when it was chosen (``class_index=``
            of :func:`explain`); ``None``: the predicted class.
    """

    image: np.ndarray
    probability: float
    heatmap: np.ndarray
    overlay: np.ndarray
    method: str
    layer: str | None
    threshold: float = decision.DEFAULT_THRESHOLD
    temperature: float = decision.DEFAULT_TEMPERATURE
    calibrated_probability: float | None = None
    referral: uncertainty.ReferralLevel = uncertainty.ReferralLevel()
    class_probabilities: tuple[float, ...] | None = None
    class_names: tuple[str, ...] = CLASSES
    explained_class: int | None = None

    @property
    def n_classes(self) -> int:
        """2 (NORMAL, PNEUMONIA) or 3 (NORMAL, bacterial, viral)."""
        return len(self.class_names)

    @property
    def two_class(self) -> bool:
        """Whether the model is a two-class NORMAL/PNEUMONIA one (threshold, temperature and referral apply)."""
        return self.n_classes == 2

    @property
    def probabilities(self) -> tuple[float, ...]:
        """Every class's probability in label order (:attr:`class_names`), each in ``[0, 1]``."""
        if self.class_probabilities is not None:
            return tuple(float(v) for v in self.class_probabilities)
        return (1.0 - self.probability, self.probability)

    @property
    def calibrated(self) -> bool:
        """Whether the shown probability is temperature-scaled (a two-class model with a fitted ``T``, not 1)."""
        return self.two_class and self.temperature != decision.DEFAULT_TEMPERATURE

    @property
    def shown_probability(self) -> float:
        """The P(PNEUMONIA) a reader sees, in ``[0, 1]``: calibrated when :attr:`calibrated`, else the model's."""
        return self.probability if self.calibrated_probability is None else self.calibrated_probability

    @property
    def shown_threshold(self) -> float:
        """The decision threshold on the scale of :attr:`shown_probability`, in (0, 1).

        :func:`pneumo_lib.decision.calibrated_threshold`: ``sigmoid(logit(threshold) / T)``, so
        ``shown_probability >= shown_threshold`` exactly when ``probability >= threshold``.

        Raises:
            ValueError: A three-class model (it has no threshold).
        """
        if not self.two_class:
            raise ValueError(f"A three-class model ({', '.join(self.class_names)}) has no decision threshold: "
                             "its prediction is the arg-max of its probabilities.")
        return decision.calibrated_threshold(threshold=self.threshold, temperature=self.temperature)

    def calibration_note(self) -> str:
        """What the shown probability is, e.g. ``"calibrated: temperature scaling, T = 1.52"``
        or ``"uncalibrated: the model card holds no fitted temperature"``; for a three-class model
        :data:`THREE_CLASS_CALIBRATION_NOTE`."""
        if not self.two_class:
            return THREE_CLASS_CALIBRATION_NOTE
        return calibration_note(self.temperature)

    @property
    def predicted(self) -> int:
        """Predicted label by the rule (:func:`pneumo_lib.decision.predicted_labels`): two classes,
        1 (PNEUMONIA) if ``probability >= threshold`` else 0 (NORMAL); three, the arg-max of
        :attr:`probabilities` (0 NORMAL, 1 bacterial, 2 viral)."""
        if self.two_class:
            return int(decision.predicted_class([self.probability], self.threshold)[0])
        return int(decision.predicted_labels([self.probabilities])[0])

    @property
    def label(self) -> str:
        """Predicted class name: ``"NORMAL"`` or ``"PNEUMONIA"``; or ``"NORMAL"``, ``"bacterial"``, ``"viral"``."""
        return self.class_names[self.predicted]

    @property
    def explained(self) -> int:
        """The label the heatmap explains: :attr:`explained_class` when one was chosen, else :attr:`predicted`."""
        return self.predicted if self.explained_class is None else int(self.explained_class)

    @property
    def explained_label(self) -> str:
        """The name of :attr:`explained` (what the overlay's caption says it explains)."""
        return self.class_names[self.explained]

    @property
    def uncertainty(self) -> float:
        """How unsure the model is about this image, in bits, in [0, 1].

        :func:`pneumo_lib.uncertainty.threshold_entropy` of :attr:`probability` at
        :attr:`threshold`: 1 when the probability is the threshold, towards 0 far from it
        (temperature scaling would not change which images are above a level, only the number).
        ``nan`` for a three-class model (the measure is a two-class notion).
        """
        if not self.two_class:
            return float("nan")
        return float(uncertainty.threshold_entropy([self.probability], self.threshold)[0])

    @property
    def refer(self) -> bool:
        """Whether the image is flagged "Uncertain: refer to a radiologist": :attr:`uncertainty` is
        above the referral level (:func:`pneumo_lib.uncertainty.refer`). The class still stands.
        Always ``False`` for a three-class model (it has no referral level)."""
        if not self.two_class:
            return False
        return bool(uncertainty.refer([self.probability], self.threshold, self.referral.level)[0])

    def referral_note(self) -> str:
        """The referral line, one or two sentences; the flag only when :attr:`refer`.

        Flagged: ``"Uncertain: refer to a radiologist. The model's uncertainty about this image,
        0.99 bits (entropy at its decision threshold), is above the referral level 0.81 bits:
        <where it came from>."``; else ``"Uncertainty 0.12 bits (entropy at the decision
        threshold), not above the referral level 0.81 bits: <where it came from>."``
        (:meth:`pneumo_lib.uncertainty.ReferralLevel.note`). A three-class model:
        :data:`THREE_CLASS_REFERRAL_NOTE`.
        """
        if not self.two_class:
            return THREE_CLASS_REFERRAL_NOTE
        where = self.referral.source()
        if self.refer:
            return (f"{uncertainty.REFERRAL_FLAG}. The model's uncertainty about this image, {self.uncertainty:.2f} "
                    f"bits (entropy at its decision threshold), is above the referral level "
                    f"{self.referral.level:.2f} bits: {where}.")
        return (f"Uncertainty {self.uncertainty:.2f} bits (entropy at the decision threshold), not above the "
                f"referral level {self.referral.level:.2f} bits: {where}.")

    def summary(self, calibration: bool = False) -> str:
        """One line, e.g. ``"PNEUMONIA (probability of pneumonia 0.93)"``.

        The probability is :attr:`shown_probability` (calibrated when the model has a
        temperature). With ``calibration=True`` the line says which it is:
        ``"PNEUMONIA (probability of pneumonia 0.93; calibrated: temperature scaling, T = 1.52)"``.

        A three-class model: the predicted class, its probability and all three, e.g.
        ``"bacterial (P = 0.64; NORMAL 0.35, bacterial 0.64, viral 0.01)"`` (with
        ``calibration=True``, ``"; "`` and :data:`THREE_CLASS_CALIBRATION_NOTE` before the ``")"``).
        """
        note = f"; {self.calibration_note()}" if calibration else ""
        if not self.two_class:
            every = ", ".join(f"{name} {p:.2f}" for name, p in zip(self.class_names, self.probabilities))
            return f"{self.label} (P = {self.probability:.2f}; {every}{note})"
        return f"{self.label} (probability of pneumonia {self.shown_probability:.2f}{note})"


def calibration_note(temperature: float) -> str:
    """How a probability of a model with temperature ``T`` (> 0) is to be read, one phrase.

    ``T = 1`` (:data:`pneumo_lib.decision.DEFAULT_TEMPERATURE`, what a model whose card holds
    no fitted temperature carries) gives ``"uncalibrated: the model card holds no fitted
    temperature"``; any other ``T`` gives ``"calibrated: temperature scaling, T = <T:.2f>"``.

    Raises:
        ValueError: ``temperature`` is not a positive number.
    """
    from pneumo_lib.calibration import check_temperature

    T = check_temperature(temperature)
    if T == decision.DEFAULT_TEMPERATURE:
        return "uncalibrated: the model card holds no fitted temperature"
    return f"calibrated: temperature scaling, T = {T:.2f}"


def calibrated_probabilities(model, images: np.ndarray, raw: np.ndarray | None = None,
                             batch_size: int = 64) -> np.ndarray:
    """Calibrated P(PNEUMONIA) of a stack of images: ``sigmoid(logit / T)`` with the model's ``T``.

    Args:
        model: A model built by :mod:`pneumo_lib.models` (its pre-activation layer is named
            ``"logits"``), carrying its card's temperature (:func:`pneumo_lib.decision.model_temperature`).
        images: ``float32 (N, S, S, C)`` in ``[0, 1]``.
        raw: The model's own P(PNEUMONIA) ``(N,)`` if already computed: returned
            as they are when the model has no temperature (``T = 1``), saving a forward pass.
        batch_size: Images per forward pass.

    Returns:
        ``float64 (N,)`` in ``[0, 1]``; the model's own probabilities when ``T = 1``.

    Raises:
        ValueError: The model has a temperature but no layer named ``"logits"``, or is a
            three-class model (no P(PNEUMONIA), no temperature).
    """
    from pneumo_lib import calibration

    if decision.model_classes(model) != 2:
        raise ValueError(f"Model {getattr(model, 'name', '?')!r} is a three-class model (NORMAL, bacterial, viral): "
                         "it has no calibrated P(PNEUMONIA); use probabilities() for its three probabilities.")

    if decision.model_temperature(model) == decision.DEFAULT_TEMPERATURE:
        if raw is not None:
            return np.asarray(raw, dtype=np.float64)
        return probabilities(model, images, batch_size=batch_size)
    scores = calibration.model_logits(model, np.asarray(images, dtype=np.float32), batch_size=batch_size)
    return decision.calibrated_pneumonia_probability(model, scores)


def probabilities(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(PNEUMONIA) for a stack of images (a three-class model: its three probabilities), from
    :func:`pneumo_lib.cam.predict`.

    Args:
        model: A model built by :mod:`pneumo_lib.models` (either head) or
            :mod:`pneumo_lib.three_classes` (three softmax units).
        images: ``float32 (N, S, S, C)`` in ``[0, 1]``.
        batch_size: Images per forward pass.

    Returns:
        Two classes: ``float64 (N,)`` in ``[0, 1]``. Three classes: ``float64 (N, 3)``,
        P(NORMAL), P(bacterial), P(viral), rows summing to 1. Either goes to
        :func:`pneumo_lib.decision.predicted_labels` for the predicted classes.

    Raises:
        ValueError: A model whose output is not 1, 2 or 3 units (:func:`pneumo_lib.decision.model_classes`).
    """
    n_classes = decision.model_classes(model)
    _, class_probabilities = cam.predict(model, np.asarray(images, dtype=np.float32), batch_size=batch_size)
    if n_classes == 3:
        return class_probabilities.astype(np.float64)
    return class_probabilities[:, 1].astype(np.float64)


def explain(model, image: np.ndarray, *, method: str = "grad_cam", layer: str | None = None,
            alpha: float = 0.4, threshold: float | None = None, class_index: int | None = None) -> Explanation:
    """Predict one image by the rule and explain the predicted class (or ``class_index``) with a CAM method.

    Args:
        model: A model built by :mod:`pneumo_lib.models` (either head), or a three-class model
            (:mod:`pneumo_lib.three_classes`: softmax over NORMAL, bacterial, viral), predicted
            by the arg-max of its probabilities (:func:`pneumo_lib.decision.predicted_labels`).
        image: ``float32 (S, S, C)`` in ``[0, 1]``, the model's input size.
        method: ``"grad_cam"``, ``"grad_cam_plus_plus"`` or ``"score_cam"``.
        layer: Layer to explain; ``None`` lets :func:`pneumo_lib.cam.find_target_layer` choose.
        alpha: Heatmap opacity in the overlay, ``0`` (image only) to ``1`` (heatmap only).
        threshold: None (the model's threshold: its card's validation threshold, else 0.5,
            :func:`pneumo_lib.decision.model_threshold`) or a probability in (0, 1). Two-class
            models only: a three-class model has none.
        class_index: The label whose map is drawn: ``None`` (the predicted class) or an int in
            ``0..K-1`` (K = 2 or 3 classes, e.g. 2 = viral). The prediction does not change.

    Returns:
        An :class:`Explanation` with every class's probability and the class names. Two
        classes: with the model's temperature and, when it is not 1, the calibrated probability
        (:func:`calibrated_probabilities`), and the model's referral level
        (:func:`pneumo_lib.uncertainty.model_referral_level`) for its referral flag. Three
        classes: ``threshold`` None, temperature 1 and no referral flag (two-class notions).

    Raises:
        ValueError: Unknown method, an image that is not ``(S, S, C)`` in ``[0, 1]``, a bad
            threshold, a threshold for a three-class model, a ``class_index`` outside the
            model's classes, or a model whose output is not 1, 2 or 3 units.
    """
    if method not in METHODS.values():
        raise ValueError(f"Unknown CAM method {method!r}. Valid methods: {', '.join(METHODS.values())}.")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"explain takes one image (S, S, C), got shape {image.shape}.")
    n_classes = decision.model_classes(model)
    names = decision.class_names(n_classes)
    class_index = decision.check_class_index(class_index, n_classes)
    if n_classes == 3 and threshold is not None:
        raise ValueError(f"threshold={threshold!r} does not apply to model {getattr(model, 'name', '?')!r}: a "
                         "three-class model (NORMAL, bacterial, viral) predicts the arg-max of its probabilities.")
    cut = decision.model_threshold(model, threshold) if n_classes == 2 else None
    labels, class_probabilities = cam.predict(model, image[None], threshold=cut)
    explained = int(labels[0]) if class_index is None else class_index
    heatmap = getattr(cam, method)(model, image[None], layer=layer, class_index=explained)[0]
    every = tuple(float(v) for v in class_probabilities[0])
    overlay = cam.overlay(image, heatmap, alpha=alpha)
    if n_classes == 3:
        return Explanation(image, every[int(labels[0])], heatmap, overlay, method, layer, None,
                           class_probabilities=every, class_names=names, explained_class=class_index)
    T = decision.model_temperature(model)
    raw = every[1]
    calibrated = None if T == decision.DEFAULT_TEMPERATURE else float(calibrated_probabilities(model, image[None])[0])
    return Explanation(image, raw, heatmap, overlay, method, layer, cut, T, calibrated,
                       uncertainty.model_referral_level(model), every, names, class_index)


def png_bytes(image: np.ndarray, size: int = DISPLAY_SIZE) -> bytes:
    """PNG-encode an image for display, upscaled to ``size`` pixels a side.

    Args:
        image: ``uint8 (H, W, 3)`` RGB, or float ``(H, W)`` / ``(H, W, 1)`` gray in ``[0, 1]``.
        size: Side in pixels of the square PNG.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(arr).resize((size, size), Image.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes (for an ``<img src=...>``)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def layer_options(model) -> list[tuple[str, str]]:
    """Choices for the target-layer picker: the CAM default first, then every spatial layer.

    Returns:
        ``(label, layer_name)`` pairs; the first has ``layer_name=""``, meaning the layer
        :func:`pneumo_lib.cam.find_target_layer` picks (named in its label); the others
        come from :func:`pneumo_lib.cam.spatial_layers`.
    """
    choices = [(f"default ({cam.find_target_layer(model)})", "")]
    return choices + [(name, name) for name in cam.spatial_layers(model)]


def explanation_figure(explanation: Explanation, title: str = ""):
    """Three panels: the model input, the heatmap and the overlay, as the explorer shows them.

    The heatmap is drawn with the library's convention (:mod:`pneumo_lib.cam.overlay`):
    :data:`pneumo_lib.cam.DEFAULT_CMAP`, values in ``[0, 1]`` as given, with a colour bar.

    Returns:
        The matplotlib ``Figure`` (end the notebook cell with ``plt.show()``).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    image = explanation.image[..., 0] if explanation.image.shape[-1] == 1 else explanation.image
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("model input")
    shown = axes[1].imshow(explanation.heatmap, cmap=cam.DEFAULT_CMAP, vmin=0, vmax=1)
    axes[1].set_title(f"{explanation.method} heatmap")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(explanation.overlay)
    axes[2].set_title(f"overlay, explaining {explanation.explained_label}")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
