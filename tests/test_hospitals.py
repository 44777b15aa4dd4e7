"""pneumo_lib.hospitals (the "Another hospital" chapter's measurements), on a known-answer model and dataset.

The model is the bright-blob detector of ``_cam_models`` (fires on pixels brighter than 0.5,
logit ``100 * bright - 2 * dark``, 0.5 threshold). Hospital A's test films are black, a
PNEUMONIA film has one white disc (its lesion mask); hospital B takes the same films with
the background raised to gray 0.6, a brighter exposure. So by construction:

* on A the detector is perfect: ROC AUC, sensitivity, specificity, pointing game all 1, and
  its Grad-CAM map lies inside the disc;
* on B every pixel is "bright", every NORMAL film is called PNEUMONIA (specificity 0,
  sensitivity still 1), while the disc still makes a PNEUMONIA film score higher than a
  NORMAL one (ROC AUC 1): a shift that breaks the threshold without breaking the ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _cam_models import SIZE, detector_model, disc_images
from PIL import Image

from pneumo_lib import calibration, cam, data, hospitals

N_PER_CLASS = 4


def _write(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)


def _site(root, background):
    """A Kaggle-layout folder: every split holds N_PER_CLASS NORMAL and PNEUMONIA films (PNG)."""
    _, discs, _ = disc_images(N_PER_CLASS, seed=1)
    for split in ("train", "val", "test"):
        for i, disc in enumerate(discs):
            normal = np.full((SIZE, SIZE), background)
            _write(root / "chest_xray" / split / "NORMAL" / f"IM-{i + 1:04d}-0001.png", normal)
            name = f"person{i + 1}_bacteria_{i + 1}"
            _write(root / "chest_xray" / split / "PNEUMONIA" / f"{name}.png", np.where(disc, 1.0, background))
            _write(root / "masks" / split / "PNEUMONIA" / f"{name}.png", disc.astype(float))
    return data.make_splits(root / "chest_xray", seed=0, save=False)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    base = tmp_path_factory.mktemp("hospitals")
    model = detector_model()
    sites = {"A": _site(base / "A", 0.0), "B": _site(base / "B", 0.6)}
    return model, sites, {site: hospitals.measure(model, m, SIZE, n_explain=3) for site, m in sites.items()}


def test_measure_returns_every_measure_in_unit_range(measured):
    _, _, rows = measured
    for row in rows.values():
        assert tuple(row) == hospitals.MEASURES
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in row.values())


def test_the_detector_is_perfect_at_hospital_a(measured):
    _, _, rows = measured
    a = rows["A"]
    assert a["ROC AUC"] == a["sensitivity"] == a["specificity"] == a["pointing"] == 1.0
    assert a["energy in lesion"] > 0.9
    disc_area = np.pi * 4**2 / SIZE**2
    assert a["lesion share"] == pytest.approx(disc_area, rel=0.25)


def test_the_brighter_hospital_breaks_the_threshold_not_the_ranking(measured):
    _, _, rows = measured
    b = rows["B"]
    assert b["ROC AUC"] == 1.0 and b["sensitivity"] == 1.0
    assert b["specificity"] == 0.0
    assert b["ECE"] > rows["A"]["ECE"]


def test_ece_is_the_calibration_module_s_on_the_model_s_probabilities(measured):
    model, sites, rows = measured
    for site, manifest in sites.items():
        x = data.load_images(manifest.paths("test"), SIZE)
        p = cam.predict(model, x)[1][:, 1]
        y = manifest.labels("test")
        assert rows[site]["ECE"] == pytest.approx(calibration.expected_calibration_error(y, p))
        if site == "A":
            # Each class's probabilities fall in one bin of their own, so the ECE is the mean gap.
            assert rows[site]["ECE"] == pytest.approx(np.mean(np.abs(y - p)), abs=1e-6)


def test_measure_takes_a_cached_model_s_wrapper(measured):
    model, sites, rows = measured

    class Run:
        pass

    run = Run()
    run.model = model
    assert hospitals.measure(run, sites["A"], SIZE, n_explain=3) == rows["A"]


def test_drop_recovered():
    assert hospitals.drop_recovered(0.95, 0.85, 0.85) == pytest.approx(0.0)
    assert hospitals.drop_recovered(0.95, 0.85, 0.90) == pytest.approx(0.5)
    assert hospitals.drop_recovered(0.95, 0.85, 0.95) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="No drop"):
        hospitals.drop_recovered(0.85, 0.90, 0.95)


def test_derived_datasets_lie_beside_the_phantoms_and_hold_both_hospitals(pneumo_home):
    from dataclasses import replace

    from pneumo_lib import paths
    from pneumo_lib.data import layout, phantom

    counts = {"train": (3, 4), "val": (1, 1), "test": (2, 2)}
    sites = {}
    for site in ("A", "B"):
        root = data.phantom_root("quick", 5, hospital=site)
        spec = replace(phantom.phantom_spec("tiny", 5, size=64, hospital=site), counts=dict(counts))
        sites[site] = phantom.generate_phantom(root, spec, workers=1)
    folders = hospitals.derived_datasets(sites, "quick", 5)
    base = paths.dataset_dir("phantom").parent.parent
    assert folders["clahe"] == {site: Path(sites[site]).parent.with_name(Path(sites[site]).parent.name + "-clahe") / "chest_xray"
                                for site in sites}
    assert folders["pooled"] == base / "phantom-quick-seed5-pooledAB" / "chest_xray"
    n = {site: len(layout.list_images(sites[site])) for site in sites}
    assert len(layout.list_images(folders["clahe"]["B"])) == n["B"]
    pooled = layout.list_images(folders["pooled"])
    tests = {site: sum(1 for r in layout.list_images(sites[site]) if r.split == "test") for site in sites}
    assert len(pooled) == n["A"] + tests["B"]  # train/val once (each patient from A or B), both tests
    assert set(data.pooled_hospitals(folders["pooled"]).values()) == {"A", "B"}
    assert hospitals.derived_datasets(sites, "quick", 5) == folders  # reused, same places
