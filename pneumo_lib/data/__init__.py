"""Data: phantom generator, Kaggle download, real sample, audit, splits, derived copies, image loading, pipeline.

Importing this package does not import TensorFlow; the ``tf.data`` functions
(:mod:`pneumo_lib.data.pipeline`) are loaded on first use.

Typical use in a chapter::

    from pneumo_lib import data
    data_dir = data.ensure_dataset(profile)               # chest_xray folder
    manifest = data.make_splits(data_dir, seed=profile.seed)
    train_ds = data.split_dataset(manifest, "train", profile)   # (images, labels) batches
    x_test, y_test = data.load_split(manifest, "test", profile.image_size)
"""

from __future__ import annotations

import importlib

from pneumo_lib.data.images import (
    MAX_PIXELS,
    FramesWarning,
    ImageReadError,
    check_image_file,
    check_pixels,
    read_image,
)
from pneumo_lib.data.layout import (
    CLASSES,
    SPLITS,
    ImageRecord,
    check_layout,
    list_images,
    resolve_data_dir,
    marker_boxes,
    mask_path,
    patient_id,
)
from pneumo_lib.data.audit import AuditReport, audit
from pneumo_lib.data.derived import equalized_copy, patients_by_hospital, pooled_copy, pooled_hospitals
from pneumo_lib.data.sources import ensure_dataset, ensure_phantom, ensure_sample, phantom_root
from pneumo_lib.data.statistics import (
    edge_density,
    image_statistics,
    intensity_histogram,
    plot_image_statistics,
    radial_power_spectrum,
    statistics_table,
)
from pneumo_lib.data.splits import (
    SplitManifest,
    class_weights,
    make_splits,
    naive_random_split,
    shared_patients,
)

_PIPELINE = ("make_dataset", "split_dataset", "load_images", "load_image", "load_split", "load_masks",
             "load_marker_masks", "paste_markers", "augmentation")

__all__ = [
    "AuditReport", "CLASSES", "SPLITS", "ImageRecord", "audit", "ensure_sample", "ImageReadError", "SplitManifest", "check_layout",
    "MAX_PIXELS", "FramesWarning", "check_image_file", "check_pixels", "resolve_data_dir",
    "class_weights", "ensure_dataset", "ensure_phantom", "list_images", "make_splits",
    "mask_path", "marker_boxes", "naive_random_split", "patient_id", "phantom_root", "read_image",
    "shared_patients", "image_statistics", "intensity_histogram", "radial_power_spectrum",
    "edge_density", "plot_image_statistics", "statistics_table", "equalized_copy", "pooled_copy",
    "pooled_hospitals", "patients_by_hospital", *_PIPELINE,
]


def __getattr__(name: str):
    """Load the TensorFlow-based pipeline functions on first use."""
    if name in _PIPELINE:
        return getattr(importlib.import_module("pneumo_lib.data.pipeline"), name)
    raise AttributeError(f"module 'pneumo_lib.data' has no attribute {name!r}")
