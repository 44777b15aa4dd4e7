"""The radiograph model's anatomy, checked on rendered label maps (hospital A, many patients)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib.data.radiograph import render_study

PATIENTS = range(1, 9)


@pytest.fixture(scope="module")
def studies():
    return [render_study(7, "train", 0, p, 0, "normal", 96, with_labels=True) for p in PATIENTS]


def _columns(mask):
    return np.nonzero(mask.any(axis=0))[0]


def test_heart_is_left_of_the_midline_on_the_image_right(studies):
    for st in studies:
        heart, spine = st.labels["heart"], st.labels["spine"]
        heart_x = np.nonzero(heart)[1].mean()
        spine_x = np.nonzero(spine)[1].mean()
        assert heart_x > spine_x, st.info
        # Most of the heart lies on the image's right of the spine: the patient's left.
        assert (np.nonzero(heart)[1] > spine_x).mean() > 0.6


def test_right_hemidiaphragm_is_higher(studies):
    for st in studies:
        top_right = np.nonzero(st.labels["below_diaphragm_right"].any(axis=1))[0].min()
        top_left = np.nonzero(st.labels["below_diaphragm_left"].any(axis=1))[0].min()
        assert top_right < top_left, st.info
        assert st.info["domes"]["right"] < st.info["domes"]["left"]


def test_right_lung_is_on_the_image_left_and_both_lie_inside_the_body(studies):
    for st in studies:
        right, left, body = st.labels["lung_right"], st.labels["lung_left"], st.labels["body"]
        assert right.any() and left.any()
        assert _columns(right).mean() < _columns(left).mean()
        assert not (right & left).any()
        assert not ((right | left) & ~body).any()


def test_lungs_are_darker_than_the_mediastinum_and_the_abdomen(studies):
    for st in studies:
        a = np.asarray(st.image, np.float32)
        # Medians: a collimator edge may darken a strip of any region.
        lungs = np.median(a[st.labels["lung_right"] | st.labels["lung_left"]])
        assert lungs < np.median(a[st.labels["heart"]]) - 15, st.info
        assert lungs < np.median(a[st.labels["below_diaphragm_right"]]) - 15, st.info


@pytest.mark.parametrize("kind", ["bacteria", "virus"])
def test_every_lesion_lies_inside_a_lung(kind):
    for p in PATIENTS:
        st = render_study(7, "train", 1, p, 0, kind, 96, with_labels=True)
        lungs = st.labels["lung_right"] | st.labels["lung_left"]
        assert st.mask.any() and not (st.mask & ~lungs).any()


def test_same_seed_same_pixels_other_seed_other_pixels():
    a = render_study(3, "val", 1, 4, 1, "bacteria", 80)
    b = render_study(3, "val", 1, 4, 1, "bacteria", 80)
    c = render_study(4, "val", 1, 4, 1, "bacteria", 80)
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.mask, b.mask)
    assert a.image.tobytes() != c.image.tobytes()


def test_studies_of_one_patient_share_the_anatomy_but_not_the_acquisition():
    first = render_study(3, "train", 0, 9, 0, "normal", 80)
    second = render_study(3, "train", 0, 9, 1, "normal", 80)
    assert first.info["age"] == second.info["age"] and first.image.size == second.image.size
    assert first.image.tobytes() != second.image.tobytes()


def test_sizes_and_aspect_ratios_vary_per_patient():
    sizes = {render_study(3, "train", 0, p, 0, "normal", 64).image.size for p in range(12)}
    heights = [h for _, h in sizes]
    assert len(sizes) >= 8 and min(heights) >= 64 * 0.88 and max(heights) <= 64 * 1.13
    assert all(1.0 <= w / h <= 1.47 for w, h in sizes)


@pytest.mark.parametrize("kwargs, match", [({"kind": "fungal"}, "Valid kinds: normal, bacteria, virus"),
                                           ({"split": "dev"}, "Valid splits: train, val, test"),
                                           ({"size": 10}, "between 32 and 4096"),
                                           ({"size": 10**6}, "between 32 and 4096"),
                                           ({"label": 2}, "label must be 0")])
def test_bad_arguments_are_named(kwargs, match):
    args = {"seed": 1, "split": "train", "label": 1, "patient": 1, "index": 0, "kind": "virus", "size": 64}
    with pytest.raises(ValueError, match=match):
        render_study(**{**args, **kwargs})
