"""Image statistics to put phantom and real radiographs side by side.

* :func:`intensity_histogram`: how gray values are distributed;
* :func:`radial_power_spectrum`: how much of an image's variation sits at each spatial
  frequency (smooth films have their power at low frequencies, noise and fine edges at high);
* :func:`edge_density`: the share of pixels on an edge (Sobel gradient above a threshold);
* :func:`image_statistics`: all of these over a set of images, at one common size;
* :func:`plot_image_statistics`: a figure comparing sets of images (histograms, spectra,
  edge densities).

Images are float arrays ``(H, W)`` in [0, 1] (as :func:`pneumo_lib.data.read_image` returns)
or paths to image files. None of this imports TensorFlow.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

#: Side, in pixels, every image is resized to before its statistics are computed.
DEFAULT_SIZE = 256


def _as_array(image, size: int | None) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        from pneumo_lib.data.images import read_image

        image = read_image(image)
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (1, 3):
        a = a.mean(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image (H, W), got shape {a.shape}.")
    if size is not None and a.shape != (size, size):
        a = np.asarray(Image.fromarray(a, mode="F").resize((size, size), Image.BILINEAR))
    return a


def intensity_histogram(images, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of gray values over one image or several (each weighs the same).

    Args:
        images: One image (``(H, W)`` in [0, 1], or a path) or a sequence of them.
        bins: Number of equal bins over [0, 1].

    Returns:
        ``(edges, density)``: float64 ``(bins + 1,)`` bin edges and ``(bins,)`` densities
        (they integrate to 1 over [0, 1]).
    """
    items = [images] if _is_single(images) else list(images)
    edges = np.linspace(0, 1, bins + 1)
    total = np.zeros(bins)
    for item in items:
        density, _ = np.histogram(np.clip(_as_array(item, None), 0, 1), bins=edges, density=True)
        total += density
    return edges, total / max(len(items), 1)


def radial_power_spectrum(image, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of one image.

    The image (resized to ``size`` x ``size`` if given) has its mean removed and a Hann
    window applied; the power ``|FFT|^2 / N_pixels`` is averaged over rings of integer radius.

    Returns:
        ``(frequencies, power)``: float64 ``(K,)`` frequencies in cycles per pixel from
        ``1/N`` to 0.5 (``N`` the smaller side), and the mean power at each.
    """
    a = _as_array(image, size).astype(np.float64)
    h, w = a.shape
    a = (a - a.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(a))) ** 2 / a.size
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    n = min(h, w)
    radius = np.rint(np.hypot(fy, fx) * n).astype(int)
    k = np.arange(1, n // 2 + 1)
    sums = np.bincount(radius.ravel(), weights=power.ravel(), minlength=n // 2 + 1)
    counts = np.bincount(radius.ravel(), minlength=n // 2 + 1)
    return k / n, sums[k] / np.maximum(counts[k], 1)


def edge_density(image, threshold: float = 0.08, size: int | None = DEFAULT_SIZE) -> float:
    """Share of pixels whose Sobel gradient magnitude exceeds ``threshold``.

    The magnitude is scaled so that a step from 0 to 1 gives 1.0 on the two pixels beside
    it; the image is first resized to ``size`` x ``size`` (None: as it is), so that images of
    different sizes are compared at one scale.

    Returns:
        A float in [0, 1].
    """
    a = _as_array(image, size)
    gx = ndimage.sobel(a, axis=1, mode="nearest")
    gy = ndimage.sobel(a, axis=0, mode="nearest")
    return float((np.hypot(gx, gy) / 4 > threshold).mean())


def _is_single(images) -> bool:
    if isinstance(images, (str, os.PathLike)):
        return True
    return isinstance(images, np.ndarray) and images.ndim == 2


def image_statistics(images: Iterable, size: int = DEFAULT_SIZE, bins: int = 64,
                     edge_threshold: float = 0.08) -> dict:
    """Statistics of a set of images, each resized to ``size`` x ``size`` first.

    Args:
        images: Images ``(H, W)`` in [0, 1] (any sizes; ``(H, W, C)`` are averaged over
            channels) or paths to image files.

    Returns:
        A dict: ``n``; ``mean`` and ``std`` (averages of the per-image mean and standard
        deviation of gray values); ``means`` (float ``(n,)``); ``percentiles`` ``{5, 50, 95: value}``
        over all pixels; ``histogram`` ``(edges, density)``; ``spectrum`` ``(frequencies, power)``
        (the mean of the images' radial power spectra); ``edge_density`` (the mean of the
        images' edge densities) and ``edge_densities`` ``(n,)``.

    Raises:
        ValueError: No images, or one that is not 2-D.
    """
    arrays = [_as_array(im, size) for im in images]
    if not arrays:
        raise ValueError("image_statistics needs at least one image.")
    means = np.array([a.mean() for a in arrays])
    stds = np.array([a.std() for a in arrays])
    pixels = np.concatenate([a.ravel() for a in arrays])
    spectra = [radial_power_spectrum(a) for a in arrays]
    edges = np.array([edge_density(a, edge_threshold, None) for a in arrays])
    return {
        "n": len(arrays),
        "mean": float(means.mean()),
        "std": float(stds.mean()),
        "means": means,
        "percentiles": {q: float(v) for q, v in zip((5, 50, 95), np.percentile(pixels, [5, 50, 95]))},
        "histogram": intensity_histogram(arrays, bins),
        "spectrum": (spectra[0][0], np.mean([p for _, p in spectra], axis=0)),
        "edge_density": float(edges.mean()),
        "edge_densities": edges,
    }


def statistics_table(groups: dict[str, dict]) -> list[dict]:
    """One row per group of :func:`image_statistics` results: ``name, n, mean, std, p5, p50, p95, edge_density``."""
    return [{"name": name, "n": s["n"], "mean": round(s["mean"], 3), "std": round(s["std"], 3),
             **{f"p{q}": round(v, 3) for q, v in s["percentiles"].items()},
             "edge_density": round(s["edge_density"], 4)} for name, s in groups.items()]


def plot_image_statistics(groups: dict[str, Sequence | dict], size: int = DEFAULT_SIZE):
    """A figure comparing sets of images: intensity histograms, radial power spectra, edge densities.

    Args:
        groups: ``{name: images}`` (as for :func:`image_statistics`) or ``{name: statistics}``
            (its result).

    Returns:
        A matplotlib ``Figure`` with three panels.
    """
    import matplotlib.pyplot as plt

    stats = {name: g if isinstance(g, dict) else image_statistics(g, size) for name, g in groups.items()}
    fig, (ax_h, ax_s, ax_e) = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, s in stats.items():
        edges, density = s["histogram"]
        ax_h.plot((edges[:-1] + edges[1:]) / 2, density, label=f"{name} (mean {s['mean']:.2f})")
        freqs, power = s["spectrum"]
        ax_s.loglog(freqs, power, label=name)
    ax_h.set(xlabel="gray value", ylabel="density", title="Intensity histogram")
    ax_s.set(xlabel="cycles per pixel", ylabel="power", title=f"Radial power spectrum ({size} px)")
    names = list(stats)
    ax_e.bar(names, [stats[n]["edge_density"] for n in names], color=[f"C{i}" for i in range(len(names))])
    ax_e.set(ylabel="share of edge pixels", title="Edge density (Sobel)")
    ax_h.legend(fontsize=8)
    ax_s.legend(fontsize=8)
    fig.tight_layout()
    return fig
