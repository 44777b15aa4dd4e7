"""Tiny synthetic image sets with known answers, for the model/training/evaluation tests."""

from __future__ import annotations

import numpy as np


def separable_arrays(n: int, size: int = 16, channels: int = 1, seed: int = 0):
    """Images ``(n, size, size, channels)`` in [0, 1] whose class is their brightness.

    NORMAL (0) pixels are uniform in [0, 0.45], PNEUMONIA (1) pixels in [0.55, 1]:
    any model that can learn a mean intensity separates them perfectly.
    Labels alternate 0, 1, 0, 1, ... so every batch holds both classes.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0.0, 0.45, (n, size, size, channels)).astype("float32")
    x += (0.55 * y).astype("float32")[:, None, None, None]
    return x, y.astype("int64")


def noise_arrays(n: int, size: int = 16, channels: int = 1, seed: int = 0):
    """Pure-noise images in [0, 1] with alternating labels: nothing to learn."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, size, size, channels)).astype("float32"), (np.arange(n) % 2).astype("int64")


def dataset(x, y, batch_size: int = 16):
    """A ``tf.data`` dataset of ``(images, labels)`` batches, in order (no shuffling)."""
    from pneumo_lib._tf import tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
