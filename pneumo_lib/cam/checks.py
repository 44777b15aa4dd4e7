"""Input checks shared by the CAM functions: each bad input a ``ValueError`` naming what was wrong."""

from __future__ import annotations

import numpy as np

from pneumo_lib.cam.tracing import model_input_shape

#: How far above 1 (or below 0) a float image may stray (rounding) before it is refused.
RANGE_TOLERANCE = 1e-3


def check_images(model, images) -> np.ndarray:
    """``images`` as a float32 ``(N, H, W, C)`` array the model takes, with values in ``[0, 1]``.

    Raises:
        ValueError: Not numeric, not 4-D, empty, NaN/inf, an integer dtype (0-255 pixels) or
            values outside ``[0, 1]``, or a size or channel count the model does not take.
    """
    raw = images if isinstance(images, np.ndarray) else np.asarray(images)
    if raw.dtype.kind in "iu":
        raise ValueError(
            f"images have the integer dtype {raw.dtype} (0-255 pixels?); the CAM functions take "
            "float images with values in [0, 1], as the models do. Convert with images / 255.0."
        )
    try:
        array = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"images must be a numeric array (N, H, W, C); got {type(images).__name__}.") from err
    if array.ndim == 3:
        raise ValueError(
            f"images must be a batch (N, H, W, C); got a 3-D array of shape {array.shape}. "
            "For one image add a batch axis (images[None]); for gray images without a "
            "channel axis add one (images[..., None])."
        )
    if array.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError("images is an empty batch (N = 0): nothing to explain.")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"images contain {bad} NaN or infinite values; clean or re-load them first.")
    low, high = float(array.min()), float(array.max())
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise ValueError(
            f"images must have values in [0, 1] (the models rescale inside); got values from "
            f"{low:g} to {high:g}. For 0-255 pixels divide by 255.0; do not apply a backbone's "
            "preprocess_input yourself."
        )
    expected = model_input_shape(model)
    if expected is not None:
        if len(expected) != 3:
            raise ValueError(f"Model {model.name!r} takes inputs of shape {expected}, not images (H, W, C).")
        got = array.shape[1:]
        if expected[2] is not None and expected[2] != got[2]:
            raise ValueError(
                f"Model {model.name!r} expects {expected[2]} channel(s); images have {got[2]} "
                f"(shape {array.shape})."
            )
        if any(e is not None and e != g for e, g in zip(expected[:2], got[:2])):
            raise ValueError(
                f"Model {model.name!r} expects images of size {expected[0]}x{expected[1]}; "
                f"got {got[0]}x{got[1]} (shape {array.shape}). Resize them first."
            )
    return array


def check_batch_size(batch_size) -> int:
    """``batch_size`` as a positive int. Raises ValueError otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def class_indices(class_index, n: int, n_classes: int) -> np.ndarray:
    """One class per image as int32 ``(n,)``; -1 means "the class the rule predicts".

    Raises:
        ValueError: Not None, an int or ``n`` ints in ``0..n_classes-1``.
    """
    if class_index is None:
        return np.full(n, -1, dtype=np.int32)
    values = np.asarray(class_index)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"class_index must be None, an int or {n} ints (one per image); got {class_index!r}.")
    if values.min() < 0 or values.max() >= n_classes:
        raise ValueError(
            f"class_index must lie in 0..{n_classes - 1} for this model ({n_classes} classes); got {class_index!r}."
        )
    return values.astype(np.int32)
