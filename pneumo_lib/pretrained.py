"""Real pretrained networks, offline: ImageNet Xception and a classifier trained on real X-rays.

The PyPI package ``pneumonia-model-package==0.3.0`` (by chibuikeeugene; the wheel the
library already takes the 16 real Kaggle images from, :mod:`pneumo_lib.data.sample`) ships
``trained_models/pneumonia_xception_model_val-acc_0.861.keras``: a Keras classifier built as
``Xception(weights="imagenet", include_top=False, input_shape=(150, 150, 3))``, frozen, nested
in a functional model (global average pooling, dense 128, dropout 0.3, 2 logits; index 1 =
PNEUMONIA) and trained on the real Kaggle images (Kermany et al. 2018, CC BY 4.0) with
``keras.applications.xception.preprocess_input`` at 150 px. Its backbone was frozen, so its
weights are Keras's ImageNet Xception weights.

* :func:`reference_model_file` fetches the wheel with ``pip download --no-deps`` (through
  :func:`pneumo_lib.data.sample.fetch_wheel`, cached in ``<home>/downloads``), extracts the
  model file to ``<home>/pretrained/`` and checks it against the pinned :data:`MODEL_SHA256`.
* :func:`xception_imagenet_weights` writes the backbone's weights (``.weights.h5``) beside it:
  what ``models.build_backbone("xception", weights="imagenet")`` loads on a machine without
  internet, at any input size from 71 px.
* :func:`load_reference_model` returns the classifier (loaded in Keras safe mode: it holds no
  ``Lambda`` layer) and its model card (:data:`REFERENCE_CARD`).
* :func:`reference_available` says, without touching the network, whether it can be had offline.

Failures: pip cannot fetch the package -> :class:`PretrainedUnavailable` naming the package and
what to do; a file whose SHA-256 differs -> :class:`IntegrityError` (the file is not used).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_lib import paths
from pneumo_lib.data import sample

#: The package holding the model (the same wheel as the real sample).
PACKAGE = sample.SAMPLE_REQUIREMENT
#: The model file inside the wheel.
MODEL_MEMBER = "pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras"
#: SHA-256 (hex) of that file as published (also in the wheel's RECORD).
MODEL_SHA256 = "d7997cd1923f4d13538f02d64b6d5925e2f87a2a2db8036c074f795c41439e26"
#: File name of the extracted ImageNet Xception (no top) weights.
XCEPTION_WEIGHTS = "xception_imagenet_notop.weights.h5"

#: What the reference classifier is: the fields of its model card.
REFERENCE_CARD: dict[str, Any] = {
    "name": "xception_reference",
    "title": "Xception classifier trained on the real Kaggle chest X-rays (pneumonia-model-package 0.3.0)",
    "trained_on": "the real Kaggle 'Chest X-Ray Images (Pneumonia)' training images (Kermany et al. 2018, "
                  "CC BY 4.0), by the package's author; frozen ImageNet Xception backbone, trained head",
    "package": PACKAGE,
    "author": "chibuikeeugene (https://github.com/chibuikeeugene/pneumonia_classification_xception_model)",
    "file": MODEL_MEMBER.rsplit("/", 1)[-1],
    "sha256": MODEL_SHA256,
    "input_size": 150,
    "channels": 3,
    "preprocessing": "RGB (gray repeated), resized to 150x150 (the package used nearest-neighbour, "
                     "Keras ImageDataGenerator's default), then keras.applications.xception.preprocess_input: "
                     "x / 127.5 - 1, i.e. [-1, 1]",
    "input_range": "[0, 1] for the model load_reference_model() returns (its Rescaling layer maps to [-1, 1]); "
                   "[-1, 1] for the package's own model (raw=True)",
    "classes": ["NORMAL", "PNEUMONIA"],
    "pneumonia_index": 1,
    "head": "softmax",
    "cam_layer": "xception/block14_sepconv2_act",
    "data": {"source": "kaggle"},
    "not_a_medical_device": True,
}


class PretrainedUnavailable(RuntimeError):
    """The package could not be fetched (offline, proxy); the message names it and says what to do."""


class IntegrityError(RuntimeError):
    """A file's SHA-256 differs from the pinned one: it is not the published file and is not used."""


def pretrained_dir() -> Path:
    """Folder of the extracted files: ``<home>/pretrained``."""
    return paths.pneumo_home() / "pretrained"


def downloads_dir() -> Path:
    """Folder of the cached wheel: ``<home>/downloads`` (shared with the real sample)."""
    return paths.pneumo_home() / "downloads"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unavailable_message(reason: str) -> str:
    return (
        f"The pretrained Xception networks come from the PyPI package {PACKAGE}, which could not be "
        f"fetched ({reason}). On a machine that reaches PyPI run `pip download --no-deps {PACKAGE} -d DIR` "
        f"and copy the .whl file into {paths.display_path(downloads_dir())}/ (or set PNEUMO_HOME to where it "
        "is); online, Keras can also download the ImageNet Xception weights itself."
    )


def fetch_package(*, fetch: bool = True) -> Path:
    """The package's wheel: cached in ``<home>/downloads``, else fetched with pip (``fetch=True``).

    Raises:
        PretrainedUnavailable: Not cached and pip could not download it (or ``fetch=False``).
    """
    stem = PACKAGE.replace("-", "_").replace("==", "-")
    cached = sorted(downloads_dir().glob(f"{stem}-*.whl"))
    if cached:
        return cached[0]
    if not fetch:
        raise PretrainedUnavailable(_unavailable_message("not in the cache, and fetching was not allowed"))
    try:
        return sample.fetch_wheel(downloads_dir(), PACKAGE)
    except sample.SampleError as err:
        raise PretrainedUnavailable(_unavailable_message(str(err).split(" (", 1)[-1].split(").")[0])) from None


_verified: dict[str, tuple[int, int]] = {}


def _check(path: Path, expected: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` hashes to ``expected`` (memoised per size+mtime)."""
    stat = path.stat()
    stamp = (stat.st_size, stat.st_mtime_ns)
    if _verified.get(str(path)) == stamp:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"SHA-256 mismatch for {paths.display_path(path)}: expected {expected}, got {actual}. It is not the "
            f"published file of {PACKAGE}, so it was refused; delete it (and the cached wheel in "
            f"{paths.display_path(downloads_dir())}) and fetch again."
        )
    _verified[str(path)] = stamp


def reference_model_file(*, fetch: bool = True, expected_sha256: str = MODEL_SHA256) -> Path:
    """The package's ``.keras`` file, extracted under ``<home>/pretrained`` and SHA-256 checked.

    Args:
        fetch: Allow pip to download the wheel when it is not cached.
        expected_sha256: The pinned digest (tests pass another one for their stand-in wheel).

    Raises:
        PretrainedUnavailable: The wheel is neither cached nor fetchable.
        IntegrityError: The extracted (or cached) file does not have the pinned SHA-256.
    """
    target = pretrained_dir() / MODEL_MEMBER.rsplit("/", 1)[-1]
    if target.is_file():
        _check(target, expected_sha256)
        return target
    wheel = fetch_package(fetch=fetch)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = paths.partial_path(target)
    try:
        with zipfile.ZipFile(wheel) as z, z.open(MODEL_MEMBER) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{paths.display_path(wheel)} is not the published wheel of {PACKAGE} ({type(err).__name__}: {err}); "
            "delete it and fetch again."
        ) from None
    try:
        _check(partial, expected_sha256)
    except IntegrityError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    _verified[str(target)] = _verified.pop(str(partial))
    return target


def reference_available() -> bool:
    """True when the reference model (and the ImageNet Xception weights) can be had without network.

    Looks only at the cache (the extracted file or the wheel in ``<home>/downloads``); never
    downloads and never raises.
    """
    try:
        reference_model_file(fetch=False)
        return True
    except (PretrainedUnavailable, IntegrityError, OSError):
        return False


def _load_package_model(path: Path):
    from pneumo_lib._tf import keras

    # Safe mode: the file holds only built-in layers (no Lambda), so nothing executes code.
    return keras.models.load_model(path, compile=False, safe_mode=True)


def xception_imagenet_weights(*, fetch: bool = True) -> Path:
    """The ImageNet Xception (no top) weights, extracted from the package's frozen backbone.

    Written once as ``<home>/pretrained/xception_imagenet_notop.weights.h5`` with a sidecar
    ``.json`` recording its SHA-256 and the model file's; checked on every later use. Loads
    into ``keras.applications.Xception(include_top=False, weights=None)`` at any size >= 71 px.

    Raises:
        PretrainedUnavailable, IntegrityError: as :func:`reference_model_file`.
    """
    target = pretrained_dir() / XCEPTION_WEIGHTS
    sidecar = target.with_suffix(".json")
    if target.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get("model_sha256") == MODEL_SHA256 and info.get("version") == 2:
            _check(target, info["sha256"])
            return target
    model_file = reference_model_file(fetch=fetch)
    from pneumo_lib import models

    # Written from a freshly built Xception (same layer paths as every later load), not from
    # the deserialised nested model.
    backbone = models.build_backbone("xception", 150, weights=None)
    backbone.set_weights(_load_package_model(model_file).get_layer("xception").get_weights())
    partial = paths.partial_path(target)
    backbone.save_weights(partial)
    digest = sha256_file(partial)
    partial.replace(target)
    partial = paths.partial_path(sidecar)
    partial.write_text(json.dumps({"sha256": digest, "model_sha256": MODEL_SHA256, "from": MODEL_MEMBER, "version": 2}, indent=1))
    partial.replace(sidecar)
    return target


def weights_digest() -> str:
    """Short SHA-256 of the ImageNet Xception weights in use (for cache keys), without fetching.

    Raises:
        PretrainedUnavailable: The weights have not been extracted yet.
    """
    sidecar = (pretrained_dir() / XCEPTION_WEIGHTS).with_suffix(".json")
    if not sidecar.is_file():
        raise PretrainedUnavailable(_unavailable_message("the weights were not extracted yet"))
    return json.loads(sidecar.read_text())["sha256"][:16]


@dataclass
class ReferenceModel:
    """The real-data classifier and what it is.

    Attributes:
        model: The Keras model. By default it follows the library's contract: ``[0, 1]``
            images ``(N, 150, 150, 3)``, a ``preprocessing`` Rescaling layer to ``[-1, 1]``, the
            nested ``xception`` backbone, ``logits`` (2 units) and a softmax ``prediction``.
            With ``raw=True``: the package's model as stored (``[-1, 1]`` inputs, 2 logits out).
        card: :data:`REFERENCE_CARD` (trained on, input size, preprocessing, classes, credit).
        path: The verified ``.keras`` file.
    """

    model: Any
    card: dict[str, Any] = field(default_factory=lambda: dict(REFERENCE_CARD))
    path: Path | None = None

    @property
    def image_size(self) -> int:
        return int(self.card["input_size"])


def conform(package_model):
    """Wrap the package's classifier in the library's contract (same weights, shared backbone).

    ``image [0, 1] -> preprocessing (Rescaling 2x - 1) -> xception -> global_pool -> dense ->
    head_dropout -> logits (2) -> prediction (softmax)``, named ``xception_classifier`` so
    :func:`pneumo_lib.models.architecture_of` and the CAM functions find ``block14_sepconv2_act``.
    Its predictions equal the package model's on ``2 x - 1`` (checked in the tests).
    """
    from pneumo_lib._tf import keras

    size = int(package_model.input_shape[1])
    dense, out = package_model.get_layer("dense"), package_model.get_layer("dense_1")
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocessing")(inputs)
    # A fresh Xception with the stored weights: the deserialised nested model returns a
    # one-element list, which the layers after it would not take.
    from pneumo_lib import models

    backbone = models.build_backbone("xception", size, weights=None)
    backbone.set_weights(package_model.get_layer("xception").get_weights())
    backbone.trainable = False
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    new_dense = keras.layers.Dense(dense.units, activation="relu", name="dense")
    x = new_dense(x)
    x = keras.layers.Dropout(package_model.get_layer("dropout").rate, name="head_dropout")(x)
    logits = keras.layers.Dense(out.units, name="logits", dtype="float32")
    probs = keras.layers.Activation("softmax", name="prediction", dtype="float32")(logits(x))
    model = keras.Model(inputs, probs, name="xception_classifier")
    new_dense.set_weights(dense.get_weights())
    logits.set_weights(out.get_weights())
    return model


def load_reference_model(*, raw: bool = False, fetch: bool = True) -> ReferenceModel:
    """The classifier trained on the real Kaggle X-rays, with its card.

    The file is SHA-256 checked before it is opened, and loaded in Keras safe mode (it
    holds only built-in layers; no unsafe deserialisation is needed).

    Args:
        raw: Return the package's model unchanged (inputs ``[-1, 1]``, 2 logits out)
            instead of the library-conforming wrapper (see :class:`ReferenceModel`).
        fetch: Allow pip to fetch the package when it is not cached.

    Raises:
        PretrainedUnavailable: The package is neither cached nor fetchable (the message says what to do).
        IntegrityError: The model file is not the published one.
    """
    path = reference_model_file(fetch=fetch)
    package_model = _load_package_model(path)
    from pneumo_lib import decision

    model = package_model if raw else decision.attach_threshold(conform(package_model), None)
    return ReferenceModel(model, dict(REFERENCE_CARD), path)


def reference_images(image_paths, size: int = 150) -> np.ndarray:
    """Images as the package's own pipeline saw them, in ``[0, 1]``: RGB, nearest-neighbour resize.

    Keras's ``ImageDataGenerator.flow_from_dataframe`` (the package's loader) converts to RGB and
    resizes with PIL's nearest-neighbour filter; the library's pipeline
    (:func:`pneumo_lib.data.load_images`) resizes with antialiasing instead, which moves a few
    borderline predictions. Returns float32 ``(N, size, size, 3)``.
    """
    from PIL import Image

    out = []
    for p in image_paths:
        with Image.open(p) as img:
            out.append(np.asarray(img.convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float32) / 255.0)
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.float32)


def reference_input(image: np.ndarray, size: int = 150) -> np.ndarray:
    """One decoded image (``(H, W)`` gray or ``(H, W, 3)``, values in ``[0, 1]``) as the reference model's input.

    The same resize as :func:`reference_images` (nearest-neighbour, the gray image repeated in
    three channels); for images already in memory, e.g. from
    :func:`pneumo_lib.data.read_image` on an upload. Returns float32 ``(1, size, size, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: Not a 2-D or 3-channel image, or values outside ``[0, 1]``.
    """
    from PIL import Image

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(f"Expected a (H, W) or (H, W, 3) image, got shape {arr.shape}.")
    if arr.size == 0 or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError("Expected finite values in [0, 1] (e.g. from pneumo_lib.data.read_image).")
    img = Image.fromarray(np.round(arr * 255).astype(np.uint8)).convert("RGB")
    return (np.asarray(img.resize((size, size), Image.NEAREST), dtype=np.float32) / 255.0)[None]
