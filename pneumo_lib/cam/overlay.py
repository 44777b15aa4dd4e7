"""Drawing heatmaps: one convention for every figure of the project.

* A perceptually uniform colour map, :data:`DEFAULT_CMAP` (``"inferno"``): equal steps in
  value look like equal steps in colour, and it stays readable in gray print (``"jet"``
  invents edges where there are none).
* Opacity rises with the value: a pixel of value ``v`` is drawn with opacity ``alpha * v``,
  so a map that is zero everywhere leaves the image untouched (an empty map looks empty).
* Values are drawn as given on the scale ``[0, vmax]`` (``vmax = 1`` by default), never
  rescaled to the map's own maximum here. The CAM functions already divide each map by its
  own maximum (``normalize=True``); to compare maps on one scale, compute them with
  ``normalize=False`` and draw them all with the same ``vmax`` (say the largest raw maximum),
  stating it in the figure. :func:`show` draws the colour bar that says which scale it is.
"""

from __future__ import annotations

import numpy as np

#: The colour map of every heatmap the library draws.
DEFAULT_CMAP = "inferno"


def _rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    elif not (image.ndim == 3 and image.shape[-1] in (1, 3)):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got shape {image.shape}.")
    rgb = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    if not np.all(np.isfinite(rgb)):
        raise ValueError("image and heatmap must not contain NaN or infinite values.")
    return np.clip(np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb, 0.0, 1.0)


def overlay(image, heatmap, alpha=0.4, cmap=DEFAULT_CMAP, *, vmax=1.0) -> np.ndarray:
    """Blend a heatmap over an image, each pixel's opacity ``alpha * value / vmax``.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` float in ``[0, 1]`` (or uint8 0..255).
        heatmap: ``(h, w)`` float, drawn on the scale ``[0, vmax]`` (values outside are
            clipped, not rescaled); resized bilinearly to ``(H, W)`` if it differs.
        alpha: Opacity of the heatmap where its value is ``vmax``, in ``[0, 1]``.
        cmap: A Matplotlib colour map name (default :data:`DEFAULT_CMAP`).
        vmax: The value drawn at full colour and opacity, ``> 0`` (1 for the CAM functions'
            normalised maps; a common raw maximum to compare ``normalize=False`` maps).

    Returns:
        ``(H, W, 3)`` uint8 RGB image; where the heatmap is 0 it is the image itself.

    Raises:
        ValueError: Bad shapes, NaN/inf, ``alpha`` outside ``[0, 1]`` or ``vmax <= 0``.
    """
    import matplotlib

    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    if not float(vmax) > 0.0:
        raise ValueError(f"vmax must be positive, got {vmax!r}.")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w); got shape {heat.shape}.")
    if not np.all(np.isfinite(heat)):
        raise ValueError("image and heatmap must not contain NaN or infinite values.")
    rgb = _rgb(image)
    if heat.shape != rgb.shape[:2]:
        from pneumo_lib._tf import tf

        heat = tf.image.resize(heat[None, ..., None], rgb.shape[:2], method="bilinear").numpy()[0, ..., 0]
    value = np.clip(heat / float(vmax), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](value)[..., :3]
    opacity = float(alpha) * value[..., None]
    blended = (1.0 - opacity) * rgb + opacity * colours
    return np.round(blended * 255.0).astype(np.uint8)


def show(ax, image, heatmap, *, title=None, alpha=0.6, cmap=DEFAULT_CMAP, vmax=1.0, colorbar=True, label=None):
    """Draw one overlay panel with its colour bar on a Matplotlib axis (the chapters' figures).

    Args:
        ax: A Matplotlib ``Axes``.
        image, heatmap, cmap, vmax: As for :func:`overlay`.
        title: Panel title, or None.
        alpha: Opacity where the heatmap is ``vmax`` (higher than :func:`overlay`'s default,
            since opacity now falls with the value).
        colorbar: Add a colour bar from 0 to ``vmax`` beside the panel.
        label: Colour-bar label (default: ``"heatmap (normalised)"`` for ``vmax = 1``, else
            ``"heatmap (raw)"``).

    Returns:
        The colour bar, or None.
    """
    import matplotlib
    import matplotlib.cm

    ax.imshow(overlay(image, heatmap, alpha=alpha, cmap=cmap, vmax=vmax))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if not colorbar:
        return None
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, float(vmax)), cmap=cmap)
    if label is None:
        label = "heatmap (normalised)" if float(vmax) == 1.0 else "heatmap (raw)"
    return ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label=label)
