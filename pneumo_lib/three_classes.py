"""NORMAL, bacterial or viral: three-class models, their training, evaluation and cache.

The classes come from the file names (:mod:`pneumo_lib.data.subtypes`, label order
:data:`THREE_CLASSES`: ``0 = NORMAL``, ``1 = bacterial``, ``2 = viral``) and the split from
:func:`pneumo_lib.data.subtypes.three_class_split` (patient-grouped, stratified by the three
classes). Here:

* :func:`build_model`: any architecture of :mod:`pneumo_lib.models` with ``classes=3``, a
  softmax head of three units. The layer names stay (``logits``, then ``prediction``), so the
  CAM functions explain each class: ``cam.grad_cam(model, images, class_index=2)`` is the
  map of "viral".
* :func:`train_on_split` / :func:`train_on_folder` / :func:`cached_training`: training with
  :func:`pneumo_lib.training.train`, the three classes weighted
  (:func:`~pneumo_lib.data.subtypes.class_weights3`), early stopping on the validation macro
  one-vs-rest ROC AUC, the model saved with a card that records ``classes: 3``.
* :func:`metrics3` / :func:`evaluate_predictions3` / :func:`evaluate_model3` /
  :func:`evaluate_file`: the predicted class is the arg-max of the three probabilities
  (there is no threshold to choose); per-class sensitivity and specificity, one-vs-rest and
  macro ROC AUC, the bacterial-versus-viral ROC AUC among pneumonias and the confusion matrix,
  with patient-level bootstrap 95% intervals.

A chapter::

    from pneumo_lib import cam, three_classes
    run = three_classes.cached_training("paper_cnn", "quick")        # trains once, then cached
    ev = three_classes.evaluate_cached(run)                          # test split, CIs by patient
    ev.table(); ev.confusion_frame()
    maps = [cam.grad_cam(run.model, images, class_index=k) for k in range(3)]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from sklearn import metrics as skm

from pneumo_lib import data, decision, evaluation, experiments, models, paths, runtime, training
from pneumo_lib._tf import keras, tf
from pneumo_lib.data.staging import one_writer
from pneumo_lib.data.subtypes import THREE_CLASSES, ThreeClassSplit, class_weights3, three_class_split
from pneumo_lib.profiles import Profile, get_profile, profile_for_card

#: Number of classes a model may have here.
VALID_CLASSES = (2, 3)
#: The card's label names of a three-class model.
CARD_LABELS = {str(k): c for k, c in enumerate(THREE_CLASSES)}
#: Bump when the three-class recipe changes, so cached three-class models are retrained.
RECIPE_VERSION = 1

# --------------------------------------------------------------------------- models


def check_classes(classes: Any) -> int:
    """``classes`` as an int, 2 or 3 (:func:`pneumo_lib.decision.check_class_count`).

    Raises:
        ValueError: Any other value (named, including ``3.0`` and ``True``), saying what is valid.
    """
    return decision.check_class_count(classes, "classes")


def build_model(name: str, image_size: int | None = None, *, classes: int = 3, channels: int | None = None,
                weights: str | os.PathLike[str] | None = None, **options: Any) -> keras.Model:
    """:func:`pneumo_lib.models.build_model` with a softmax head of ``classes`` units (uncompiled).

    The model is the architecture's softmax model with its head rebuilt: the layer before
    ``logits`` feeds a new ``Dense(classes)`` named ``"logits"`` (float32, the pre-softmax
    scores) and ``Activation("softmax")`` named ``"prediction"``; the model keeps the
    architecture's name (so :func:`pneumo_lib.models.architecture_of` and the CAM layer
    choice work) and, for backbones, its nested frozen backbone.

    Args:
        name: One of :data:`pneumo_lib.models.MODEL_NAMES` (scratch CNNs and backbones).
        image_size: Input side ``S``; default as :func:`pneumo_lib.models.build_model`.
        classes: 3 (NORMAL, bacterial, viral; default) or 2 (NORMAL, PNEUMONIA).
        channels: ``C``; default the architecture's.
        weights: As :func:`pneumo_lib.models.build_model`: ``None``, ``"imagenet"``
            (backbones) or a file. For a scratch CNN a file holds the weights of a model with
            the same number of classes; for a backbone, its no-top weights.
        **options: Backbone options (``dropout``, ``train_backbone``).

    Returns:
        A model mapping ``(N, S, S, C)`` float32 in ``[0, 1]`` to ``(N, classes)``
        probabilities (rows sum to 1).

    Raises:
        ValueError: ``classes`` not 2 or 3, and whatever :func:`pneumo_lib.models.build_model` raises.
    """
    classes = check_classes(classes)
    scratch = models.architecture(name).family == "scratch"
    base = models.build_model(name, image_size, channels=channels, head="softmax",
                              weights=None if scratch else weights, **options)
    if classes == 2:
        if scratch and weights is not None:
            base.load_weights(str(paths.check_file(weights, "weights file")))
        return base
    features = base.get_layer("logits").input
    logits = keras.layers.Dense(classes, name="logits", dtype="float32")(features)
    out = keras.layers.Activation("softmax", name="prediction", dtype="float32")(logits)
    model = keras.Model(base.inputs, out, name=base.name)
    if scratch and weights is not None:
        model.load_weights(str(paths.check_file(weights, "weights file")))
    return model


def classes_of(model: Any) -> int:
    """How many classes a model predicts (:func:`pneumo_lib.decision.model_classes`): 2 for one
    sigmoid unit or two softmax units, 3 for three.

    Raises:
        ValueError: Another output shape, naming the model and its shape.
    """
    return decision.model_classes(model)


def check_three_class_model(model: Any) -> None:
    """Raise unless ``model`` has three output units (NORMAL, bacterial, viral).

    Raises:
        ValueError: Names the model's output shape and says how to get a three-class model.
    """
    units = int(model.output_shape[-1])
    if units != 3:
        raise ValueError(
            f"Model {getattr(model, 'name', '?')!r} has {units} output unit(s) (a "
            f"{'two-class NORMAL/PNEUMONIA' if units in (1, 2) else f'{units}-class'} model); three-class "
            "evaluation needs three softmax units (NORMAL, bacterial, viral). Build one with "
            "three_classes.build_model(..., classes=3) or train it with `pneumo train --classes 3`; "
            "evaluate a two-class model with pneumo_lib.evaluation.")


# --------------------------------------------------------------------------- metrics

#: The scalar metrics of :func:`metrics3`, in table order.
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_roc_auc", "bacterial_vs_viral_auc")
#: The per-class metrics of :func:`metrics3` (keys ``f"{metric}_{class}"``).
PER_CLASS_METRICS = ("sensitivity", "specificity", "roc_auc")
#: Every scalar key of :func:`metrics3` (what the bootstrap intervals cover).
SCALAR_METRICS = SUMMARY_METRICS + tuple(f"{m}_{c}" for m in PER_CLASS_METRICS for c in THREE_CLASSES)


def check_probabilities3(y_true: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated three-class labels ``int (N,)`` and probabilities ``float64 (N, 3)``.

    Raises:
        ValueError: Lengths differ, no samples, labels outside {0, 1, 2}, probabilities not
            ``(N, 3)`` (a two-class model's outputs are named as such), outside [0, 1] or rows
            not summing to 1.
    """
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] in (1, 2)):
        raise ValueError(f"Probabilities of shape {p.shape} are a two-class model's (NORMAL, PNEUMONIA); "
                         "three-class evaluation needs (N, 3): P(NORMAL), P(bacterial), P(viral).")
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"Expected probabilities of shape (N, 3), got {p.shape}.")
    if y.size != p.shape[0]:
        raise ValueError(f"Labels and probabilities differ in length: {y.size} vs {p.shape[0]}.")
    if y.size == 0:
        raise ValueError("No samples to evaluate.")
    if not np.isin(y, (0, 1, 2)).all():
        raise ValueError(f"Three-class labels must be 0 (NORMAL), 1 (bacterial) or 2 (viral); "
                         f"found {sorted(set(y.tolist()))[:6]}.")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("Probabilities must be finite and within [0, 1].")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("Each row of probabilities must sum to 1 (softmax outputs).")
    return y.astype(int), p


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    return float(skm.roc_auc_score(positive, score)) if 0 < positive.sum() < positive.size else math.nan


def bacterial_viral_score(probabilities: np.ndarray) -> np.ndarray:
    """P(viral | pneumonia) = ``P(viral) / (P(bacterial) + P(viral))``, ``(N,)`` in [0, 1] (0.5 where both are 0)."""
    p = np.asarray(probabilities, dtype=np.float64)
    both = p[:, 1] + p[:, 2]
    return np.divide(p[:, 2], both, out=np.full(len(p), 0.5), where=both > 0)


def _confusion_scalars(cm: np.ndarray) -> dict[str, float]:
    n, out = cm.sum(), {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, c in enumerate(THREE_CLASSES):
            tp, pos, called = cm[k, k], cm[k].sum(), cm[:, k].sum()
            tn = n - pos - called + tp
            out[f"sensitivity_{c}"] = float(tp / pos) if pos else math.nan
            out[f"specificity_{c}"] = float(tn / (n - pos)) if n - pos else math.nan
        out["accuracy"] = float(np.trace(cm) / n)
        sens = [out[f"sensitivity_{c}"] for c in THREE_CLASSES]
        out["balanced_accuracy"] = float(np.mean(sens)) if not any(math.isnan(s) for s in sens) else math.nan
    return out


def metrics3(y_true: Any, probabilities: Any) -> dict[str, Any]:
    """Three-class metrics; the predicted class is the arg-max of the probabilities.

    Args:
        y_true: Labels ``(N,)`` in {0 NORMAL, 1 bacterial, 2 viral}.
        probabilities: ``(N, 3)`` softmax outputs in [0, 1], rows summing to 1.

    Returns:
        Floats in [0, 1] (``nan`` where undefined, e.g. an AUC when the class is absent):
        ``accuracy``; ``balanced_accuracy`` (mean sensitivity); ``sensitivity_<class>``
        (recall of the class) and ``specificity_<class>`` (the other classes' images not
        called that class) for each class of :data:`THREE_CLASSES`; ``roc_auc_<class>``
        (one against the rest, on P(class)); ``macro_roc_auc`` (their mean, scikit-learn's
        ``roc_auc_score(..., multi_class="ovr", average="macro")``);
        ``bacterial_vs_viral_auc`` (ROC AUC of :func:`bacterial_viral_score` for viral
        against bacterial, on the pneumonia images only). Also ``confusion``: a 3x3 list,
        rows true class, columns predicted (scikit-learn's ``confusion_matrix``),
        ``n`` and ``classes``.

    Raises:
        ValueError: As :func:`check_probabilities3`.
    """
    y, p = check_probabilities3(y_true, probabilities)
    cm = skm.confusion_matrix(y, p.argmax(axis=1), labels=[0, 1, 2])
    out: dict[str, Any] = _confusion_scalars(cm)
    for k, c in enumerate(THREE_CLASSES):
        out[f"roc_auc_{c}"] = _auc(y == k, p[:, k])
    aucs = [out[f"roc_auc_{c}"] for c in THREE_CLASSES]
    out["macro_roc_auc"] = float(np.mean(aucs)) if not any(math.isnan(a) for a in aucs) else math.nan
    pneumonia = y > 0
    out["bacterial_vs_viral_auc"] = _auc(y[pneumonia] == 2, bacterial_viral_score(p[pneumonia]))
    out.update(confusion=cm.astype(int).tolist(), n=int(y.size), classes=list(THREE_CLASSES))
    return out


def bootstrap_ci3(y_true: Any, probabilities: Any, *, groups: Any = None, rounds: int = 200, seed: int = 0,
                  level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric of :data:`SCALAR_METRICS`.

    Resamples whole patients when ``groups`` gives each image's patient (the images of a
    drawn patient all come along), else images: :func:`pneumo_lib.evaluation.bootstrap_indices`.
    Resamples where a metric is undefined (a class absent) are left out of that metric.

    Args:
        y_true, probabilities: As :func:`metrics3`.
        groups: Patient id per image ``(N,)``, or None.
        rounds: Number of resamples (>= 1); seed: their seed; level: coverage in (0, 1).

    Returns:
        ``{metric: (low, high)}`` (``nan`` bounds where never defined).
    """
    y, p = check_probabilities3(y_true, probabilities)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}.")
    samples: dict[str, list[float]] = {m: [] for m in SCALAR_METRICS}
    pred, score = p.argmax(axis=1), bacterial_viral_score(p)
    for idx in evaluation.bootstrap_indices(y.size, groups, rounds=rounds, seed=seed):
        ys, ps = y[idx], p[idx]
        cm = skm.confusion_matrix(ys, pred[idx], labels=[0, 1, 2])
        row = _confusion_scalars(cm)
        aucs = [_auc(ys == k, ps[:, k]) for k in range(3)]
        for k, c in enumerate(THREE_CLASSES):
            row[f"roc_auc_{c}"] = aucs[k]
        row["macro_roc_auc"] = float(np.mean(aucs)) if not any(math.isnan(a) for a in aucs) else math.nan
        pn = ys > 0
        row["bacterial_vs_viral_auc"] = _auc(ys[pn] == 2, score[idx][pn])
        for m in SCALAR_METRICS:
            samples[m].append(row[m])
    return evaluation.percentile_intervals(samples, level)


@dataclass
class ThreeClassEvaluation:
    """A three-class model's evaluation on one split (the test split).

    Attributes:
        name: What was evaluated.
        metrics: :func:`metrics3` on the split.
        ci: Bootstrap 95% intervals of :data:`SCALAR_METRICS`.
        ci_unit: ``"patient"`` or ``"image"`` (what the bootstrap resampled).
        y_true: Labels ``(N,)`` in {0, 1, 2}; probabilities: ``(N, 3)``.
        val_metrics: :func:`metrics3` on validation, when it was given.
        context: Profile, data, split.
    """

    name: str
    metrics: dict[str, Any]
    ci: dict[str, tuple[float, float]]
    y_true: np.ndarray
    probabilities: np.ndarray
    val_metrics: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    ci_unit: str = "image"

    def table(self):
        """Per-class sensitivity, specificity and one-vs-rest ROC AUC with their intervals, as a
        ``pandas.DataFrame`` (rows: the three classes; columns ``(metric, value|low|high)``)."""
        import pandas as pd

        columns = pd.MultiIndex.from_tuples([(m, part) for m in PER_CLASS_METRICS for part in ("value", "low", "high")])
        rows = [[x for m in PER_CLASS_METRICS
                 for x in (self.metrics[f"{m}_{c}"], *self.ci[f"{m}_{c}"])] for c in THREE_CLASSES]
        frame = pd.DataFrame(rows, index=pd.Index(THREE_CLASSES, name="class"), columns=columns)
        frame.attrs["caption"] = self.caption()
        return frame

    def summary_frame(self):
        """Accuracy, balanced accuracy, macro ROC AUC and bacterial-vs-viral AUC with intervals (``pandas``)."""
        import pandas as pd

        rows = [[self.metrics[m], *self.ci[m]] for m in SUMMARY_METRICS]
        frame = pd.DataFrame(rows, index=pd.Index(SUMMARY_METRICS, name="metric"), columns=["value", "low", "high"])
        frame.attrs["caption"] = self.caption()
        return frame

    def confusion_frame(self):
        """The confusion matrix as a ``pandas.DataFrame`` (rows: true class, columns: predicted)."""
        import pandas as pd

        return pd.DataFrame(self.metrics["confusion"], index=pd.Index(THREE_CLASSES, name="true"),
                            columns=pd.Index(THREE_CLASSES, name="predicted"))

    def caption(self) -> str:
        """One line: what data, split and profile, and what the intervals resample."""
        ctx = ", ".join(f"{k} {v}" for k, v in self.context.items() if k in ("data", "profile", "split"))
        return f"{self.name}: three classes, {ctx}; 95% bootstrap intervals over {self.ci_unit}s"

    def plot_confusion(self, ax=None, *, normalize: bool = True):
        """The confusion matrix as an image (rows normalised to 1 by default); returns the ``Axes``."""
        import matplotlib.pyplot as plt

        cm = np.asarray(self.metrics["confusion"], dtype=float)
        shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
        if ax is None:
            _, ax = plt.subplots(figsize=(4.2, 3.8))
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{int(cm[i, j])}" + (f"\n{shown[i, j]:.2f}" if normalize else ""), ha="center",
                        va="center", color="white" if shown[i, j] > 0.6 * shown.max() else "black", fontsize=9)
        ax.set_xticks(range(3), THREE_CLASSES)
        ax.set_yticks(range(3), THREE_CLASSES)
        ax.set(xlabel="predicted", ylabel="true")
        return ax

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-image arrays)."""
        def rounded(m):
            return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}

        return {
            "name": self.name, "classes": list(THREE_CLASSES), "split": self.context.get("split", "test"),
            "rule": "arg-max", "metrics": rounded(self.metrics),
            "ci95": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in self.ci.items()},
            "ci_unit": self.ci_unit,
            "val_metrics": None if self.val_metrics is None else rounded(self.val_metrics),
            "context": self.context,
        }


def evaluate_predictions3(y_test: Any, p_test: Any, y_val: Any = None, p_val: Any = None, *, name: str = "model",
                          groups: Any = None, bootstrap_rounds: int = 200, seed: int = 0,
                          context: Mapping[str, Any] | None = None) -> ThreeClassEvaluation:
    """Evaluate three-class test probabilities (and report validation, when given).

    Args:
        y_test, p_test: Test labels ``(N,)`` in {0, 1, 2} and probabilities ``(N, 3)``.
        y_val, p_val: Validation labels and probabilities (reported only: the arg-max rule
            has nothing to choose).
        groups: Patient id per test image (``split.patients("test")``): intervals resample patients.
        bootstrap_rounds, seed: Bootstrap size and seed.
        context: What produced the numbers (profile, data, split).

    Raises:
        ValueError: As :func:`check_probabilities3`; the test split lacks a class.
    """
    y, p = check_probabilities3(y_test, p_test)
    missing = [c for k, c in enumerate(THREE_CLASSES) if not (y == k).any()]
    if missing:
        raise ValueError(f"The evaluated split has no {', '.join(missing)} image ({y.size} images): "
                         "three-class metrics need all three classes.")
    val = metrics3(y_val, p_val) if y_val is not None and p_val is not None else None
    return ThreeClassEvaluation(
        name=name, metrics=metrics3(y, p),
        ci=bootstrap_ci3(y, p, groups=groups, rounds=bootstrap_rounds, seed=seed),
        y_true=y, probabilities=p, val_metrics=val, context={"split": "test", **dict(context or {})},
        ci_unit="image" if groups is None else "patient")


def predict_proba3(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities of a three-class model over ``(images, labels)`` batches.

    Returns:
        ``(y, p)``: int labels ``(N,)`` and float64 probabilities ``(N, 3)``.

    Raises:
        ValueError: The model has not three outputs (:func:`check_three_class_model`), or the
            dataset is empty.
    """
    check_three_class_model(model)
    ys, ps = [], []
    for images, labels in dataset:
        ps.append(np.asarray(model(images, training=False), dtype=np.float64))
        ys.append(np.asarray(labels).reshape(-1))
    if not ys:
        raise ValueError("The dataset is empty: nothing to predict.")
    return np.concatenate(ys).astype(int), np.concatenate(ps)


def evaluate_model3(model: Any, test_data: Any, val_data: Any = None, *, name: str | None = None,
                    **options: Any) -> ThreeClassEvaluation:
    """Predict on test (and validation) batches and evaluate (:func:`evaluate_predictions3` options)."""
    check_three_class_model(model)
    y_test, p_test = predict_proba3(model, test_data)
    y_val = p_val = None
    if val_data is not None:
        y_val, p_val = predict_proba3(model, val_data)
    return evaluate_predictions3(y_test, p_test, y_val, p_val, name=name or model.name, **options)


# --------------------------------------------------------------------------- training


def split_dataset3(split: ThreeClassSplit, name: str, profile: Profile, *, channels: int = 1,
                   train: bool | None = None) -> "tf.data.Dataset":
    """:func:`pneumo_lib.data.make_dataset` of one split with its three-class labels.

    ``(images (B, S, S, C) float32 in [0, 1], labels (B,) in {0, 1, 2})``; the ``train``
    split (or ``train=True``) is shuffled and augmented with the profile's seed.
    """
    is_train = name == "train" if train is None else train
    return data.make_dataset(split.paths(name), split.labels(name), image_size=profile.image_size,
                             channels=channels, batch_size=profile.batch_size, augment=is_train,
                             shuffle=is_train, seed=profile.seed)


def train_on_split(name: str, split: ThreeClassSplit, out: str | os.PathLike[str], *,
                   profile: str | Profile = "quick", weights: str | os.PathLike[str] | None = None,
                   card: dict[str, Any] | None = None, verbose: str | int = "auto",
                   strategy: str = "auto") -> tuple[training.TrainResult, ThreeClassEvaluation]:
    """Train a three-class ``name`` on a :class:`~pneumo_lib.data.subtypes.ThreeClassSplit`, evaluate it on
    test, save ``out`` (``.keras`` + card with ``classes: 3``).

    Args:
        name: One of :data:`pneumo_lib.models.MODEL_NAMES`.
        split: The three-class split (every class in every split).
        out: Target ``.keras`` file (checkpointed during training, final at the end).
        profile: Profile name or object: image size, batch, epochs, rates, seed, bootstrap rounds.
        weights: ``None`` (random init; a backbone then trains whole, from scratch),
            ``"imagenet"`` (frozen backbone, then its top blocks fine-tuned) or a weights file.
        card: Extra card fields.
        verbose, strategy: As :func:`pneumo_lib.training.train`.

    Returns:
        ``(TrainResult, ThreeClassEvaluation)``; ``val_auc`` in the history is the validation
        macro one-vs-rest ROC AUC.

    Raises:
        ValueError: A class missing from a split (named), bad names.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    split.check_complete()
    train_labels = split.labels("train")
    runtime.seed_everything(P.seed, deterministic=True)
    train_ds = split_dataset3(split, "train", P, channels=arch.channels)
    val_ds = split_dataset3(split, "val", P, channels=arch.channels)
    test_ds = split_dataset3(split, "test", P, channels=arch.channels)
    train_backbone = arch.family == "backbone" and weights is None
    transfer = weights is not None and not train_backbone
    info = {
        "name": name, "classes": 3, "labels": dict(CARD_LABELS), "profile": P.name, "profile_values": P.as_dict(),
        "data": {"source": P.data_source, "folder": str(split.data_dir),
                 "manifest_hash": experiments.manifest_hash(split.manifest), "counts": split.counts(),
                 "split_reused": split.reused, "share_gaps": {k: round(v, 6) for k, v in split.share_gaps().items()},
                 "train_images": int(train_labels.size)},
        "weights": None if weights is None else str(weights), "train_backbone": train_backbone,
        "three_class_recipe": RECIPE_VERSION, **(card or {}),
    }
    runtime.seed_everything(P.seed, deterministic=True)
    dist = training.pick_strategy(strategy)
    with dist.scope():
        model = build_model(name, P.image_size, classes=3, weights=weights,
                            **({"train_backbone": True} if train_backbone else {}))
    result = training.train(
        model, train_ds, val_ds, epochs=P.epochs, learning_rate=P.learning_rate,
        class_weight=class_weights3(train_labels),
        fine_tune_epochs=P.fine_tune_epochs if transfer else 0, fine_tune_learning_rate=P.fine_tune_learning_rate,
        transfer=transfer, image_size=P.image_size, head="softmax", weights=weights, checkpoint=out, card=info,
        n_train=int(train_labels.size), seed=P.seed, verbose=verbose, strategy=dist,
    )
    result_eval = evaluate_model3(
        result.model, test_ds, val_ds, name=name, bootstrap_rounds=P.bootstrap_rounds, seed=P.seed,
        groups=split.patients("test"), context={"profile": P.name, "data": P.data_source, "split": "test"})
    info.update(training=result.summary(), history=result.history, evaluation=result_eval.as_dict())
    training.save_model(result.model, out, info)
    return result, result_eval


def train_on_folder(name: str, data_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                    profile: str | Profile = "quick", weights: str | os.PathLike[str] | None = "profile",
                    verbose: str | int = "auto", strategy: str = "auto"
                    ) -> tuple[training.TrainResult, ThreeClassEvaluation]:
    """What ``pneumo train --classes 3`` runs: the three-class split of a folder, then :func:`train_on_split`.

    Args:
        name: An architecture.
        data_dir: A ``chest_xray`` folder (or the folder holding one).
        out: Target ``.keras`` file.
        profile: Profile name or object.
        weights: ``"profile"`` (scratch CNNs: none; backbones: the profile's, e.g. ImageNet on
            ``full``, random on ``quick``), ``"imagenet"``, ``None`` or a weights file.

    Raises:
        FileNotFoundError: No such folder or weights file.
        ValueError: A file whose name says neither bacteria nor virus, a class missing from a split.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    paths.check_not_folder(out, "model file", suffix=".keras")
    if weights not in (None, "profile", "imagenet"):
        paths.check_file(weights, "weights file")
    if weights == "profile":
        weights = None if arch.family == "scratch" else P.weights
    folder = data.resolve_data_dir(data_dir)
    split = three_class_split(folder, seed=P.seed)
    return train_on_split(name, split, out, profile=P, weights=weights, verbose=verbose, strategy=strategy)


def evaluate_file(model_path: str | os.PathLike[str], data_dir: str | os.PathLike[str], *,
                  profile: str | Profile | None = None) -> ThreeClassEvaluation:
    """What ``pneumo evaluate`` runs for a three-class model file: its test split, intervals by patient.

    The profile (seed, batch, bootstrap rounds) comes from ``profile`` or the model card; image
    size and channels from the model.

    Raises:
        FileNotFoundError: No such model file or folder.
        ValueError: The model has not three classes (:func:`check_three_class_model`), a
            class missing from a split.
    """
    paths.check_file(model_path, "model file", suffix=".keras")
    folder = data.resolve_data_dir(data_dir)
    model = training.load_model(model_path)
    check_three_class_model(model)
    card = training.read_card(model_path)
    P = get_profile(profile_for_card(card, profile), image_size=int(model.input_shape[1]))
    split = three_class_split(folder, seed=P.seed)
    channels = int(model.input_shape[-1])
    return evaluate_model3(
        model, split_dataset3(split, "test", P, channels=channels), split_dataset3(split, "val", P, channels=channels),
        name=card.get("name", model.name), bootstrap_rounds=P.bootstrap_rounds, seed=P.seed,
        groups=split.patients("test"),
        context={"profile": P.name, "data": str(split.data_dir), "split": "test",
                 "manifest_hash": experiments.manifest_hash(split.manifest)})


# --------------------------------------------------------------------------- the chapters' cache


def _file_hash(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(paths.check_file(path, "weights file"), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def cache_path(name: str, profile: Profile, split: ThreeClassSplit, weights_id: str | None) -> Path:
    """Cache file of a three-class model: ``<models>/<name>-<profile>-3class-<key>.keras``."""
    fields = {"three_class_recipe": RECIPE_VERSION, "recipe": experiments.RECIPE_VERSION, "name": name,
              "profile": {k: v for k, v in profile.as_dict().items()
                          if k not in ("description", "bootstrap_rounds", "n_explain")},
              "weights": weights_id, "manifest": experiments.manifest_hash(split.manifest)}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return paths.model_cache_dir() / f"{name}-{profile.name}-3class-{key}.keras"


def cached_training(name: str, profile: str | Profile = "quick", *,
                    weights: str | os.PathLike[str] | None = "profile", retrain: bool = False,
                    verbose: str | int = 0) -> experiments.CachedModel:
    """A trained three-class model, from the cache or trained (and cached) now; what chapters call.

    The data are the profile's (``data.ensure_dataset(profile)``), split by
    :func:`~pneumo_lib.data.subtypes.three_class_split` with the profile's seed.

    Args:
        name: An architecture (the chapters use ``"paper_cnn"`` on the quick profile).
        profile: Profile name or object.
        weights: ``"profile"`` (scratch CNNs: none; backbones: the profile's), ``"imagenet"``,
            ``None`` or a weights file.
        retrain: Train even when cached.
        verbose: Keras verbosity (0 for notebooks).

    Returns:
        An :class:`pneumo_lib.experiments.CachedModel`; its ``card["evaluation"]`` is the
        test :meth:`ThreeClassEvaluation.as_dict`.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    if weights == "profile":
        weights = None if arch.family == "scratch" else P.weights
    weights_id = weights if weights in (None, "imagenet") else f"file:{Path(weights).name}:{_file_hash(weights)}"
    split = three_class_split(data.ensure_dataset(P), seed=P.seed)
    path = cache_path(name, P, split, weights_id)
    cached = None if retrain else experiments.finished_training(path)
    if cached is not None:
        return cached
    with one_writer(path):  # chapters 07 and 08 run side by side both ask for it: one trains it
        cached = None if retrain else experiments.finished_training(path)
        if cached is not None:
            return cached
        result, _ = train_on_split(name, split, path, profile=P, weights=weights, verbose=verbose)
    return experiments.CachedModel(result.model, path, training.read_card(path), trained_now=True)


def evaluate_cached(run: experiments.CachedModel, profile: str | Profile | None = None) -> ThreeClassEvaluation:
    """The test evaluation of a :func:`cached_training` model, recomputed (with the per-image
    arrays the card does not hold) on the data of its card's profile."""
    P = profile_for_card(run.card, profile)
    split = three_class_split(data.ensure_dataset(P), seed=P.seed)
    channels = int(run.model.input_shape[-1])
    return evaluate_model3(
        run.model, split_dataset3(split, "test", P, channels=channels), split_dataset3(split, "val", P, channels=channels),
        name=run.card.get("name", run.model.name), bootstrap_rounds=P.bootstrap_rounds, seed=P.seed,
        groups=split.patients("test"), context={"profile": P.name, "data": P.data_source, "split": "test"})
