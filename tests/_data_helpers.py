"""Helpers for the data tests: small generated datasets and a digest of a folder tree."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pneumo_lib.data import phantom

#: Small enough to generate in about a second.
TINY_COUNTS = {"train": (6, 10), "val": (2, 2), "test": (3, 5)}


def make_tiny(root: Path, seed: int = 3, size: int = 64, shortcut: bool = False,
              counts: dict | None = None) -> Path:
    """Generate a tiny phantom dataset at ``root``; returns its chest_xray folder."""
    spec = replace(phantom.phantom_spec("tiny", seed, size=size, shortcut=shortcut),
                   counts=dict(counts or TINY_COUNTS))
    return phantom.generate_phantom(root, spec)


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha1 of bytes}`` of every file below ``folder`` (to prove nothing changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def dicom_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12) -> pydicom.Dataset:
    """An uncompressed grayscale DICOM dataset of ``pixels`` (``(H, W)`` or frames ``(F, H, W)``).

    ``bits`` stored: 8 (uint8 values, 8 bits allocated) or up to 16 (uint16 values).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    allocated = 8 if bits == 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint8 if allocated == 8 else np.uint16).tobytes()
    return ds


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                slope: float = 1.0, intercept: float = 0.0) -> None:
    """A minimal 12-bit grayscale DICOM file holding ``pixels`` (uint16 values)."""
    ds = dicom_dataset(pixels, photometric, bits=12)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.save_as(path, enforce_file_format=True)
