"""The heatmap convention: inferno, opacity rising with the value, values drawn as given."""

from __future__ import annotations

import inspect

import matplotlib
import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from pneumo_lib import cam

GRAY = np.full((8, 8, 1), 0.5, dtype=np.float32)


def test_defaults_are_a_perceptually_uniform_map_and_the_old_signature():
    assert cam.DEFAULT_CMAP == "inferno"
    parameters = inspect.signature(cam.overlay).parameters
    assert list(parameters)[:4] == ["image", "heatmap", "alpha", "cmap"]
    assert parameters["alpha"].default == 0.4 and parameters["cmap"].default == "inferno"


def test_an_empty_map_leaves_the_image_untouched():
    np.testing.assert_array_equal(cam.overlay(GRAY, np.zeros((4, 4)), alpha=1.0), np.full((8, 8, 3), 128))


def test_opacity_is_alpha_times_the_value():
    heat = np.full((8, 8), 0.5, np.float32)
    colour = np.array(matplotlib.colormaps["inferno"](0.5)[:3])
    # opacity 0.8 * 0.5 = 0.4: 60% of the gray, 40% of inferno(0.5)
    expected = np.round((0.6 * 0.5 + 0.4 * colour) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cam.overlay(GRAY, heat, alpha=0.8)[0, 0], expected)


def test_values_are_drawn_as_given_not_rescaled_to_the_maximum():
    heat = np.zeros((8, 8), np.float32)
    heat[2:5, 2:5] = 1.0
    faint = cam.overlay(GRAY, 0.25 * heat)
    assert not np.array_equal(faint, cam.overlay(GRAY, heat)), "a weaker map must look weaker"
    np.testing.assert_array_equal(cam.overlay(GRAY, 0.25 * heat, vmax=0.25), cam.overlay(GRAY, heat))
    np.testing.assert_array_equal(cam.overlay(GRAY, 3.0 * heat), cam.overlay(GRAY, heat))  # clipped at vmax
    with pytest.raises(ValueError, match="vmax must be positive"):
        cam.overlay(GRAY, heat, vmax=0)


def test_show_draws_the_overlay_with_a_colour_bar_of_the_scale():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    bar = cam.show(left, GRAY, heat, title="normalised")
    np.testing.assert_array_equal(left.images[0].get_array(), cam.overlay(GRAY, heat, alpha=0.6))
    assert left.get_title() == "normalised" and bar.mappable.norm.vmax == 1.0
    assert bar.ax.get_ylabel() == "heatmap (normalised)"
    raw = cam.show(right, GRAY, 7.5 * heat, vmax=7.5)
    assert raw.mappable.norm.vmax == 7.5 and raw.ax.get_ylabel() == "heatmap (raw)"
    assert cam.show(right, GRAY, heat, colorbar=False) is None
    plt.close(fig)


@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_normalize_false_returns_the_raw_map_the_normalised_one_divides(method):
    model = detector_model("flat")
    images = disc_images(3, seed=2)[0]
    raw = cam.METHODS[method](model, images, class_index=1, normalize=False)
    maps = cam.METHODS[method](model, images, class_index=1)
    peaks = raw.max(axis=(1, 2))
    assert raw.dtype == np.float32 and raw.min() >= 0 and np.all(peaks > 0)
    assert not np.allclose(peaks, 1.0)  # raw units (score x activation), not scaled to 1
    np.testing.assert_allclose(maps, raw / raw.max(axis=(1, 2), keepdims=True), atol=1e-6)
