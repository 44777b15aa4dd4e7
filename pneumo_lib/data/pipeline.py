"""The ``tf.data`` input pipeline and array loaders (this module imports TensorFlow).

Every consumer gets the same images: decoded to grayscale, resized to
``image_size`` (``aspect="stretch"`` like ``image_dataset_from_directory``,
``"pad"`` to letterbox, ``"crop"`` for a centre square), scaled to ``[0, 1]``,
then repeated to 3 channels if the model wants them. Models carry their own
normalisation layers, so the pipeline never standardises. Uploads
(:func:`pneumo_lib.uploads.read_upload`) and ``pneumo explain`` go through the same
functions, so a file gives the same model input whichever way it comes in.

The resize filter is chosen per image from its header: the box filter ("area")
when the image shrinks on both axes (after JPEG DCT scaling), antialiased bilinear
when it must be enlarged. Every file is checked before the first batch (exists, not a
folder, within :data:`~pneumo_lib.data.images.MAX_PIXELS`, not truncated, a DICOM
syntax an installed plugin decodes), so a bad file is named, never a TensorFlow traceback.

Augmentation is Keras preprocessing layers applied on the fly to training batches:
small rotations, zooms and shifts, contrast and brightness. There is no horizontal
flip: the heart sits on the patient's left, and a flipped film is a different
(and rare) anatomy, dextrocardia.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pneumo_lib._tf import keras, tf
from pneumo_lib.data.images import (
    DICOM_SUFFIXES,
    MAX_PIXELS,
    ImageReadError,
    check_image_file,
    check_pixels,
    dicom_header,
    open_image,
    read_image,
)
from pneumo_lib.data.layout import marker_boxes, mask_path
from pneumo_lib.data.splits import SplitManifest
from pneumo_lib.profiles import Profile, get_profile

ASPECTS = ("stretch", "pad", "crop")
#: ``cache="auto"`` keeps decoded images in memory only below this many bytes, so that
#: the quick profile's epochs after the first skip decoding while a full-size dataset
#: (5,856 images at 224 px would take 1.2 GB) streams from disk in constant memory.
AUTO_CACHE_BYTES = 256 * 2**20
AUTOTUNE = tf.data.AUTOTUNE


def _check_args(image_size: int, channels: int, aspect: str) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (scratch CNNs) or 3 (ImageNet backbones), got {channels}.")
    if int(image_size) < 8:
        raise ValueError(f"image_size must be at least 8 px, got {image_size}.")
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}.")


def resize(image, image_size: int, aspect: str = "stretch", method: str = "bilinear"):
    """Resize a float image tensor ``(H, W, C)`` to ``(S, S, C)``.

    ``method="bilinear"`` is antialiased bilinear: it low-pass filters when shrinking
    and interpolates when enlarging. ``"area"`` averages the source pixels under each
    output pixel (a box filter): as alias-free when shrinking and several times
    cheaper, but blocky when enlarging, so :func:`make_dataset` uses it only for
    images that shrink on both axes (see :func:`resize_method`).
    """
    if method not in ("bilinear", "area"):
        raise ValueError(f"method must be 'bilinear' or 'area', got {method!r}.")
    size = [image_size, image_size]
    antialias = method == "bilinear"
    if aspect == "pad":
        return tf.image.resize_with_pad(image, image_size, image_size, method=method, antialias=antialias)
    if aspect == "crop":
        shape = tf.shape(image)
        side = tf.minimum(shape[0], shape[1])
        image = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)
    return tf.image.resize(image, size, method=method, antialias=antialias)


def _read_python(path) -> np.ndarray:
    return read_image(path.decode() if isinstance(path, bytes) else str(path))[..., None]


#: How :func:`decode` reads a file: by Python (DICOM, CMYK JPEG), by ``decode_image``
#: (PNG), or by ``decode_jpeg`` at 1/1, 1/2, 1/4 or 1/8 scale (codes 2-5).
PYTHON, GENERIC, JPEG_FULL = 0, 1, 2
_JPEG_RATIOS = (1, 2, 4, 8)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; not DHT/JPG/DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _quick_header(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int, int] | None:
    """``(format, colour channels, width, height)`` from the first bytes of a JPEG or PNG.

    About a third of the cost of opening the file with Pillow (25 against 68 us a file,
    measured on the quick phantom), which matters when a dataset's thousands of headers
    are read before its first epoch. Returns None for anything it
    does not recognise with certainty (Pillow then decides, and names bad files).

    Raises:
        ImageReadError: A JPEG whose markers end before its image data (after the pixel
            limit ``max_pixels``, so an oversized header is called too large).
    """
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 26:
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(head[25])
        return ("PNG", channels, width, height) if channels and width and height else None
    if not head.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(head[at + 2:at + 4], "big")
        if marker in _SOF_MARKERS:
            if at + 10 > len(head):
                return None
            height, width = int.from_bytes(head[at + 5:at + 7], "big"), int.from_bytes(head[at + 7:at + 9], "big")
            if not (width and height):
                return None
            if _ends_before_scan(head, at + 2 + length):  # TensorFlow's libjpeg would print to stderr, then fail
                check_pixels(path, width, height, 1, max_pixels)
                raise ImageReadError(f"{path} could not be decoded (a JPEG header that ends before its image "
                                     "data); the file is corrupt. Re-download it or delete it (`pneumo data "
                                     "audit` lists every bad file of a dataset).")
            return ("JPEG", head[at + 9], width, height)
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG we know
            return None
        at += 2 + length
    return None


def _ends_before_scan(head: bytes, at: int) -> bool:
    """True when the JPEG markers from ``at`` reach the end-of-image marker before any scan.

    False when a scan (SOS) comes first, and whenever it cannot tell (the markers run past
    ``head``, or bytes that are not a marker): only a certain verdict refuses a file.
    """
    while at + 2 <= len(head):
        if head[at] != 0xFF:
            return False
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:
            return True
        if marker == 0xDA or at + 4 > len(head):
            return False
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(head[at + 2:at + 4], "big")
        if length < 2:
            return False
        at += 2 + length
    return False


#: The bytes a complete JPEG / PNG ends with (within the last kilobyte: some writers pad).
_JPEG_END, _PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"


def _complete(path: str | os.PathLike, fmt: str) -> bool:
    """True when the file ends like a complete JPEG/PNG (cheap: reads its last kilobyte)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 1024))
        tail = fh.read()
    return (_JPEG_END if fmt == "JPEG" else _PNG_END) in tail


def _probe_decode(path: Path, max_pixels: int) -> None:
    """Decode a file with Pillow (JPEG at 1/8 scale) to tell a truncated one from an odd ending."""
    with open_image(path, max_pixels) as im:
        if im.format == "JPEG":
            im.draft(im.mode, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
        try:
            im.load()
        except Exception as err:  # Pillow raises several types for broken data
            raise ImageReadError(f"{path} could not be decoded ({err}); the file is probably truncated "
                                 "or corrupt. Re-download it or delete it (`pneumo data audit` lists "
                                 "every bad file of a dataset).") from None


def _inspect(path: str | os.PathLike, image_size: int,
             max_pixels: int = MAX_PIXELS) -> tuple[int, int | None]:
    """``(plan, shorter side as decoded)`` of one file, refusing files the pipeline cannot decode.

    Raises:
        FileNotFoundError: No such file.
        ImageReadError: A folder, empty, unreadable header, too many pixels, truncated,
            or a DICOM no installed plugin decodes; the message names the file.
    """
    path = check_image_file(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        _, rows, cols, _ = dicom_header(path, max_pixels)
        return PYTHON, min(rows, cols)
    try:
        quick = _quick_header(path, max_pixels)
    except OSError:
        quick = None
    if quick is not None:
        check_pixels(path, quick[2], quick[3], 1, max_pixels)
        if not _complete(path, quick[0]):
            _probe_decode(path, max_pixels)
    if quick is not None and quick[0] == "PNG":
        return GENERIC, min(quick[2:])
    if quick is not None and quick[1] in (1, 3):  # gray or YCbCr JPEG: TensorFlow decodes it
        short = min(quick[2:])
    else:
        try:
            with open_image(path, max_pixels) as im:
                if im.mode in ("CMYK", "YCbCr") or im.format not in ("JPEG", "PNG"):
                    return PYTHON, min(im.size)
                if im.format == "PNG":
                    return GENERIC, min(im.size)
                short = min(im.size)
        except ImageReadError as err:
            raise ImageReadError(f"{err} Run `pneumo data audit` on the dataset to list every bad file."
                                 ) from None
    k = max([i for i, r in enumerate(_JPEG_RATIOS) if image_size and short // r >= image_size] or [0])
    return JPEG_FULL + k, short // _JPEG_RATIOS[k]


def resize_method(short_side: int | None, image_size: int) -> str:
    """The resize filter for one image: ``"area"`` when it shrinks on both axes, else ``"bilinear"``.

    ``short_side`` is the image's shorter side as decoded (after JPEG DCT scaling);
    None (unknown) gives ``"bilinear"``.
    """
    return "area" if short_side is not None and short_side >= image_size else "bilinear"


def decode_plan(path: str | os.PathLike, image_size: int = 0) -> int:
    """How to decode one file (reads only its header: its first bytes, or Pillow for other formats).

    Large JPEGs are decoded at a reduced scale (libjpeg's DCT scaling: 2, 4 or 8
    times fewer pixels per side) as long as the shorter side stays at least
    ``image_size``; a 2,000 px radiograph bound for 224 px is decoded at 1/8.

    Returns:
        :data:`PYTHON`, :data:`GENERIC` or ``JPEG_FULL + k`` for ratio ``2**k``.

    Raises:
        ImageReadError: The file is unusable (a folder, empty, not an image, too large,
            truncated, an undecodable DICOM), naming the file.
    """
    return _inspect(path, image_size)[0]


def needs_python(path: str | os.PathLike) -> bool:
    """True for files TensorFlow cannot decode itself: DICOM, and CMYK/YCCK JPEGs."""
    return decode_plan(path) == PYTHON


def decode(path, plan=GENERIC):
    """Read one image file to a float32 tensor ``(H, W, 1)`` in ``[0, 1]``.

    Args:
        path: A string tensor.
        plan: An int (or int tensor) from :func:`decode_plan`: TensorFlow decodes
            JPEG and PNG (8- or 16-bit); DICOM and CMYK JPEGs go through
            :func:`pneumo_lib.data.images.read_image`.
    """
    def by_python():
        return tf.numpy_function(_read_python, [path], tf.float32, stateful=False)

    def generic():
        raw = tf.io.read_file(path)
        return tf.io.decode_image(raw, channels=1, expand_animations=False, dtype=tf.float32)

    def jpeg(ratio):
        def run():
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=1, ratio=ratio)
            return tf.image.convert_image_dtype(image, tf.float32)
        return run

    branches = [by_python, generic] + [jpeg(r) for r in _JPEG_RATIOS]
    if isinstance(plan, int):
        image = branches[plan]()
    else:
        image = tf.switch_case(plan, branches)
    return tf.ensure_shape(image, [None, None, 1])


def augmentation(seed: int = 0) -> keras.Sequential:
    """The on-the-fly augmentation: rotation +-10 deg, zoom and shifts 10%/5%, contrast and brightness 10%.

    Works on batches ``(B, S, S, C)`` in ``[0, 1]``; no horizontal flip (see the module docstring).
    """
    return keras.Sequential([
        keras.layers.RandomRotation(0.028, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomContrast(0.1, value_range=(0, 1), seed=seed + 3),
        keras.layers.RandomBrightness(0.1, value_range=(0, 1), seed=seed + 4),
    ], name="augmentation")


def make_dataset(paths: Sequence[str | os.PathLike], labels=None, *, image_size: int,
                 channels: int = 1, batch_size: int = 32, augment: bool = False,
                 shuffle: bool = False, seed: int = 0, cache: bool | str = "auto",
                 aspect: str = "stretch") -> "tf.data.Dataset":
    """A batched, prefetched ``tf.data.Dataset`` of images (and labels).

    Args:
        paths: Image files (JPEG, PNG, DICOM).
        labels: 0/1 labels parallel to ``paths``, or None for images only.
        image_size: Side ``S`` of the square output images.
        channels: 1 (grayscale) or 3 (the gray image repeated, for ImageNet backbones).
        batch_size: Images per batch (the last batch may be smaller).
        augment: Apply :func:`augmentation` to each batch (its random draws follow
            ``seed`` and are the same in every process).
        shuffle: Reshuffle every epoch (seeded).
        seed: Seed of the shuffle and the augmentation. TensorFlow pairs the shuffle's
            seed with its global seed, so the order also depends on whether
            :func:`pneumo_lib.runtime.seed_everything` (or ``keras.utils.set_random_seed``)
            ran before this call: call it first for runs that repeat bit for bit.
        cache: Keep decoded, resized images after the first epoch: ``"auto"`` in
            memory when they fit in :data:`AUTO_CACHE_BYTES`, else not at all;
            ``True`` in memory; a path string in a cache file; ``False`` never.
        aspect: ``"stretch"``, ``"pad"`` or ``"crop"`` (see the module docstring).

    Returns:
        A dataset yielding ``images`` float32 ``(B, S, S, C)`` in ``[0, 1]``, or
        ``(images, labels)`` with labels float32 ``(B,)``.

    Raises:
        FileNotFoundError: A file does not exist.
        ImageReadError: A file cannot be decoded (a folder, empty, truncated, too many
            pixels, an undecodable DICOM), naming it; checked before the first batch.
    """
    _check_args(image_size, channels, aspect)
    files = [str(p) for p in paths]
    if not files:
        raise ValueError("make_dataset got no image paths.")
    inspected = [_inspect(f, image_size) for f in files]
    plans = np.array([plan for plan, _ in inspected], np.int32)
    # Per image: the cheap box filter when it shrinks (after its DCT scaling), see resize_method.
    areas = np.array([resize_method(short, image_size) == "area" for _, short in inspected], bool)
    y = np.zeros(len(files), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
    if len(y) != len(files):
        raise ValueError(f"Got {len(files)} paths but {len(y)} labels.")
    items = tf.data.Dataset.from_tensor_slices((files, plans, areas, y))

    def load(path, plan, area, label):
        image = decode(path, plan)
        return tf.cond(area, lambda: resize(image, image_size, aspect, "area"),
                       lambda: resize(image, image_size, aspect, "bilinear")), label

    if cache == "auto":
        cache = len(files) * image_size * image_size * 4 <= AUTO_CACHE_BYTES
    if cache:  # decoded images stay in memory (or a file): shuffle them
        ds = items.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.cache(cache if isinstance(cache, str) else "")
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    else:  # streaming: shuffle the file names, so memory does not grow with the dataset
        if shuffle:
            items = items.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = items.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if augment:
        # Sequential on purpose: the layers draw from a stateful seed generator, and
        # batches augmented in parallel would take its draws in a racy order. One
        # vectorised call per batch is cheap next to decoding.
        layer = augmentation(seed)
        ds = ds.map(lambda x, t: (tf.clip_by_value(layer(x, training=True), 0.0, 1.0), t))
    if channels == 3:
        ds = ds.map(lambda x, t: (tf.repeat(x, 3, axis=-1), t), num_parallel_calls=AUTOTUNE)
    if labels is None:
        ds = ds.map(lambda x, t: x)
    return ds.prefetch(AUTOTUNE)


def split_dataset(manifest: SplitManifest, split: str, profile: str | Profile = "quick", *,
                  channels: int = 1, augment: bool | None = None, shuffle: bool | None = None,
                  **kwargs) -> "tf.data.Dataset":
    """:func:`make_dataset` for one split of a manifest with a profile's size and batch.

    ``augment`` and ``shuffle`` default to True for ``"train"`` and False otherwise;
    ``kwargs`` go to :func:`make_dataset` (e.g. ``aspect``, ``cache``).
    """
    profile = get_profile(profile) if not isinstance(profile, Profile) else profile
    is_train = split == "train"
    return make_dataset(manifest.paths(split), manifest.labels(split), image_size=profile.image_size,
                        channels=channels, batch_size=profile.batch_size,
                        augment=is_train if augment is None else augment,
                        shuffle=is_train if shuffle is None else shuffle,
                        seed=profile.seed, **kwargs)


def load_images(paths: Sequence[str | os.PathLike], image_size: int, channels: int = 1,
                aspect: str = "stretch") -> np.ndarray:
    """Images as one NumPy array, exactly as the pipeline feeds them (no augmentation).

    Returns:
        float32 ``(N, S, S, C)`` with values in ``[0, 1]``.

    Raises:
        FileNotFoundError, ImageReadError: As :func:`make_dataset`; a file that passes the
            checks but that TensorFlow fails to decode is named too (:func:`find_undecodable`).
    """
    ds = make_dataset(paths, None, image_size=image_size, channels=channels, batch_size=64,
                      cache=False, aspect=aspect)
    try:
        return np.concatenate([b.numpy() for b in ds], axis=0)
    except tf.errors.OpError as err:
        raise undecodable_error(paths, err) from None


def load_image(path: str | os.PathLike, image_size: int, channels: int = 1,
               aspect: str = "stretch") -> np.ndarray:
    """One file as the pipeline feeds it: float32 ``(S, S, C)`` in ``[0, 1]`` (see :func:`load_images`)."""
    return load_images([path], image_size, channels, aspect)[0]


def find_undecodable(paths: Sequence[str | os.PathLike], image_size: int = 8) -> list[tuple[str, str]]:
    """Files TensorFlow fails to decode, each with the first line of its error.

    Decodes every file alone (as the pipeline would, at ``image_size``): slow for a whole
    dataset, meant for the error path after a batch failed.

    Returns:
        ``[(path, reason)]``, empty when every file decodes.
    """
    bad = []
    for f in map(str, paths):
        try:
            plan, _ = _inspect(f, image_size)
            if plan == PYTHON:  # its own errors name the file in one line
                read_image(f)
            else:
                decode(tf.constant(f), plan)
        except (ImageReadError, FileNotFoundError) as err:
            bad.append((f, str(err)))
        except tf.errors.OpError as err:
            bad.append((f, _op_message(err)))
    return bad


def _op_message(err: Exception) -> str:
    """TensorFlow's error message on one line, without its graph-node and op decorations."""
    import re

    text = " ".join((getattr(err, "message", "") or str(err)).split())
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\]", "", text).strip()[:300]


def undecodable_error(paths: Sequence[str | os.PathLike], err: Exception) -> ImageReadError:
    """An :class:`ImageReadError` naming the files of ``paths`` that a failed batch (``err``) came from."""
    bad = find_undecodable(paths)
    if not bad:
        return ImageReadError(f"TensorFlow failed to decode an image ({_op_message(err)}); "
                              "run `pneumo data audit` on the dataset to find it.")
    (name, why), more = bad[0], len(bad) - 1
    if why.startswith(name):  # already a sentence naming the file
        message = why
    else:
        message = f"{name} could not be decoded ({why}); re-download it or delete it."
    return ImageReadError(message + (f" ({more} more such file(s); `pneumo data audit` lists them.)" if more else ""))


def load_split(manifest: SplitManifest, split: str, image_size: int, channels: int = 1,
               aspect: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """One split as arrays: images float32 ``(N, S, S, C)`` in ``[0, 1]``, labels float32 ``(N,)``."""
    x = load_images(manifest.paths(split), image_size, channels, aspect)
    return x, manifest.labels(split).astype(np.float32)


def _resize_masks(masks: list[np.ndarray], image_size: int, aspect: str) -> np.ndarray:
    out = np.zeros((len(masks), image_size, image_size), np.float32)
    for i, m in enumerate(masks):
        if m.any():
            r = resize(tf.constant(m[..., None], tf.float32), image_size, aspect)
            out[i] = (r.numpy()[..., 0] >= 0.5).astype(np.float32)
    return out


def load_masks(paths: Sequence[str | os.PathLike], image_size: int, aspect: str = "stretch") -> np.ndarray:
    """Lesion masks of phantom images, resized like the images.

    Args:
        paths: Image paths (of a phantom dataset); NORMAL images get empty masks.

    Returns:
        float32 ``(N, S, S)`` of 0/1 values (1 = lesion).

    Raises:
        FileNotFoundError: A PNEUMONIA image has no mask (masks exist for phantom data only).
    """
    masks = []
    for p in map(Path, paths):
        file = mask_path(p)
        if p.parent.name == "PNEUMONIA":
            if not file.is_file():
                raise FileNotFoundError(f"No lesion mask {file} for {p}: masks exist only for phantom data.")
            masks.append(read_image(file) >= 0.5)
        else:
            masks.append(np.zeros((1, 1), bool))
    return _resize_masks(masks, image_size, aspect)


def load_marker_masks(paths: Sequence[str | os.PathLike], image_size: int, aspect: str = "stretch") -> np.ndarray:
    """Where the shortcut marker sits, as masks resized like the images.

    Returns:
        float32 ``(N, S, S)`` of 0/1 values (all zero for images without a marker).
    """
    masks = []
    boxes_by_dir: dict[Path, dict] = {}
    for p in map(Path, paths):
        data_dir = p.parent.parent.parent
        boxes = boxes_by_dir.setdefault(data_dir, marker_boxes(data_dir))
        box = boxes.get(f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
        if box is None:
            masks.append(np.zeros((1, 1), bool))
            continue
        with Image.open(p) as im:
            w, h = im.size
        m = np.zeros((h, w), bool)
        m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        masks.append(m)
    return _resize_masks(masks, image_size, aspect)


def _donor_key(donor: str | os.PathLike, data_dir: Path) -> str:
    """A donor path as the key of :func:`marker_boxes`: ``split/CLASS/name`` relative to ``data_dir``."""
    p = Path(donor)
    if p.is_absolute():
        for base, path in ((data_dir, p), (data_dir.resolve(), p.resolve())):
            try:
                return path.relative_to(base).as_posix()
            except ValueError:
                continue
        raise ValueError(f"Donor {p} is not inside {data_dir}: donors are images of the dataset whose "
                         "markers.csv records their marker (paths relative to it or absolute).")
    return p.as_posix()


def paste_markers(images: np.ndarray, data_dir: str | os.PathLike, *,
                  donors: Sequence[str | os.PathLike] | None = None, split: str | None = None,
                  aspect: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """The same images with a shortcut marker pasted into each: a controlled experiment.

    A shortcut phantom dataset's test split carries no marker, so "the same image with and
    without the marker" needs the marker put in. Its pixels are copied from marked images of
    the dataset, the *donors* (cycled: image ``i`` gets donor ``i mod M``), at the images'
    size and channels, where the donor's marker box is; every other pixel is left as it was.

    Args:
        images: float32 ``(N, S, S, C)`` in ``[0, 1]``, as :func:`load_images` gives.
        data_dir: The ``chest_xray`` folder of a phantom dataset made with ``--shortcut``.
        donors: The marked images the markers are copied from, in the order they are used:
            paths absolute or relative to ``data_dir`` (``"val/PNEUMONIA/x.jpeg"``, as the
            keys of :func:`marker_boxes` and the ``path`` of a manifest's records), each
            carrying a marker. Default: every marked PNEUMONIA image of the folder ``split``,
            sorted by path.
        split: Where the default donors come from (``"train"`` or ``"val"``: the marked
            splits; ``"val"`` when neither ``split`` nor ``donors`` is given).

    Returns:
        ``(pasted, masks)``: float32 ``(N, S, S, C)`` in ``[0, 1]``, and the marker masks
        float32 ``(N, S, S)`` of 0/1 values (image ``i``'s is its donor's marker box).

    Raises:
        ValueError: ``images`` is not a 4-D batch; ``donors`` and ``split`` are both given;
            ``donors`` is empty, a single path instead of a list, or holds an image outside
            ``data_dir`` or without a marker (named); or ``data_dir`` has no marked
            PNEUMONIA image in ``split`` (not a shortcut dataset?).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be a batch (N, S, S, C) of square images; got shape {images.shape}.")
    data_dir = Path(data_dir)
    boxes = marker_boxes(data_dir)
    if donors is None:
        split = split or "val"
        keys = sorted(p for p in boxes if p.startswith(f"{split}/PNEUMONIA/"))
        if not keys:
            raise ValueError(f"{data_dir} has no {split} PNEUMONIA image with a marker: pass the chest_xray "
                             "folder of a shortcut phantom dataset (pneumo data phantom --shortcut).")
    else:
        if split is not None:
            raise ValueError("Give donors or split, not both: split only chooses the default donors.")
        if isinstance(donors, (str, bytes, os.PathLike)):
            raise ValueError(f"donors must be a list of image paths, not the single path {donors!r}: "
                             "wrap it in a list.")
        keys = [_donor_key(d, data_dir) for d in donors]
        if not keys:
            raise ValueError("donors is empty: pass at least one marked image (data.marker_boxes(data_dir) "
                             "lists them).")
        unmarked = [k for k in keys if k not in boxes]
        if unmarked:
            where = "its markers.csv lists none" if not boxes else "data.marker_boxes(data_dir) lists the marked ones"
            raise ValueError(f"Donor {unmarked[0]} carries no marker in {data_dir}"
                             + (f" ({len(unmarked) - 1} more such donor(s))" if len(unmarked) > 1 else "")
                             + f": donors must be marked images ({where}).")
    size, channels = images.shape[1], images.shape[3]
    pasted, masks = images.copy(), np.zeros(images.shape[:3], np.float32)
    if not len(images):
        return pasted, masks
    take = [keys[i % len(keys)] for i in range(len(images))]
    used = list(dict.fromkeys(take))
    files = [data_dir / d for d in used]
    donor_x = dict(zip(used, load_images(files, size, channels, aspect)))
    donor_m = dict(zip(used, load_marker_masks(files, size, aspect)))
    masks = np.stack([donor_m[d] for d in take])
    for i, d in enumerate(take):
        inside = masks[i] > 0
        pasted[i][inside] = donor_x[d][inside]
    return pasted, masks
