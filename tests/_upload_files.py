"""Helpers for the upload tests: the same image as PNG (8/16-bit, RGBA) and MONOCHROME1 DICOM bytes."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from _data_helpers import write_dicom
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes: uint8 (H, W) gray, uint16 (H, W) 16-bit gray, uint8 (H, W, 4) RGBA."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(gray8: np.ndarray, quality: int = 95) -> bytes:
    """Baseline JPEG bytes of a uint8 (H, W) gray image."""
    buffer = io.BytesIO()
    Image.fromarray(gray8).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def rgba(gray8: np.ndarray) -> np.ndarray:
    """The gray image as opaque RGBA, uint8 (H, W, 4)."""
    return np.dstack([gray8, gray8, gray8, np.full_like(gray8, 255)])


def dicom_monochrome1(gray8: np.ndarray) -> bytes:
    """A 12-bit MONOCHROME1 DICOM of a uint8 gray image (stored inverted: 0 is white).

    Pixel ``v`` is stored as ``4095 - 16 v``; a reader that scales to ``[0, 1]`` by the
    stored range and inverts MONOCHROME1 gets back ``v / 255`` when ``v`` spans 0..255.
    Written by the data tests' :func:`write_dicom`.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.dcm"
        write_dicom(path, 4095 - gray8.astype(np.uint16) * 16, "MONOCHROME1")
        return path.read_bytes()
