"""Read one image file of any supported kind to a grayscale float array.

JPEG (grayscale, RGB or CMYK), PNG (8- and 16-bit, grayscale, RGB, RGBA, palette)
and DICOM (with ``pydicom``: rescale slope/intercept applied, MONOCHROME1
inverted so that bone is always bright). Files are only read, never changed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Images with more pixels than this are refused (Kaggle's largest is about 8.4 million).
MAX_PIXELS = 40_000_000

DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and what to do."""


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as grayscale.

    Args:
        path: A JPEG, PNG or DICOM file.
        max_pixels: Refuse images with more pixels than this (decompression bombs,
            scans saved at absurd sizes).

    Returns:
        ``float32`` array ``(H, W)`` with values in ``[0, 1]`` (1 = white/bone).
        Colour images are converted with ITU-R 601-2 luma; alpha is ignored
        (the colour channels are kept as they are); 16-bit PNGs keep their
        full precision (divided by 65535).

    Raises:
        ImageReadError: The file is empty, truncated, not an image, or too large.
        FileNotFoundError: The file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {path} does not exist.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"Image file {path} is empty (0 bytes); re-download or delete it.")
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _read_dicom(path, max_pixels)
    with open_image(path, max_pixels) as im:
        try:
            im.load()
        except OSError as err:
            raise ImageReadError(
                f"{path} could not be decoded ({err}); the file is probably truncated. "
                "Re-download it or delete it.") from None
        return _to_gray(im)


@contextlib.contextmanager
def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """Open an image with Pillow (header only), refusing unreadable and oversized files.

    Yields:
        The lazily loaded :class:`PIL.Image.Image` (closed on exit).

    Raises:
        ImageReadError: Not an image, or more than ``max_pixels`` pixels.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path} is too large ({err}); downscale it first.") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ImageReadError(f"{path} is not a readable image ({err}).") from None
    with im:
        _check_size(path, im.size, max_pixels)
        yield im


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageReadError(
            f"{path} is too large ({w}x{h} pixels, more than the {max_pixels:,} allowed); "
            "downscale it first (chest X-rays rarely exceed 3,000 px a side).")


def _to_gray(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode != "I" or arr.max() > 255 else 255.0
        return np.clip(arr / top, 0, 1).astype(np.float32)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA"):
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode == "1":
        im = im.convert("L")
    if im.mode != "L":
        im = im.convert("RGB").convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0


def _read_dicom(path: Path, max_pixels: int) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
        rows, cols = int(ds.Rows), int(ds.Columns)
        _check_size(path, (cols, rows), max_pixels)
        arr = ds.pixel_array.astype(np.float64)
    except (InvalidDicomError, AttributeError, KeyError, ValueError, EOFError, OSError) as err:
        raise ImageReadError(f"{path} is not a readable DICOM image ({err}).") from None
    if arr.ndim == 3:  # colour or multi-frame: take the luma of the first frame
        arr = arr[0] if arr.shape[-1] not in (3, 4) else arr[..., :3] @ [0.299, 0.587, 0.114]
    arr = arr * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    lo, hi = float(arr.min()), float(arr.max())
    out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)
