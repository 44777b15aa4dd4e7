"""Derived datasets (issue 16 mitigations): CLAHE / histogram-equalised copies and pooled hospitals."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from _data_helpers import tree_digest
from PIL import Image
from skimage import exposure

from pneumo_lib import data
from pneumo_lib.data import derived, layout, phantom, subtypes

COUNTS = {"train": (5, 8), "val": (2, 2), "test": (3, 5)}


def _tiny(root, hospital):
    spec = replace(phantom.phantom_spec("tiny", 3, size=64, hospital=hospital), counts=dict(COUNTS))
    return phantom.generate_phantom(root, spec, workers=1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("derived")
    a, b = _tiny(base / "A", "A"), _tiny(base / "B", "B")
    digests = {"A": tree_digest(a.parent), "B": tree_digest(b.parent)}
    return {"A": a, "B": b, "base": base, "digests": digests}


@pytest.fixture(scope="module")
def clahe(sources):
    return derived.equalized_copy(sources["A"], sources["base"] / "A-clahe")


@pytest.fixture(scope="module")
def pooled(sources):
    return derived.pooled_copy({"A": sources["A"], "B": sources["B"]}, sources["base"] / "pooled")


def _names(chest):
    return sorted(r.path for r in layout.list_images(chest))


def test_clahe_copy_is_skimage_on_the_source_pixels_same_names_and_masks(sources, clahe):
    src = sources["A"]
    assert clahe == sources["base"] / "A-clahe" / "chest_xray"
    assert _names(clahe) == _names(src)
    for rel in _names(src):
        with Image.open(clahe / rel) as im:
            assert im.format == "JPEG" and im.mode == "L"
            out = np.asarray(im, np.float64)
        pixels = np.asarray(Image.open(src / rel).convert("L"))
        expected = exposure.equalize_adapthist(pixels, clip_limit=0.01) * 255
        assert out.shape == expected.shape
        # JPEG at quality 95: a few gray levels per pixel at most, well under 1 on average.
        assert np.abs(out - expected).mean() < 1.5, rel
        assert np.percentile(np.abs(out - expected), 99) < 8, rel
        src_mask, dst_mask = layout.mask_path(src / rel), layout.mask_path(clahe / rel)
        assert src_mask.is_file() == dst_mask.is_file()
        if src_mask.is_file():
            assert dst_mask.read_bytes() == src_mask.read_bytes()
    record = json.loads((clahe.parent / derived.PROVENANCE).read_text())
    assert record["method"] == "clahe" and record["clip_limit"] == 0.01
    assert record["sources"]["source"]["path"] == str(src)
    assert record["sources"]["source"]["phantom"]["hospital"] == "A"
    assert derived.read_provenance(clahe) == record


def _histogram_spread(chest):
    """Std of the 256-bin intensity histogram, and the largest gap of its cdf from a straight line."""
    stds, gaps = [], []
    for rel in _names(chest):
        pixels = np.asarray(Image.open(chest / rel).convert("L"))
        hist = np.bincount(pixels.ravel(), minlength=256) / pixels.size
        cdf = np.cumsum(hist)
        stds.append(hist.std())
        gaps.append(np.abs(cdf - np.linspace(1 / 256, 1, 256)).max())
    return float(np.mean(stds)), float(np.mean(gaps))


def test_equalized_histograms_are_flatter_than_the_source(sources, clahe):
    src_std, src_gap = _histogram_spread(sources["A"])
    std, gap = _histogram_spread(clahe)
    assert std < src_std and gap < src_gap
    flat = derived.equalized_copy(sources["A"], sources["base"] / "A-hist", method="hist")
    hist_std, hist_gap = _histogram_spread(flat)
    assert hist_gap < gap < src_gap  # global equalisation makes the cdf closest to linear
    print(f'histogram std {src_std:.4f} -> CLAHE {std:.4f}, hist {hist_std:.4f}; '
          f'cdf gap {src_gap:.3f} -> CLAHE {gap:.3f}, hist {hist_gap:.3f}')


def test_reuse_does_not_rewrite_and_other_settings_do(sources, clahe):
    files = sorted(clahe.rglob("*.jpeg"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert derived.equalized_copy(sources["A"], clahe.parent) == clahe
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    target = sources["base"] / "A-clahe-02"
    first = derived.equalized_copy(sources["A"], target, clip_limit=0.02)
    before = tree_digest(target)
    derived.equalized_copy(sources["A"], target, clip_limit=0.03)  # ours, other settings: replaced
    assert tree_digest(target) != before
    assert json.loads((first.parent / derived.PROVENANCE).read_text())["clip_limit"] == 0.03


def test_foreign_target_is_refused_and_untouched(sources, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    before = tree_digest(target)
    with pytest.raises(FileExistsError, match=r"mine.*not a dataset derived by pneumo_lib.*Nothing was changed"):
        derived.equalized_copy(sources["A"], target)
    with pytest.raises(FileExistsError, match="mine"):
        derived.pooled_copy({"A": sources["A"], "B": sources["B"]}, target)
    assert tree_digest(target) == before and sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(FileExistsError, match="a-file"):
        derived.equalized_copy(sources["A"], afile)
    assert afile.read_text() == "x"


def test_bad_method_bad_source_and_overlap(sources, tmp_path):
    with pytest.raises(ValueError, match=r"'sharpen'.*clahe, hist"):
        derived.equalized_copy(sources["A"], tmp_path / "x", method="sharpen")
    with pytest.raises(ValueError, match="clip_limit"):
        derived.equalized_copy(sources["A"], tmp_path / "x", clip_limit=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"Source dataset .*empty"):
        derived.equalized_copy(empty, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match=r"hospital B .*empty"):
        derived.pooled_copy({"A": sources["A"], "B": empty}, tmp_path / "x")
    with pytest.raises(ValueError, match="overlaps the source"):
        derived.equalized_copy(sources["A"], sources["A"].parent / "inside")
    with pytest.raises(ValueError, match="same dataset"):
        derived.pooled_copy({"A": sources["A"], "B": sources["A"].parent}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_pooled_counts_patients_masks_and_subtypes(sources, pooled):
    a, b = sources["A"], sources["B"]
    by_hospital = derived.pooled_hospitals(pooled)
    records = layout.list_images(pooled)
    assert len(records) == len(by_hospital)
    for split in layout.SPLITS:
        for label in (0, 1):
            want = sum(1 for src in (a, b) for r in layout.list_images(src) if (r.split, r.label) == (split, label))
            assert sum(1 for r in records if (r.split, r.label) == (split, label)) == want
    # The same seed gives both hospitals the same names: pooling must have renumbered them.
    assert _names(a) == _names(b)
    patients = {h: {(r.label, r.patient) for r in records if by_hospital[r.path] == h} for h in ("A", "B")}
    assert patients["A"] and patients["B"] and not patients["A"] & patients["B"]
    # Patients stay as they were within a hospital: as many, each with as many images.
    for h, src in (("A", a), ("B", b)):
        sizes = sorted(np.unique([r.patient for r in layout.list_images(src)], return_counts=True)[1])
        mine = [r.patient for r in records if by_hospital[r.path] == h]
        assert sorted(np.unique(mine, return_counts=True)[1]) == sizes
    # Images are the sources' bytes, masks follow them.
    rows = list(csv.DictReader(open(pooled.parent / "hospitals.csv")))
    for row in rows:
        src = (a if row["hospital"] == "A" else b) / row["source_path"]
        assert (pooled / row["path"]).read_bytes() == src.read_bytes()
        assert layout.mask_path(pooled / row["path"]).is_file() == layout.mask_path(src).is_file()
        if layout.mask_path(src).is_file():
            assert layout.mask_path(pooled / row["path"]).read_bytes() == layout.mask_path(src).read_bytes()
    # Subtypes parse from the new names, bacterial/viral counts summed.
    def kinds(chest):
        return np.bincount([subtypes.record_label(r) for r in layout.list_images(chest)], minlength=3)
    assert (kinds(pooled) == kinds(a) + kinds(b)).all()
    record = json.loads((pooled.parent / derived.PROVENANCE).read_text())
    assert record["offsets"]["A"] == 0 and record["offsets"]["B"] == record["step"] > 0
    assert set(record["sources"]) == {"A", "B"} and record["sources"]["B"]["phantom"]["hospital"] == "B"


def test_pooled_splits_by_patient_and_reuse(sources, pooled, pneumo_home):
    manifest = data.make_splits(pooled, seed=42, save=False)
    assert not data.shared_patients(manifest, "train", "val")
    assert not data.shared_patients(manifest, "train", "test")
    assert sum(sum(c.values()) for c in manifest.counts().values()) == len(layout.list_images(pooled))
    mtimes = [f.stat().st_mtime_ns for f in sorted(pooled.rglob("*.jpeg"))]
    assert data.pooled_copy({"A": sources["A"], "B": sources["B"]}, pooled.parent) == pooled
    assert [f.stat().st_mtime_ns for f in sorted(pooled.rglob("*.jpeg"))] == mtimes


def test_same_patients_pool_takes_each_train_val_patient_from_one_hospital(sources, pneumo_home):
    a, b = sources["A"], sources["B"]
    pooled = derived.pooled_copy({"A": a, "B": b}, sources["base"] / "pooled-halves", same_patients=True, seed=7)
    by_hospital = derived.pooled_hospitals(pooled)
    rows = {row["path"]: row["source_path"] for row in csv.DictReader(open(pooled.parent / "hospitals.csv"))}
    source = {"A": {r.path: r for r in layout.list_images(a)}, "B": {r.path: r for r in layout.list_images(b)}}
    records = layout.list_images(pooled)
    trainval = [r for r in records if r.split != "test"]
    # Every train/val film of one source, each taken once, from one hospital: as many as in A.
    origins = sorted(rows[r.path] for r in trainval)
    assert origins == sorted(r.path for r in source["A"].values() if r.split != "test")
    # A patient's films all come from the hospital the patient was dealt to, and the deal is
    # patients_by_hospital's: per class, alternate patients of the shuffled list.
    deal = derived.patients_by_hospital({h: list(rs.values()) for h, rs in source.items()}, seed=7)
    for r in trainval:
        origin = source[by_hospital[r.path]][rows[r.path]]
        assert deal[(origin.label, origin.patient)] == by_hospital[r.path]
    for label in (0, 1):
        dealt = [h for (lab, _), h in deal.items() if lab == label]
        assert abs(dealt.count("A") - dealt.count("B")) <= 1
    # Tests of both hospitals, whole.
    tests = [r for r in records if r.split == "test"]
    assert len(tests) == sum(1 for src in source.values() for r in src.values() if r.split == "test")
    # No patient twice: the grouped re-split cannot put one patient on both sides.
    manifest = data.make_splits(pooled, seed=42, save=False)
    assert not data.shared_patients(manifest, "train", "val")
    record = derived.read_provenance(pooled)
    assert record["same_patients"] == {"seed": 7}
    # Another seed deals differently and rewrites; the plain pool records no deal.
    assert derived.patients_by_hospital({h: list(rs.values()) for h, rs in source.items()}, seed=8) != deal
    assert derived.read_provenance(derived.pooled_copy({"A": a, "B": b}, sources["base"] / "pooled-plain"))["same_patients"] is None


def test_same_patients_refuses_hospitals_with_other_films(sources, tmp_path):
    other = _tiny(tmp_path / "other", "B")
    victim = next(r for r in layout.list_images(other) if r.split == "train")
    (other / victim.path).rename((other / victim.path).with_name("person999_bacteria_1.jpeg"))
    with pytest.raises(ValueError, match=r"same train and val images.*without same_patients"):
        derived.pooled_copy({"A": sources["A"], "B": other}, tmp_path / "pool", same_patients=True)
    assert not (tmp_path / "pool").exists()


def test_equalized_copy_of_a_pooled_copy_keeps_its_hospitals(sources, pooled):
    both = derived.equalized_copy(pooled, sources["base"] / "pooled-clahe")
    assert derived.pooled_hospitals(both) == derived.pooled_hospitals(pooled)
    record = derived.read_provenance(both)
    assert record["sources"]["source"]["derived"]["kind"] == "pooled"


def test_renumbered_names_keep_patients_and_subtypes():
    assert derived.renumbered_name("person12_bacteria_40.jpeg", 1000, "B") == "person1012_bacteria_40.jpeg"
    assert derived.renumbered_name("NORMAL2-IM-0115-0001.jpeg", 1000, "B") == "NORMAL2-IM-1115-0001.jpeg"
    assert derived.renumbered_name("IM-0007-0002.jpeg", 0, "A") == "IM-0007-0002.jpeg"
    assert derived.renumbered_name("person012_virus_3.jpeg", 0, "A") == "person012_virus_3.jpeg"  # the first keeps its names
    assert derived.renumbered_name("scan7.png", 1000, "B") == "B-scan7.png"
    assert layout.patient_id("person1012_virus_3.jpeg") == "person1012"
    assert subtypes.subtype_label("person1012_virus_3.jpeg", 1) == subtypes.VIRAL


def test_sources_are_unchanged(sources, clahe, pooled):
    derived.equalized_copy(sources["B"], sources["base"] / "B-clahe")
    assert tree_digest(sources["A"].parent) == sources["digests"]["A"]
    assert tree_digest(sources["B"].parent) == sources["digests"]["B"]


def test_cached_training_on_a_derived_folder(sources, clahe, pneumo_home):
    from pneumo_lib import experiments
    from pneumo_lib.profiles import get_profile

    profile = get_profile("quick", phantom_scale="tiny", image_size=32, batch_size=16, epochs=1,
                          fine_tune_epochs=1, bootstrap_rounds=20)
    first = experiments.cached_training("paper_cnn", profile, data_dir=clahe.parent)
    assert first.trained_now and first.card["data"]["folder"] == str(clahe)
    assert first.card["data_dir"] == str(clahe)
    again = experiments.cached_training("paper_cnn", profile, data_dir=clahe)
    assert not again.trained_now and again.path == first.path
    # The source's images (same names, other bytes) are another cache entry.
    source = data.make_splits(sources["A"], seed=profile.seed, save=False)
    assert experiments.cache_path(experiments.Recipe("paper_cnn", profile), source) != first.path
    with pytest.raises(ValueError, match="data_dir or shortcut"):
        experiments.cached_training("paper_cnn", profile, data_dir=clahe, shortcut=True)
