"""Helpers for the upload tests: the same image as PNG (8/16-bit, RGBA) and MONOCHROME1 DICOM bytes."""

from __future__ import annotations

import io

import numpy as np
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
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # computed radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME1"
    ds.Rows, ds.Columns = gray8.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PixelData = (4095 - gray8.astype(np.uint16) * 16).astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
