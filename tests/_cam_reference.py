"""An independent NumPy re-implementation of Grad-CAM, Grad-CAM++ and Score-CAM, from the papers.

It shares no code with :mod:`pneumo_lib.cam`: Keras is used only to get activations and
gradients, from a sub-model built the straightforward way (the keras.io recipe:
``keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("logits").output])``
under a plain ``tf.GradientTape``), so it needs a *flat* functional model whose pre-activation
scores are the output of a layer (``"logits"`` in every model of :mod:`pneumo_lib.models`).
Everything after that is float64 NumPy:

* Grad-CAM (Selvaraju et al. 2017, eq. 1-2): ``w_k = mean_ij dS/dA_ij^k``,
  ``map = ReLU(sum_k w_k A^k)``.
* Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with ``Y = exp(S)``, first-order gradients only):
  ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (0 where that is 0/0),
  ``w_k = sum_ij alpha_ij ReLU(g_ij)`` (the common factor ``exp(S)`` dropped).
* Score-CAM (Wang et al. 2020, eq. 4-5, ``f`` = class probability, black baseline, no softmax
  over channels): ``M_k`` = ``A^k`` upsampled and min-max scaled, ``w_k = p_c(x M_k) - p_c(0)``;
  a constant channel, which min-max scaling leaves undefined, counts as ``M_k = 1`` if positive
  (its weight is then ``p_c(x) - p_c(0)``) and adds nothing if zero.

The score of class ``c``: for one sigmoid unit the logit (``c = 1``) or its negation (``c = 0``);
for a softmax head the pre-softmax score. Upsampling is bilinear with half-pixel centres, the
documented behaviour of ``tf.image.resize(..., "bilinear")``, implemented here in NumPy. Maps
come back upsampled to the input size and either raw or divided by their maximum.
"""

from __future__ import annotations

import numpy as np

from pneumo_lib._tf import keras, tf


def scores_and_features(model, images, layer: str, score_layer: str = "logits"):
    """``(scores (N, units), features A (N, h, w, K))`` from the straightforward sub-model, float64."""
    sub = keras.Model(model.inputs, [model.get_layer(score_layer).output, model.get_layer(layer).output])
    scores, features = sub(tf.constant(images, tf.float32), training=False)
    return scores.numpy().astype(np.float64), features.numpy().astype(np.float64)


def class_score(scores, classes):
    """The explained score per image: the logit or its negation (one unit), else the class's score."""
    if scores.shape[1] == 1:
        return scores[:, 0] * (2 * np.asarray(classes) - 1)
    return scores[np.arange(len(scores)), classes]


def features_and_gradients(model, images, layer: str, classes, score_layer: str = "logits"):
    """``(A, dS_c/dA)`` as float64 ``(N, h, w, K)``, with a plain tape over the sub-model."""
    sub = keras.Model(model.inputs, [model.get_layer(score_layer).output, model.get_layer(layer).output])
    sign_or_pick = tf.constant(np.asarray(classes), tf.int32)
    with tf.GradientTape() as tape:
        scores, features = sub(tf.constant(images, tf.float32), training=False)
        if scores.shape[1] == 1:
            target = scores[:, 0] * tf.cast(2 * sign_or_pick - 1, tf.float32)
        else:
            target = tf.gather(scores, sign_or_pick, axis=1, batch_dims=1)
    grads = tape.gradient(target, features)
    return features.numpy().astype(np.float64), grads.numpy().astype(np.float64)


def probabilities(scores):
    """Class probabilities ``(N, K)`` from pre-activation scores, in float64."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bilinear(maps, size):
    """Bilinear resize of ``(N, h, w)`` (or ``(N, h, w, K)``) to ``size`` with half-pixel centres."""
    maps = np.asarray(maps, dtype=np.float64)
    out_h, out_w = size

    def axis_weights(n_in, n_out):
        centre = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        below = np.floor(centre)
        frac = centre - below
        lower = np.clip(below, 0, n_in - 1).astype(int)
        upper = np.clip(below + 1, 0, n_in - 1).astype(int)
        return lower, upper, frac

    y0, y1, fy = axis_weights(maps.shape[1], out_h)
    x0, x1, fx = axis_weights(maps.shape[2], out_w)
    shape_y = (1, out_h, 1) + (1,) * (maps.ndim - 3)
    rows = maps[:, y0] * (1 - fy).reshape(shape_y) + maps[:, y1] * fy.reshape(shape_y)
    shape_x = (1, 1, out_w) + (1,) * (maps.ndim - 3)
    return rows[:, :, x0] * (1 - fx).reshape(shape_x) + rows[:, :, x1] * fx.reshape(shape_x)


def finish(raw, size, normalize=True):
    """ReLU, bilinear upsampling to ``size`` and (optionally) division by each map's maximum."""
    up = bilinear(np.maximum(raw, 0.0), size)
    if not normalize:
        return up
    peak = up.max(axis=(1, 2), keepdims=True)
    return np.divide(up, peak, out=np.zeros_like(up), where=peak > 0)


def grad_cam_raw(features, grads):
    """Grad-CAM before ReLU: ``sum_k mean_ij(g^k) A^k``, ``(N, h, w)``."""
    weights = grads.mean(axis=(1, 2))
    return np.einsum("nhwk,nk->nhw", features, weights)


def grad_cam_pp_raw(features, grads):
    """Grad-CAM++ before ReLU, with the exp-score closed form of the pixel weights."""
    g2, g3 = grads**2, grads**3
    denominator = 2.0 * g2 + features.sum(axis=(1, 2), keepdims=True) * g3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
    weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
    return np.einsum("nhwk,nk->nhw", features, weights)


def score_cam_raw(model, images, layer: str, classes, score_layer: str = "logits", chunk: int = 64):
    """Score-CAM before ReLU, one forward pass per channel and image (the method as published)."""
    images = np.asarray(images, dtype=np.float32)
    sub = keras.Model(model.inputs, model.get_layer(score_layer).output)

    def p_of(batch, c):
        return probabilities(sub(tf.constant(batch, tf.float32), training=False).numpy())[:, c]

    _, features = scores_and_features(model, images, layer, score_layer)
    out = []
    for image, a, c in zip(images, features, classes):
        baseline = p_of(np.zeros_like(image[None]), c)[0]
        low, high = a.min(axis=(0, 1)), a.max(axis=(0, 1))
        weights = np.zeros(a.shape[-1])
        constant = high == low
        weights[constant & (high > 0)] = p_of(image[None], c)[0] - baseline
        varying = np.flatnonzero(~constant)
        for start in range(0, len(varying), chunk):
            ks = varying[start : start + chunk]
            masks = bilinear(((a[..., ks] - low[ks]) / (high[ks] - low[ks]))[None], image.shape[:2])[0]
            masked = np.moveaxis(masks, -1, 0)[..., None] * image[None]
            weights[ks] = p_of(masked, c) - baseline
        out.append(np.einsum("hwk,k->hw", a, weights))
    return np.stack(out)


def reference_raw(method: str, model, images, layer: str, classes):
    """The map of ``method`` (``"gradcam"``, ``"gradcampp"``, ``"scorecam"``) before ReLU, ``(N, h, w)``."""
    if method == "scorecam":
        return score_cam_raw(model, images, layer, classes)
    features, grads = features_and_gradients(model, images, layer, classes)
    return grad_cam_raw(features, grads) if method == "gradcam" else grad_cam_pp_raw(features, grads)


def reference_maps(method: str, model, images, layer: str, classes, *, normalize=True):
    """The reference map of ``method`` at input size, raw or divided by its maximum."""
    return finish(reference_raw(method, model, images, layer, classes), np.shape(images)[1:3], normalize)
