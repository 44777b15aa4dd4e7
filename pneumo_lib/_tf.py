"""TensorFlow and Keras, imported quietly: ``from pneumo_lib._tf import tf, keras``.

Library modules import TensorFlow through here so that its start-up log lines never
land in a notebook's outputs (see :func:`pneumo_lib.runtime.quiet_tensorflow`).
"""

from pneumo_lib.runtime import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["tf", "keras"]
