"""Grad-CAM (Selvaraju et al. 2017): channels weighted by the spatial mean of their gradients."""

from __future__ import annotations

import numpy as np

from pneumo_lib._tf import tf
from pneumo_lib.cam.base import gradient_method


def combine(features, grads):
    """``sum_k w_k A_k`` with ``w_k = mean_ij dS/dA_ij^k``: ``(n, h, w, K), (n, h, w, K) -> (n, h, w)``."""
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * features, axis=-1)


def grad_cam(model, images, *, layer=None, class_index=None, threshold=None, batch_size=32, normalize=True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): gradient-weighted class activation maps.

    Each channel of the target layer's feature map ``A_k`` is weighted by the spatial mean of
    the gradient of the class score ``S`` with respect to it; the map is
    ``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size and (by default)
    divided by its own maximum.

    Args:
        model: A Keras image classifier (single-sigmoid or softmax head), possibly with a
            nested backbone or loaded from disk.
        images: ``(N, H, W, C)`` float32 batch prepared for the model, values in ``[0, 1]``.
        layer: Target layer name (may be inside a nested model); None: :func:`find_target_layer`.
        class_index: None (the class the rule predicts: PNEUMONIA when P(PNEUMONIA) >=
            ``threshold``), an int, or one int per image.
        threshold: For ``class_index=None``: None (the model's threshold, see
            :func:`pneumo_lib.decision.model_threshold`) or a probability in (0, 1).
        batch_size: Images per forward/backward pass.
        normalize: True: each map divided by its maximum. False: the raw
            ``ReLU(sum_k w_k A_k)`` upsampled (units of score x activation), for figures
            that compare maps and state their raw maximum.

    Returns:
        ``(N, H, W)`` float32 heatmaps, in ``[0, 1]`` when normalised (zeros, never NaN,
        where a map is empty); ``>= 0`` when not.

    Raises:
        ValueError: Bad images (shape, channels, empty, NaN, outside [0, 1] or integers),
            unknown layer, no spatial layer, bad class index, threshold or batch size.
    """
    return gradient_method(combine, model, images, layer=layer, class_index=class_index,
                           threshold=threshold, batch_size=batch_size, normalize=normalize)
