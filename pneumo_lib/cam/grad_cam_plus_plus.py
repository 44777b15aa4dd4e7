"""Grad-CAM++ (Chattopadhay et al. 2018), in its closed form for an exponential score.

With ``Y = exp(S)`` the higher derivatives of ``Y`` are powers of the first derivative
``g = dS/dA`` (times ``exp(S)``), so the pixel weights of the paper's eq. 19 need first-order
gradients only::

    alpha_ij^k = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)      (0 where the denominator is 0)
    w_k        = sum_ij alpha_ij^k ReLU(g_ij^k)

The factor ``exp(S)`` that multiplies every ``w_k`` of one image is left out (as in the
reference implementations): it cancels when a map is divided by its maximum, so raw maps
(``normalize=False``) are those of the weights above.
"""

from __future__ import annotations

import numpy as np

from pneumo_lib._tf import tf
from pneumo_lib.cam.base import gradient_method


def combine(features, grads):
    """``sum_k w_k A_k`` with the Grad-CAM++ weights above: ``(n, h, w, K) x2 -> (n, h, w)``."""
    g2, g3 = grads**2, grads**3
    total = tf.reduce_sum(features, axis=(1, 2), keepdims=True)
    alpha = tf.math.divide_no_nan(g2, 2.0 * g2 + total * g3)
    weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * features, axis=-1)


def grad_cam_plus_plus(model, images, *, layer=None, class_index=None, threshold=None, batch_size=32,
                       normalize=True) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weighted gradients.

    Channel weights are ``sum_ij alpha_ij ReLU(dS/dA_ij)`` with
    ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (the closed form for an exponential score),
    which lets several separate regions of one class share the map. Same arguments, result
    and errors as :func:`pneumo_lib.cam.grad_cam`.
    """
    return gradient_method(combine, model, images, layer=layer, class_index=class_index,
                           threshold=threshold, batch_size=batch_size, normalize=normalize)
