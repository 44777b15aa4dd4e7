"""Uploaded files, handled safely: size limit, type check, a private temporary folder.

The explorer and the web app receive an upload as a user-chosen name and its bytes.
This module turns them into a model-ready image through the data module's loader
(:func:`pneumo_lib.data.read_image`), and

* refuses uploads larger than :data:`MAX_UPLOAD_BYTES` (20 MB) or empty ones;
* decides the file type from the content (PNG, JPEG and DICOM signatures), falling
  back to the name's suffix only when it is one of :data:`SUFFIXES`;
* writes the bytes into a fresh private temporary folder under a fixed name
  (``upload.png``, ``upload.jpeg``, ``upload.dcm``) and deletes the folder afterwards:
  the uploaded name is never used as a path, only shown (see :func:`display_name`);
* turns every reading error into an :class:`UploadError` whose message names the
  upload as the user called it, never the temporary path.
"""

from __future__ import annotations

import os
import re
import tempfile
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
    """An upload as one model input, read by the data module and resized like the pipeline.

    Args:
        upload: The uploaded file.
        image_size: Side ``S`` of the model's square input.
        channels: 1 (scratch CNNs) or 3 (ImageNet backbones: the gray image repeated).

    Returns:
        ``float32`` array ``(S, S, C)`` with values in ``[0, 1]``.

    Raises:
        UploadError: Refused upload (see :func:`stored`) or unreadable image (not an
            image, truncated, too many pixels); the message names the upload.
    """
    from pneumo_lib.data import ImageReadError, read_image
    from pneumo_lib.data.pipeline import resize

    with stored(upload) as path:
        try:
            gray = read_image(path)
        except ImageReadError as err:
            raise UploadError(str(err).replace(str(path), upload.name)) from None
    image = resize(gray[..., None], image_size).numpy().clip(0.0, 1.0).astype(np.float32)
    return np.repeat(image, channels, axis=-1) if channels == 3 else image
