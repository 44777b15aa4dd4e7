"""DICOM files as hospitals store them, made here with pydicom's encoders (and Pillow for JPEG).

Every helper returns a dataset ready to ``save_as``; the pixels are a known uint8 image
so that a reader's output can be compared exactly (lossless syntaxes) or nearly (JPEG).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from _data_helpers import dicom_dataset
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

#: Syntaxes pydicom (3.x) can encode with the installed plugins (RLE: pydicom itself,
#: JPEG-LS: pyjpegls, JPEG 2000: pylibjpeg-openjpeg); JPEG baseline is encoded by Pillow.
ENCODED = {"rle": RLELossless, "jpeg-ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless}


def card(rows: int = 48, cols: int = 64) -> np.ndarray:
    """A smooth uint8 test card spanning 0..255 exactly (min-max scaling gives ``v / 255``)."""
    y, x = np.mgrid[0:rows, 0:cols]
    img = 127.5 + 127.5 * np.sin(x / cols * 3.0) * np.cos(y / rows * 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.round().astype(np.uint8)


def dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2") -> pydicom.Dataset:
    """An uncompressed 8-bit grayscale DICOM of ``pixels`` (uint8 ``(H, W)`` or ``(F, H, W)``)."""
    return dicom_dataset(pixels, photometric, bits=8)


def compressed(pixels: np.ndarray, kind: str, photometric: str = "MONOCHROME2") -> pydicom.Dataset:
    """``pixels`` stored as ``kind``: ``"rle"``, ``"jpeg-ls"``, ``"jpeg2000"`` (lossless) or ``"jpeg"`` (baseline)."""
    ds = dataset(pixels, photometric)
    if kind == "jpeg":
        frames = pixels if pixels.ndim == 3 else pixels[None]
        encoded = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
            encoded.append(buffer.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        return ds
    ds.compress(ENCODED[kind])
    return ds
