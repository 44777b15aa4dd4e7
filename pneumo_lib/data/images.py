"""Read one image file of any supported kind to a grayscale float array.

JPEG (grayscale, RGB or CMYK), PNG (8- and 16-bit, grayscale, RGB, RGBA, palette)
and DICOM (with ``pydicom``: uncompressed, or JPEG baseline/extended/lossless,
JPEG-LS, JPEG 2000 and RLE through pydicom's decoder plugins; rescale
slope/intercept applied, MONOCHROME1 inverted so that bone is always bright).
Files are only read, never changed.

One pixel limit, :data:`MAX_PIXELS` (rows x columns x frames), bounds every decoder:
this module, the ``tf.data`` pipeline, uploads, the audit and every command use it
through :func:`check_pixels`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

#: The one pixel limit (rows x columns x frames) of every reader: images with more are
#: refused before decoding (Kaggle's largest is about 8.4 million; a 40-million-pixel
#: image decodes to 160 MB of float32).
MAX_PIXELS = 40_000_000

DICOM_SUFFIXES = (".dcm", ".dicom")

#: PyPI packages that decode each compressed DICOM transfer syntax (pydicom plugins).
DICOM_PLUGINS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (with pylibjpeg) or python-gdcm",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (with pylibjpeg) or python-gdcm",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg (with pylibjpeg) or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg (with pylibjpeg) or python-gdcm",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg (with pylibjpeg), pyjpegls or python-gdcm",  # JPEG-LS
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg (with pylibjpeg), pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (with pylibjpeg) or python-gdcm",  # JPEG 2000
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (with pylibjpeg) or python-gdcm",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg (with pylibjpeg)",  # HTJ2K
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg (with pylibjpeg)",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg (with pylibjpeg)",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (with pylibjpeg)",  # RLE lossless
}


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and what to do."""


class FramesWarning(UserWarning):
    """A multi-frame DICOM was reduced to its first frame (the message names the file)."""


def check_image_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` is an existing, non-empty file (not a folder); return it as a :class:`Path`.

    Raises:
        FileNotFoundError: Nothing exists at ``path``.
        ImageReadError: ``path`` is a folder, not a regular file, or empty (0 bytes).
    """
    path = Path(path)
    try:
        info = os.stat(path)  # one system call: this runs for every file of a dataset
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file {path} does not exist.") from None
    except OSError as err:  # a symbolic-link loop, a permission problem...
        raise ImageReadError(f"{path} cannot be read ({err.strerror}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(f"{path} is a folder, not an image file; pass the image files inside it "
                             f"(e.g. {path}/*.jpeg).")
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(f"{path} is not a regular file (a device, socket or pipe?); pass an image file.")
    if info.st_size == 0:
        raise ImageReadError(f"Image file {path} is empty (0 bytes); re-download or delete it.")
    return path


def check_pixels(path: str | os.PathLike, width: int, height: int, frames: int = 1,
                 max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image of ``width x height x frames`` pixels above ``max_pixels`` (the one limit).

    Raises:
        ImageReadError: Too many pixels (or a non-positive size), naming the file.
    """
    if width <= 0 or height <= 0 or frames <= 0:
        raise ImageReadError(f"{path} declares an empty image ({width}x{height} pixels, {frames} frame(s)).")
    if width * height * frames > max_pixels:
        what = f"{width}x{height} pixels" + (f" x {frames} frames" if frames > 1 else "")
        raise ImageReadError(
            f"{path} is too large ({what}, more than the {max_pixels:,} pixels allowed); "
            "downscale it or export a single frame first (chest X-rays rarely exceed 3,000 px a side).")


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as grayscale.

    Args:
        path: A JPEG, PNG or DICOM file.
        max_pixels: Refuse images with more pixels (rows x columns x frames) than this
            (decompression bombs, scans saved at absurd sizes, long multi-frame series).

    Returns:
        ``float32`` array ``(H, W)`` with values in ``[0, 1]`` (1 = white/bone).
        Colour images are converted with ITU-R 601-2 luma; alpha is ignored
        (the colour channels are kept as they are); 16-bit PNGs keep their
        full precision (divided by 65535). A multi-frame DICOM gives its first
        frame only (only that frame is decoded), with a :class:`FramesWarning`.

    Raises:
        ImageReadError: The file is a folder, empty, truncated, corrupt, not an image,
            too large, or a DICOM no installed plugin decodes (the message names the
            transfer syntax and the PyPI package to install).
        FileNotFoundError: The file does not exist.
    """
    path = check_image_file(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _read_dicom(path, max_pixels)
    with open_image(path, max_pixels) as im:
        try:
            im.load()
        except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for broken data
            raise ImageReadError(
                f"{path} could not be decoded ({_one_line(err)}); the file is probably truncated or corrupt. "
                "Re-download it or delete it.") from None
        return _to_gray(im)


@contextlib.contextmanager
def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """Open an image with Pillow (header only), refusing unreadable and oversized files.

    Yields:
        The lazily loaded :class:`PIL.Image.Image` (closed on exit).

    Raises:
        ImageReadError: Not an image, or more than ``max_pixels`` pixels (all frames).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path} is too large ({err}); downscale it first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path} is not a readable image ({_one_line(err)}).") from None
    with im:
        check_pixels(path, *im.size, getattr(im, "n_frames", 1) if im.format != "JPEG" else 1, max_pixels)
        yield im


_check_size = check_pixels  # the name this module used before


def _to_gray(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)  # 16-bit values are exact in float32; never float64
        top = np.float32(65535.0 if im.mode != "I" or arr.max() > 255 else 255.0)
        arr /= top
        return np.clip(arr, 0, 1, out=arr)
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


def dicom_header(path: str | os.PathLike, max_pixels: int = MAX_PIXELS):
    """Read a DICOM file's header (no pixel decoding) and check it can be decoded here.

    Returns:
        ``(dataset, rows, columns, frames)``: the pydicom dataset read without decoding
        its pixels, and the declared size.

    Raises:
        ImageReadError: Not a DICOM image, more than ``max_pixels`` pixels
            (rows x columns x frames), or a compressed transfer syntax that no
            installed pydicom plugin decodes (naming the syntax and the PyPI package).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise ValueError("it holds no pixel data")
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (InvalidDicomError, AttributeError, KeyError, TypeError, ValueError, EOFError, OSError) as err:
        raise ImageReadError(f"{path} is not a readable DICOM image ({_one_line(err)}).") from None
    check_pixels(path, cols, rows, frames, max_pixels)
    _check_decoder(path, ds)
    return ds, rows, cols, frames


def _check_decoder(path: Path, ds) -> None:
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        package = DICOM_PLUGINS.get(str(syntax), "python-gdcm")
        raise ImageReadError(
            f"{path} is compressed as {syntax.name} ({syntax}), which no installed pydicom plugin "
            f"decodes; install {package} from PyPI (pip install ...), or export the image uncompressed.")


def _one_line(err: object, limit: int = 300) -> str:
    """An error's message on one line, at most ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_dicom(path: Path, max_pixels: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    ds, rows, cols, frames = dicom_header(path, max_pixels)
    try:
        # Only the first frame is decoded (a long series would otherwise need all frames in memory).
        arr = pixel_array(ds, index=0) if frames > 1 else ds.pixel_array
    except MemoryError:
        raise ImageReadError(f"{path} is too large to decode here ({cols}x{rows} pixels).") from None
    except Exception as err:  # decoder plugins raise many types for broken data
        raise ImageReadError(
            f"{path} could not be decoded ({type(err).__name__}: {_one_line(err)}); the DICOM file is "
            "probably truncated or corrupt. Re-export it.") from None
    if frames > 1:
        warnings.warn(f"{path} holds {frames} frames; only the first is used.", FramesWarning, stacklevel=3)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1 or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] == rows):
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        arr = arr.astype(np.float32)
    if arr.shape != (rows, cols):
        raise ImageReadError(f"{path} decoded to shape {arr.shape}, not its declared {rows}x{cols}; "
                             "the DICOM file is inconsistent. Re-export it.")
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        arr *= np.float32(slope)
        arr += np.float32(intercept)
    lo, hi = float(arr.min()), float(arr.max())
    if hi > lo:
        arr -= np.float32(lo)
        arr *= np.float32(1.0 / (hi - lo))
        np.clip(arr, 0.0, 1.0, out=arr)
    else:
        arr[:] = 0.0
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        np.subtract(np.float32(1.0), arr, out=arr)
    return arr
