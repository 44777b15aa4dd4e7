"""How far a model's probabilities can be taken at their word: calibration and temperature scaling.

A model is *calibrated* when, of all the images it gives P(PNEUMONIA) = 0.8, about 80% are
pneumonia. This module measures that and repairs the commonest failure, over-confidence:

* :func:`reliability` bins P(PNEUMONIA) into equal-width bins (scikit-learn's
  ``calibration_curve`` binning) and gives each bin's mean probability (*confidence*), its
  observed share of PNEUMONIA (*accuracy*) and its size; :meth:`Reliability.plot` draws the
  reliability diagram.
* :func:`expected_calibration_error` (ECE: the bins' ``|accuracy - confidence|`` weighted by
  their share of images), :func:`maximum_calibration_error` (MCE: the worst non-empty bin),
  :func:`brier_score` (scikit-learn's ``brier_score_loss``) and
  :func:`negative_log_likelihood`.
* :func:`ece_interval`: a percentile bootstrap interval of the ECE that resamples whole
  **patients** when given each image's patient (:func:`pneumo_lib.evaluation.bootstrap_indices`,
  as the evaluation does).
* Temperature scaling (Guo et al., "On calibration of modern neural networks", ICML 2017):
  divide the logits by one number ``T`` fitted on the *validation* split by minimising the
  negative log-likelihood (:func:`fit_temperature`), then :func:`apply_temperature`. ``T > 1``
  softens over-confident probabilities. One number for all images cannot change their order,
  so the ROC AUC and the predicted class (with the threshold moved along,
  :func:`pneumo_lib.decision.calibrated_threshold`) stay what they were.

Probabilities are those of PNEUMONIA (label 1, a single sigmoid unit's value or column 1 of
a softmax head); labels are ``0 = NORMAL``, ``1 = PNEUMONIA``. The reliability diagram is the
one of P(PNEUMONIA) (as ``calibration_curve`` draws it), not of the top-label confidence;
for a 50/50 set all scored 0.9 both give an ECE of 0.4.

The model-facing step :func:`calibrate` (it imports TensorFlow on first use) fits the
temperature of a cached model on its validation split and stores it in the model card as
``card["calibration"]["temperature"]``; a model loaded with that card carries it
(:func:`pneumo_lib.decision.model_temperature`), and ``T = 1`` (no change) otherwise, so
models cached before behave exactly as they did.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from pneumo_lib import decision


class CalibrationWarning(UserWarning):
    """A temperature was fitted but says the model's scores carry (almost) no information."""
from pneumo_lib.evaluation import bootstrap_indices

#: Default number of equal-width bins (Guo et al. use 15).
DEFAULT_BINS = 15
#: Temperatures :func:`fit_temperature` searches, in log space (outside it the fit says so).
TEMPERATURE_RANGE = (0.02, 50.0)
#: Probabilities are clipped to [EPS, 1 - EPS] in the log-likelihood.
EPS = 1e-12


# --------------------------------------------------------------------------- input checks


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    return int(bins)


def check_labels(y_true: Any, n: int | None = None, classes: int = 2) -> np.ndarray:
    """Labels as ``int64 (N,)`` class indices in ``[0, classes)``.

    Raises:
        ValueError: Empty, not integers in range (for two classes: not 0/1), or not ``n`` long.
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise ValueError(f"Labels must be one per image, shape (N,); got shape {np.shape(y_true)}.")
    if y.size == 0:
        raise ValueError("No labels: the arrays are empty.")
    if n is not None and y.size != n:
        raise ValueError(f"Labels and probabilities (or logits) differ in length: {y.size} labels for {n} images.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("Labels contain NaN or infinity.")
    ok = np.isin(y, np.arange(classes)) if y.dtype.kind in "biuf" else np.zeros(y.shape, bool)
    if not ok.all():
        bad = sorted({str(v) for v in np.asarray(y)[~ok].tolist()})[:5]
        what = "0 (NORMAL) or 1 (PNEUMONIA)" if classes == 2 else f"class indices 0 to {classes - 1}"
        raise ValueError(f"Labels must be {what}; found {', '.join(bad)}.")
    return y.astype(np.int64)


def check_probabilities(p: Any) -> np.ndarray:
    """P(PNEUMONIA) as ``float64 (N,)`` from ``(N,)``, ``(N, 1)`` or ``(N, 2)`` probabilities.

    Raises:
        ValueError: Empty, another shape, NaN/infinite, or outside [0, 1].
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("No probabilities: the arrays are empty.")
    prob = decision.pneumonia_probability(arr)
    if np.isnan(prob).any() or not np.isfinite(prob).all():
        raise ValueError("Probabilities contain NaN or infinity.")
    if (prob < 0).any() or (prob > 1).any():
        raise ValueError(
            f"Probabilities must lie in [0, 1]; found values from {prob.min():.4g} to {prob.max():.4g} "
            "(logits? use apply_temperature(logits, 1.0) to turn logits into probabilities).")
    return prob


def _pair(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    prob = check_probabilities(p)
    return check_labels(y_true, prob.size), prob


# --------------------------------------------------------------------------- reliability


@dataclass
class Reliability:
    """A reliability diagram's numbers: one entry per equal-width bin of P(PNEUMONIA).

    Attributes:
        edges: ``(bins + 1,)`` bin edges from 0 to 1; bin ``i`` holds ``edges[i] < p <= edges[i+1]``
            (the first also holds 0), as scikit-learn's ``calibration_curve`` bins.
        confidence: ``(bins,)`` mean P(PNEUMONIA) in each bin (NaN where empty).
        accuracy: ``(bins,)`` share of PNEUMONIA labels in each bin (NaN where empty).
        count: ``(bins,)`` images in each bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def bins(self) -> int:
        """Number of bins."""
        return len(self.count)

    @property
    def gap(self) -> np.ndarray:
        """``|accuracy - confidence|`` per bin (NaN where empty)."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """Expected calibration error: the bins' gaps weighted by their share of images."""
        seen = self.count > 0
        return float(np.sum(self.count[seen] * self.gap[seen]) / self.count.sum())

    @property
    def mce(self) -> float:
        """Maximum calibration error: the largest gap of a non-empty bin."""
        return float(np.max(self.gap[self.count > 0]))

    def plot(self, ax=None, *, label: str | None = None, color: str | None = None, show_counts: bool = True):
        """Draw the diagram on ``ax`` (a new figure if None): accuracy per bin as bars, the diagonal.

        Bars sit over their bins; a perfectly calibrated model's bars touch the dashed diagonal.
        With ``show_counts`` the images per bin are drawn as a thin histogram along the bottom.

        Returns:
            The axes.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 4))
        seen = self.count > 0
        width = np.diff(self.edges)
        ax.bar(self.edges[:-1][seen], self.accuracy[seen], width=width[seen], align="edge",
               alpha=0.6, edgecolor="black", linewidth=0.5, color=color,
               label=f"{label + ': ' if label else ''}ECE {self.ece:.3f}")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        if show_counts:
            share = self.count / self.count.sum()
            ax.bar(self.edges[:-1], share * 0.25, width=width, align="edge", color="black", alpha=0.25)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted P(PNEUMONIA)")
        ax.set_ylabel("share of PNEUMONIA in the bin")
        ax.legend(loc="upper left", fontsize=8)
        return ax


def reliability(y_true: Any, p: Any, bins: int = DEFAULT_BINS) -> Reliability:
    """Per-bin confidence, accuracy and count of P(PNEUMONIA) in ``bins`` equal-width bins.

    Args:
        y_true: Labels ``(N,)`` in {0, 1}.
        p: P(PNEUMONIA) ``(N,)`` (or ``(N, 1)``/``(N, 2)`` head outputs), in [0, 1].
        bins: Number of equal-width bins over [0, 1].

    Returns:
        A :class:`Reliability`; its non-empty bins agree with scikit-learn's
        ``calibration_curve(y_true, p, n_bins=bins)``.

    Raises:
        ValueError: Bad labels or probabilities (see :func:`check_probabilities`), mismatched
            lengths, or ``bins`` not a positive integer.
    """
    bins = _check_bins(bins)
    y, prob = _pair(y_true, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], prob)  # calibration_curve's binning
    count = np.bincount(ids, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(ids, weights=prob, minlength=bins) / count
        accuracy = np.bincount(ids, weights=y, minlength=bins) / count
    return Reliability(edges, confidence, accuracy, count.astype(np.int64))


def sklearn_curve(y_true: Any, p: Any, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``calibration_curve`` (uniform bins): ``(accuracy, confidence)`` of the non-empty bins."""
    y, prob = _pair(y_true, p)
    if np.unique(y).size < 2:  # calibration_curve needs both labels present
        rel = reliability(y, prob, bins)
        seen = rel.count > 0
        return rel.accuracy[seen], rel.confidence[seen]
    return calibration_curve(y, prob, n_bins=_check_bins(bins), strategy="uniform")


def expected_calibration_error(y_true: Any, p: Any, bins: int = DEFAULT_BINS) -> float:
    """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width bins (see :func:`reliability`)."""
    return reliability(y_true, p, bins).ece


def maximum_calibration_error(y_true: Any, p: Any, bins: int = DEFAULT_BINS) -> float:
    """MCE: ``max_b |accuracy_b - confidence_b|`` over the non-empty bins."""
    return reliability(y_true, p, bins).mce


def brier_score(y_true: Any, p: Any) -> float:
    """Mean squared difference between P(PNEUMONIA) and the label (scikit-learn's ``brier_score_loss``)."""
    y, prob = _pair(y_true, p)
    return float(brier_score_loss(y, prob, pos_label=1))


def negative_log_likelihood(y_true: Any, p: Any) -> float:
    """Mean negative log-likelihood (natural log) of the labels under P(PNEUMONIA), clipped at 1e-12."""
    y, prob = _pair(y_true, p)
    prob = np.clip(prob, EPS, 1 - EPS)
    return float(-np.mean(np.where(y == 1, np.log(prob), np.log1p(-prob))))


def ece_interval(
    y_true: Any, p: Any, *, groups: Any = None, bins: int = DEFAULT_BINS, rounds: int = 200, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ECE.

    Args:
        y_true, p: Labels and P(PNEUMONIA), ``(N,)``.
        groups: One patient id per image (resample whole patients, the honest unit when
            patients have several images), or ``None`` (resample images).
        bins: Bins of the ECE.
        rounds, seed: Bootstrap size and seed (:func:`pneumo_lib.evaluation.bootstrap_indices`).
        level: Coverage of the interval, in (0, 1).

    Returns:
        ``(low, high)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}.")
    y, prob = _pair(y_true, p)
    bins = _check_bins(bins)
    values = [reliability(y[idx], prob[idx], bins).ece
              for idx in bootstrap_indices(y.size, groups, rounds=rounds, seed=seed)]
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def summary(
    y_true: Any, p: Any, *, groups: Any = None, bins: int = DEFAULT_BINS, rounds: int = 200, seed: int = 0,
) -> dict[str, float]:
    """ECE with its bootstrap interval, MCE, Brier score and NLL of one set of probabilities.

    Returns:
        ``{"ece", "ece_low", "ece_high", "mce", "brier", "nll"}``.
    """
    low, high = ece_interval(y_true, p, groups=groups, bins=bins, rounds=rounds, seed=seed)
    rel = reliability(y_true, p, bins)
    return {"ece": rel.ece, "ece_low": low, "ece_high": high, "mce": rel.mce,
            "brier": brier_score(y_true, p), "nll": negative_log_likelihood(y_true, p)}


# --------------------------------------------------------------------------- temperature scaling


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a finite float > 0.

    Raises:
        ValueError: Not a number, NaN/infinite, or not positive.
    """
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0 (1.0 leaves the model as it is), got {temperature!r}.")
    return value


def _check_logits(logits: Any) -> np.ndarray:
    """Logits as ``float64`` ``(N,)`` (one sigmoid unit) or ``(N, K)`` with ``K >= 2`` (softmax)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2) or (z.ndim == 2 and z.shape[1] < 2):
        raise ValueError(f"Logits must have shape (N,), (N, 1) (sigmoid) or (N, K) (softmax); got {np.shape(logits)}.")
    if z.shape[0] == 0:
        raise ValueError("No logits: the array is empty.")
    if not np.isfinite(z).all():
        raise ValueError("Logits contain NaN or infinity.")
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def apply_temperature(logits: Any, temperature: Any) -> np.ndarray:
    """Probabilities of temperature-scaled logits: ``sigmoid(z / T)`` or ``softmax(z / T)``.

    Args:
        logits: Pre-activation scores: ``(N,)`` or ``(N, 1)`` of a sigmoid unit, or
            ``(N, K)`` of a softmax head.
        temperature: ``T > 0``; 1.0 gives the model's own probabilities.

    Returns:
        ``float64``: ``(N,)`` P(PNEUMONIA) for a sigmoid unit (whatever its input shape),
        ``(N, K)`` class probabilities for a softmax head.
    """
    z = _check_logits(logits) / check_temperature(temperature)
    return _sigmoid(z) if z.ndim == 1 else np.exp(_log_softmax(z))


def _nll_of_logits(z: np.ndarray, y: np.ndarray) -> float:
    if z.ndim == 1:  # -log sigmoid(+-z), stable
        return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -z, z))))
    return float(-np.mean(_log_softmax(z)[np.arange(len(y)), y]))


def fit_temperature(logits: Any, y_true: Any) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` under ``logits / T``.

    Fit it on the **validation** split, never on test. A one-dimensional bounded search over
    ``log T`` (:data:`TEMPERATURE_RANGE`); the negative log-likelihood is convex in ``1/T``,
    so the minimum found is the minimum.

    Args:
        logits: ``(N,)``/``(N, 1)`` (sigmoid) or ``(N, K)`` (softmax) pre-activation scores.
        y_true: ``(N,)`` labels: 0/1 for a sigmoid unit, class indices for softmax.

    Returns:
        ``T`` as a float.

    Raises:
        ValueError: Bad logits or labels, a single class only (nothing to calibrate
            against), or logits that separate the classes perfectly (the best temperature
            is at the low edge of the searched range: none is finite).

    Warns:
        CalibrationWarning: The best temperature is at the high edge (logits that carry no
            information); the edge value is returned, which flattens probabilities to about 0.5.
    """
    z = _check_logits(logits)
    y = check_labels(y_true, z.shape[0], classes=2 if z.ndim == 1 else z.shape[1])
    if np.unique(y).size < 2:
        raise ValueError("fit_temperature needs labels of both classes (a validation split with one class "
                         "cannot tell over- from under-confidence).")
    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    result = minimize_scalar(lambda t: _nll_of_logits(z / np.exp(t), y), bounds=(lo, hi), method="bounded",
                             options={"xatol": 1e-7})
    if result.x < lo + 1e-3:
        raise ValueError(
            f"The best temperature lies at the low edge of the searched range {TEMPERATURE_RANGE} "
            f"(about {np.exp(result.x):.3g}): the validation logits separate the classes perfectly, so no "
            "finite temperature is best. Calibrate on a larger validation split.")
    if result.x > hi - 1e-3:
        warnings.warn(
            f"The best temperature lies at the high edge of the searched range {TEMPERATURE_RANGE}: the "
            "validation logits carry no information about the labels (or point the wrong way), so scaling "
            f"flattens every probability towards 0.5; T = {TEMPERATURE_RANGE[1]:g} is used. Train the model "
            "longer or calibrate on a larger validation split.", CalibrationWarning, stacklevel=2)
        return float(TEMPERATURE_RANGE[1])
    return float(np.exp(result.x))


# --------------------------------------------------------------------------- models (TensorFlow)


def model_logits(model: Any, images: Any, *, batch_size: int = 64) -> np.ndarray:
    """Pre-activation scores of a :mod:`pneumo_lib.models` model (its ``"logits"`` layer).

    Returns:
        ``float64`` ``(N,)`` for a single sigmoid unit, ``(N, K)`` for a softmax head.

    Raises:
        ValueError: The model has no layer named ``"logits"``.
    """
    from pneumo_lib._tf import keras

    try:
        layer = model.get_layer("logits")
    except ValueError:
        raise ValueError(f"Model {model.name!r} has no layer named 'logits' (models of pneumo_lib.models end in "
                         "Dense 'logits' -> Activation 'prediction').") from None
    scorer = keras.Model(model.inputs, layer.output)
    x = np.asarray(images, dtype=np.float32)
    out = np.concatenate([np.asarray(scorer(x[i:i + batch_size], training=False), dtype=np.float64)
                          for i in range(0, len(x), batch_size)])
    return out[:, 0] if out.shape[1] == 1 else out


def calibrated_probability(model: Any, images: Any, *, temperature: Any = None, batch_size: int = 64) -> np.ndarray:
    """P(PNEUMONIA) of ``images`` with the model's temperature (card or attached; 1.0 without).

    ``temperature`` overrides the model's. Returns ``float64 (N,)``.
    """
    T = decision.model_temperature(model, temperature)
    return decision.pneumonia_probability(apply_temperature(model_logits(model, images, batch_size=batch_size), T))


def calibrate(run: Any, manifest: Any, profile: Any, *, split: str = "val", refit: bool = False,
              write_card: bool = True) -> dict[str, Any]:
    """Fit a cached model's temperature on its validation split and store it in its model card.

    Idempotent: a card that already holds a temperature fitted on ``split`` is returned as
    it is (``refit=True`` fits again). The fit is deterministic for a given model and
    validation split, so the stored value does not depend on which chapter ran first.

    Args:
        run: A :class:`pneumo_lib.experiments.CachedModel` (``model``, ``path``, ``card``).
        manifest: The :class:`~pneumo_lib.data.SplitManifest` the model was trained on.
        profile: The profile (``image_size``).
        split: The split to fit on (``"val"``; never ``"test"``).
        refit: Fit even if the card has a temperature.
        write_card: Write ``card["calibration"]`` to the model's card file (else only the
            in-memory card and model are updated).

    Returns:
        The card's ``"calibration"`` entry: ``temperature``, ``fitted_on``, ``images`` and the
        split's NLL and ECE before and after.
    """
    from pneumo_lib import data

    if split == "test":
        raise ValueError("Fit the temperature on the validation split, not on test (test is for reporting).")
    stored = (run.card or {}).get("calibration") or {}
    if stored.get("temperature") is not None and stored.get("fitted_on") == split and not refit:
        decision.attach_temperature(run.model, run.card)
        return stored
    channels = int(run.model.inputs[0].shape[-1])
    x, y = data.load_split(manifest, split, profile.image_size, channels=channels)
    z = model_logits(run.model, x)
    T = fit_temperature(z, y)
    before, after = apply_temperature(z, 1.0), apply_temperature(z, T)
    entry = {
        "temperature": T,
        "method": "temperature scaling (Guo et al. 2017), NLL minimised",
        "fitted_on": split,
        "images": int(len(y)),
        "nll_before": negative_log_likelihood(y, before),
        "nll_after": negative_log_likelihood(y, after),
        "ece_before": expected_calibration_error(y, before),
        "ece_after": expected_calibration_error(y, after),
        "bins": DEFAULT_BINS,
    }
    run.card["calibration"] = entry
    if write_card and getattr(run, "path", None) is not None:
        from pneumo_lib import training

        training.write_card(run.path, run.card)
    decision.attach_temperature(run.model, run.card)
    return entry


# --------------------------------------------------------------------------- a model file (pneumo evaluate --calibration)


def file_report(model_path: Any, data_dir: Any, *, profile: Any = None, bins: int = DEFAULT_BINS,
                store: bool = False, refer_fraction: Any = None) -> dict[str, Any]:
    """Calibration of a saved model on a dataset folder's test split (``pneumo evaluate --calibration``).

    The temperature is fitted on the folder's **validation** split (:func:`calibrate`, the
    split :func:`pneumo_lib.experiments.evaluate_file` makes with the same seed); the test
    split's probabilities are scored before (``T = 1``) and after temperature scaling with
    :func:`summary`: ECE with its percentile bootstrap interval over **patients**, MCE,
    Brier score and NLL. The split seed and bootstrap rounds come from ``profile`` or the
    model card's profile (quick without a card), the image size from the model.

    Args:
        model_path: A ``.keras`` file with its model card beside it (or none).
        data_dir: A dataset folder in the Kaggle layout.
        profile: A profile name or :class:`~pneumo_lib.profiles.Profile`; None: the card's.
        bins: Equal-width bins of the ECE and MCE (a positive integer).
        store: Also write the fitted temperature into the model card
            (``card["calibration"]``), so that the app, the explorer and every other consumer
            of the model show calibrated probabilities; with ``refer_fraction``, the referral
            level too (``card["referral"]``), so that they flag images above it.
        refer_fraction: None, or the share of the validation images to refer, in (0, 1)
            (e.g. 0.1): the referral level is computed on the validation split
            (:func:`pneumo_lib.uncertainty.calibrate_referral`) and the report says how many
            test images are above it.

    Returns:
        ``{"temperature", "fitted_on", "validation_images", "validation_nll_before",
        "validation_nll_after", "split", "images", "patients", "bins", "bootstrap_rounds",
        "seed", "stored", "before", "after"}``, where ``before`` and ``after`` are
        :func:`summary` dictionaries (``ece``, ``ece_low``, ``ece_high``, ``mce``, ``brier``,
        ``nll``; all in [0, 1] but the NLL, which is >= 0). With ``refer_fraction``, also
        ``"referral"``: the card entry of :func:`pneumo_lib.uncertainty.calibrate_referral`
        (``level`` in bits, ``fraction``, ``threshold``, ``images``, ``referred_images``, ...)
        plus ``test_referred`` (test images above the level), ``test_accuracy`` (all test
        images, by the rule at the card threshold) and ``test_accuracy_kept`` (those not
        above it; NaN when all are above it).

    Raises:
        FileNotFoundError, pneumo_lib.training.ModelFileError: No model file, or a bad one.
        ValueError: Bad ``bins``, a model without a ``"logits"`` layer, a validation split
            the temperature cannot be fitted on (one class only, perfectly separated), or
            ``refer_fraction`` outside (0, 1) (or referring none of the validation images).
    """
    from pneumo_lib import data, experiments, training, uncertainty
    from pneumo_lib.profiles import get_profile, profile_for_card

    bins = _check_bins(bins)
    if refer_fraction is not None:
        refer_fraction = uncertainty.check_fraction(refer_fraction)
    model = training.load_model(model_path)
    card = training.read_card(model_path)
    P = profile_for_card(card, profile)
    size, channels = int(model.input_shape[1]), int(model.input_shape[-1])
    P = get_profile(P, image_size=size)
    folder = experiments.resolve_data_folder(data_dir)
    manifest = data.make_splits(folder, seed=P.seed, save=False)
    run = experiments.CachedModel(model, Path(model_path), card)
    fit = calibrate(run, manifest, P, refit=True, write_card=bool(store))
    T = fit["temperature"]
    x, y = data.load_split(manifest, "test", P.image_size, channels=channels)
    z = model_logits(model, x)
    groups = manifest.patients("test")
    scored = {key: summary(y, apply_temperature(z, t), groups=groups, bins=bins, rounds=P.bootstrap_rounds,
                           seed=P.seed)
              for key, t in (("before", 1.0), ("after", T))}
    referral = {}
    if refer_fraction is not None:
        entry = uncertainty.calibrate_referral(run, manifest, P, fraction=refer_fraction, write_card=bool(store))
        p_test = decision.pneumonia_probability(apply_temperature(z, 1.0))
        flagged = uncertainty.refer(p_test, entry["threshold"], entry["level"])
        right = decision.predicted_class(p_test, entry["threshold"]) == np.asarray(y).astype(int)
        referral = {"referral": {**entry, "test_referred": int(flagged.sum()),
                                 "test_accuracy": float(right.mean()),
                                 "test_accuracy_kept": float(right[~flagged].mean()) if (~flagged).any()
                                 else float("nan")}}
    return {
        "temperature": T, "fitted_on": fit["fitted_on"], "validation_images": fit["images"],
        "validation_nll_before": fit["nll_before"], "validation_nll_after": fit["nll_after"],
        "split": "test", "images": int(len(y)), "patients": int(len(set(groups))), "bins": bins,
        "bootstrap_rounds": int(P.bootstrap_rounds), "seed": int(P.seed), "stored": bool(store), **scored,
        **referral,
    }


def format_report(report: dict[str, Any]) -> list[str]:
    """:func:`file_report` as the lines ``pneumo evaluate --calibration`` prints (4 decimals)."""
    b, a = report["before"], report["after"]
    lines = [
        f"calibration on the {report['split']} split ({report['images']} images of {report['patients']} patients, "
        f"{report['bins']} equal-width bins; 95% CI: patient bootstrap, {report['bootstrap_rounds']} rounds):",
        f"  fitted temperature  T = {report['temperature']:.4f} (on the {report['fitted_on']} split, "
        f"{report['validation_images']} images; its NLL {report['validation_nll_before']:.4f} -> "
        f"{report['validation_nll_after']:.4f})",
        f"  {'':>6}  {'before temperature scaling':<34}  after temperature scaling",
    ]
    for key, title in (("ece", "ECE"), ("mce", "MCE"), ("brier", "Brier"), ("nll", "NLL")):
        cells = []
        for s in (b, a):
            cell = f"{s[key]:.4f}"
            if key == "ece":
                cell += f"  95% CI [{s['ece_low']:.4f}, {s['ece_high']:.4f}]"
            cells.append(cell)
        lines.append(f"  {title:>6}  {cells[0]:<34}  {cells[1]}")
    r = report.get("referral")
    if r:
        lines.append(
            f"  referral level {r['level']:.4f} bits (entropy at the threshold {r['threshold']:.4f}): above it lie "
            f"{r['referred_images']} of the {r['images']} {r['fitted_on']} images (fraction {r['fraction']:g})")
        lines.append(
            f"  test images above it: {r['test_referred']} of {report['images']}; accuracy on the rest "
            f"{r['test_accuracy_kept']:.4f} (on all {r['test_accuracy']:.4f})")
    if report["stored"]:
        what = "the temperature and the referral level are" if r else "the temperature is"
        lines.append(f"  {what} stored in the model card: the app and the explorer show "
                     "calibrated probabilities" + (" and flag images above the level" if r else ""))
    return lines
