"""Acquisition and the hospital variants: they differ in the documented parameters only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pneumo_lib.data.radiograph import HOSPITAL_DIFFERENCES, HOSPITALS, get_hospital, render_study
from pneumo_lib.data.radiograph.acquisition import sample_age


def test_hospitals_differ_in_the_documented_fields_and_nothing_else():
    a, b = HOSPITALS["A"], HOSPITALS["B"]
    differ = {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}
    assert differ == set(HOSPITAL_DIFFERENCES) | {"name"}


def test_a_site_change_that_leaves_the_anatomy_changes_only_the_film():
    a = HOSPITALS["A"]
    b = HOSPITALS["B"]
    film_only = dataclasses.replace(a, exposure=b.exposure, noise=b.noise, markers=b.markers)
    for p in (1, 2, 3):
        at_a = render_study(9, "train", 1, p, 0, "bacteria", 96, hospital=a, with_labels=True)
        at_b = render_study(9, "train", 1, p, 0, "bacteria", 96, hospital=film_only, with_labels=True)
        assert np.array_equal(at_a.mask, at_b.mask)
        assert all(np.array_equal(at_a.labels[k], at_b.labels[k]) for k in at_a.labels)
        assert at_a.info["age"] == at_b.info["age"]
        assert at_a.image.tobytes() != at_b.image.tobytes()


def test_hospital_b_is_noisier_harder_exposed_and_older():
    a = [render_study(9, "train", 0, p, 0, "normal", 96, hospital="A") for p in range(8)]
    b = [render_study(9, "train", 0, p, 0, "normal", 96, hospital="B") for p in range(8)]
    assert np.mean([s.info["age"] for s in b]) > np.mean([s.info["age"] for s in a])
    # Quantum noise: the high-frequency residual of the lungs.
    def roughness(s):
        x = np.asarray(s.image, np.float32)
        return np.abs(np.diff(x, axis=1)).mean()
    assert np.mean([roughness(s) for s in b]) > np.mean([roughness(s) for s in a])


def test_age_mix_quantiles():
    a = HOSPITALS["A"]
    lo, mode, hi = a.age_mix
    assert sample_age(0.0, a) == pytest.approx(lo) and sample_age(1 - 1e-12, a) == pytest.approx(hi, abs=1e-4)
    assert sample_age((mode - lo) / (hi - lo), a) == pytest.approx(mode)


def test_unknown_hospital_names_the_valid_ones():
    with pytest.raises(ValueError, match="Valid hospitals: A, B"):
        get_hospital("C")
    with pytest.raises(ValueError, match="Valid hospitals: A, B"):
        render_study(1, "train", 0, 1, 0, "normal", 64, hospital="Z")
