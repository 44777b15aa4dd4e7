"""Pneumonia in the radiograph model: masks with known shapes, and lesion-free twins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pneumo_lib.data.radiograph import SEVERITY, render_study
from pneumo_lib.data.radiograph.pathology import sample_severity

PATIENTS = range(1, 11)


def test_bacterial_masks_are_one_connected_region_in_one_lung():
    sides = set()
    for p in PATIENTS:
        st = render_study(5, "train", 1, p, 0, "bacteria", 96, with_labels=True)
        _, n = ndimage.label(st.mask)
        assert n == 1, (p, st.info)
        in_right = (st.mask & st.labels["lung_right"]).any()
        in_left = (st.mask & st.labels["lung_left"]).any()
        assert in_right != in_left, (p, st.info)
        sides.add("right" if in_right else "left")
        assert st.info["side"] == ("right" if in_right else "left")
    assert sides == {"right", "left"}


def test_viral_masks_touch_both_lungs():
    for p in PATIENTS:
        st = render_study(5, "train", 1, p, 0, "virus", 96, with_labels=True)
        assert (st.mask & st.labels["lung_right"]).any() and (st.mask & st.labels["lung_left"]).any(), p


@pytest.mark.parametrize("kind", ["bacteria", "virus"])
def test_a_study_and_its_lesion_free_twin_differ_only_inside_the_mask(kind):
    for p in (2, 3, 4):
        sick = render_study(11, "test", 1, p, 0, kind, 128)
        twin = render_study(11, "test", 1, p, 0, "normal", 128)
        a, b = np.asarray(sick.image, np.int16), np.asarray(twin.image, np.int16)
        assert not twin.mask.any() and sick.mask.any()
        assert np.array_equal(a[~sick.mask], b[~sick.mask])
        # Inside the mask the lesion is an opacity: brighter on average.
        assert (a - b)[sick.mask].mean() > 0.5


def test_lesion_scale_changes_only_the_lesions_strength():
    full = render_study(11, "train", 1, 6, 0, "bacteria", 128)
    faint = render_study(11, "train", 1, 6, 0, "bacteria", 128, lesion_scale=0.5)
    none = render_study(11, "train", 1, 6, 0, "bacteria", 128, lesion_scale=0.0)
    twin = render_study(11, "train", 1, 6, 0, "normal", 128)
    assert np.array_equal(full.mask, faint.mask)
    assert none.image.tobytes() == twin.image.tobytes()
    f, h, t = (np.asarray(s.image, np.float32)[full.mask] for s in (full, faint, twin))
    assert 0 < (h - t).mean() < (f - t).mean()


def test_severity_ranges_from_subtle_to_obvious():
    rng = np.random.default_rng(0)
    severities = np.array([sample_severity(rng) for _ in range(2000)])
    assert SEVERITY["lo"] <= severities.min() and severities.max() <= SEVERITY["hi"]
    assert np.quantile(severities, 0.05) < 0.45 and np.quantile(severities, 0.95) > 0.9
    # A study records the severity it was drawn with; a subtle lesion is fainter than an obvious one.
    drawn = [render_study(5, "train", 1, p, 0, "bacteria", 64).info["severity"] for p in range(6)]
    assert all(SEVERITY["lo"] <= s <= SEVERITY["hi"] for s in drawn)


def test_a_subtle_lesion_is_fainter_and_smaller_than_an_obvious_one():
    subtle = {"a": 1.0, "b": 1.0, "lo": 0.1, "hi": 0.1}
    obvious = {"a": 1.0, "b": 1.0, "lo": 1.0, "hi": 1.0}
    for kind in ("bacteria", "virus"):
        twin = np.asarray(render_study(5, "train", 1, 3, 0, "normal", 128).image, np.float32)
        gains = []
        for severity in (subtle, obvious):
            st = render_study(5, "train", 1, 3, 0, kind, 128, severity=severity)
            gains.append(((np.asarray(st.image, np.float32) - twin)[st.mask].sum(), st.mask.sum()))
        assert gains[0][0] < 0.5 * gains[1][0] and gains[0][1] < gains[1][1], kind
