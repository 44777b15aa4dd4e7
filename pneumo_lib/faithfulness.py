"""How far to trust a heatmap: localisation, deletion/insertion and the randomisation check.

* Localisation against the phantom data's lesion masks: the pointing game (Zhang et al.
  2018: does the map's maximum fall inside the lesion?) and the fraction of the map's energy
  inside the lesion.
* Causal curves (Petsiuk et al. 2018): delete the most important pixels first and watch the
  class probability fall (a low area is good), or insert them into a blurred image and watch
  it rise (a high area is good).
* The model-parameter randomisation sanity check (Adebayo et al. 2018): re-initialise the
  top layers and compare the maps before and after by rank correlation. A map that does not
  change is not explaining the model.
* Baselines that every table should show beside the CAM methods: a centre-weighted map and a
  random map.

Heatmaps are ``(N, H, W)`` float arrays (as returned by :mod:`pneumo_lib.cam`); masks are
``(N, H, W)`` boolean (or 0/1) arrays of the same size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pneumo_lib import cam

__all__ = [
    "pointing_hits",
    "pointing_game",
    "energy_inside",
    "localization_scores",
    "center_map",
    "random_map",
    "grid_oracle",
    "deletion_curve",
    "insertion_curve",
    "curve_area",
    "rank_correlation",
    "randomization_check",
]


def _check_maps(heatmaps, masks=None) -> tuple[np.ndarray, np.ndarray | None]:
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(f"heatmaps must be a non-empty (N, H, W) array; got shape {maps.shape}.")
    if not np.all(np.isfinite(maps)):
        raise ValueError("heatmaps contain NaN or infinite values.")
    if masks is None:
        return maps, None
    lesions = np.asarray(masks)
    if lesions.ndim == 4 and lesions.shape[-1] == 1:
        lesions = lesions[..., 0]
    if lesions.shape != maps.shape:
        raise ValueError(f"masks must have the heatmaps' shape {maps.shape}; got {lesions.shape}.")
    return maps, lesions.astype(bool)


def _dilate(masks: np.ndarray, tolerance: int) -> np.ndarray:
    if tolerance <= 0:
        return masks
    from scipy.ndimage import binary_dilation

    yy, xx = np.mgrid[-tolerance : tolerance + 1, -tolerance : tolerance + 1]
    disk = (yy**2 + xx**2) <= tolerance**2
    return np.stack([binary_dilation(m, structure=disk) for m in masks])


def pointing_hits(heatmaps, masks, *, tolerance: int = 0) -> np.ndarray:
    """Per image: does the heatmap's maximum fall inside the (dilated) lesion mask?

    Args:
        heatmaps: ``(N, H, W)`` maps.
        masks: ``(N, H, W)`` lesion masks (bool or 0/1).
        tolerance: Pixels by which the mask is grown before testing (Zhang et al. use 15 px
            at 224 px input).

    Returns:
        ``(N,)`` bool. A map that is zero everywhere points nowhere: a miss.
    """
    maps, lesions = _check_maps(heatmaps, masks)
    lesions = _dilate(lesions, int(tolerance))
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(axis=1)
    hits = lesions.reshape(len(maps), -1)[np.arange(len(maps)), peak]
    return hits & (flat.max(axis=1) > 0)


def pointing_game(heatmaps, masks, *, tolerance: int = 0) -> float:
    """Fraction of images with a lesion whose heatmap maximum falls inside it, in ``[0, 1]``.

    Images with an empty mask (no lesion, e.g. NORMAL) are left out.

    Raises:
        ValueError: No image has a non-empty mask.
    """
    maps, lesions = _check_maps(heatmaps, masks)
    has_lesion = lesions.reshape(len(lesions), -1).any(axis=1)
    if not has_lesion.any():
        raise ValueError("None of the masks marks a lesion: the pointing game needs at least one.")
    return float(pointing_hits(maps[has_lesion], lesions[has_lesion], tolerance=tolerance).mean())


def energy_inside(heatmaps, masks) -> np.ndarray:
    """Per image: the fraction of the heatmap's total value inside the lesion mask.

    Returns:
        ``(N,)`` float in ``[0, 1]``; 0 for a map that is zero everywhere.
    """
    maps, lesions = _check_maps(heatmaps, masks)
    maps = np.clip(maps, 0.0, None)
    total = maps.sum(axis=(1, 2))
    inside = (maps * lesions).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def localization_scores(heatmaps, masks, *, tolerance: int = 0) -> dict[str, float]:
    """Pointing game and mean energy inside the lesion, over the images that have a lesion.

    Returns:
        ``{"pointing_game": float, "energy_inside": float, "n": int}``.
    """
    maps, lesions = _check_maps(heatmaps, masks)
    has_lesion = lesions.reshape(len(lesions), -1).any(axis=1)
    return {
        "pointing_game": pointing_game(maps, lesions, tolerance=tolerance),
        "energy_inside": float(energy_inside(maps[has_lesion], lesions[has_lesion]).mean()),
        "n": int(has_lesion.sum()),
    }


def center_map(shape: tuple[int, int, int], *, sigma: float = 0.25) -> np.ndarray:
    """The centre-weighted baseline: a Gaussian bump in the middle of every image.

    Args:
        shape: ``(N, H, W)``.
        sigma: Standard deviation as a fraction of the image side.

    Returns:
        ``(N, H, W)`` float32 in ``[0, 1]``, 1 at the centre.
    """
    n, h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    bump = np.exp(-(((yy - cy) / (sigma * h)) ** 2 + ((xx - cx) / (sigma * w)) ** 2) / 2.0)
    return np.broadcast_to(bump / bump.max(), (n, h, w)).astype(np.float32)


def random_map(shape: tuple[int, int, int], *, seed: int = 0) -> np.ndarray:
    """The random baseline: independent uniform noise, ``(N, H, W)`` float32 in ``[0, 1)``."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def grid_oracle(masks, grid: int) -> np.ndarray:
    """The best map a CAM on a ``grid x grid`` feature map can draw: the lesion masks averaged
    over the grid's cells, upsampled bilinearly like a CAM and scaled to ``[0, 1]``.

    Its pointing game is an upper bound set by resolution alone: a 64-pixel input explained at
    a 4 x 4 layer cannot point more precisely than a 16-pixel cell.

    Args:
        masks: ``(N, H, W)`` lesion masks; ``H`` and ``W`` divisible by ``grid``.
        grid: Side of the feature map (e.g. 4 for ``block5_conv`` at 64 px).

    Returns:
        ``(N, H, W)`` float32 in ``[0, 1]``.
    """
    lesions = np.asarray(masks, dtype=np.float32)
    n, h, w = lesions.shape
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"grid must divide the mask size {h}x{w}; got {grid}.")
    coarse = lesions.reshape(n, grid, h // grid, grid, w // grid).mean(axis=(2, 4))
    return cam.normalize_maps(coarse, (h, w))


# --------------------------------------------------------------------------- causal curves


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, sigma, sigma, 0)).astype(np.float32)


def _class_probability_curve(model, images, heatmaps, start, finish, class_index, steps, batch_size, threshold):
    """Move pixels from ``start`` to ``finish`` in order of decreasing heatmap value."""
    images = np.asarray(images, dtype=np.float32)
    maps, _ = _check_maps(heatmaps)
    if maps.shape != images.shape[:3]:
        raise ValueError(f"heatmaps {maps.shape} must match the images' (N, H, W) {images.shape[:3]}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    labels, _ = cam.predict(model, images, threshold=threshold, batch_size=batch_size)
    classes = labels if class_index is None else np.broadcast_to(np.asarray(class_index), labels.shape)
    n, h, w = maps.shape
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    rank = rank.reshape(n, h, w, 1)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    probs = np.empty((n, steps + 1), dtype=np.float32)
    for k, fraction in enumerate(fractions):
        moved = rank < int(round(fraction * h * w))
        current = np.where(moved, finish, start)
        probs[:, k] = cam.predict(model, current, batch_size=batch_size)[1][np.arange(n), classes]
    return fractions.astype(np.float32), probs


def deletion_curve(model, images, heatmaps, *, class_index=None, steps: int = 16, batch_size: int = 32,
                   threshold=None):
    """Class probability as the most important pixels are deleted (set to 0, black) first.

    Args:
        model: A Keras classifier (as for :func:`pneumo_lib.cam.grad_cam`).
        images: ``(N, H, W, C)`` float32 batch prepared for the model.
        heatmaps: ``(N, H, W)`` maps ranking the pixels.
        class_index: None (each image's predicted class, by :mod:`pneumo_lib.decision`'s rule),
            an int or one int per image.
        steps: Number of deletion steps; the curve has ``steps + 1`` points.
        threshold: For ``class_index=None``: None (the model's threshold) or a probability in (0, 1).

    Returns:
        ``fractions`` ``(steps + 1,)`` in ``[0, 1]`` and ``probabilities`` ``(N, steps + 1)``
        of the explained class. A faithful map makes the probability fall fast (low area).
    """
    images = np.asarray(images, dtype=np.float32)
    return _class_probability_curve(model, images, heatmaps, images, np.zeros_like(images), class_index, steps,
                                    batch_size, threshold)


def insertion_curve(model, images, heatmaps, *, class_index=None, steps: int = 16, batch_size: int = 32, blur_sigma=None,
                    threshold=None):
    """Class probability as the most important pixels are inserted into a blurred copy first.

    Same arguments and result as :func:`deletion_curve`; ``blur_sigma`` (pixels, default a
    tenth of the image side) sets the starting image. A faithful map makes the probability
    rise fast (high area).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got {images.shape}.")
    sigma = images.shape[1] / 10.0 if blur_sigma is None else float(blur_sigma)
    return _class_probability_curve(model, images, heatmaps, _blur(images, sigma), images, class_index, steps,
                                    batch_size, threshold)


def curve_area(fractions, probabilities) -> np.ndarray:
    """Area under each curve (trapezoid rule over the fraction of pixels moved).

    Returns:
        ``(N,)`` float in ``[0, 1]`` for probabilities in ``[0, 1]``.
    """
    x = np.asarray(fractions, dtype=np.float64)
    y = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    if y.shape[1] != x.shape[0]:
        raise ValueError(f"probabilities have {y.shape[1]} points per curve, fractions {x.shape[0]}.")
    return ((y[:, 1:] + y[:, :-1]) / 2.0 * np.diff(x)).sum(axis=1)


# --------------------------------------------------------------------------- randomisation


def rank_correlation(first, second) -> np.ndarray:
    """Spearman rank correlation of two stacks of maps, per image.

    Args:
        first, second: ``(N, H, W)`` maps.

    Returns:
        ``(N,)`` float in ``[-1, 1]``; 0 where either map is constant (no ranking to compare).
    """
    from scipy.stats import rankdata

    a, _ = _check_maps(first)
    b, _ = _check_maps(second)
    if a.shape != b.shape:
        raise ValueError(f"Both stacks of maps must have the same shape; got {a.shape} and {b.shape}.")
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a.reshape(len(a), -1), b.reshape(len(b), -1))):
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[i] = np.corrcoef(rankdata(x), rankdata(y))[0, 1]
    return out


def _weighted_layers(model) -> list:
    """Layers that own weights, in call order, nested models flattened."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found.extend(_weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def _reinitialise(layer, seed: int) -> None:
    """Re-draw every weight of ``layer`` from its own initializer (kernel, bias, gamma, ...)."""
    from pneumo_lib._tf import keras

    for offset, variable in enumerate(layer.weights):
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if initializer is None:
            continue
        initializer = keras.initializers.get(initializer)
        config = initializer.get_config()
        if "seed" in config:
            config["seed"] = seed + offset
            initializer = type(initializer).from_config(config)
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))


def randomization_check(
    model,
    images,
    *,
    method: str | Callable = "gradcam",
    class_index=None,
    n_layers: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    threshold=None,
) -> list[dict]:
    """The cascading model-parameter randomisation test (Adebayo et al. 2018).

    A copy of the model is made; its layers with weights are re-initialised one at a time
    from the top (the head) down, and after each the maps of the copy are compared with the
    original model's maps by Spearman rank correlation. The original model is not changed.
    The same class is explained before and after (the original's prediction unless
    ``class_index`` says otherwise).

    Args:
        model: A Keras classifier.
        images: ``(N, H, W, C)`` float32 batch prepared for the model.
        method: ``"gradcam"``, ``"gradcampp"``, ``"scorecam"`` or a CAM function.
        class_index: None (the original model's predicted class, by :mod:`pneumo_lib.decision`'s
            rule at ``threshold``, default the model's), an int or one per image.
        n_layers: How many layers to randomise, from the top (default: all with weights).
        seed: Seed of the re-initialisation.

    Returns:
        One dict per step: ``{"randomized": k, "layer": name, "spearman": mean over images,
        "spearman_per_image": (N,) array}``; the first step (``k = 0``, nothing randomised)
        has correlation 1 by construction.
    """
    from pneumo_lib._tf import keras

    explain = cam.METHODS[method] if isinstance(method, str) else method
    if class_index is None:
        class_index = cam.predict(model, images, threshold=threshold, batch_size=batch_size)[0]
    original = explain(model, images, class_index=class_index, batch_size=batch_size)
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    layers = list(reversed(_weighted_layers(copy)))
    if n_layers is not None:
        layers = layers[: int(n_layers)]
    steps = [{"randomized": 0, "layer": None, "spearman": 1.0, "spearman_per_image": np.ones(len(original))}]
    for k, layer in enumerate(layers, start=1):
        _reinitialise(layer, seed + 1000 * k)
        maps = explain(copy, images, class_index=class_index, batch_size=batch_size)
        rho = rank_correlation(original, maps)
        steps.append({"randomized": k, "layer": layer.name, "spearman": float(rho.mean()), "spearman_per_image": rho})
    return steps
