"""Runtime helpers shared by the chapters and commands: seeds, quiet logs, versions.

Nothing here imports TensorFlow at module import time, so ``pneumo --help`` stays fast.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import random
import sys
import warnings

import numpy as np


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras without their start-up log lines; silence their loggers.

    TensorFlow 2.21 prints oneDNN/CUDA notices from C++ at import time, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says, and Jupyter kernels copy them into the notebook.
    This imports both with the process' stderr (file descriptor 2) pointed at
    ``/dev/null`` for the duration of the import; import errors still raise.
    Safe to call any number of times.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tensorflow")


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow/Keras; optionally force deterministic ops.

    With ``deterministic=True`` TensorFlow's op determinism is enabled, which
    (on the same machine and versions) makes training bit-for-bit repeatable.

    Args:
        seed: Any non-negative integer.
        deterministic: Also call ``tf.config.experimental.enable_op_determinism()``.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    random.seed(seed)
    np.random.seed(seed)
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def versions() -> dict[str, str]:
    """Versions of Python, the library and its main dependencies (as strings)."""
    from pneumo_lib import __version__

    out = {"python": platform.python_version(), "pneumo_lib": __version__}
    for dist in ("tensorflow", "keras", "numpy", "scikit-learn", "matplotlib"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def accelerators() -> dict[str, int]:
    """Number of visible GPU and TPU devices, e.g. ``{"GPU": 0, "TPU": 0}``."""
    quiet_tensorflow()
    import tensorflow as tf

    return {kind: len(tf.config.list_physical_devices(kind)) for kind in ("GPU", "TPU")}
