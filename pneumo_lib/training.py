"""The one training function used by the chapters and the command line, and model files.

:func:`train` trains a model on two ``tf.data`` datasets yielding ``(images, labels)``
(images ``float32 (B, S, S, C)`` in ``[0, 1]``, labels ``0 = NORMAL``, ``1 = PNEUMONIA``):

* seeds everything and turns on TensorFlow op determinism (same seed, same numbers);
* builds the model by name inside a ``tf.distribute`` strategy picked for the hardware
  (:func:`pick_strategy`) and, with a GPU, under the ``mixed_float16`` policy;
* weights the classes, monitors the validation ROC AUC (``val_auc``) for early stopping
  and learning-rate reduction, keeps the best weights over all epochs and, given a path,
  saves the best model so far atomically after every improvement (so an interrupted
  run leaves a loadable checkpoint);
* optionally fine-tunes a backbone's top blocks in a second phase at a lower rate;
* shows a Keras progress bar in a terminal, one line per epoch in logs, nothing in notebooks.

Models are saved in the ``.keras`` format with a JSON *model card* beside them
(``model.keras`` + ``model.json``) and loaded with Keras safe mode on (:func:`load_model`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pneumo_lib import decision, models, runtime
from pneumo_lib._tf import keras, tf


class ModelFileError(ValueError):
    """A model file is missing, corrupted, truncated or unsafe to load."""


# --------------------------------------------------------------------------- hardware


def progress_verbosity(verbose: str | int = "auto") -> int:
    """The Keras ``verbose`` value to use: 0 in notebooks, 1 (bar) in a terminal, 2 otherwise.

    Args:
        verbose: ``"auto"`` or an explicit Keras verbosity (0, 1 or 2).
    """
    if verbose != "auto":
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}.")
        return int(verbose)
    if "ipykernel" in sys.modules:
        return 0
    return 1 if sys.stdout.isatty() else 2


def pick_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy for this machine.

    Args:
        kind: ``"auto"``: a TPU strategy on a TPU runtime (Colab sets ``COLAB_TPU_ADDR``,
            Cloud TPUs ``TPU_NAME``), ``MirroredStrategy`` with several GPUs, the default
            (single-device) strategy otherwise. ``"default"``, ``"mirrored"`` (over all
            GPUs, or over all logical CPU devices when there is no GPU) or ``"tpu"`` force one.

    Raises:
        ValueError: Unknown kind.
    """
    valid = ("auto", "default", "mirrored", "tpu")
    if kind not in valid:
        raise ValueError(f"Unknown strategy {kind!r}. Valid strategies: {', '.join(valid)}.")
    if kind == "auto":
        if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
            kind = "tpu"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def use_mixed_precision(mode: str | bool = "auto") -> bool:
    """Whether to train in ``mixed_float16``: ``"auto"`` means only when a GPU is present."""
    if mode == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(mode)


# --------------------------------------------------------------------------- compile / fit


#: Thresholds of the Keras AUC metric (the default 200 cannot see the small spread of
#: scores of a network early in training, where every score is close to 0.5).
AUC_THRESHOLDS = 1000


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Compile with Adam, the loss matching the head, and ROC AUC / accuracy metrics.

    Sigmoid head: binary cross-entropy on labels ``(B, 1)``. Softmax head: categorical
    cross-entropy on one-hot labels ``(B, 2)``; its AUC is computed per column and
    averaged, which for two complementary columns equals the ROC AUC of P(PNEUMONIA).
    The metric is named ``auc`` (``val_auc`` on validation data) for both heads.
    """
    if model.output_shape[-1] == 1:
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.AUC(name="auc", num_thresholds=AUC_THRESHOLDS),
                   keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=2, num_thresholds=AUC_THRESHOLDS),
            keras.metrics.CategoricalAccuracy(name="accuracy"),
        ]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def _shape_labels(dataset: tf.data.Dataset, units: int) -> tf.data.Dataset:
    """Labels as the head expects them: ``(B, 1)`` float for sigmoid, one-hot for softmax."""
    if units == 1:
        return dataset.map(lambda x, y: (x, tf.reshape(tf.cast(y, tf.float32), (-1, 1))))
    return dataset.map(lambda x, y: (x, tf.one_hot(tf.cast(tf.reshape(y, (-1,)), tf.int32), 2)))


class _KeepBest(keras.callbacks.Callback):
    """Keep the weights of the best ``val_auc`` over all phases; optionally save them.

    Saving writes a temporary file beside the target and renames it, so a run
    interrupted at any moment leaves the previous best checkpoint intact.
    """

    def __init__(self, path: Path | None, card: Callable[[], dict] | None):
        super().__init__()
        self.path, self.card = path, card
        self.best_auc, self.best_epoch, self.best_weights = -1.0, -1, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        auc = float((logs or {}).get("val_auc", float("nan")))
        if auc > self.best_auc:  # NaN never improves
            self.best_auc, self.best_epoch = auc, epoch
            self.best_weights = self.model.get_weights()
            if self.path is not None:
                card = dict(self.card() if self.card else {})
                card.update(checkpoint_epoch=epoch + 1, checkpoint_val_auc=round(auc, 6))
                save_model(self.model, self.path, card)


class _TrainTimer(keras.callbacks.Callback):
    """Wall time spent in training steps (excluding validation) and epochs run."""

    def __init__(self):
        super().__init__()
        self.seconds, self.epochs, self._start = 0.0, 0, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.epochs += 1
            self._start = None


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The trained model, holding the weights of the best validation AUC.
        history: Per-epoch values over both phases: ``loss``, ``auc``, ``accuracy``,
            ``val_loss``, ``val_auc``, ``val_accuracy``, ``learning_rate``, ``phase``
            (``"train"`` or ``"fine-tune"``).
        best_epoch: 1-based epoch of the best ``val_auc`` (the kept weights).
        best_val_auc: That validation ROC AUC.
        train_seconds: Wall time of the training steps (validation excluded).
        images_per_second: Training throughput, if the number of training images was given.
        strategy: Class name of the ``tf.distribute`` strategy used.
        replicas: Number of replicas it ran on.
        mixed_precision: Whether the ``mixed_float16`` policy was used.
    """

    model: keras.Model
    history: dict[str, list] = field(default_factory=dict)
    best_epoch: int = 0
    best_val_auc: float = float("nan")
    train_seconds: float = 0.0
    images_per_second: float | None = None
    strategy: str = ""
    replicas: int = 1
    mixed_precision: bool = False

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly part (everything but the model and the full history)."""
        return {
            "epochs_run": len(self.history.get("loss", [])),
            "best_epoch": self.best_epoch,
            "best_val_auc": round(self.best_val_auc, 6),
            "train_seconds": round(self.train_seconds, 2),
            "images_per_second": None if self.images_per_second is None else round(self.images_per_second, 1),
            "strategy": self.strategy,
            "replicas": self.replicas,
            "mixed_precision": self.mixed_precision,
        }


def _build(name, image_size, head, weights, strategy, mixed, options) -> keras.Model:
    previous = keras.mixed_precision.global_policy().name
    try:
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        with strategy.scope():
            return models.build_model(name, image_size, head=head, weights=weights, **options)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def train(
    model: str | keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset,
    *,
    epochs: int = 8,
    learning_rate: float = 1e-3,
    class_weight: dict[int, float] | None = None,
    fine_tune_epochs: int = 0,
    fine_tune_learning_rate: float = 1e-5,
    transfer: bool | None = None,
    patience: int = 3,
    lr_patience: int = 2,
    warmup_epochs: int = 2,
    image_size: int | None = None,
    head: str = "sigmoid",
    weights: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    card: dict[str, Any] | None = None,
    n_train: int | None = None,
    build_options: dict[str, Any] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    seed: int = 42,
    verbose: str | int = "auto",
    strategy: str | tf.distribute.Strategy = "auto",
    mixed_precision: str | bool = "auto",
) -> TrainResult:
    """Train a model; the function behind every chapter and ``pneumo train``.

    Args:
        model: A name from :data:`pneumo_lib.models.MODEL_NAMES` (built here, after
            seeding, inside the strategy's scope) or an already built model (trained as
            is, on the default strategy: build it inside ``strategy.scope()`` yourself).
        train_data: Batches ``(images (B,S,S,C) float32 in [0,1], labels (B,) in {0,1})``,
            shuffled by the pipeline if wanted.
        val_data: The same for the validation split (never the test split).
        epochs: Maximum epochs of the first phase (early stopping may end sooner).
        learning_rate: Adam learning rate of the first phase.
        class_weight: ``{0: w_normal, 1: w_pneumonia}`` loss weights, or ``None``.
        fine_tune_epochs: Epochs of the second phase of transfer learning, which
            unfreezes the top blocks (:func:`pneumo_lib.models.unfreeze_top`); 0 skips it.
        fine_tune_learning_rate: Adam learning rate of the second phase.
        transfer: Train as transfer learning: a first phase with the features frozen
            (:func:`pneumo_lib.models.freeze_features`: the backbone, or a pretrained
            scratch CNN's conv blocks), then the fine-tuning phase. ``None``: for models
            whose backbone is frozen (the default build of a backbone model).
        patience: Epochs without a better ``val_auc`` before a phase stops early.
        lr_patience: Epochs without improvement before the learning rate is divided by 3.
        warmup_epochs: Epochs of each phase before early stopping may start counting
            (networks trained from scratch often sit on a plateau at first).
        image_size, head, weights: Passed to :func:`pneumo_lib.models.build_model` when
            ``model`` is a name.
        checkpoint: Path ``*.keras`` where the best model so far is saved (atomically,
            with its card) after every improvement; ``None`` saves nothing.
        card: Model-card fields written with each checkpoint (see :func:`save_model`).
        n_train: Number of training images per epoch, for the throughput figure.
        build_options: Extra keyword arguments for the builder, e.g.
            ``{"train_backbone": True}`` to train a backbone from scratch.
        callbacks: Extra Keras callbacks, run after the library's own.
        seed: Seed of every random generator; op determinism is enabled too.
        verbose: ``"auto"`` (see :func:`progress_verbosity`) or a Keras verbosity.
        strategy: A strategy kind for :func:`pick_strategy` or a strategy object.
        mixed_precision: ``"auto"`` (only with a GPU), ``True`` or ``False``.

    Returns:
        A :class:`TrainResult` whose model holds the best weights.

    Raises:
        ValueError: Bad argument values (unknown names, non-positive epochs).
    """
    if epochs < 1 or fine_tune_epochs < 0:
        raise ValueError(f"epochs must be >= 1 and fine_tune_epochs >= 0; got {epochs}, {fine_tune_epochs}.")
    runtime.seed_everything(seed, deterministic=True)
    dist = pick_strategy(strategy) if isinstance(strategy, str) else strategy
    mixed = use_mixed_precision(mixed_precision) and isinstance(model, str)
    if isinstance(model, str):
        model = _build(model, image_size, head, weights, dist, mixed, build_options or {})
    units = model.output_shape[-1]
    train_ds, val_ds = _shape_labels(train_data, units), _shape_labels(val_data, units)
    keep = _KeepBest(Path(checkpoint) if checkpoint else None, lambda: card or {})
    timer = _TrainTimer()
    history: dict[str, list] = {}
    phases = [("train", learning_rate, epochs)]
    if transfer is None:
        transfer = models.has_frozen_backbone(model)
    if transfer:
        models.freeze_features(model)
        if fine_tune_epochs:
            phases.append(("fine-tune", fine_tune_learning_rate, fine_tune_epochs))
    done = 0
    for phase, rate, phase_epochs in phases:
        with dist.scope():
            if phase == "fine-tune":
                models.unfreeze_top(model)
            compile_model(model, rate)
        phase_callbacks = [
            keep,
            timer,
            keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max", patience=patience, start_from_epoch=done + warmup_epochs
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_auc", mode="max", factor=1 / 3, patience=lr_patience, min_lr=rate / 100, verbose=0
            ),
            *(callbacks or []),
        ]
        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=done + phase_epochs,
            initial_epoch=done,
            class_weight=class_weight,
            callbacks=phase_callbacks,
            verbose=progress_verbosity(verbose),
        )
        ran = len(fit.history.get("loss", []))
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        history.setdefault("phase", []).extend([phase] * ran)
        done += ran
    if keep.best_weights is not None:
        model.set_weights(keep.best_weights)
    throughput = n_train * timer.epochs / timer.seconds if n_train and timer.seconds > 0 else None
    return TrainResult(
        model=model,
        history=history,
        best_epoch=keep.best_epoch + 1,
        best_val_auc=keep.best_auc,
        train_seconds=timer.seconds,
        images_per_second=throughput,
        strategy=type(dist).__name__,
        replicas=int(dist.num_replicas_in_sync),
        mixed_precision=mixed,
    )


# --------------------------------------------------------------------------- model files


def card_path(model_path: str | os.PathLike[str]) -> Path:
    """The model card beside a model file: ``model.keras`` -> ``model.json``."""
    return Path(model_path).with_suffix(".json")


def save_model(model: keras.Model, path: str | os.PathLike[str], card: dict[str, Any] | None = None) -> Path:
    """Save a model as ``.keras`` and its JSON model card beside it, both atomically.

    The card gets the architecture, input shape, head, library and dependency versions
    added to the given fields (typically profile, data source, manifest hash, metrics).

    Args:
        model: A model built by :mod:`pneumo_lib.models`.
        path: Target file; must end in ``.keras``. Missing folders are created.
        card: Extra JSON-serialisable fields.

    Returns:
        The model path.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Model files use the .keras format; got {path}. Name it e.g. {path.stem}.keras.")
    path.parent.mkdir(parents=True, exist_ok=True)
    full_card = {
        "architecture": models.architecture_of(model).name,
        "input_shape": list(model.input_shape[1:]),
        "head": "sigmoid" if model.output_shape[-1] == 1 else "softmax",
        "labels": {"0": "NORMAL", "1": "PNEUMONIA"},
        "versions": runtime.versions(),
        **(card or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _write_json_atomic(card_path(path), full_card)
    return path


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_card(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card saved beside a model file (``{}`` if there is none)."""
    path = card_path(model_path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a ``.keras`` model with Keras safe mode on (uncompiled).

    The model carries its card's validation threshold for :mod:`pneumo_lib.decision`
    (``decision.model_threshold(model)``; 0.5 without a card) and its card's temperature
    (``decision.model_temperature(model)``; 1.0 without a ``calibration`` entry).

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Not a ``.keras`` file, corrupted or truncated, or it would need
            unsafe deserialisation (e.g. a ``Lambda`` layer holding Python code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file {path} does not exist. Train one with `pneumo train ... --out {path}`.")
    if path.suffix != ".keras":
        raise ModelFileError(f"{path} is not a .keras model file; save models with pneumo_lib.training.save_model.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is corrupted or truncated (not a complete .keras zip archive). "
            "Re-download it or retrain it with `pneumo train`."
        )
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:
        text = str(err)
        if "safe_mode" in text or "unsafe" in text.lower() or "lambda" in text.lower():
            raise ModelFileError(
                f"{path} needs unsafe deserialisation (it holds Python code, e.g. a Lambda layer), "
                "so it was not loaded. Models built by pneumo_lib never need this; only if you wrote "
                "and trust this file, load it yourself with keras.models.load_model(path, safe_mode=False)."
            ) from None
        raise ModelFileError(
            f"{path} could not be loaded ({type(err).__name__}: {text.splitlines()[0] if text else ''}). "
            "The file is corrupted or was written by an incompatible version; retrain it with `pneumo train`."
        ) from None
    # The one prediction rule (pneumo_lib.decision) finds the card's validation threshold here,
    # and calibrated probabilities the card's temperature (1.0 when it has none).
    card = read_card(path)
    return decision.attach_temperature(decision.attach_threshold(model, card), card)
