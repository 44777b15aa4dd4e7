"""The upload-and-explain web app: Voila serving one notebook of the explorer.

``pneumo serve`` calls :func:`serve`, which

1. resolves the model (:func:`served_model`, a :class:`ServedModel`):

   * without ``--model``: the external classifier trained on the **real** Kaggle X-rays
     (:func:`pneumo_lib.pretrained.load_reference_model`, from ``pneumonia-model-package``),
     when it is cached or pip can fetch it (:func:`reference_app_model`); otherwise the
     quick-profile scratch CNN trained on generated phantom images (:func:`default_model`),
     with one line on the terminal saying why (:data:`FALLBACK_MESSAGE`) and a prominent
     notice on the page (:data:`PHANTOM_NOTICE`) that its answers on real X-rays mean nothing;
   * ``--model reference`` / ``--model phantom``: one of those two, by name;
   * ``--model PATH``: any Keras ``.keras`` classifier; its preprocessing and input size
     come from ``--preprocess`` / ``--input-size``, else from its model card (``preprocess``,
     ``input_size``), else ``[0, 1]`` inputs at its own input size (:func:`given_model`);

2. hands the model's path, the sentences describing it (what it was trained on, at what
   input size, that it is not a medical device) and the notice to the kernels through the
   environment variables :data:`MODEL_ENV`, :data:`NOTE_ENV` and :data:`NOTICE_ENV` (the app
   notebook reads them with :func:`pneumo_lib.widgets.app_from_environment`);
3. runs Voila in this process on ``explorer_app.ipynb`` (shipped as package data, so
   the command works from a plain ``pip install``), bound to 127.0.0.1 by default.

The page is the explorer's upload view (:class:`pneumo_lib.widgets.AppView`): one
interface to maintain for the chapter and the app.

Every visit runs its own kernel (about 0.8 GB with TensorFlow and the model), so the
server frees what its visitors take:

* **closing the tab ends the kernel**: the page's ``beforeunload`` beacon posts to
  ``/voila/api/shutdown/<id>`` with the ``_xsrf`` value it reads from the page's cookie;
  Voila's page handler never set that cookie, so every shutdown was refused (403) and the
  kernel lived on. The app's page handler sets it (:func:`voila_class`);
* **idle kernels end** after :data:`DEFAULT_IDLE_SECONDS` without activity, connected or
  not (``MappingKernelManager.cull_idle_timeout`` / ``cull_interval`` / ``cull_connected``),
  which also frees the kernels of tabs that vanished without a beacon;
* **at most ``max_kernels`` run at once** (default :func:`default_max_kernels`: the
  machine's memory over :data:`KERNEL_MB`); a visitor beyond that gets HTTP 503 and a
  readable "busy, try again" page (:data:`BUSY_PAGE`) instead of a kernel.
"""

from __future__ import annotations

import contextvars
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment variable holding the absolute path of the ``.keras`` model the app serves.
MODEL_ENV = "PNEUMO_APP_MODEL"
#: Environment variable holding one sentence that says on the page which model answers.
NOTE_ENV = "PNEUMO_APP_MODEL_NOTE"
#: Environment variable holding a warning shown prominently above the upload button (empty: none).
NOTICE_ENV = "PNEUMO_APP_MODEL_NOTICE"
#: ``--model`` names: the real-data reference classifier, the phantom-trained scratch CNN.
REFERENCE, PHANTOM = "reference", "phantom"
#: The sentence every page ends its model description with.
NOT_A_MEDICAL_DEVICE = "It is a teaching and research model, not a medical device: its answers are not a diagnosis."
#: The sentence a three-class model's page description adds (``--model PATH`` with ``classes: 3``).
THREE_CLASS_SENTENCE = "Classes: NORMAL, bacterial and viral pneumonia (a three-class model)."
#: The notice the page shows prominently when the phantom-trained CNN answers.
PHANTOM_NOTICE = (
    "This model was trained only on generated (phantom) images, never on real X-rays: its answers "
    "on a real chest X-ray mean nothing (it ranks real Kaggle X-rays worse than chance). The "
    "real-data classifier could not be had when this server started; see the server's terminal.")
#: The terminal line when the real-data classifier cannot be had; ``{reason}`` is filled in.
FALLBACK_MESSAGE = (
    "pneumo serve: note: serving the phantom-trained CNN instead of the real-data classifier "
    "(the page says its answers on real X-rays mean nothing), because {reason}")
#: ``--preprocess`` names: how the ``[0, 1]`` images of the pipeline become the model's input.
#: ``tf`` is ``keras.applications.xception.preprocess_input`` (and MobileNetV2's); ``caffe``
#: VGG16's and ResNet50's (RGB->BGR is the identity on gray images); ``torch`` DenseNet's.
#: Any architecture name of :data:`pneumo_lib.models.ARCHITECTURES` also works (its
#: ``preprocessing``), e.g. ``xception``.
PREPROCESSING: dict[str, str] = {
    "unit": "none: [0, 1] as the pipeline reads images",
    "tf": "x * 2 - 1, i.e. [-1, 1] (keras.applications.xception.preprocess_input)",
    "caffe": "255 x - ImageNet mean (BGR), as keras.applications.vgg16/resnet50 preprocess_input",
    "torch": "(x - ImageNet mean) / ImageNet std, as keras.applications.densenet preprocess_input",
}
_CAFFE_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The notebook Voila serves.
APP_NOTEBOOK = Path(__file__).with_name("explorer_app.ipynb")
#: The architecture served without ``--model`` (the quick profile's scratch CNN).
DEFAULT_MODEL = "paper_cnn"
#: Default port (Voila's own default).
DEFAULT_PORT = 8866
#: Largest websocket message the server accepts: above the upload limit, so an
#: oversized upload reaches the kernel and gets a clear message instead of a dropped
#: connection (tornado's default is 10 MiB).
WEBSOCKET_MAX_BYTES = 64 * 1024 * 1024
#: Memory one visitor's kernel takes, in MiB (measured: about 0.8 GB), for the default cap.
KERNEL_MB = 900
#: Seconds without activity after which a visitor's kernel is ended.
DEFAULT_IDLE_SECONDS = 600
#: What a visitor beyond the cap sees (HTTP 503); ``{limit}`` and ``{minutes}`` are filled in.
BUSY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Busy: please try again</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto; line-height: 1.5">
<h1>The app is busy, please try again in a minute</h1>
<p>Every visitor gets their own model process, and all {limit} of them are in use right now.
A place frees up when another visitor closes their tab, or after {minutes} without activity.</p>
<p><a href="">Try again</a></p>
</body></html>
"""


def _memory_bytes() -> int | None:
    """This machine's memory, or the container's memory limit when lower."""
    total = None
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def default_max_kernels(memory_bytes: int | None = None) -> int:
    """How many visitors' kernels fit: memory / :data:`KERNEL_MB`, at least 1."""
    memory = _memory_bytes() if memory_bytes is None else memory_bytes
    if not memory:
        return 1
    return max(1, int(memory // (KERNEL_MB << 20)))


def voila_config(max_kernels: int, idle_seconds: float):
    """The traitlets config of the app's Voila: message size, idle culling, the kernel cap."""
    from traitlets.config import Config

    if max_kernels < 1:
        raise ValueError(f"--max-kernels must be at least 1, got {max_kernels}.")
    if idle_seconds <= 0:
        raise ValueError(f"--idle-timeout must be positive, got {idle_seconds:g}.")
    config = Config()
    config.Voila.tornado_settings = {"websocket_max_message_size": WEBSOCKET_MAX_BYTES,
                                     "pneumo_max_kernels": int(max_kernels),
                                     "pneumo_idle_seconds": float(idle_seconds)}
    config.MappingKernelManager.cull_idle_timeout = int(max(1, round(idle_seconds)))
    config.MappingKernelManager.cull_interval = int(max(1, min(60, round(idle_seconds / 4))))
    config.MappingKernelManager.cull_connected = True  # an open but idle tab ends too
    config.MappingKernelManager.cull_busy = False
    return config


_reservation: contextvars.ContextVar = contextvars.ContextVar("pneumo_reservation", default=None)


def voila_class():
    """Voila with the app's page handler: sets the ``_xsrf`` cookie, caps the kernels.

    The handler counts running kernels plus visits still starting theirs (single-threaded
    tornado, so the check and the reservation cannot interleave), and answers a visit over
    the cap with :data:`BUSY_PAGE` and HTTP 503 (``Retry-After: 60``).
    """
    from jupyter_core.utils import ensure_async
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    class AppPageHandler(TornadoVoilaHandler):
        reservations: list = []

        async def get(self, path=None):
            if path:  # a file next to the notebook: Voila redirects, no kernel
                return await super().get(path)
            limit = self.settings.get("pneumo_max_kernels")
            running = set(self.kernel_manager.list_kernel_ids())
            starting = sum(1 for r in AppPageHandler.reservations if not r["started"])
            if limit and len(running) + starting >= limit:
                idle = self.settings.get("pneumo_idle_seconds", DEFAULT_IDLE_SECONDS)
                self.log.warning("pneumo serve: busy (%d of %d kernels); answered 503", len(running) + starting, limit)
                self.set_status(503)
                self.set_header("Retry-After", "60")
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Cache-Control", "no-store")
                minutes = f"{idle / 60:g} minutes" if idle >= 60 else f"{idle:g} seconds"
                self.finish(BUSY_PAGE.format(limit=limit, minutes=minutes))
                return
            self.xsrf_token  # sets the _xsrf cookie the page's shutdown beacon sends back
            reservation = {"started": False}
            AppPageHandler.reservations.append(reservation)
            token = _reservation.set(reservation)
            try:
                return await super().get(path)
            finally:
                _reservation.reset(token)
                AppPageHandler.reservations.remove(reservation)

    class AppVoila(Voila):
        def init_settings(self):
            settings = super().init_settings()
            manager = self.kernel_manager
            start = manager.start_kernel

            async def start_kernel(*args, **kwargs):
                kernel_id = await ensure_async(start(*args, **kwargs))
                reservation = _reservation.get()
                if reservation is not None:
                    reservation["started"] = True
                return kernel_id

            manager.start_kernel = start_kernel
            return settings

        def init_handlers(self):
            return [(h[0], AppPageHandler, *h[2:]) if len(h) > 1 and h[1] is TornadoVoilaHandler else h
                    for h in super().init_handlers()]

    return AppVoila


def check_model_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path of a ``.keras`` model file given on the command line.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A folder (named as one), or a file that is not a ``.keras`` archive (by name).
    """
    from pneumo_lib.paths import check_not_folder

    check_not_folder(path, "model file", suffix=".keras", option="--model")  # a folder is not "no such file"
    model_path = Path(path).expanduser().resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"--model {path}: no such file.")
    if model_path.suffix != ".keras":
        raise ValueError(f"--model {path}: expected a Keras 3 '.keras' file, got '{model_path.suffix}'.")
    return model_path


@dataclass
class ServedModel:
    """The model a server answers with, and what its page says about it.

    Attributes:
        path: Absolute path of the ``.keras`` file the kernels load; it takes ``[0, 1]``
            images ``(N, S, S, C)`` (any preprocessing is a layer inside it).
        note: Sentences for the page: which model, what it was trained on, its input size and
            preprocessing, and :data:`NOT_A_MEDICAL_DEVICE`.
        notice: A warning shown prominently above the upload button ("" for none), e.g.
            :data:`PHANTOM_NOTICE`.
        kind: :data:`REFERENCE`, :data:`PHANTOM` or ``"given"`` (``--model PATH``).
        card: The served file's model card (``{}`` when not read, as for the phantom CNN).
    """

    path: Path
    note: str
    notice: str = ""
    kind: str = "given"
    card: dict[str, Any] = field(default_factory=dict)


def default_model(profile: str = "quick") -> tuple[Path, str]:
    """The profile's scratch CNN (:data:`DEFAULT_MODEL`) from the model cache, trained first if absent.

    Uses :func:`pneumo_lib.experiments.cached_training`, so the app serves exactly the
    model the chapters use. It was trained on generated (phantom) images: its answers on real
    X-rays mean nothing (the page says so, :data:`PHANTOM_NOTICE`).

    Returns:
        The absolute path of the cached ``.keras`` file and the sentences for the page saying
        which model this is, what it was trained on, its input size, whether it was trained
        now, and that it is not a medical device.
    """
    from pneumo_lib import experiments

    print(f"pneumo serve: getting the {profile}-profile {DEFAULT_MODEL} (trained first if the "
          "model cache is empty; about a minute on a laptop CPU)...", flush=True)
    cached = experiments.cached_training(DEFAULT_MODEL, profile)
    how = "trained just now because the model cache was empty" if cached.trained_now else (
        "loaded from the model cache")
    source = cached.card.get("data", {}).get("source", "phantom")
    shape = cached.card.get("input_shape") or list(cached.model.input_shape[1:])
    note = (
        f"Model: the {profile}-profile scratch CNN ({DEFAULT_MODEL}, {how}), trained on the "
        f"{source} data set of generated images, not on real X-rays. Input: {shape[0]} x {shape[1]} px, "
        f"{_channels(shape[-1])}, values in [0, 1]. {NOT_A_MEDICAL_DEVICE}")
    return cached.path.resolve(), note


def _channels(n: int) -> str:
    return "1 channel (gray)" if int(n) == 1 else f"{int(n)} channels (the gray X-ray repeated)"


def phantom_app_model(profile: str = "quick") -> ServedModel:
    """:func:`default_model` as a :class:`ServedModel`, with :data:`PHANTOM_NOTICE`."""
    path, note = default_model(profile)
    return ServedModel(path, note, PHANTOM_NOTICE, PHANTOM)


#: File of the reference classifier as the app serves it (``[0, 1]`` inputs), under ``<home>/pretrained/app``.
REFERENCE_APP_FILE = "xception_reference.keras"


def reference_note(card: dict[str, Any]) -> str:
    """The page's sentences about the reference classifier, from its card
    (:data:`pneumo_lib.pretrained.REFERENCE_CARD`): title, trained on, input size, preprocessing,
    credit, and :data:`NOT_A_MEDICAL_DEVICE`."""
    size = int(card["input_size"])
    return (f"Model: the real-data reference classifier, trained on real Kaggle X-rays ({card['title']}; "
            f"PyPI package {card['package']}, author {card['author']}). Training data: {card['trained_on']}. "
            f"Input: {size} x {size} px, {_channels(card.get('channels', 3))}; preprocessing: "
            f"{card['preprocessing']}. {NOT_A_MEDICAL_DEVICE}")


def reference_app_model(*, fetch: bool = True) -> ServedModel:
    """The real-data classifier as the app serves it: a ``.keras`` file taking ``[0, 1]`` images.

    :func:`pneumo_lib.pretrained.load_reference_model` (SHA-256 checked; fetched with pip when
    ``fetch`` and not cached) saved once with its card as
    ``<home>/pretrained/app/xception_reference.keras`` (:data:`REFERENCE_APP_FILE`), reused
    while its card names the same pinned SHA-256. Input ``(N, 150, 150, 3)`` in ``[0, 1]``
    (its ``preprocessing`` layer maps to ``[-1, 1]``), softmax over NORMAL, PNEUMONIA; no
    fitted temperature or referral level in its card (the page says "not calibrated" and uses
    the default referral level).

    Raises:
        pneumo_lib.pretrained.PretrainedUnavailable: Neither cached nor fetchable.
        pneumo_lib.pretrained.IntegrityError: The package's model file is not the published one.
    """
    from pneumo_lib import pretrained, training

    target = pretrained.pretrained_dir() / "app" / REFERENCE_APP_FILE
    pretrained.reference_model_file(fetch=fetch)  # verifies the source file every time
    card = training.read_card(target) if target.is_file() else {}
    if card.get("sha256") != pretrained.MODEL_SHA256 or card.get("preprocess") != "unit":
        reference = pretrained.load_reference_model(fetch=fetch)
        training.save_model(reference.model, target, {**reference.card, "preprocess": "unit"})
        card = training.read_card(target)
    return ServedModel(target.resolve(), reference_note(card), "", REFERENCE, card)


def preprocess_name(name: str) -> str:
    """A ``--preprocess`` value as a key of :data:`PREPROCESSING`: the key itself, or an
    architecture name of :mod:`pneumo_lib.models` (e.g. ``xception`` -> ``tf``).

    Raises:
        ValueError: Neither a key nor an architecture name; the message lists both.
    """
    from pneumo_lib import models

    key = str(name).strip().lower()
    if key in PREPROCESSING:
        return key
    if key in models.ARCHITECTURES:
        kind = models.ARCHITECTURES[key].preprocessing
        return "unit" if kind == "none" else kind
    raise ValueError(f"--preprocess {name}: unknown; choose one of {', '.join(PREPROCESSING)} "
                     f"or an architecture name ({', '.join(models.ARCHITECTURES)}).")


def preprocessing_layer(name: str, channels: int):
    """A built-in Keras layer mapping ``[0, 1]`` images to what :data:`PREPROCESSING` ``name`` says
    (``None`` for ``unit``); never a ``Lambda``, so the saved model loads in safe mode.

    Raises:
        ValueError: Unknown name (:func:`preprocess_name`).
    """
    from pneumo_lib._tf import keras

    kind = preprocess_name(name)
    if kind == "unit":
        return None
    if kind == "tf":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="preprocessing")
    if kind == "caffe":
        mean, variance = [m / 255.0 for m in _CAFFE_MEAN], [(1 / 255.0) ** 2] * 3
    else:
        mean, variance = list(_TORCH_MEAN), [s**2 for s in _TORCH_STD]
    c = int(channels)
    return keras.layers.Normalization(mean=mean[:c], variance=variance[:c], name="preprocessing")


def given_model(path: str | os.PathLike[str], *, preprocess: str | None = None,
                input_size: int | None = None, folder: str | os.PathLike[str] | None = None) -> ServedModel:
    """A ``.keras`` classifier given with ``--model PATH``, made to take the pipeline's ``[0, 1]`` images.

    Preprocessing: ``preprocess`` (a :data:`PREPROCESSING` key or an architecture name), else
    the card's ``preprocess`` field, else ``unit`` (the library's own models take ``[0, 1]``).
    Input size: the model's own square input, else ``input_size``, else the card's
    ``input_size``. When nothing needs adding the file is served as it is; otherwise the model
    is wrapped (``image [0, 1] -> preprocessing -> the model``) and saved with a copy of its card
    (threshold, temperature, referral level) in ``folder`` (default: a new temporary folder).
    The model must output P(PNEUMONIA) ``(N, 1)`` or the two classes ``(N, 2)``, index 1 = PNEUMONIA,
    or, with a card saying ``"classes": 3`` (what :mod:`pneumo_lib.three_classes` writes), the
    three classes ``(N, 3)``: NORMAL, bacterial, viral. The page then shows the most probable
    class with all three probabilities, and says that no threshold, temperature or referral
    level applies.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a ``.keras`` file, unknown ``preprocess``, an ``input_size`` that
            contradicts the model's, no input size known for a model of any size, a model
            whose input or output is not an image classifier's, or a three-output model whose
            card does not say ``"classes": 3`` (or a card whose ``classes`` contradicts the output).
        pneumo_lib.training.ModelFileError: Corrupted, truncated or unsafe file.
    """
    from pneumo_lib import training
    from pneumo_lib._tf import keras

    model_path = check_model_path(path)
    model = training.load_model(model_path)
    card = training.read_card(model_path)
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(f"--model {model_path.name}: expected a model taking images (N, S, S, 1 or 3), "
                         f"but its input is {shape}.")
    if len(model.output_shape) != 2 or model.output_shape[-1] not in (1, 2, 3):
        raise ValueError(f"--model {model_path.name}: expected an output (N, 1) = P(PNEUMONIA), (N, 2) = "
                         f"(NORMAL, PNEUMONIA) or (N, 3) = (NORMAL, bacterial, viral), but it is {model.output_shape}.")
    units = int(model.output_shape[-1])
    stated = card.get("classes")  # a count (pneumo_lib's cards) or the list of names (the reference card's)
    count = len(stated) if isinstance(stated, (list, tuple)) else stated
    if units == 3 and count != 3:
        raise ValueError(f"--model {model_path.name}: its output is (N, 3), but its model card "
                         f"{'says classes ' + repr(stated) if stated is not None else 'does not say classes: 3'}; "
                         "a three-class model is served with a card saying \"classes\": 3 (label order NORMAL, "
                         "bacterial, viral), as pneumo_lib.three_classes writes it.")
    if count is not None and count != (3 if units == 3 else 2):
        raise ValueError(f"--model {model_path.name}: its model card says classes {stated!r}, but its output "
                         f"is {model.output_shape}.")
    kind = preprocess_name(preprocess if preprocess is not None else card.get("preprocess", "unit"))
    own = shape[1] if shape[1] is not None and shape[1] == shape[2] else None
    if shape[1] is not None and shape[1] != shape[2]:
        raise ValueError(f"--model {model_path.name}: expected a model taking square images, but its input is {shape}.")
    if input_size is not None:
        if isinstance(input_size, bool) or int(input_size) != input_size or not 8 <= int(input_size) <= 4096:
            raise ValueError(f"--input-size must be a whole number of pixels from 8 to 4096, got {input_size}.")
        if own is not None and int(input_size) != own:
            raise ValueError(f"--input-size {input_size} contradicts --model {model_path.name}, which takes "
                             f"{own} x {own} px images; leave --input-size out.")
    size = own or (int(input_size) if input_size is not None else card.get("input_size"))
    if size is None:
        raise ValueError(f"--model {model_path.name} takes images of any size and its card names none; "
                         "give one with --input-size N.")
    size, channels = int(size), int(shape[-1])
    how = PREPROCESSING[kind]
    note = (f"Model: {model_path.name}, given with --model. Trained on: "
            f"{card.get('trained_on') or card.get('data', {}).get('source') or 'not stated in its model card'}. "
            f"Input: {size} x {size} px, {_channels(channels)}; preprocessing: {how}. "
            f"{THREE_CLASS_SENTENCE + ' ' if units == 3 else ''}{NOT_A_MEDICAL_DEVICE}")
    if kind == "unit" and own is not None:
        return ServedModel(model_path, note, "", "given", card)
    inputs = keras.Input((size, size, channels), name="image")
    layer = preprocessing_layer(kind, channels)
    outputs = model(layer(inputs) if layer is not None else inputs)
    wrapped = keras.Model(inputs, outputs, name=f"served_{model.name}")
    out_dir = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="pneumo-serve-model-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    served = out_dir / f"{model_path.stem}-served.keras"
    wrapped.save(served)  # not training.save_model: the model need not be one pneumo_lib builds
    served_card = {**card, "preprocess": "unit", "input_size": size, "input_shape": [size, size, channels],
                   "served_from": str(model_path), "served_preprocessing": kind}
    training.card_path(served).write_text(json.dumps(served_card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return ServedModel(served.resolve(), note, "", "given", served_card)


def served_model(model: str | os.PathLike[str] | None = None, *, preprocess: str | None = None,
                 input_size: int | None = None, fetch: bool = True, profile: str = "quick",
                 folder: str | os.PathLike[str] | None = None) -> ServedModel:
    """Which model ``pneumo serve`` answers with (see the module's docstring).

    Args:
        model: ``None`` (the real-data classifier if it can be had, else the phantom CNN and
            :data:`FALLBACK_MESSAGE` printed), :data:`REFERENCE`, :data:`PHANTOM`, or a ``.keras`` path.
        preprocess, input_size: For a ``.keras`` path only (:func:`given_model`).
        fetch: Allow pip to fetch the real-data classifier when it is not cached.
        profile: The profile of the phantom CNN.
        folder: Where a wrapped ``--model`` file is written (:func:`given_model`).

    Raises:
        ValueError: ``preprocess``/``input_size`` without a model path, or as :func:`given_model`.
        pneumo_lib.pretrained.PretrainedUnavailable, pneumo_lib.pretrained.IntegrityError:
            ``model="reference"`` and it cannot be had.
    """
    from pneumo_lib import pretrained

    named = model is None or str(model) in (REFERENCE, PHANTOM)
    if named and (preprocess is not None or input_size is not None):
        raise ValueError("--preprocess and --input-size describe a model given with --model PATH; "
                         "the built-in models bring their own.")
    if model is None:
        try:
            if not pretrained.reference_available() and fetch:
                print(f"pneumo serve: fetching the real-data classifier ({pretrained.PACKAGE}, about 85 MB) "
                      "with pip...", flush=True)
            return reference_app_model(fetch=fetch)
        except (pretrained.PretrainedUnavailable, pretrained.IntegrityError) as err:
            reason = str(err).replace("\n", " ")
            print(FALLBACK_MESSAGE.format(reason=reason[0].lower() + reason[1:]), flush=True)
            return phantom_app_model(profile)
    if str(model) == REFERENCE:
        return reference_app_model(fetch=fetch)
    if str(model) == PHANTOM:
        return phantom_app_model(profile)
    return given_model(model, preprocess=preprocess, input_size=input_size, folder=folder)


def decision_threshold(model_path: str | os.PathLike[str]) -> float:
    """The decision threshold stored in a model's card (chosen on validation), else 0.5.

    :func:`pneumo_lib.decision.threshold_from_card` of the file's card: the threshold
    :func:`pneumo_lib.training.load_model` attaches to the loaded model, so the page, the
    explorer and ``pneumo explain`` answer alike.
    """
    from pneumo_lib import decision, training

    return decision.threshold_from_card(training.read_card(model_path))


def check_port(host: str, port: int) -> None:
    """Fail early, and clearly, when the server could not listen on ``host:port``.

    Raises:
        ValueError: Port out of range, already in use, or an address this machine lacks.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}.")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, int(port)))
    except OSError as err:
        what = "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be bound ({err.strerror})"
        raise ValueError(f"Port {port} on {host} {what}; choose another with --port or --host.") from None


def _kernelspec_dir() -> Path:
    """A temporary Jupyter data folder whose ``python3`` kernel is this interpreter.

    Prepended to ``JUPYTER_PATH``, it makes Voila's kernels run on the Python that has
    ``pneumo_lib`` installed even if the user has another ``python3`` kernel registered.
    """
    folder = Path(tempfile.mkdtemp(prefix="pneumo-serve-"))
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pneumo serve)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder


def voila_argv(host: str, port: int) -> list[str]:
    """Voila's command-line arguments for the app (no browser, no port hopping)."""
    return [
        str(APP_NOTEBOOK),
        "--no-browser",
        f"--Voila.ip={host}",
        f"--port={port}",
        "--Voila.port_retries=0",
        "--theme=light",
        "--strip_sources=True",
        "--show_tracebacks=False",
    ]


def serve(model: str | os.PathLike[str] | None = None, *, preprocess: str | None = None,
          input_size: int | None = None, host: str = "127.0.0.1",
          port: int = DEFAULT_PORT, max_kernels: int | None = None,
          idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
    """Serve the app until interrupted (Ctrl-C or SIGTERM); blocks.

    Args:
        model: ``None`` (the real-data classifier when it can be had, else the phantom CNN
            with a notice), ``"reference"``, ``"phantom"`` or a ``.keras`` file (:func:`served_model`).
        preprocess: For a ``.keras`` file: a :data:`PREPROCESSING` key or an architecture name
            (default: its card's ``preprocess``, else ``unit``).
        input_size: For a ``.keras`` file taking images of any size: the side in pixels.
        host: Address to bind; the default serves this machine only.
        port: TCP port, 1-65535; the server fails rather than pick another one.
        max_kernels: Visitors' kernels running at once (default :func:`default_max_kernels`);
            one visitor more gets the busy page.
        idle_seconds: A kernel without activity for this long is ended.

    Raises:
        ValueError: Bad or busy port, or a model file that is not a loadable image classifier.
        FileNotFoundError: The model file does not exist.
        pneumo_lib.pretrained.PretrainedUnavailable: ``model="reference"`` cannot be had.
    """
    check_port(host, port)
    limit = default_max_kernels() if max_kernels is None else int(max_kernels)
    config = voila_config(limit, idle_seconds)
    kernels = _kernelspec_dir()
    try:
        chosen = served_model(model, preprocess=preprocess, input_size=input_size, folder=kernels / "model")
    except BaseException:
        shutil.rmtree(kernels, ignore_errors=True)
        raise
    model_path, note = chosen.path, chosen.note
    os.environ[MODEL_ENV] = str(model_path)
    os.environ[NOTE_ENV] = note
    os.environ[NOTICE_ENV] = chosen.notice
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(kernels), os.environ.get("JUPYTER_PATH", "")) if p
    )
    if chosen.notice:
        print(f"pneumo serve: NOTICE: {chosen.notice}", flush=True)
    print(f"pneumo serve: {note}", flush=True)
    print(f"pneumo serve: model file {model_path}", flush=True)
    print(f"pneumo serve: at most {limit} visitors at once (one kernel each, about {KERNEL_MB} MB); "
          f"a kernel ends when its tab closes or after {idle_seconds:g} s idle", flush=True)
    print(f"pneumo serve: open http://{host}:{port}/ (Ctrl-C stops the server)", flush=True)
    voila = voila_class()
    try:
        voila.launch_instance(argv=voila_argv(host, int(port)), config=config)
    finally:
        voila.clear_instance()
        shutil.rmtree(kernels, ignore_errors=True)
