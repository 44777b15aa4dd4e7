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
* given a path, also writes the whole training state after every epoch (weights, optimizer,
  random-generator states, early-stopping / learning-rate callbacks, history) to
  ``<model>.resume.npz`` beside it, and a later run of the same training resumes from it and
  ends with the weights an uninterrupted run ends with (:func:`resume_path`);
* shows a Keras progress bar in a terminal, one line per epoch in logs, nothing in notebooks.

Models are saved in the ``.keras`` format with a JSON *model card* beside them
(``model.keras`` + ``model.json``) and loaded with Keras safe mode on (:func:`load_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pneumo_lib import decision, models, paths, runtime
from pneumo_lib._tf import keras, tf


class ModelFileError(ValueError):
    """A model file is missing, corrupted, truncated or unsafe to load."""


class ResumeWarning(UserWarning):
    """A saved training state could not be used (corrupt, or another training's): training starts afresh."""


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

    Sigmoid head: binary cross-entropy on labels ``(B, 1)``. Softmax head of ``K`` units:
    categorical cross-entropy on one-hot labels ``(B, K)``; its AUC is computed per column
    (one class against the rest) and averaged, which for two complementary columns equals the
    ROC AUC of P(PNEUMONIA) and for three classes is the macro one-vs-rest ROC AUC.
    The metric is named ``auc`` (``val_auc`` on validation data) for every head.
    """
    if model.output_shape[-1] == 1:
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.AUC(name="auc", num_thresholds=AUC_THRESHOLDS),
                   keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=int(model.output_shape[-1]),
                              num_thresholds=AUC_THRESHOLDS),
            keras.metrics.CategoricalAccuracy(name="accuracy"),
        ]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def _shape_labels(dataset: tf.data.Dataset, units: int) -> tf.data.Dataset:
    """Labels as the head expects them: ``(B, 1)`` float for sigmoid, one-hot ``(B, units)`` for softmax."""
    if units == 1:
        return dataset.map(lambda x, y: (x, tf.reshape(tf.cast(y, tf.float32), (-1, 1))))
    return dataset.map(lambda x, y: (x, tf.one_hot(tf.cast(tf.reshape(y, (-1,)), tf.int32), units)))


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


# --------------------------------------------------------------------------- resuming

#: Version of the resume-file layout; a file of another version is not used.
RESUME_FORMAT = 1


def resume_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The training state saved beside a checkpoint: ``model.keras`` -> ``model.resume.npz``."""
    return Path(checkpoint).with_suffix(".resume.npz")


def _signature(model: keras.Model, config: dict[str, Any]) -> str:
    """What identifies one training: its arguments and card, and the model's variables."""
    # Shapes and dtypes, not names: Keras numbers unnamed layers and seed generators per
    # process, so the same model gets other names after building others.
    variables = [(list(v.shape), str(v.dtype)) for v in model.variables]
    text = json.dumps({"config": config, "variables": variables}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_ES_FIELDS = ("wait", "best", "stopped_epoch", "best_epoch")
_LR_FIELDS = ("wait", "best", "cooldown_counter")


@dataclass
class _State:
    """Where a training is: completed epochs, phase, callback states, history (all JSON)."""

    done: int = 0
    phase: int = 0
    phase_start: int = 0
    phase_finished: bool = False
    history: dict[str, list] = field(default_factory=dict)
    keep: dict[str, Any] = field(default_factory=dict)
    timer: dict[str, Any] = field(default_factory=dict)
    early_stopping: dict[str, Any] = field(default_factory=dict)
    reduce_lr: dict[str, Any] = field(default_factory=dict)


def _save_resume(path: Path, signature: str, state: _State, model: keras.Model, best_weights) -> None:
    """Write the state atomically (temporary file + rename): a crash leaves the previous one."""
    arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(model.variables)}
    optimizer = getattr(model, "optimizer", None)
    for i, v in enumerate(optimizer.variables if optimizer is not None else []):
        arrays[f"optimizer_{i}"] = np.asarray(v)
    for i, w in enumerate(best_weights or []):
        arrays[f"best_{i}"] = np.asarray(w)
    meta = {"format": RESUME_FORMAT, "signature": signature, "state": state.__dict__}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=float).encode(), dtype=np.uint8)
    tmp = paths.partial_path(path)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_resume(path: Path, signature: str, model: keras.Model) -> tuple[_State, dict[str, list[np.ndarray]]] | None:
    """The saved state, or None (with a :class:`ResumeWarning` naming the file) when unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            groups: dict[str, list[np.ndarray]] = {"model": [], "optimizer": [], "best": []}
            for group in groups:
                n = sum(1 for k in npz.files if k.startswith(f"{group}_"))
                groups[group] = [npz[f"{group}_{i}"] for i in range(n)]
        if meta.get("format") != RESUME_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {RESUME_FORMAT}")
        state = _State(**meta["state"])
        if meta.get("signature") == signature:
            shapes = [tuple(v.shape) for v in model.variables]
            if shapes != [a.shape for a in groups["model"]]:
                raise ValueError(f"{len(groups['model'])} model arrays that do not fit the model's {len(shapes)} variables")
    except Exception as err:  # noqa: BLE001 - any unreadable file means: start afresh
        warnings.warn(
            f"The saved training state {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
            "it is deleted and the training starts from the first epoch.",
            ResumeWarning, stacklevel=3,
        )
        path.unlink(missing_ok=True)
        return None
    if meta["signature"] != signature:
        warnings.warn(
            f"The saved training state {path} belongs to another training (other arguments, data "
            "card or model); it is deleted and the training starts from the first epoch.",
            ResumeWarning, stacklevel=3,
        )
        path.unlink(missing_ok=True)
        return None
    return state, groups


def _assign(variables, values, what: str, path: Path) -> None:
    if len(variables) != len(values) or any(tuple(v.shape) != a.shape for v, a in zip(variables, values)):
        raise ValueError(f"{path}: the saved {what} variables do not match the model's")
    for v, a in zip(variables, values):
        v.assign(a)


class _Checkpoint(keras.callbacks.Callback):
    """After every epoch: the whole training state to the resume file (runs after the library's callbacks)."""

    def __init__(self, path: Path, signature: str, state: _State, keep, timer, history: dict, phase: int,
                 phase_start: int):
        super().__init__()
        self.path, self.signature, self.state = path, signature, state
        self.keep, self.timer, self.history = keep, timer, history
        self.phase, self.phase_start = phase, phase_start
        self.running = {k: list(v) for k, v in history.items()}  # the history so far, epoch by epoch
        self.early_stopping = self.reduce_lr = None
        self.restore: _State | None = None
        self.phase_end = 0  # the epoch count at which this phase ends (if early stopping does not end it)

    def on_train_begin(self, logs=None) -> None:
        # EarlyStopping and ReduceLROnPlateau reset themselves here; put back the saved state.
        if self.restore is not None:
            for name, fields in (("early_stopping", _ES_FIELDS), ("reduce_lr", _LR_FIELDS)):
                callback, saved = getattr(self, name), getattr(self.restore, name)
                for key in fields:
                    if key in saved:
                        setattr(callback, key, saved[key])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})  # as Keras's History records them (ReduceLROnPlateau added the rate)
        history = self.running
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
        history.setdefault("phase", []).append(self.state_phase_name)
        state = _State(
            done=epoch + 1, phase=self.phase, phase_start=self.phase_start,
            phase_finished=bool(self.model.stop_training) or epoch + 1 >= self.phase_end, history=history,
            keep={"best_auc": self.keep.best_auc, "best_epoch": self.keep.best_epoch},
            timer={"seconds": self.timer.seconds, "epochs": self.timer.epochs},
            early_stopping={k: _jsonable(getattr(self.early_stopping, k, None)) for k in _ES_FIELDS},
            reduce_lr={k: _jsonable(getattr(self.reduce_lr, k, None)) for k in _LR_FIELDS},
        )
        _save_resume(self.path, self.signature, state, self.model, self.keep.best_weights)

    state_phase_name = "train"


def _iterators_per_epoch(strategy: tf.distribute.Strategy, class_weight) -> int:
    """How many iterators ``model.fit`` creates on its training dataset per epoch (measured).

    A ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws a new order for every
    iterator created on it, and Keras creates more than one per epoch (2 with Keras 3.15);
    measured on a 64-element probe, so that the count follows the installed Keras.
    """
    def probe():
        return tf.data.Dataset.range(64).shuffle(64, seed=1, reshuffle_each_iteration=True)

    def first(ds):
        return tuple(int(v) for v in ds.take(8))

    reference = probe()
    orders = [first(reference) for _ in range(8)]
    data = probe()
    batches = data.map(lambda i: (tf.reshape(tf.cast(i, tf.float32), (1,)), tf.reshape(tf.cast(i % 2, tf.float32), (1,)))).batch(64)
    with strategy.scope():
        tiny = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
        tiny.compile(optimizer="sgd", loss="binary_crossentropy")
    tiny.fit(batches, epochs=1, verbose=0, class_weight=class_weight)
    after = first(data)
    return orders.index(after) if after in orders else 1


def _fast_forward(train_ds: tf.data.Dataset, epochs: int, strategy, class_weight) -> None:
    """Advance the training data's random generators by ``epochs`` epochs of ``model.fit``, without training.

    The pipeline's shuffle draws a new order per iterator, its augmentation layers advance
    per batch: so per epoch, one full pass over the data and the further (empty) iterators
    Keras creates (:func:`_iterators_per_epoch`).
    """
    if epochs <= 0:
        return
    extra = max(0, _iterators_per_epoch(strategy, class_weight) - 1)
    for _ in range(epochs):
        for _batch in train_ds:
            pass
        for _ in range(extra):
            iter(train_ds)


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(np.asarray(value))


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
    resume: bool = True,
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
            with its card) after every improvement, and beside which the training state
            is saved after every epoch (see ``resume``); ``None`` saves nothing.
        card: Model-card fields written with each checkpoint (see :func:`save_model`).
        n_train: Number of training images per epoch, for the throughput figure.
        build_options: Extra keyword arguments for the builder, e.g.
            ``{"train_backbone": True}`` to train a backbone from scratch.
        callbacks: Extra Keras callbacks, run after the library's own.
        seed: Seed of every random generator; op determinism is enabled too.
        verbose: ``"auto"`` (see :func:`progress_verbosity`) or a Keras verbosity.
        strategy: A strategy kind for :func:`pick_strategy` or a strategy object.
        mixed_precision: ``"auto"`` (only with a GPU), ``True`` or ``False``.
        resume: With a ``checkpoint``: save the whole training state after every epoch to
            :func:`resume_path` (``model.resume.npz``) and, when that file exists from an
            interrupted run of the same training (same arguments, card and model), go on
            from its last epoch. The result then equals an uninterrupted run's: weights,
            optimizer and random-generator states, callbacks and history are restored, and
            the training data are iterated once per completed epoch (without training) so
            that their shuffling and augmentation continue where they were. A corrupt file,
            or one of another training, gives a :class:`ResumeWarning` naming it and a fresh
            start. The file is deleted when the training ends. ``False``: no state is saved
            and an existing one is deleted.

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
    state_file = resume_path(checkpoint) if checkpoint else None
    signature = ""
    restored: tuple[_State, dict[str, list[np.ndarray]]] | None = None
    if state_file is not None and not resume:
        state_file.unlink(missing_ok=True)
    elif state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        signature = _signature(model, {
            "epochs": epochs, "learning_rate": learning_rate, "class_weight": class_weight,
            "fine_tune_epochs": fine_tune_epochs, "fine_tune_learning_rate": fine_tune_learning_rate,
            "transfer": transfer, "patience": patience, "lr_patience": lr_patience,
            "warmup_epochs": warmup_epochs, "head": head, "image_size": image_size,
            "weights": str(weights) if weights is not None else None, "build_options": build_options,
            "card": card, "seed": seed, "mixed": mixed, "replicas": int(dist.num_replicas_in_sync),
        })
        restored = _load_resume(state_file, signature, model)
    done, first_phase, phase_start = 0, 0, 0
    saved: _State | None = None
    if restored is not None:
        saved, arrays = restored
        done, first_phase, phase_start = saved.done, saved.phase, saved.phase_start
        if saved.phase_finished:  # that phase ended (early stopping or its last epoch)
            first_phase, phase_start = saved.phase + 1, saved.done
        history = {k: list(v) for k, v in saved.history.items()}
        keep.best_auc, keep.best_epoch = float(saved.keep["best_auc"]), int(saved.keep["best_epoch"])
        keep.best_weights = arrays["best"] or None
        timer.seconds, timer.epochs = float(saved.timer["seconds"]), int(saved.timer["epochs"])
        _fast_forward(train_ds, done, dist, class_weight)
    for index, (phase, rate, phase_epochs) in enumerate(phases):
        if phase == "fine-tune" and index < first_phase:
            models.unfreeze_top(model)  # a finished fine-tune phase still changed what trains
        if index < first_phase:
            continue
        with dist.scope():
            if phase == "fine-tune":
                models.unfreeze_top(model)
            compile_model(model, rate)
        resuming_here = saved is not None and index == saved.phase and not saved.phase_finished
        if index > first_phase or (saved is not None and not resuming_here):
            phase_start = done
        early = keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=patience, start_from_epoch=phase_start + warmup_epochs
        )
        reduce = keras.callbacks.ReduceLROnPlateau(
            monitor="val_auc", mode="max", factor=1 / 3, patience=lr_patience, min_lr=rate / 100, verbose=0
        )
        phase_callbacks = [keep, timer, early, reduce]
        if state_file is not None:
            saver = _Checkpoint(state_file, signature, saved or _State(), keep, timer, history, index, phase_start)
            saver.state_phase_name, saver.phase_end = phase, phase_start + phase_epochs
            saver.early_stopping, saver.reduce_lr = early, reduce
            if resuming_here:
                saver.restore = saved
                with dist.scope():
                    model.optimizer.build(model.trainable_variables)
                _assign(model.variables, arrays["model"], "model", state_file)
                _assign(model.optimizer.variables, arrays["optimizer"], "optimizer", state_file)
            elif saved is not None and index == first_phase:
                _assign(model.variables, arrays["model"], "model", state_file)  # a new phase, new optimizer
            phase_callbacks.append(saver)
        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=phase_start + phase_epochs,
            initial_epoch=done,
            class_weight=class_weight,
            callbacks=[*phase_callbacks, *(callbacks or [])],
            verbose=progress_verbosity(verbose),
        )
        ran = len(fit.history.get("loss", []))
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        history.setdefault("phase", []).extend([phase] * ran)
        done += ran
    if keep.best_weights is not None:
        model.set_weights(keep.best_weights)
    if state_file is not None:
        state_file.unlink(missing_ok=True)  # finished: the checkpoint holds the result
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
    tmp = paths.partial_path(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_card(path, full_card)
    return path


def write_card(model_path: str | os.PathLike[str], card: dict[str, Any]) -> Path:
    """Write ``card`` as the model card beside ``model_path`` (:func:`card_path`), atomically.

    The whole card is replaced (write to a hidden temporary file, then rename): a reader
    sees the old card or the new one, never half of one. Returns the card's path.
    """
    path = card_path(model_path)
    tmp = paths.partial_path(path)
    try:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
