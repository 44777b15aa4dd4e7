"""Score-CAM (Wang et al. 2020): channels weighted by how much they raise the class probability.

What is implemented (the "increase of confidence" of the paper's eq. 4-5, with the class
probability as ``f``, and without the softmax over channels of its Algorithm 1)::

    M_k = Up(A_k) min-max scaled to [0, 1]        (bilinear, to the input size)
    w_k = p_c(x * M_k) - p_c(0)                   (the baseline is the black image)
    map = ReLU(sum_k w_k A_k)

``p_c`` is the sigmoid (one unit) or softmax probability of class ``c``. A channel that is
constant over the map cannot be min-max scaled: a constant zero channel adds nothing
(weight 0, no forward pass); a constant positive one masks nothing (``M_k = 1``, weight
``p_c(x) - p_c(0)``, no extra pass).
"""

from __future__ import annotations

import numpy as np

from pneumo_lib import decision
from pneumo_lib._tf import tf
from pneumo_lib.cam.base import (explainer, forward_all, predicted_classes, probabilities_from_scores, relu_upsample,
                                 scale_to_max)
from pneumo_lib.cam.checks import check_batch_size, check_images, class_indices


def score_cam(model, images, *, layer=None, class_index=None, threshold=None, batch_size=32, max_channels=None,
              normalize=True) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): channels weighted by how much they raise the class score.

    Every channel ``A_k`` of the target layer is upsampled and min-max scaled to a mask
    ``M_k`` in ``[0, 1]``; the weight of the channel is the class probability of the masked
    image ``x * M_k`` minus that of the all-zero baseline image. The map is
    ``ReLU(sum_k w_k A_k)``, upsampled and scaled like :func:`pneumo_lib.cam.grad_cam`.
    Costs one forward pass per varying channel and image, in mini-batches of ``batch_size``
    masked images.

    Args:
        model, images, layer, class_index, threshold, batch_size, normalize: As for
            :func:`pneumo_lib.cam.grad_cam`.
        max_channels: None (all channels, the method as published) or only the channels with
            the largest spatial variance per image (the "Faster Score-CAM" shortcut).

    Returns:
        ``(N, H, W)`` float32 heatmaps in ``[0, 1]`` (``>= 0`` when not normalised).
    """
    batch_size = check_batch_size(batch_size)
    if max_channels is not None and (not isinstance(max_channels, (int, np.integer)) or max_channels < 1):
        raise ValueError(f"max_channels must be None or a positive integer, got {max_channels!r}.")
    images = check_images(model, images)
    cut = decision.model_threshold(model, threshold)
    ex = explainer(model, layer, images.shape)
    classes = class_indices(class_index, len(images), ex.n_classes)
    scores, features = forward_all(ex, np.concatenate([np.zeros_like(images[:1]), images]), batch_size)
    probabilities = probabilities_from_scores(scores).numpy()
    baseline, own = probabilities[0], probabilities[1:]
    features = features[1:]
    classes = np.where(classes >= 0, classes, predicted_classes(own, cut))
    maps = []
    for i, (image, feature, cls) in enumerate(zip(images, features, classes)):
        weights = channel_weights(ex, image, feature, cls, (baseline[cls], own[i, cls]), batch_size, max_channels)
        maps.append(np.tensordot(feature, weights, axes=([2], [0])))
    upsampled = relu_upsample(np.stack(maps), images.shape[1:3])
    return (scale_to_max(upsampled) if normalize else upsampled).numpy().astype(np.float32)


def channel_weights(ex, image, features, cls, reference, batch_size, max_channels) -> np.ndarray:
    """Score-CAM channel weights ``float32 (K,)`` for one image ``(H, W, C)`` and its features ``(h, w, K)``.

    ``reference`` holds the class probability of the zero baseline and of the image itself.
    """
    baseline, own = reference
    n_channels = features.shape[-1]
    low, high = features.min(axis=(0, 1)), features.max(axis=(0, 1))
    weights = np.zeros(n_channels, dtype=np.float64)
    varying = np.flatnonzero(high > low)
    if max_channels is not None and len(varying) > max_channels:
        spread = features.reshape(-1, n_channels)[:, varying].var(axis=0)
        varying = varying[np.argsort(-spread)[:max_channels]]
    constant = np.flatnonzero((high == low) & (high > 0))
    weights[constant] = own - baseline  # a constant positive channel masks nothing
    size = image.shape[:2]
    for start in range(0, len(varying), batch_size):
        channels = varying[start : start + batch_size]
        chunk = (features[..., channels] - low[channels]) / (high[channels] - low[channels])
        masks = tf.image.resize(chunk[None], size, method="bilinear")[0].numpy()
        masked = np.moveaxis(masks, -1, 0)[..., None] * image[None]
        probs = probabilities_from_scores(ex.forward(tf.constant(masked.astype(np.float32)))[0]).numpy()
        weights[channels] = probs[:, cls] - baseline
    return weights.astype(np.float32)
