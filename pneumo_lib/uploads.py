"""Uploaded files, handled safely: size limit, type check, a private temporary folder.

The explorer and the web app receive an upload as a user-chosen name and its bytes.
This module turns them into a model-ready image through the data pipeline itself
(:func:`pneumo_lib.data.load_image`: the same decoding, pixel limit and resize filter as
training and ``pneumo explain``, so an upload and the same file in a dataset give the same
model input), says when an upload does not look like a chest radiograph
(:func:`radiograph_check`), and

* refuses uploads larger than :data:`MAX_UPLOAD_BYTES` (20 MB) or empty ones;
* decides the file type from the content (PNG, JPEG and DICOM signatures), falling
  back to the name's suffix only when it is one of :data:`SUFFIXES`;
* writes the bytes into a fresh private temporary folder under a fixed name
  (``upload.png``, ``upload.jpeg``, ``upload.dcm``) and deletes the folder afterwards:
  the uploaded name is never used as a path, only shown (see :func:`display_name`);
* refuses images over :data:`pneumo_lib.data.MAX_PIXELS` pixels (rows x columns x frames)
  before decoding them, and decodes only the first frame of a multi-frame DICOM;
* turns every reading error into an :class:`UploadError` whose message names the
  upload as the user called it, never the temporary path.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

#: Largest upload accepted, in bytes (20 MB, with 1 MB = 2**20 bytes).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Name suffixes accepted when the content has no known signature, and the suffix used on disk.
SUFFIXES = {".jpg": ".jpeg", ".jpeg": ".jpeg", ".png": ".png", ".dcm": ".dcm", ".dicom": ".dcm"}
#: What the page says is accepted (for the upload button and messages).
ACCEPT = ".jpg,.jpeg,.png,.dcm,.dicom"


class UploadError(ValueError):
    """An upload that cannot be explained; the message is meant to be shown on the page."""


@dataclass(frozen=True)
class Upload:
    """One uploaded file.

    Attributes:
        name: The name to show, cleaned by :func:`display_name` (never used as a path).
        content: The file's bytes.
    """

    name: str
    content: bytes

    @classmethod
    def from_widget(cls, value: Any) -> "Upload | None":
        """The last file of an ``ipywidgets.FileUpload`` value (ipywidgets 8), or ``None`` if empty."""
        if not value:
            return None
        item = value[-1]
        return cls(display_name(item.get("name", "")), bytes(item["content"]))


def display_name(name: str, max_length: int = 80) -> str:
    """A user-supplied file name made safe to show: no folders, no control characters, bounded length.

    ``"../../etc/passwd"`` -> ``"passwd"``; ``""`` -> ``"upload"``. The result is for
    display only; HTML-escape it before putting it into markup.
    """
    base = re.split(r"[\\/]", str(name))[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if len(base) > max_length:
        base = base[: max_length - 3] + "..."
    return base or "upload"


def sniff_suffix(content: bytes) -> str | None:
    """The on-disk suffix for content with a PNG, JPEG or DICOM signature, else ``None``."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if content.startswith(b"\xff\xd8\xff"):
        return ".jpeg"
    if content[128:132] == b"DICM":
        return ".dcm"
    return None


def _check(upload: Upload) -> str:
    """The suffix to store the upload under; raises :class:`UploadError` for refused uploads."""
    size = len(upload.content)
    if size == 0:
        raise UploadError(f"{upload.name} is empty (0 bytes).")
    if size > MAX_UPLOAD_BYTES:
        raise UploadError(
            f"{upload.name} is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB. "
            "Downscale or compress the image first.")
    suffix = sniff_suffix(upload.content) or SUFFIXES.get(Path(upload.name).suffix.lower())
    if suffix is None:
        raise UploadError(
            f"{upload.name} is not a JPEG, PNG or DICOM file (by its content and its name). "
            "Upload a chest X-ray in one of those formats.")
    return suffix


@contextmanager
def stored(upload: Upload) -> Iterator[Path]:
    """Write an accepted upload into a new private temporary folder; yield its path; delete it.

    The file is ``<tmp>/upload<suffix>`` whatever the upload was called.

    Raises:
        UploadError: Empty, over :data:`MAX_UPLOAD_BYTES`, or of no accepted type.
    """
    suffix = _check(upload)
    with tempfile.TemporaryDirectory(prefix="pneumo-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(upload.content)
        yield path


def read_upload(upload: Upload, image_size: int, channels: int = 1) -> np.ndarray:
    """An upload as one model input, read exactly as the data pipeline reads a file.

    Args:
        upload: The uploaded file.
        image_size: Side ``S`` of the model's square input.
        channels: 1 (scratch CNNs) or 3 (ImageNet backbones: the gray image repeated).

    Returns:
        ``float32`` array ``(S, S, C)`` with values in ``[0, 1]``: the same array
        :func:`pneumo_lib.data.load_images` gives for the same file. A multi-frame DICOM
        gives its first frame, with a :class:`pneumo_lib.data.FramesWarning` naming the upload.

    Raises:
        UploadError: Refused upload (see :func:`stored`) or unreadable image (not an
            image, truncated, corrupt, too many pixels, a DICOM compression no installed
            plugin decodes); the message names the upload.
    """
    from pneumo_lib.data import FramesWarning, ImageReadError
    from pneumo_lib.data.pipeline import load_image

    with stored(upload) as path:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FramesWarning)
            try:
                image = load_image(path, image_size, channels)
            except (ImageReadError, FileNotFoundError) as err:
                raise UploadError(_rename(err, path, upload.name)) from None
    for w in caught:
        if issubclass(w.category, FramesWarning):
            warnings.warn(_rename(w.message, path, upload.name), FramesWarning, stacklevel=2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _rename(message, path: Path, name: str) -> str:
    return str(message).replace(str(path), name)


def read_upload_pixels(upload: Upload) -> np.ndarray:
    """The upload's full-size pixels for :func:`radiograph_check`.

    Returns:
        Gray images (and every DICOM, first frame only) as float32 ``(H, W)`` in
        ``[0, 1]`` (:func:`pneumo_lib.data.read_image`); colour JPEG/PNG as uint8
        ``(H, W, 3)`` RGB in ``[0, 255]`` (1 byte a value, so the largest allowed image
        stays small in memory).

    Raises:
        UploadError: As :func:`read_upload`.
    """
    from pneumo_lib.data import FramesWarning, ImageReadError
    from pneumo_lib.data.images import DICOM_SUFFIXES, open_image, read_image

    with stored(upload) as path:
        try:
            if path.suffix in DICOM_SUFFIXES:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FramesWarning)
                    return read_image(path)
            with open_image(path) as im:
                try:
                    im.load()
                except Exception as err:  # Pillow raises several types for broken data
                    raise ImageReadError(f"{path} could not be decoded ({err}); the file is probably "
                                         "truncated or corrupt.") from None
                if im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "1", "LA"):
                    from pneumo_lib.data.images import _to_gray

                    return _to_gray(im)
                return np.asarray(im.convert("RGB"), np.uint8)
        except (ImageReadError, FileNotFoundError) as err:
            raise UploadError(_rename(err, path, upload.name)) from None


#: What :func:`radiograph_check` accepts. Measured on the 16 real Kaggle images
#: (``data.ensure_sample()``) and the quick phantom, at 64 x 64 px (box filter):
#: mean gray 0.35-0.60 real / 0.23-0.45 phantom; standard deviation 0.21-0.30 /
#: 0.17-0.26; correlation of horizontally adjacent pixels 0.93-0.97 / 0.94-0.96;
#: mean colour saturation 0 (grayscale); width / height 1.12-1.74 / 0.90-1.21.
#: The limits are those ranges widened by the stated margins (about 0.15 in mean
#: gray, 0.08 in standard deviation, 0.2 in correlation).
RADIOGRAPH_LIMITS = {
    "min_side": 64,           # px: smaller cannot be a radiograph worth explaining
    "aspect": (0.5, 2.0),     # width / height
    "saturation": 0.15,       # mean HSV saturation; radiographs are gray (0)
    "mean": (0.15, 0.80),     # mean gray in [0, 1]
    "std": (0.08, 0.42),      # standard deviation of gray
    "smoothness": 0.75,       # correlation of adjacent pixels; noise gives about 0
}


def radiograph_check(image: np.ndarray) -> list[str]:
    """Reasons an image does not look like a chest radiograph (empty list: it does).

    The checks (limits in :data:`RADIOGRAPH_LIMITS`): too small (shorter side under
    64 px), wrong aspect (width/height outside 0.5-2), not grayscale (colour
    saturation), and intensity statistics far from the 16 real Kaggle images
    (mean gray, contrast, and the correlation of neighbouring pixels, which is
    about 0 for noise). Passing is no proof of a chest X-ray: it only catches
    uploads that clearly are not one.

    Args:
        image: ``(H, W)`` gray or ``(H, W, 3|4)`` colour, float in ``[0, 1]`` or uint8
            (as :func:`read_upload_pixels` gives; not a resized model input).

    Returns:
        One sentence per failed check, to show to the user.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        return [f"It is not an image array (shape {arr.shape}); expected (H, W) or (H, W, 3)."]
    lim = RADIOGRAPH_LIMITS
    h, w = arr.shape[:2]
    reasons = []
    if min(h, w) < lim["min_side"]:
        reasons.append(f"It is too small for a radiograph ({w}x{h} px; at least {lim['min_side']} px a side).")
    if h and w and not lim["aspect"][0] <= w / h <= lim["aspect"][1]:
        reasons.append(f"Its shape is unlike a chest X-ray (width/height {w / h:.2f}, expected "
                       f"{lim['aspect'][0]}-{lim['aspect'][1]}).")
    scale = np.float32(1 / 255 if arr.dtype == np.uint8 else 1)
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if max(h, w) > 512:  # statistics on a subsample: bounded memory and time
            step = -(-max(h, w) // 512)
            rgb = rgb[::step, ::step]
        rgb = np.clip(rgb.astype(np.float32) * scale, 0.0, 1.0)
        top, low = rgb.max(-1), rgb.min(-1)
        saturation = float(np.where(top > 0, (top - low) / np.maximum(top, 1e-6), 0).mean())
        if saturation > lim["saturation"]:
            reasons.append(f"It is in colour (mean saturation {saturation:.2f}; radiographs are gray, "
                           f"at most {lim['saturation']}).")
        gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        gray = np.clip(arr.astype(np.float32) * scale, 0.0, 1.0)
    if min(h, w) < 2:
        return reasons
    small = np.asarray(Image.fromarray(gray.astype(np.float32)).resize((64, 64), Image.BOX))
    mean, std = float(small.mean()), float(small.std())
    if not lim["mean"][0] <= mean <= lim["mean"][1]:
        reasons.append(f"Its brightness is unlike a radiograph (mean gray {mean:.2f}, expected "
                       f"{lim['mean'][0]}-{lim['mean'][1]}).")
    if not lim["std"][0] <= std <= lim["std"][1]:
        reasons.append(f"Its contrast is unlike a radiograph (standard deviation {std:.2f}, expected "
                       f"{lim['std'][0]}-{lim['std'][1]}).")
    a, b = small[:, :-1].ravel(), small[:, 1:].ravel()
    smooth = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 1.0
    if smooth < lim["smoothness"]:
        reasons.append(f"It looks like noise, not anatomy (neighbouring pixels correlate {smooth:.2f}; "
                       f"radiographs at least {lim['smoothness']}).")
    return reasons


def upload_radiograph_check(upload: Upload) -> list[str]:
    """:func:`radiograph_check` of an upload's full-size pixels (empty list: it looks like a radiograph).

    Raises:
        UploadError: The upload cannot be read (as :func:`read_upload`).
    """
    return radiograph_check(read_upload_pixels(upload))
