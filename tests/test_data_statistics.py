"""Image statistics on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib.data import statistics as st


def test_power_spectrum_of_a_sinusoid_peaks_at_its_frequency():
    n = 128
    for cycles in (4, 10, 25):
        x = np.arange(n) / n
        image = 0.5 + 0.4 * np.sin(2 * np.pi * cycles * x)[None, :].repeat(n, 0)
        freqs, power = st.radial_power_spectrum(image)
        assert freqs[np.argmax(power)] == pytest.approx(cycles / n)
        assert freqs[0] == pytest.approx(1 / n) and freqs[-1] == pytest.approx(0.5)


def test_white_noise_has_a_flat_spectrum_and_a_smooth_image_a_falling_one():
    rng = np.random.default_rng(0)
    noise = rng.random((128, 128))
    _, power = st.radial_power_spectrum(noise)
    assert power[5:].max() / power[5:].min() < 3
    yy, xx = np.mgrid[:128, :128] / 128
    _, smooth = st.radial_power_spectrum(np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.05))
    assert smooth[1] > 1e4 * smooth[40]


def test_histogram_of_a_constant_image_is_one_bin():
    edges, density = st.intensity_histogram(np.full((20, 30), 0.3), bins=10)
    assert len(edges) == 11 and np.count_nonzero(density) == 1
    assert density[3] == pytest.approx(10.0)  # all mass in [0.3, 0.4), density = 1 / width


def test_edge_density_of_a_step_is_two_columns():
    image = np.zeros((64, 64), np.float32)
    image[:, 32:] = 1.0
    assert st.edge_density(image, size=None) == pytest.approx(2 / 64)
    assert st.edge_density(np.full((64, 64), 0.5), size=None) == 0.0
    # A step of 0.05 is below the default threshold (0.08 per pixel).
    assert st.edge_density(image * 0.05, size=None) == 0.0


def test_image_statistics_of_known_images(tmp_path):
    from PIL import Image

    images = [np.full((40, 60), 0.25, np.float32), np.full((80, 50), 0.75, np.float32)]
    Image.fromarray(np.full((30, 30), 128, np.uint8)).save(tmp_path / "gray.png")
    s = st.image_statistics([*images, tmp_path / "gray.png"], size=32)
    assert s["n"] == 3 and s["mean"] == pytest.approx((0.25 + 0.75 + 128 / 255) / 3, abs=1e-3)
    assert s["std"] == pytest.approx(0, abs=1e-6) and s["edge_density"] == 0
    assert s["percentiles"][5] == pytest.approx(0.25) and s["percentiles"][95] == pytest.approx(0.75)
    rows = st.statistics_table({"x": s})
    assert rows[0]["name"] == "x" and rows[0]["mean"] == round(s["mean"], 3)
    with pytest.raises(ValueError, match="at least one image"):
        st.image_statistics([])
    with pytest.raises(ValueError, match="2-D"):
        st.image_statistics([np.zeros((2, 3, 4, 5))])


def test_plot_image_statistics_draws_three_panels():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(1)
    fig = st.plot_image_statistics({"a": [rng.random((40, 40))], "b": [rng.random((50, 30)) * 0.5]}, size=32)
    assert len(fig.axes) == 3
    assert "mean" in fig.axes[0].get_legend().get_texts()[0].get_text()
