"""Train, evaluate and save a model on a dataset folder; the model cache the chapters use.

Two entry points:

* :func:`train_on_folder`: what ``pneumo train`` runs. Splits a folder in the Kaggle
  layout (patient-grouped, :func:`pneumo_lib.data.make_splits`), trains with
  :func:`pneumo_lib.training.train`, evaluates on test with the threshold chosen on
  validation, and saves ``model.keras`` with its model card ``model.json``.
* :func:`cached_model` / :func:`cached_training`: what chapters call. Returns a trained
  model for a configuration, training and caching it under
  :func:`pneumo_lib.paths.model_cache_dir` first if absent, so any chapter runs standalone.

Where backbone weights come from (``weights``):

* ``"imagenet"``: ImageNet weights (the full profile); frozen backbone, then fine-tuning.
* ``"source"``: pretrained *in this library* on the phantom "source" part of the training
  split (the whole network trained from scratch there), then adapted to the disjoint small
  "target" part: features frozen first, then the top block fine-tuned. Backbones keep the
  source backbone under a new head; scratch CNNs start from the whole source model. This
  is how the quick profile, which cannot download ImageNet weights, shows transfer
  learning honestly (with the paper's CNN: a backbone trained from scratch on CPU is too
  slow for the quick profile's time budget).
* ``None``: random initialisation, the whole network trained from scratch.
* a path: a local weights file (e.g. ImageNet weights copied to an offline machine).
* ``"profile"`` (default): the profile's ``weights``; for backbones on a profile without
  ImageNet weights (quick), ``"source"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_lib import data, decision, evaluation, models, paths, runtime, training
from pneumo_lib._tf import tf
from pneumo_lib.data.splits import manifest_file
from pneumo_lib.data.staging import one_writer
from pneumo_lib.profiles import Profile, get_profile, profile_for_card

#: Bump when the training recipe (or what its card records) changes, so cached models are retrained.
RECIPE_VERSION = 7  # 6: the card's test intervals resample patients; 7: thresholds at the midpoint of ties, the paper CNN centres its inputs
#: Share of the training split (grouped by patient, per class) held out as the small
#: "target" set of the transfer experiment; the rest is the "source" set.
TARGET_FRACTION = 0.1
#: The training subsets a model can be trained on.
SUBSETS = ("all", "source", "target")
#: Profile fields that do not change the trained model (left out of cache keys).
_NOT_TRAINING = ("description", "bootstrap_rounds", "n_explain")


def manifest_hash(manifest: data.SplitManifest) -> str:
    """SHA-256 (hex, 16 chars) of a split manifest's ``(path, split, label, file size)`` rows.

    The file sizes make regenerated images with the same names (e.g. a new version of the
    phantom generator) a different dataset, so cached models trained on the old images
    are not reused.
    """
    def size(path: str) -> int:
        try:
            return (manifest.data_dir / path).stat().st_size
        except OSError:
            return -1

    rows = sorted(f"{r.path},{r.split},{r.label},{size(r.path)}" for r in manifest.records)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def _file_hash(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def train_subset(manifest: data.SplitManifest, subset: str = "all", *, seed: int = 42,
                 fraction: float = TARGET_FRACTION) -> tuple[list[Path], np.ndarray]:
    """Paths and labels of the training split, or of its "source" / "target" part.

    The target part holds, for each class, whole patients (shuffled with ``seed``) until
    it reaches ``fraction`` of that class's training images; the source part is the rest.
    No patient is in both.

    Returns:
        ``(paths, labels)``: absolute image paths and int64 labels ``(N,)``.
    """
    if subset not in SUBSETS:
        raise ValueError(f"Unknown training subset {subset!r}. Valid: {', '.join(SUBSETS)}.")
    records = manifest.select("train")
    if subset != "all":
        rng = np.random.default_rng(seed)
        target: set[tuple[int, str]] = set()
        for label in (0, 1):
            per_patient: dict[str, int] = {}
            for r in records:
                if r.label == label:
                    per_patient[r.patient] = per_patient.get(r.patient, 0) + 1
            want, taken = round(fraction * sum(per_patient.values())), 0
            for patient in rng.permutation(sorted(per_patient)):
                if taken >= want:
                    break
                target.add((label, str(patient)))
                taken += per_patient[str(patient)]
        keep = (lambda r: (r.label, r.patient) in target) if subset == "target" else (
            lambda r: (r.label, r.patient) not in target)
        records = [r for r in records if keep(r)]
    return [manifest.data_dir / r.path for r in records], np.array([r.label for r in records], dtype=np.int64)


@dataclass
class Recipe:
    """Everything that decides a trained model (its cache key is a hash of this).

    Attributes:
        name: Architecture name.
        profile: The run parameters.
        head: ``"sigmoid"`` or ``"softmax"``.
        weights: Resolved weights: ``"imagenet"``, ``None`` or a weights file path.
        weights_id: What the weights are, for the card and the key (file hash, source key).
        subset: Training subset: ``"all"``, ``"source"`` or ``"target"``.
        train_backbone: Train the whole backbone (from scratch) instead of freeze + fine-tune.
    """

    name: str
    profile: Profile
    head: str = "sigmoid"
    weights: str | None = None
    weights_id: str | None = None
    subset: str = "all"
    train_backbone: bool = False

    def key_fields(self) -> dict[str, Any]:
        profile = {k: v for k, v in self.profile.as_dict().items() if k not in _NOT_TRAINING}
        return {
            "recipe": RECIPE_VERSION, "name": self.name, "profile": profile, "head": self.head,
            "weights": self.weights_id, "subset": self.subset, "train_backbone": self.train_backbone,
        }


def fit_recipe(
    recipe: Recipe,
    manifest: data.SplitManifest,
    out: str | os.PathLike[str],
    *,
    card: dict[str, Any] | None = None,
    verbose: str | int = "auto",
    strategy: str = "auto",
) -> tuple[training.TrainResult, evaluation.Evaluation]:
    """Train one recipe on a manifest, evaluate it on test, save ``out`` with its card.

    The threshold is chosen on validation (Youden's J) and applied to test; the
    card gets the test metrics with bootstrap 95% intervals and the whole history.

    Raises:
        ValueError: The manifest has no test (or validation) images.
    """
    P, arch = recipe.profile, models.architecture(recipe.name)
    counts = manifest.counts()
    for split in ("train", "val", "test"):
        if split not in counts:
            raise ValueError(
                f"The dataset at {manifest.data_dir} has no {split} images; a folder in the Kaggle "
                "layout needs train/, val/ and test/ with NORMAL/ and PNEUMONIA/ inside."
            )
    channels = arch.channels
    train_paths, train_labels = train_subset(manifest, recipe.subset, seed=P.seed)
    # Seed first: the shuffle's seed pair includes TensorFlow's global seed, so without
    # this the order would depend on what the process trained before.
    runtime.seed_everything(P.seed, deterministic=True)
    train_ds = data.make_dataset(train_paths, train_labels, image_size=P.image_size, channels=channels,
                                 batch_size=P.batch_size, augment=True, shuffle=True, seed=P.seed)
    val_ds = data.split_dataset(manifest, "val", P, channels=channels)
    test_ds = data.split_dataset(manifest, "test", P, channels=channels)
    transfer = recipe.weights is not None and not recipe.train_backbone
    info = {
        "name": recipe.name,
        "profile": P.name,
        "profile_values": P.as_dict(),
        "data": {
            "source": P.data_source,
            "folder": str(manifest.data_dir),
            "manifest_hash": manifest_hash(manifest),
            "subset": recipe.subset,
            "train_images": int(len(train_labels)),
            "counts": counts,
        },
        "weights": recipe.weights_id,
        "train_backbone": recipe.train_backbone,
        **(card or {}),
    }
    result = training.train(
        recipe.name, train_ds, val_ds,
        epochs=P.epochs, learning_rate=P.learning_rate,
        class_weight=data.class_weights(train_labels),
        fine_tune_epochs=P.fine_tune_epochs if transfer else 0,
        fine_tune_learning_rate=P.fine_tune_learning_rate, transfer=transfer,
        image_size=P.image_size, head=recipe.head, weights=recipe.weights,
        build_options={"train_backbone": True} if recipe.train_backbone else None,
        checkpoint=out, card=info, n_train=len(train_labels), seed=P.seed,
        verbose=verbose, strategy=strategy,
    )
    result_eval = evaluation.evaluate_model(
        result.model, test_ds, val_ds, name=recipe.name, bootstrap_rounds=P.bootstrap_rounds, seed=P.seed,
        groups=manifest.patients("test"), context={"profile": P.name, "data": P.data_source, "split": "test"},
    )
    info.update(training=result.summary(), history=result.history, evaluation=result_eval.as_dict())
    training.save_model(result.model, out, info)
    return result, result_eval


def train_on_folder(
    name: str,
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    profile: str | Profile = "quick",
    head: str = "sigmoid",
    weights: str | None = "profile",
    verbose: str | int = "auto",
    strategy: str = "auto",
) -> tuple[training.TrainResult, evaluation.Evaluation]:
    """Train ``name`` on a dataset folder and save it (what ``pneumo train`` runs).

    Args:
        name: One of :data:`pneumo_lib.models.MODEL_NAMES`.
        data_dir: A ``chest_xray`` folder in the Kaggle layout, or a folder holding one
            (what ``pneumo data phantom|download|sample --out DIR`` writes).
        out: Target ``.keras`` file; its card goes beside it.
        profile: Profile name or object (image size, epochs, rates, seed).
        head: ``"sigmoid"`` or ``"softmax"``.
        weights: ``"profile"``, ``"imagenet"``, ``None`` or a weights file. ``"source"``
            is not available here (it needs the chapters' cache); a profile without
            ImageNet weights trains backbones from scratch.

    Returns:
        The training result and the test evaluation.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    paths.check_not_folder(out, "model file", suffix=".keras")  # before training, not when saving
    if weights not in (None, "profile", "imagenet", "source"):
        paths.check_file(weights, "weights file")
    folder = resolve_data_folder(data_dir)
    if weights == "profile":
        weights = None if arch.family == "scratch" else P.weights
    if weights == "source":
        raise ValueError("weights='source' is only available through cached_training (the chapters' cache).")
    recipe = Recipe(name, P, head, weights, _weights_id(weights, name), "all",
                    train_backbone=arch.family == "backbone" and weights is None)
    manifest = data.make_splits(folder, seed=P.seed, save=False)
    try:
        result = fit_recipe(recipe, manifest, out, verbose=verbose, strategy=strategy)
    except tf.errors.OpError as err:  # a file that passed the checks but does not decode: name it
        from pneumo_lib.data.pipeline import undecodable_error

        raise undecodable_error([manifest.data_dir / r.path for r in manifest.records], err) from None
    manifest.save(manifest_file(folder, P.seed, 0.15))  # only once training succeeded
    return result


def resolve_data_folder(data_dir: str | os.PathLike[str]) -> Path:
    """The ``chest_xray`` folder of ``data_dir``, checked: :func:`pneumo_lib.data.resolve_data_dir`.

    Raises:
        FileNotFoundError: No such folder, or a split (e.g. ``test``) is missing; the
            message names the folder and the expected layout.
    """
    return data.resolve_data_dir(data_dir)


def evaluate_file(
    model_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    profile: str | Profile | None = None,
) -> evaluation.Evaluation:
    """Evaluate a saved model on a dataset folder's test split (what ``pneumo evaluate`` runs).

    The split seed, batch size and bootstrap rounds come from ``profile`` or, by default,
    from the profile recorded in the model card (quick if there is no card); the image
    size and channels always come from the model itself. The threshold is chosen on the
    folder's validation split.

    Raises:
        FileNotFoundError: No such model file or dataset folder.
        pneumo_lib.paths.NotAFileError: ``model_path`` is a folder.
    """
    paths.check_file(model_path, "model file", suffix=".keras")  # a folder is called a folder, not missing
    folder = resolve_data_folder(data_dir)  # checked before the model is loaded
    model = training.load_model(model_path)
    card = training.read_card(model_path)
    P = profile_for_card(card, profile)
    size, channels = int(model.input_shape[1]), int(model.input_shape[-1])
    P = get_profile(P, image_size=size)
    manifest = data.make_splits(folder, seed=P.seed, save=False)
    test_ds = data.split_dataset(manifest, "test", P, channels=channels)
    val_ds = data.split_dataset(manifest, "val", P, channels=channels)
    try:
        result = evaluation.evaluate_model(
            model, test_ds, val_ds, name=card.get("name", model.name), bootstrap_rounds=P.bootstrap_rounds,
            seed=P.seed, groups=manifest.patients("test"), context={"profile": P.name, "data": str(manifest.data_dir), "split": "test",
                                  "manifest_hash": manifest_hash(manifest)},
        )
    except tf.errors.OpError as err:  # a file that passed the checks but does not decode: name it
        from pneumo_lib.data.pipeline import undecodable_error

        raise undecodable_error(list(manifest.paths("test")) + list(manifest.paths("val")), err) from None
    manifest.save(manifest_file(folder, P.seed, 0.15))  # only once evaluation succeeded
    return result


def _weights_id(weights: str | os.PathLike[str] | None, name: str | None = None) -> str | None:
    if weights == "imagenet" and name is not None:
        return models.imagenet_weights_id(name)  # "imagenet", or what stands for it in a rehearsal
    if weights is None or weights == "imagenet":
        return weights
    return f"file:{Path(weights).name}:{_file_hash(weights)}"


# --------------------------------------------------------------------------- the cache


@dataclass
class CachedModel:
    """A trained model from the cache.

    Attributes:
        model: The trained Keras model (loaded in safe mode).
        path: Its ``.keras`` file in the cache.
        card: Its model card: profile, data, weights, ``training`` summary, per-epoch
            ``history`` and the test ``evaluation`` (threshold chosen on validation).
        trained_now: True when this call trained it (the cache was empty).
    """

    model: Any
    path: Path
    card: dict[str, Any]
    trained_now: bool = False

    @property
    def history(self) -> dict[str, list]:
        """Per-epoch training history (``loss``, ``val_auc``, ``phase``, ...)."""
        return self.card.get("history", {})


def finished_training(path: str | os.PathLike[str]) -> CachedModel | None:
    """The finished run cached at ``path`` (a ``.keras`` file), or None when there is none yet.

    None also for an interrupted training's checkpoint (a card without ``evaluation``). The
    cache's trainers call this twice: before taking the entry's lock
    (:func:`pneumo_lib.data.staging.one_writer`) and again once they hold it, so when two
    processes ask for the same model at once (two chapters run side by side by
    ``pneumo book run --jobs 2``, the rehearsal beside the notebooks) one trains it and the
    other waits, then loads it.
    """
    path = Path(path)
    if not (path.is_file() and training.card_path(path).is_file()):
        return None
    card = training.read_card(path)
    if "evaluation" not in card:
        return None
    return CachedModel(training.load_model(path), path, card)


def _shortcut_key(shortcut) -> bool | dict:
    """``shortcut`` as cache keys and cards record it: a bool, or a non-default variant's settings."""
    from pneumo_lib.data import phantom

    if isinstance(shortcut, phantom.PhantomSettings):
        return True if shortcut == phantom.DEFAULT_SETTINGS else shortcut.as_params()
    return bool(shortcut)


def cache_path(recipe: Recipe, manifest: data.SplitManifest, shortcut: bool = False) -> Path:
    """Cache file of a recipe trained on a manifest: ``<models>/<name>-<profile>-<key>.keras``."""
    fields = {**recipe.key_fields(), "manifest": manifest_hash(manifest), "shortcut": _shortcut_key(shortcut)}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return paths.model_cache_dir() / f"{recipe.name}-{recipe.profile.name}-{key}.keras"


def cached_training(
    name: str,
    profile: str | Profile = "quick",
    *,
    head: str = "sigmoid",
    weights: str | os.PathLike[str] | None = "profile",
    subset: str | None = None,
    shortcut: bool = False,
    retrain: bool = False,
    verbose: str | int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> CachedModel:
    """A trained model for a configuration, from the cache or trained (and cached) now.

    Args:
        name: One of :data:`pneumo_lib.models.MODEL_NAMES`.
        profile: Profile name or object; the data come from ``data.ensure_dataset(profile)``.
        head: ``"sigmoid"`` or ``"softmax"``.
        weights: For backbones: ``"profile"``, ``"imagenet"``, ``"source"``, ``None`` (from
            scratch) or a weights file (see the module docstring). Scratch CNNs: ``None``
            or ``"profile"``.
        subset: Training subset, ``"all"``, ``"source"`` or ``"target"``; default
            ``"target"`` for ``weights="source"`` (the source part trained the backbone),
            else ``"all"``.
        shortcut: Train on the phantom variant whose train/val PNEUMONIA images carry a
            marker (the explanation chapters' shortcut experiment); a
            :class:`pneumo_lib.data.phantom.PhantomSettings` for a variant drawn otherwise.
        retrain: Train even if cached (overwrites the cache entry).
        verbose: Keras verbosity while training (0: quiet, for notebooks).
        data_dir: Train on this dataset instead of ``data.ensure_dataset(profile)``: a
            ``chest_xray`` folder in the Kaggle layout (or the folder holding it), e.g. a
            :func:`pneumo_lib.data.equalized_copy` or :func:`pneumo_lib.data.pooled_copy`;
            split as :func:`pneumo_lib.data.make_splits` does. Its manifest (paths, labels,
            file sizes) is part of the cache key; not with ``shortcut``.

    Returns:
        A :class:`CachedModel`.

    A training that was interrupted (a kernel restart, a Colab disconnect) left its state
    after each epoch beside the cache entry (``<entry>.resume.npz``, see
    :func:`pneumo_lib.training.resume_path`); the next call resumes from its last epoch and
    ends with the weights an uninterrupted run would have (a corrupt state: a warning naming
    the file and a fresh start). The cache key is unchanged by this.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    if data_dir is not None and shortcut:
        raise ValueError("cached_training takes data_dir or shortcut, not both (the shortcut variant is its own dataset).")
    folder = data.resolve_data_dir(data_dir) if data_dir is not None else data.ensure_dataset(P, shortcut=shortcut)
    manifest = data.make_splits(folder, seed=P.seed)
    if weights == "profile":
        weights = None if arch.family == "scratch" else (P.weights or "source")
    weights_id = _weights_id(weights, name) if weights != "source" else None
    if weights == "source":
        source = cached_training(name, P, head=head, weights=None, subset="source", shortcut=shortcut,
                                 retrain=False, verbose=verbose, data_dir=data_dir)
        # Backbones take the source backbone's weights under a new head; scratch CNNs
        # start from the whole source model (same classes) and adapt it.
        backbone = models.backbone_of(source.model)
        pretrained = source.model if backbone is None else backbone
        weights_file = source.path.with_suffix(".pretrained.weights.h5")
        if not weights_file.is_file():
            pretrained.save_weights(weights_file)
        weights, weights_id = str(weights_file), f"source:{source.path.stem}"
        subset = subset or "target"
    recipe = Recipe(name, P, head, weights, weights_id, subset or "all",
                    train_backbone=arch.family == "backbone" and weights is None)
    path = cache_path(recipe, manifest, shortcut)
    cached = None if retrain else finished_training(path)
    if cached is not None:
        return cached
    with one_writer(path):  # another process may be training this entry: wait, then look again
        cached = None if retrain else finished_training(path)
        if cached is not None:
            return cached
        card = {"shortcut": _shortcut_key(shortcut), **({"data_dir": str(folder)} if data_dir is not None else {})}
        result, _ = fit_recipe(recipe, manifest, path, card=card, verbose=verbose)
    card = training.read_card(path)
    return CachedModel(decision.attach_threshold(result.model, card), path, card, trained_now=True)


def cached_model(name: str, profile: str | Profile = "quick", **options: Any):
    """The trained Keras model of :func:`cached_training` (same arguments)."""
    return cached_training(name, profile, **options).model
