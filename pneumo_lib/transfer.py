"""ImageNet transfer on a CPU: frozen Xception features, cached, and a small head trained on them.

Fine-tuning an ImageNet backbone needs a GPU; on the book's CPU the affordable half of transfer
learning is the first phase: run the frozen backbone once over every image
(:func:`cached_features`, cached under ``<home>/features`` with the manifest hash, the input
size and the weights' digest in the key), then train only a small head on the stored vectors
(:func:`train_head`), which takes seconds. :func:`assemble` puts the head back on the backbone
as a complete image model (for Grad-CAM and the app).

The learning curve (:func:`learning_curve`) compares, on the same patient-grouped training
subsets (:func:`learning_curve_subsets`), the ImageNet features + head, a CNN trained from scratch
and the CNN pretrained on the phantom "source" part (:mod:`pneumo_lib.experiments`, where the
subsets lie inside the disjoint "target" part; elsewhere it has seen the images during pretraining).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumo_lib import data, evaluation, experiments, models, paths, pretrained, runtime, training
from pneumo_lib.profiles import Profile, get_profile

#: The backbone whose features are cached (ImageNet weights offline: :mod:`pneumo_lib.pretrained`).
BACKBONE = "xception"
#: Default input side for the CPU: 96 px (Xception needs at least 71).
IMAGE_SIZE = 96
#: Bump when what the feature files hold changes.
FEATURES_VERSION = 1


@dataclass
class Features:
    """Frozen-backbone features of one split.

    Attributes:
        features: float32 ``(N, D)`` (global-average-pooled backbone output).
        labels: int64 ``(N,)``.
        paths: Image paths relative to the manifest's ``data_dir``, in manifest order.
        seconds: Time the extraction took when it was computed (also when loaded from cache).
        from_cache: True when this call read the cache file.
        file: The cache file.
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    seconds: float
    from_cache: bool
    file: Path

    @property
    def images_per_second(self) -> float:
        """Extraction speed when the features were computed."""
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")

    def take(self, image_paths: Sequence[str | os.PathLike[str]], data_dir: Path | None = None):
        """``(features, labels)`` of the given images (absolute or relative paths), in that order.

        Raises:
            KeyError: An image is not in this split.
        """
        index = {p: i for i, p in enumerate(self.paths)}
        rows = []
        for p in image_paths:
            rel = Path(p)
            if data_dir is not None and rel.is_absolute():
                rel = rel.relative_to(data_dir)
            key = rel.as_posix()
            if key not in index:
                raise KeyError(f"{key} has no cached features in {paths.display_path(self.file)}.")
            rows.append(index[key])
        rows = np.asarray(rows, dtype=np.int64)
        return self.features[rows], self.labels[rows]


def weights_id(weights: str | os.PathLike[str]) -> str:
    """What the backbone weights are, for cache keys: the digest of the file actually loaded.

    ``"imagenet"`` resolves to the weights extracted from the PyPI package (fetched if needed).

    Raises:
        ValueError: ``weights=None``: random features are not transfer learning.
        pretrained.PretrainedUnavailable: ImageNet weights cannot be had (message says what to do).
    """
    if weights is None:
        raise ValueError("Random-weight features are not transfer learning; use weights='imagenet' or a file.")
    if weights == "imagenet":
        pretrained.xception_imagenet_weights()
        return f"imagenet:{pretrained.weights_digest()}"
    return f"file:{pretrained.sha256_file(weights)[:16]}"


def feature_extractor(image_size: int = IMAGE_SIZE, weights: str | os.PathLike[str] = "imagenet"):
    """``[0, 1]`` images ``(N, S, S, 3)`` -> pooled frozen Xception features ``(N, 2048)``."""
    from pneumo_lib._tf import keras

    model = models.build_transfer_model(BACKBONE, image_size, weights=weights)
    return keras.Model(model.inputs, model.get_layer("global_pool").output, name="xception_features")


def features_file(manifest: data.SplitManifest, split: str, image_size: int, weights_key: str) -> Path:
    """Cache file of one split's features: ``<home>/features/xception-<split>-<size>-<key>.npz``."""
    fields = {"version": FEATURES_VERSION, "backbone": BACKBONE, "manifest": experiments.manifest_hash(manifest),
              "split": split, "size": int(image_size), "weights": weights_key}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return paths.pneumo_home() / "features" / f"{BACKBONE}-{split}-{image_size}-{key}.npz"


def cached_features(
    manifest: data.SplitManifest,
    split: str,
    image_size: int = IMAGE_SIZE,
    *,
    weights: str | os.PathLike[str] = "imagenet",
    batch_size: int = 32,
    recompute: bool = False,
) -> Features:
    """Frozen Xception features of every image of a split, computed once and cached.

    Args:
        manifest: The split manifest (its hash is part of the cache key).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: Input side (at least 71).
        weights: ``"imagenet"`` (offline from the PyPI package, see :mod:`pneumo_lib.pretrained`)
            or a no-top Xception weights file.
        batch_size: Images per forward pass.
        recompute: Ignore (and overwrite) the cache file.

    Raises:
        pretrained.PretrainedUnavailable: No ImageNet weights offline (the message says what to do).
        pretrained.IntegrityError: The weights file is not the published one.
    """
    file = features_file(manifest, split, image_size, weights_id(weights))
    rel = [r.path for r in manifest.select(split)]
    if file.is_file() and not recompute:
        with np.load(file, allow_pickle=False) as z:
            if list(z["paths"]) == rel:
                return Features(z["features"], z["labels"], rel, float(z["seconds"]), True, file)
    extractor = feature_extractor(image_size, weights)
    labels = manifest.labels(split)
    chunks, start = [], time.perf_counter()
    absolute = manifest.paths(split)
    for i in range(0, len(absolute), 256):
        images = data.load_images(absolute[i:i + 256], image_size, channels=3)
        chunks.append(extractor.predict(images, batch_size=batch_size, verbose=0).astype(np.float32))
    seconds = time.perf_counter() - start
    features = np.concatenate(chunks) if chunks else np.zeros((0, 2048), np.float32)
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = paths.partial_path(file)
    with open(partial, "wb") as fh:
        np.savez(fh, features=features, labels=labels, paths=np.array(rel), seconds=np.float64(seconds))
    partial.replace(file)
    return Features(features, labels, rel, seconds, False, file)


# --------------------------------------------------------------------------- the head


def build_head(dim: int, *, dropout: float = 0.2):
    """The head trained on features: ``features -> head_dropout -> logits -> prediction`` (sigmoid).

    The same layers (names and shapes) as the top of :func:`pneumo_lib.models.build_transfer_model`,
    so :func:`assemble` can put it on the backbone.
    """
    from pneumo_lib._tf import keras

    inputs = keras.Input((dim,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    logits = keras.layers.Dense(1, name="logits", dtype="float32")(x)
    out = keras.layers.Activation("sigmoid", name="prediction", dtype="float32")(logits)
    return keras.Model(inputs, out, name="xception_head")


def train_head(x_train, y_train, x_val, y_val, *, seed: int = 42, epochs: int = 200,
               learning_rate: float = 1e-3, batch_size: int = 32, patience: int = 20):
    """Train a :func:`build_head` on features (class-weighted; the epoch with the best validation ROC AUC is kept).

    Returns:
        The trained head (a Keras model on ``(N, D)`` features).
    """
    from pneumo_lib._tf import keras

    runtime.seed_everything(seed, deterministic=True)
    head = build_head(int(x_train.shape[1]))
    head.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                 metrics=[keras.metrics.AUC(name="auc")])
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience, restore_best_weights=True)
    head.fit(x_train, np.asarray(y_train, np.float32), validation_data=(x_val, np.asarray(y_val, np.float32)),
             epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=[stop],
             class_weight=data.class_weights(np.asarray(y_train)))
    return head


def assemble(head, image_size: int = IMAGE_SIZE, weights: str | os.PathLike[str] = "imagenet"):
    """The complete image model: ``build_transfer_model("xception", ...)`` with ``head``'s weights.

    Takes ``[0, 1]`` images ``(N, S, S, 3)`` like every model of the library; Grad-CAM explains
    ``xception/block14_sepconv2_act``.
    """
    model = models.build_transfer_model(BACKBONE, image_size, weights=weights)
    model.get_layer("logits").set_weights(head.get_layer("logits").get_weights())
    return model


def evaluate_head(head, test: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
                  name: str, profile: Profile, groups=None) -> evaluation.Evaluation:
    """Test evaluation of a head, threshold chosen on validation, patient-bootstrap intervals."""
    p_test = head.predict(test[0], verbose=0).ravel()
    p_val = head.predict(val[0], verbose=0).ravel()
    return evaluation.evaluate_predictions(
        test[1], p_test, val[1], p_val, name=name, bootstrap_rounds=profile.bootstrap_rounds,
        seed=profile.seed, groups=groups, context={"profile": profile.name, "data": profile.data_source, "split": "test"})


# --------------------------------------------------------------------------- subsets and CNNs


def learning_curve_subsets(
    manifest: data.SplitManifest,
    sizes: Sequence[int | str] = (50, 100, 200, 400, "all"),
    *,
    seed: int = 42,
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """Nested, patient-grouped training subsets of about ``n`` images each, class shares kept.

    Whole patients are taken, per class, in one fixed order: the patients of the "target"
    part of :func:`pneumo_lib.experiments.train_subset` first (shuffled with ``seed``), then the
    others; so every smaller subset lies inside every larger one, and the small ones inside the
    target part (disjoint from the phantom "source" pretraining set). A size may also be
    ``"target"`` (that part itself) or ``"all"`` (the whole training split).

    Returns:
        ``{str(size): (absolute paths, int64 labels)}`` in the order of ``sizes``.
    """
    records = manifest.select("train")
    target_paths = {Path(p) for p in experiments.train_subset(manifest, "target", seed=seed)[0]}
    rng = np.random.default_rng(seed)
    order: dict[int, list[str]] = {}
    count: dict[tuple[int, str], int] = {}
    for r in records:
        count[(r.label, r.patient)] = count.get((r.label, r.patient), 0) + 1
    for label in (0, 1):
        first = sorted({r.patient for r in records if r.label == label and manifest.data_dir / r.path in target_paths})
        rest = sorted({r.patient for r in records if r.label == label} - set(first))
        order[label] = [str(p) for p in rng.permutation(first)] + [str(p) for p in rng.permutation(rest)]
    share = {label: sum(r.label == label for r in records) / len(records) for label in (0, 1)}
    out: dict[str, tuple[list[Path], np.ndarray]] = {}
    for size in sizes:
        if size == "all":
            chosen = records
        elif size == "target":
            chosen = [r for r in records if manifest.data_dir / r.path in target_paths]
        else:
            keep: set[tuple[int, str]] = set()
            for label in (0, 1):
                want, taken = round(int(size) * share[label]), 0
                for patient in order[label]:
                    if taken >= want:
                        break
                    keep.add((label, patient))
                    taken += count[(label, patient)]
            chosen = [r for r in records if (r.label, r.patient) in keep]
        out[str(size)] = ([manifest.data_dir / r.path for r in chosen],
                          np.array([r.label for r in chosen], dtype=np.int64))
    return out


def subset_manifest(manifest: data.SplitManifest, train_paths: Sequence[str | os.PathLike[str]]) -> data.SplitManifest:
    """The manifest with its training split reduced to ``train_paths`` (val and test unchanged)."""
    keep = {Path(p) for p in train_paths}
    rows = [(r, s) for r, s in zip(manifest.records, manifest.source_splits or [r.split for r in manifest.records])
            if r.split != "train" or manifest.data_dir / r.path in keep]
    return dataclasses.replace(manifest, records=tuple(r for r, _ in rows),
                               source_splits=tuple(s for _, s in rows) if manifest.source_splits else ())


def cached_subset_training(
    name: str,
    profile: str | Profile,
    manifest: data.SplitManifest,
    train_paths: Sequence[str | os.PathLike[str]],
    *,
    weights: str | None = None,
    verbose: int = 0,
) -> experiments.CachedModel:
    """A scratch CNN (``weights=None``) or the phantom-source transfer (``"source"``) trained on a subset.

    The same recipe and cache as :func:`pneumo_lib.experiments.cached_training`, on the
    manifest whose training split is ``train_paths`` (so the whole training split gives
    the very model ``cached_training(name, profile)`` caches).

    Raises:
        ValueError: ``weights="source"`` and the subset shares images with the source set
            (the pretrained model would have seen them).
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    arch = models.architecture(name)
    wanted = {Path(p) for p in train_paths}
    for subset in experiments.SUBSETS:  # a named subset: the very model the chapters cache
        if {Path(p) for p in experiments.train_subset(manifest, subset, seed=P.seed)[0]} == wanted:
            if weights == "source" and subset != "target":
                break
            return experiments.cached_training(name, P, weights=weights, subset=subset, verbose=verbose)
    weights_id = None
    if weights == "source":
        source = experiments.cached_training(name, P, weights=None, subset="source", verbose=verbose)
        seen = {Path(p) for p in experiments.train_subset(manifest, "source", seed=P.seed)[0]}
        if seen & {Path(p) for p in train_paths}:
            raise ValueError("The subset shares images with the phantom source set the pretrained model "
                             "was trained on; take subsets of the target part for weights='source'.")
        backbone = models.backbone_of(source.model)
        weights_file = source.path.with_suffix(".pretrained.weights.h5")
        if not weights_file.is_file():
            (source.model if backbone is None else backbone).save_weights(weights_file)
        weights, weights_id = str(weights_file), f"source:{source.path.stem}"
    elif weights is not None:
        raise ValueError(f"weights must be None or 'source' here, got {weights!r}.")
    recipe = experiments.Recipe(name, P, "sigmoid", weights, weights_id, "all",
                                train_backbone=arch.family == "backbone" and weights is None)
    sub = subset_manifest(manifest, train_paths)
    path = experiments.cache_path(recipe, sub, False)
    if path.is_file() and training.card_path(path).is_file():
        card = training.read_card(path)
        if "evaluation" in card:
            return experiments.CachedModel(training.load_model(path), path, card)
    result, _ = experiments.fit_recipe(recipe, sub, path, card={"shortcut": False}, verbose=verbose)
    from pneumo_lib import decision

    card = training.read_card(path)
    return experiments.CachedModel(decision.attach_threshold(result.model, card), path, card, trained_now=True)


# --------------------------------------------------------------------------- the learning curve


@dataclass
class LearningCurve:
    """Test ROC AUC against training-set size for several ways to train.

    Attributes:
        rows: One dict per (method, subset): ``method``, ``subset``, ``train_images``,
            ``roc_auc``, ``roc_auc_low``, ``roc_auc_high`` (95% patient-bootstrap interval).
        evaluations: ``{(method, subset): Evaluation}``.
        seconds: ``{method: seconds spent training/evaluating in this call}``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    evaluations: dict[tuple[str, str], evaluation.Evaluation] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, method: str, subset: str, n: int, result: evaluation.Evaluation) -> None:
        low, high = result.ci.get("roc_auc", (float("nan"), float("nan")))
        self.rows.append({"method": method, "subset": subset, "train_images": int(n),
                          "roc_auc": float(result.metrics["roc_auc"]), "roc_auc_low": float(low),
                          "roc_auc_high": float(high)})
        self.evaluations[(method, subset)] = result

    def auc(self, method: str, subset: str) -> float:
        return float(self.evaluations[(method, subset)].metrics["roc_auc"])

    def table(self):
        """A DataFrame: one row per training-set size, one ROC AUC column per method."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        sizes = frame.groupby("subset", sort=False)["train_images"].max()
        table = frame.pivot(index="subset", columns="method", values="roc_auc").reindex(sizes.index)
        table.insert(0, "training images", sizes)
        table.columns.name = None
        return table.round(3)

    def plot(self, title: str = ""):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for method in dict.fromkeys(r["method"] for r in self.rows):
            rows = sorted((r for r in self.rows if r["method"] == method), key=lambda r: r["train_images"])
            n = [r["train_images"] for r in rows]
            ax.plot(n, [r["roc_auc"] for r in rows], marker="o", label=method)
            ax.fill_between(n, [r["roc_auc_low"] for r in rows], [r["roc_auc_high"] for r in rows], alpha=0.12)
        ax.set(xscale="log", xlabel="training images (log scale)", ylabel="test ROC AUC", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        return fig


IMAGENET = "ImageNet Xception, frozen features + head"
SCRATCH = "{name} from scratch"
SOURCE = "{name} pretrained on phantom source"


def learning_curve(
    profile: str | Profile,
    manifest: data.SplitManifest,
    sizes: Sequence[int | str] = (50, 100, "target", 200, 400, "all"),
    *,
    cnn: str = "paper_cnn",
    image_size: int = IMAGE_SIZE,
    imagenet: bool = True,
) -> LearningCurve:
    """The three ways to train, on the same :func:`learning_curve_subsets`, evaluated on test.

    * ImageNet Xception features (:func:`cached_features` at ``image_size``) + :func:`train_head`
      (skipped with ``imagenet=False``, e.g. when the weights cannot be had offline);
    * ``cnn`` from scratch at the profile's image size (:func:`cached_subset_training`);
    * ``cnn`` pretrained on the phantom source part, only on subsets inside the target part.
    """
    P = get_profile(profile) if not isinstance(profile, Profile) else profile
    subsets = learning_curve_subsets(manifest, sizes, seed=P.seed)
    source_seen = {Path(p) for p in experiments.train_subset(manifest, "source", seed=P.seed)[0]}
    curve = LearningCurve()
    groups = manifest.patients("test")
    if imagenet:
        start = time.perf_counter()
        feats = {s: cached_features(manifest, s, image_size) for s in ("train", "val", "test")}
        val, test = (feats["val"].features, feats["val"].labels), (feats["test"].features, feats["test"].labels)
        for label, (train_paths, _) in subsets.items():
            x, y = feats["train"].take(train_paths, manifest.data_dir)
            head = train_head(x, y, *val, seed=P.seed)
            curve.add(IMAGENET, label, len(y), evaluate_head(head, test, val, name=f"{IMAGENET} ({label})",
                                                             profile=P, groups=groups))
        curve.seconds[IMAGENET] = time.perf_counter() - start
    for method, weights in ((SCRATCH.format(name=cnn), None), (SOURCE.format(name=cnn), "source")):
        start = time.perf_counter()
        for label, (train_paths, y) in subsets.items():
            if weights == "source" and source_seen & set(train_paths):
                continue
            run = cached_subset_training(cnn, P, manifest, train_paths, weights=weights)
            channels = run.model.input_shape[-1]
            result = evaluation.evaluate_model(
                run.model, data.split_dataset(manifest, "test", P, channels=channels),
                data.split_dataset(manifest, "val", P, channels=channels), name=f"{method} ({label})",
                bootstrap_rounds=P.bootstrap_rounds, seed=P.seed, groups=groups,
                context={"profile": P.name, "data": P.data_source, "split": "test"})
            curve.add(method, label, len(y), result)
        curve.seconds[method] = time.perf_counter() - start
    return curve
