"""Faithfulness measures with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from pneumo_lib import cam, faithfulness as F


def _point_map(points, size=16):
    maps = np.zeros((len(points), size, size), np.float32)
    for i, (y, x) in enumerate(points):
        maps[i, y, x] = 1.0
    return maps


def _square_masks(n, size=16, lo=4, hi=8):
    masks = np.zeros((n, size, size), bool)
    masks[:, lo:hi, lo:hi] = True
    return masks


def test_pointing_game_counts_peaks_inside_the_lesion():
    masks = _square_masks(4)
    maps = _point_map([(5, 5), (0, 0), (7, 7), (12, 3)])
    assert F.pointing_hits(maps, masks).tolist() == [True, False, True, False]
    assert F.pointing_game(maps, masks) == 0.5


def test_pointing_game_tolerance_grows_the_mask():
    masks = _square_masks(1)
    maps = _point_map([(9, 5)])  # two pixels below the square
    assert F.pointing_game(maps, masks) == 0.0
    assert F.pointing_game(maps, masks, tolerance=1) == 0.0
    assert F.pointing_game(maps, masks, tolerance=2) == 1.0


def test_images_without_lesion_are_left_out_and_zero_maps_miss():
    masks = _square_masks(3)
    masks[2] = False
    maps = _point_map([(5, 5), (5, 5), (0, 0)])
    maps[1] = 0.0
    assert F.pointing_game(maps, masks) == 0.5
    with pytest.raises(ValueError, match="None of the masks"):
        F.pointing_game(maps[2:], masks[2:])


def test_energy_inside_is_the_share_of_the_map_in_the_mask():
    masks = _square_masks(2)  # 16 of 256 pixels
    maps = np.ones((2, 16, 16), np.float32)
    maps[1] = 0.0
    np.testing.assert_allclose(F.energy_inside(maps, masks), [16 / 256, 0.0])
    scores = F.localization_scores(maps, masks)
    assert scores["n"] == 2 and scores["energy_inside"] == pytest.approx(8 / 256)


def test_masks_must_match_the_maps():
    with pytest.raises(ValueError, match="masks must have the heatmaps' shape"):
        F.pointing_game(np.zeros((2, 8, 8)), np.zeros((2, 9, 9)))
    with pytest.raises(ValueError, match="NaN"):
        F.energy_inside(np.full((1, 8, 8), np.nan), np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match=r"non-empty \(N, H, W\)"):
        F.pointing_game(np.zeros((8, 8)), np.zeros((8, 8)))


def test_baseline_maps():
    centre = F.center_map((2, 9, 9))
    assert centre.shape == (2, 9, 9) and centre.max() == 1.0 and centre[0, 4, 4] == 1.0
    assert centre[0, 0, 0] < centre[0, 2, 2] < centre[0, 4, 4]
    noise = F.random_map((3, 8, 8), seed=1)
    assert noise.dtype == np.float32 and 0.0 <= noise.min() and noise.max() < 1.0
    np.testing.assert_array_equal(noise, F.random_map((3, 8, 8), seed=1))
    assert not np.array_equal(noise, F.random_map((3, 8, 8), seed=2))


def test_grid_oracle_bounds_the_pointing_game_by_resolution():
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:8] = True  # exactly one cell of a 4 x 4 grid: its centre is inside
    masks[1, 7, 7] = True  # the corner pixel of an inner cell: the peak, mid-cell, misses it
    np.testing.assert_array_equal(F.grid_oracle(masks, 16), masks.astype(np.float32))
    assert F.pointing_hits(F.grid_oracle(masks, 4), masks).tolist() == [True, False]
    with pytest.raises(ValueError, match="grid must divide"):
        F.grid_oracle(masks, 5)


def test_curve_area_trapezoid():
    x = np.linspace(0, 1, 5)
    np.testing.assert_allclose(F.curve_area(x, [1 - x, np.ones(5)]), [0.5, 1.0])
    with pytest.raises(ValueError, match="points per curve"):
        F.curve_area(x, np.ones((1, 4)))


def test_rank_correlation():
    a = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(F.rank_correlation(a, a ** 2), [1.0])
    np.testing.assert_allclose(F.rank_correlation(a, -a), [-1.0])
    np.testing.assert_allclose(F.rank_correlation(a, np.zeros_like(a)), [0.0])


@pytest.fixture(scope="module")
def detector_and_discs():
    images, masks, _ = disc_images(4, seed=5)
    return detector_model("flat"), images, masks


def test_grad_cam_wins_the_pointing_game_on_the_detector(detector_and_discs):
    model, images, masks = detector_and_discs
    maps = cam.grad_cam(model, images)
    assert F.pointing_game(maps, masks) == 1.0
    assert F.energy_inside(maps, masks).min() > 0.5
    assert F.pointing_game(F.center_map(maps.shape), masks) < 1.0


def test_deleting_the_disc_first_kills_the_pneumonia_score(detector_and_discs):
    """Deletion by the right map must fall faster than by the inverted map, and
    insertion by the right map must rise faster."""
    model, images, _ = detector_and_discs
    maps = cam.grad_cam(model, images, class_index=1)
    inverted = 1.0 - maps
    x, right = F.deletion_curve(model, images, maps, class_index=1, steps=8)
    _, wrong = F.deletion_curve(model, images, inverted, class_index=1, steps=8)
    assert x.shape == (9,) and right.shape == (4, 9)
    np.testing.assert_allclose(right[:, 0], cam.predict(model, images)[1][:, 1], rtol=1e-5)
    assert np.all(F.curve_area(x, right) < F.curve_area(x, wrong))
    _, right_in = F.insertion_curve(model, images, maps, class_index=1, steps=8)
    _, wrong_in = F.insertion_curve(model, images, inverted, class_index=1, steps=8)
    assert np.all(F.curve_area(x, right_in) > F.curve_area(x, wrong_in))
    np.testing.assert_allclose(right_in[:, -1], right[:, 0], rtol=1e-5)


def test_randomising_a_head_whose_initializer_is_zeros_destroys_the_map(detector_and_discs):
    """Known answer: re-drawn from a zeros initializer the head gives zero gradients, so
    every map of the randomised copy is zero and its rank correlation 0."""
    from pneumo_lib._tf import keras

    model = detector_model("flat")
    images = detector_and_discs[1]
    model.get_layer("head").kernel_initializer = keras.initializers.Zeros()
    before = [w.copy() for w in model.get_weights()]
    steps = F.randomization_check(model, images, n_layers=1)
    assert [s["randomized"] for s in steps] == [0, 1] and steps[1]["layer"] == "head"
    assert steps[0]["spearman"] == 1.0
    np.testing.assert_array_equal(steps[1]["spearman_per_image"], np.zeros(len(images)))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_randomisation_is_seeded_and_cascades_from_the_top(detector_and_discs):
    model, images, _ = detector_and_discs
    steps = F.randomization_check(model, images, seed=3)
    assert [s["layer"] for s in steps] == [None, "head", "detector"]
    again = F.randomization_check(model, images, seed=3)
    assert [s["spearman"] for s in again] == [s["spearman"] for s in steps]
