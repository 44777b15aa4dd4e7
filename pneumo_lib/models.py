"""Model builders: the paper's CNN and prior project B's CNN from scratch, and six ImageNet backbones.

Every model built here

* takes ``float32`` images ``(N, S, S, C)`` with values in ``[0, 1]`` (``C = 1`` for the
  scratch CNNs, ``3`` for the backbones: the gray image repeated) and carries its own
  preprocessing as built-in layers (``Rescaling``, ``Normalization``; never ``Lambda``),
  so it loads in Keras safe mode and every consumer feeds the same images;
* ends in a layer named ``"logits"`` (a ``Dense`` layer, the pre-activation scores)
  followed by a layer named ``"prediction"``: ``Activation("sigmoid")`` on one unit (the
  default: the probability of PNEUMONIA, label 1) or ``Activation("softmax")`` on two
  units (NORMAL, PNEUMONIA). There is no ReLU between the logits and the output (the bug
  of prior project A, which made a class impossible to predict once its logit went negative);
* for backbones, keeps the ImageNet network as one nested sub-model named after the
  architecture (``model.get_layer("vgg16")``), with its standard layer names, as users
  build transfer models in Keras.

:data:`ARCHITECTURES` describes each architecture: its family, minimum input size, the
layer Grad-CAM usually explains and where fine-tuning starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pneumo_lib._tf import keras

#: The two heads a model can have.
HEADS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class Architecture:
    """What the library knows about one architecture.

    Attributes:
        name: Key used everywhere (``build_model(name)``, CLI ``--model``, caches).
        family: ``"scratch"`` (built here, random init) or ``"backbone"`` (keras.applications).
        description: One line for humans.
        channels: Input channels the architecture expects by default.
        min_size: Smallest input side in pixels the architecture accepts.
        cam_layer: Name of the layer Grad-CAM usually explains. For backbones the
            layer lives inside the nested backbone sub-model named :attr:`name`.
        fine_tune_from: The first layer unfrozen when fine-tuning the top blocks of a
            pretrained model (inside the backbone for backbones; a top-level conv layer
            for the scratch CNNs).
        preprocessing: How ``[0, 1]`` inputs are mapped to what the backbone was
            trained on: ``"none"``, ``"caffe"``, ``"tf"`` or ``"torch"``.
    """

    name: str
    family: str
    description: str
    channels: int
    min_size: int
    cam_layer: str
    fine_tune_from: str | None = None
    preprocessing: str = "none"


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "paper_cnn", "scratch",
            "Nguyen Phan & Nguyen's proposed CNN: five 3x3 conv blocks (32-64-64-128-256), dense 128",
            channels=1, min_size=32, cam_layer="block5_conv", fine_tune_from="block5_conv",
        ),
        Architecture(
            "project_b_cnn", "scratch",
            "prior project B's CNN: four conv+batch-norm blocks (32-64-128-128), dense 512, dropout 0.5",
            channels=1, min_size=16, cam_layer="block4_conv", fine_tune_from="block4_conv",
        ),
        Architecture(
            "vgg16", "backbone", "VGG16 (Simonyan & Zisserman 2015)",
            channels=3, min_size=32, cam_layer="block5_conv3",
            fine_tune_from="block5_conv1", preprocessing="caffe",
        ),
        Architecture(
            "vgg19", "backbone", "VGG19 (Simonyan & Zisserman 2015)",
            channels=3, min_size=32, cam_layer="block5_conv4",
            fine_tune_from="block5_conv1", preprocessing="caffe",
        ),
        Architecture(
            "resnet50", "backbone", "ResNet50 (He et al. 2016)",
            channels=3, min_size=32, cam_layer="conv5_block3_out",
            fine_tune_from="conv5_block1_1_conv", preprocessing="caffe",
        ),
        Architecture(
            "mobilenet_v2", "backbone", "MobileNetV2 (Sandler et al. 2018)",
            channels=3, min_size=32, cam_layer="out_relu",
            fine_tune_from="block_13_expand", preprocessing="tf",
        ),
        Architecture(
            "densenet121", "backbone", "DenseNet121, the CheXNet backbone (Huang et al. 2017)",
            channels=3, min_size=32, cam_layer="relu",
            fine_tune_from="conv5_block1_0_bn", preprocessing="torch",
        ),
        Architecture(
            "xception", "backbone", "Xception (Chollet 2017)",
            channels=3, min_size=71, cam_layer="block14_sepconv2_act",
            fine_tune_from="block14_sepconv1", preprocessing="tf",
        ),
    )
}

#: Valid model names, scratch CNNs first.
MODEL_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)

# ImageNet statistics the backbones were trained with. Caffe-style backbones see BGR
# images, so channel 0 is centred on the blue mean.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


def architecture(name: str) -> Architecture:
    """The :class:`Architecture` called ``name``.

    Raises:
        ValueError: Unknown name, listing the valid ones.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown model {name!r}. Valid models: {', '.join(MODEL_NAMES)}.")
    return ARCHITECTURES[name]


def imagenet_weights_url(name: str, image_size: int = 224) -> str:
    """Where Keras downloads the no-top ImageNet weights of a backbone.

    Args:
        name: A backbone name (``"vgg16"``, ..., ``"densenet121"``).
        image_size: Input side; MobileNetV2 has one weights file per size in
            {96, 128, 160, 192, 224} (others use the 224 file).
    """
    files = {
        "vgg16": "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "vgg19": "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "resnet50": "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "densenet121": "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "xception": "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    }
    if name == "mobilenet_v2":
        rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
        return f"{_WEIGHTS_BASE}mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    if name not in files:
        raise ValueError(f"{name!r} has no ImageNet weights. Backbones: {', '.join(files)}, mobilenet_v2.")
    return _WEIGHTS_BASE + files[name]


def _check_common(arch: Architecture, image_size: int, channels: int, head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}. Valid heads: {', '.join(HEADS)}.")
    if int(image_size) < arch.min_size:
        raise ValueError(
            f"{arch.name} needs an input of at least {arch.min_size}x{arch.min_size} pixels; "
            f"got image_size={image_size}. Use image_size >= {arch.min_size}."
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (gray repeated as RGB), got {channels}.")


def _head(x: keras.KerasTensor, head: str) -> keras.KerasTensor:
    """Logits then the output activation; float32 so mixed precision stays stable."""
    units = 1 if head == "sigmoid" else 2
    logits = keras.layers.Dense(units, name="logits", dtype="float32")(x)
    return keras.layers.Activation(head, name="prediction", dtype="float32")(logits)


def _check_weights_file(weights: str | os.PathLike[str]) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file {path} does not exist. Pass weights='imagenet', weights=None "
            "(random initialisation) or the path of an existing weights file."
        )
    return path


def _conv_block(x, filters: int, index: int, *, batch_norm: bool, dropout: float):
    x = keras.layers.Conv2D(
        filters, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"block{index}_conv"
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, name=f"block{index}_bn")(x)
    x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"block{index}_dropout")(x)
    return x


def build_scratch_cnn(
    name: str = "paper_cnn",
    image_size: int = 150,
    *,
    channels: int = 1,
    head: str = "sigmoid",
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """One of the two CNNs trained from scratch, uncompiled.

    * ``"paper_cnn"``: the proposed CNN of Nguyen Phan & Nguyen (2021) as prior project A
      implemented it: five blocks of 3x3 conv (32, 64, 64, 128, 256 filters, ReLU) +
      2x2 max-pooling, dropout 0.1 after the first three blocks and 0.2 after the last
      two, then dense 128 (ReLU), dropout 0.2 and the head, with the logits going
      straight into the output activation.
    * ``"project_b_cnn"``: prior project B's CNN: four blocks of 3x3 conv (32, 64, 128,
      128, ReLU) + batch-norm + 2x2 max-pooling, dense 512 (ReLU), dropout 0.5, head.
      Batch-norm momentum is :data:`BATCHNORM_MOMENTUM` so that short runs work.

    Convolutions and hidden dense layers start from He-normal weights, the usual choice
    before ReLUs (Keras' default Glorot initialisation left the paper's CNN on a plateau
    for several epochs in the quick profile). The paper's CNN, which has no batch
    normalisation, also centres its inputs on zero (a ``Rescaling`` layer named
    ``"centre"`` maps ``[0, 1]`` to ``[-1, 1]``): He initialisation assumes zero-mean
    inputs, and on the phantom radiographs (mean gray about 0.5) the uncentred network
    stayed at chance for all eight quick-profile epochs (training loss 0.693), while the
    centred one reached a test ROC AUC above 0.9 within five. Project B's CNN normalises
    after its first convolution and takes the inputs as they are.

    Args:
        name: ``"paper_cnn"`` or ``"project_b_cnn"``.
        image_size: Input side ``S`` in pixels (at least 32, resp. 16).
        channels: ``C``, 1 (gray, default) or 3.
        head: ``"sigmoid"`` (one unit, P(PNEUMONIA)) or ``"softmax"`` (two units).
        weights: ``None`` (random init) or the path of a weights file saved from the same
            architecture (``model.save_weights("x.weights.h5")``). ``"imagenet"`` is not
            available for CNNs trained from scratch.

    Returns:
        A functional model mapping ``(N, S, S, C)`` float32 in ``[0, 1]`` to ``(N, 1)``
        (sigmoid) or ``(N, 2)`` (softmax) probabilities.

    Raises:
        ValueError: Unknown name/head, input too small, ``weights="imagenet"``.
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    arch = architecture(name)
    if arch.family != "scratch":
        raise ValueError(f"{name!r} is a backbone; use build_transfer_model. Scratch CNNs: paper_cnn, project_b_cnn.")
    _check_common(arch, image_size, channels, head)
    if weights == "imagenet":
        raise ValueError(f"{name} is trained from scratch and has no ImageNet weights; use weights=None or a file.")
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = inputs
    if name == "paper_cnn":
        x = keras.layers.Rescaling(2.0, offset=-1.0, name="centre")(x)
        for i, (filters, drop) in enumerate(zip((32, 64, 64, 128, 256), (0.1, 0.1, 0.1, 0.2, 0.2)), 1):
            x = _conv_block(x, filters, i, batch_norm=False, dropout=drop)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(128, activation="relu", kernel_initializer="he_normal", name="dense")(x)
        x = keras.layers.Dropout(0.2, name="dense_dropout")(x)
    else:
        for i, filters in enumerate((32, 64, 128, 128), 1):
            x = _conv_block(x, filters, i, batch_norm=True, dropout=0.0)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(512, activation="relu", kernel_initializer="he_normal", name="dense")(x)
        x = keras.layers.Dropout(0.5, name="dense_dropout")(x)
    model = keras.Model(inputs, _head(x, head), name=name)
    if weights is not None:
        model.load_weights(str(_check_weights_file(weights)))
    return model


#: Batch-norm momentum of networks trained from scratch here. Keras' defaults (0.99, and
#: 0.999 in MobileNetV2) need thousands of steps before the moving statistics used at
#: inference match the batches; short quick-profile runs take a few hundred.
BATCHNORM_MOMENTUM = 0.9


def _fast_batchnorm(model: keras.Model) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCHNORM_MOMENTUM


def _preprocessing(arch: Architecture, x: keras.KerasTensor) -> keras.KerasTensor:
    """Map ``[0, 1]`` inputs to the backbone's expected range with built-in layers.

    ``caffe`` (VGG, ResNet): ``255 x - mean_bgr``. Keras' own function also swaps RGB to
    BGR first; for our inputs (the gray image repeated in all three channels) the swap
    is the identity, so it is left out and the output equals Keras' exactly.
    """
    channels = x.shape[-1]
    if arch.preprocessing == "tf":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="preprocessing")(x)
    if arch.preprocessing == "caffe":
        mean = [m / 255.0 for m in _CAFFE_MEAN_BGR][:channels]
        variance = [(1 / 255.0) ** 2] * channels
    else:  # torch
        mean = list(_TORCH_MEAN)[:channels]
        variance = [s**2 for s in _TORCH_STD][:channels]
    return keras.layers.Normalization(mean=mean, variance=variance, name="preprocessing")(x)


def _application(name: str, input_shape: tuple[int, int, int], weights):
    apps = keras.applications
    constructors = {
        "vgg16": apps.VGG16,
        "vgg19": apps.VGG19,
        "resnet50": apps.ResNet50,
        "mobilenet_v2": apps.MobileNetV2,
        "densenet121": apps.DenseNet121,
        "xception": apps.Xception,
    }
    if weights is None or weights == "imagenet":
        return constructors[name](include_top=False, weights=weights, input_shape=input_shape, name=name)
    try:
        return constructors[name](include_top=False, weights=weights, input_shape=input_shape, name=name)
    except ValueError as err:  # Keras: layer counts or weight shapes differ
        raise WeightsMismatchError(
            f"The weights file {weights} does not fit the {name} architecture "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Pass the no-top weights "
            f"of {name} itself (e.g. {imagenet_weights_url(name).rsplit('/', 1)[-1]}), not those of another network."
        ) from None


class WeightsMismatchError(ValueError):
    """A weights file was written by a different architecture than the one it is loaded into."""


def _xception_imagenet(shape: tuple[int, int, int]):
    """Xception with ImageNet weights: offline from the PyPI package, else Keras's download.

    :func:`pneumo_lib.pretrained.xception_imagenet_weights` extracts them (SHA-256 pinned)
    from ``pneumonia-model-package``; when pip cannot fetch it, Keras's own download is
    tried; when both fail, the error names the package and the Keras file.
    """
    from pneumo_lib import pretrained

    try:
        return _application("xception", shape, str(pretrained.xception_imagenet_weights()))
    except pretrained.PretrainedUnavailable as offline:
        try:
            return _application("xception", shape, "imagenet")
        except Exception as err:  # keras raises a bare Exception on download failures
            url = imagenet_weights_url("xception")
            raise RuntimeError(
                f"No ImageNet weights for xception: {offline} Keras's own download failed too "
                f"({type(err).__name__}); alternatively put {url.rsplit('/', 1)[-1]} (from {url}) in "
                "~/.keras/models/ or pass weights='/path/to/that/file'."
            ) from err


#: Environment variable naming a folder of local weights files that stand for the ImageNet
#: weights (``weights="imagenet"``) of the backbones it lists; ``pneumo book run --rehearse``
#: sets it for its kernels (:func:`write_rehearsal_weights`). The folder holds
#: :data:`LOCAL_WEIGHTS_INDEX` and the files it names.
IMAGENET_DIR_ENV = "PNEUMO_IMAGENET_WEIGHTS"
#: Index of a local weights folder: ``{name: {"file": ..., "stand_in": bool, "origin": ...}}``.
LOCAL_WEIGHTS_INDEX = "weights.json"


class StandInWeightsWarning(UserWarning):
    """ImageNet weights were asked for and random stand-in weights of the same architecture were loaded."""


@dataclass(frozen=True)
class LocalWeights:
    """A local weights file used where ``weights="imagenet"`` is asked for.

    Attributes:
        name: The backbone (``"vgg16"``, ...).
        path: The weights file (``.h5`` or ``.weights.h5``, no top).
        stand_in: True for random weights of the architecture (a rehearsal's stand-in), False
            for the real ImageNet weights.
        origin: One line saying where the file comes from.
    """

    name: str
    path: Path
    stand_in: bool
    origin: str


def local_imagenet_weights(name: str) -> LocalWeights | None:
    """The local file that stands for ``name``'s ImageNet weights, or None.

    Only when :data:`IMAGENET_DIR_ENV` names a folder whose :data:`LOCAL_WEIGHTS_INDEX`
    lists ``name``; otherwise (the normal case) ``None`` and ImageNet weights come from
    the usual places.

    Raises:
        FileNotFoundError: The variable is set but names no folder with an index, or the
            index names a missing file (the message says which and how to fix it).
    """
    folder = os.environ.get(IMAGENET_DIR_ENV, "").strip()
    if not folder:
        return None
    index = Path(folder).expanduser() / LOCAL_WEIGHTS_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{IMAGENET_DIR_ENV}={folder} has no {LOCAL_WEIGHTS_INDEX}: unset the "
                                "variable, or write the folder with models.write_rehearsal_weights.")
    import json

    entry = json.loads(index.read_text(encoding="utf-8")).get(name)
    if entry is None:
        return None
    path = Path(entry["file"])
    path = path if path.is_absolute() else index.parent / path
    if not path.is_file():
        raise FileNotFoundError(f"{index} names {path} for {name}, which does not exist; rewrite the "
                                "folder with models.write_rehearsal_weights or unset " + IMAGENET_DIR_ENV + ".")
    return LocalWeights(name, path, bool(entry.get("stand_in")), str(entry.get("origin", "")))


def imagenet_weights_id(name: str) -> str:
    """What ``weights="imagenet"`` means for ``name`` here, for model cards and cache keys.

    ``"imagenet"`` normally; inside a rehearsal (:data:`IMAGENET_DIR_ENV` lists ``name``)
    ``"imagenet-standin:<16 hex digits>"`` for a stand-in and ``"imagenet-local:<16 hex digits>"``
    for a local copy of the real weights (digits: the file's SHA-256), so models trained
    on stand-ins are never served as ImageNet-trained ones.
    """
    local = local_imagenet_weights(name)
    if local is None:
        return "imagenet"
    import hashlib

    digest = hashlib.sha256()
    with open(local.path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    kind = "imagenet-standin" if local.stand_in else "imagenet-local"
    return f"{kind}:{digest.hexdigest()[:16]}"


def write_rehearsal_weights(folder: str | os.PathLike[str], names: "tuple[str, ...] | None" = None,
                            *, image_size: int = 72, seed: int = 42) -> dict[str, LocalWeights]:
    """Write (or reuse) the local weights folder a rehearsal points :data:`IMAGENET_DIR_ENV` at.

    Xception gets its real ImageNet weights (offline, :mod:`pneumo_lib.pretrained`) when they
    can be had; every other backbone, and Xception when they cannot, gets a stand-in: the
    architecture's random initialisation (seeded) saved as ``<name>.standin.weights.h5``.
    A stand-in has the right layers and shapes, so every code path runs, but it is not
    ImageNet: loading it warns with :class:`StandInWeightsWarning`.

    Args:
        folder: Where the files and :data:`LOCAL_WEIGHTS_INDEX` go (created).
        names: Backbones to cover (default: every backbone of :data:`ARCHITECTURES`).
        image_size: Input side the stand-ins are built at (no-top weights do not depend on it).
        seed: Seed of the stand-ins' random initialisation.

    Returns:
        ``{name: LocalWeights}`` for every backbone covered.

    Raises:
        ValueError: A name that is not a backbone.
    """
    import json

    backbones = tuple(n for n, a in ARCHITECTURES.items() if a.family == "backbone")
    names = backbones if names is None else tuple(names)
    bad = [n for n in names if n not in backbones]
    if bad:
        raise ValueError(f"Not backbones: {', '.join(bad)}. Backbones: {', '.join(backbones)}.")
    folder = Path(folder).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    index_file = folder / LOCAL_WEIGHTS_INDEX
    index = json.loads(index_file.read_text(encoding="utf-8")) if index_file.is_file() else {}
    for name in names:
        entry = index.get(name)
        if entry and Path(entry["file"]).is_file():
            continue
        real = None
        if name == "xception":
            from pneumo_lib import pretrained

            try:
                real = pretrained.xception_imagenet_weights()
            except pretrained.PretrainedUnavailable:
                real = None
        if real is not None:
            index[name] = {"file": str(real), "stand_in": False,
                           "origin": "Keras's ImageNet Xception weights, from the PyPI package pneumonia-model-package"}
        else:
            keras.utils.set_random_seed(seed)
            target = folder / f"{name}.standin.weights.h5"
            model = _application(name, (image_size, image_size, 3), None)
            model.save_weights(str(target))
            index[name] = {"file": str(target), "stand_in": True,
                           "origin": f"random initialisation of {name} (seed {seed}): a stand-in, not ImageNet"}
        index_file.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return {n: LocalWeights(n, Path(index[n]["file"]), bool(index[n]["stand_in"]), index[n]["origin"])
            for n in names}


def build_backbone(
    name: str,
    image_size: int = 224,
    *,
    channels: int = 3,
    weights: str | os.PathLike[str] | None = "imagenet",
) -> keras.Model:
    """A keras.applications backbone without its top, named ``name``.

    Args:
        name: ``"vgg16"``, ``"vgg19"``, ``"resnet50"``, ``"mobilenet_v2"``, ``"densenet121"``
            or ``"xception"``.
        image_size: Input side ``S`` (at least 32; 71 for Xception).
        channels: 3 (required for ImageNet weights) or 1 (random init only).
        weights: ``"imagenet"`` (downloaded by Keras to ``~/.keras/models``; for Xception
            first taken offline from the PyPI package ``pneumonia-model-package``, see
            :mod:`pneumo_lib.pretrained`), ``None`` (random init) or the path of a local
            no-top weights file (the ``.h5`` file at :func:`imagenet_weights_url`, for
            machines without internet). When :data:`IMAGENET_DIR_ENV` is set (a rehearsal),
            ``"imagenet"`` loads the file listed there for ``name`` instead
            (:func:`local_imagenet_weights`), warning with :class:`StandInWeightsWarning`
            when it is a stand-in.

    Raises:
        ValueError: Unknown name, input too small, ImageNet weights with ``channels != 3``.
        WeightsMismatchError: The weights file belongs to another architecture (names both).
        FileNotFoundError: ``weights`` names a missing file.
        RuntimeError: ImageNet weights could not be downloaded; the message says which
            file to fetch and how to pass it.
    """
    arch = architecture(name)
    if arch.family != "backbone":
        raise ValueError(
            f"{name!r} is not a backbone. Backbones: "
            f"{', '.join(n for n, a in ARCHITECTURES.items() if a.family == 'backbone')}."
        )
    _check_common(arch, image_size, channels, "sigmoid")
    if weights is not None and weights != "imagenet":
        weights = str(_check_weights_file(weights))
    if weights is not None and channels != 3:
        raise ValueError(f"Pretrained {name} weights need channels=3 (the gray image repeated); got {channels}.")
    shape = (image_size, image_size, channels)
    if weights != "imagenet":
        return _application(name, shape, weights)
    local = local_imagenet_weights(name)
    if local is not None:
        if local.stand_in:
            import warnings

            warnings.warn(StandInWeightsWarning(
                f"{name}: ImageNet weights asked for, stand-in loaded ({local.origin}; "
                f"{local.path.name}). Rehearsal only: its accuracy means nothing."), stacklevel=2)
        return _application(name, shape, str(local.path))
    if name == "xception":
        return _xception_imagenet(shape)
    try:
        return _application(name, shape, "imagenet")
    except Exception as err:  # keras raises a bare Exception on download failures
        url = imagenet_weights_url(name, image_size)
        raise RuntimeError(
            f"Could not download the ImageNet weights of {name} ({type(err).__name__}: {err}). "
            f"Without internet: download {url} on another machine, copy the file here and pass "
            f"weights='/path/to/{url.rsplit('/', 1)[-1]}' (or `--weights PATH` on the command "
            "line), or put it in ~/.keras/models/ where Keras looks first; or use weights=None "
            "for random initialisation (that is not transfer learning)."
        ) from err


def build_transfer_model(
    name: str,
    image_size: int = 224,
    *,
    channels: int = 3,
    head: str = "sigmoid",
    weights: str | os.PathLike[str] | None = "imagenet",
    dropout: float = 0.2,
    train_backbone: bool = False,
) -> keras.Model:
    """A backbone (frozen by default) nested inside a small classification head, uncompiled.

    Layout: ``image`` -> ``preprocessing`` (Rescaling or Normalization) -> backbone
    sub-model named ``name`` (called with ``training=False`` unless ``train_backbone``,
    so its batch-norm layers stay in inference mode even when fine-tuned) -> ``global_pool`` -> ``head_dropout``
    -> ``logits`` -> ``prediction``.

    Args:
        name: A backbone name (see :func:`build_backbone`).
        image_size: Input side ``S`` (at least 32).
        channels: ``C``, 3 by default (the gray image repeated).
        head: ``"sigmoid"`` or ``"softmax"``.
        weights: ``"imagenet"``, ``None`` or a local weights file: see :func:`build_backbone`.
        dropout: Dropout rate before the logits, in ``[0, 1)``.
        train_backbone: ``False`` (default): the backbone is frozen and called with
            ``training=False`` (the first phase of transfer learning; :func:`unfreeze_top`
            opens its top blocks later). ``True``: train the whole backbone, its
            batch-norm layers in training mode with momentum :data:`BATCHNORM_MOMENTUM`,
            as when training it from scratch.

    Returns:
        A functional model mapping ``(N, S, S, C)`` float32 in ``[0, 1]`` to probabilities.
    """
    arch = architecture(name)
    if arch.family != "backbone":
        raise ValueError(f"{name!r} is trained from scratch; use build_scratch_cnn.")
    _check_common(arch, image_size, channels, head)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    backbone = build_backbone(name, image_size, channels=channels, weights=weights)
    backbone.trainable = train_backbone
    if train_backbone:
        _fast_batchnorm(backbone)
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = _preprocessing(arch, inputs)
    x = backbone(x) if train_backbone else backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.Model(inputs, _head(x, head), name=f"{name}_classifier")


def build_model(
    name: str,
    image_size: int | None = None,
    *,
    channels: int | None = None,
    head: str = "sigmoid",
    weights: str | os.PathLike[str] | None = None,
    **options,
) -> keras.Model:
    """Build any architecture of :data:`MODEL_NAMES` by name (uncompiled).

    Args:
        name: One of :data:`MODEL_NAMES`.
        image_size: Input side; default 150 for the scratch CNNs, 224 for backbones.
        channels: Default: the architecture's (1 for scratch CNNs, 3 for backbones).
        head: ``"sigmoid"`` (default) or ``"softmax"``.
        weights: ``None`` (default: random init), ``"imagenet"`` (backbones only) or a
            weights file path.
        **options: Further arguments of :func:`build_transfer_model` (``dropout``,
            ``train_backbone``) for backbones.
    """
    arch = architecture(name)
    channels = arch.channels if channels is None else channels
    if arch.family == "scratch":
        if options:
            raise ValueError(f"{name} takes no options {sorted(options)}; they apply to backbones only.")
        return build_scratch_cnn(name, image_size or 150, channels=channels, head=head, weights=weights)
    return build_transfer_model(name, image_size or 224, channels=channels, head=head, weights=weights, **options)


def architecture_of(model: keras.Model) -> Architecture:
    """The :class:`Architecture` a model built here was built from (from its name).

    Raises:
        ValueError: The model was not built by this module.
    """
    key = model.name.removesuffix("_classifier")
    if key not in ARCHITECTURES:
        raise ValueError(f"Model {model.name!r} was not built by pneumo_lib.models (names: {', '.join(MODEL_NAMES)}).")
    return ARCHITECTURES[key]


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The nested backbone sub-model of a transfer model, ``None`` for scratch CNNs."""
    arch = architecture_of(model)
    return model.get_layer(arch.name) if arch.family == "backbone" else None


def has_frozen_backbone(model: keras.Model) -> bool:
    """True for a transfer model whose backbone is frozen (how :func:`build_transfer_model` builds it)."""
    backbone = backbone_of(model)
    return backbone is not None and not backbone.trainable


def _feature_layers(model: keras.Model) -> list:
    """The layers holding a model's features: the backbone's, or a scratch CNN's up to ``flatten``."""
    backbone = backbone_of(model)
    if backbone is not None:
        return list(backbone.layers)
    names = [layer.name for layer in model.layers]
    return list(model.layers[: names.index("flatten")])


def freeze_features(model: keras.Model) -> None:
    """Freeze the feature layers (backbone, or a scratch CNN's conv blocks); the head stays trainable.

    The first phase of transfer learning: only the classification head learns.
    Recompile the model afterwards.
    """
    backbone = backbone_of(model)
    if backbone is not None:
        backbone.trainable = False
        return
    for layer in _feature_layers(model):
        layer.trainable = False


def unfreeze_top(model: keras.Model, from_layer: str | None = None) -> int:
    """Make the features trainable from ``from_layer`` on (the top blocks); freeze the rest.

    Batch-normalisation layers stay frozen (inside backbones they also run in inference
    mode, see :func:`build_transfer_model`), the usual recipe for fine-tuning on small
    data. Recompile the model afterwards.

    Args:
        model: A model built here (a transfer model, or a scratch CNN being fine-tuned).
        from_layer: First feature layer to unfreeze; default: the architecture's
            :attr:`Architecture.fine_tune_from`.

    Returns:
        The number of feature layers with weights that are now trainable.

    Raises:
        ValueError: ``from_layer`` is not among the feature layers.
    """
    backbone = backbone_of(model)
    layers = _feature_layers(model)
    start = from_layer or architecture_of(model).fine_tune_from
    names = [layer.name for layer in layers]
    if start not in names:
        where = f"the {backbone.name} backbone" if backbone is not None else f"the features of {model.name}"
        raise ValueError(f"Layer {start!r} is not in {where}.")
    if backbone is not None:
        backbone.trainable = True
    first = names.index(start)
    count = 0
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
        count += int(layer.trainable and bool(layer.weights))
    return count
