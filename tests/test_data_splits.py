"""Split manifest: grouped by patient, stratified, deterministic; the naive split leaks."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import make_tiny, tree_digest

from pneumo_lib.data import layout, splits

COUNTS = {"train": (30, 80), "val": (2, 2), "test": (5, 8)}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("splits") / "ds", seed=5, size=48, counts=COUNTS)


@pytest.mark.parametrize("name, label, patient", [
    ("person1946_bacteria_4874.jpeg", 1, "person1946"),
    ("person1_virus_6.jpeg", 1, "person1"),
    ("IM-0115-0001.jpeg", 0, "IM-0115"),
    ("NORMAL2-IM-0372-0001.jpeg", 0, "NORMAL2-IM-0372"),
    ("scan 7.png", 0, "NORMAL/scan 7"),
])
def test_patient_ids_from_kaggle_names(name, label, patient):
    assert layout.patient_id(name, label) == patient


def test_no_patient_on_both_sides_and_test_untouched(ds, pneumo_home):
    before = tree_digest(ds.parent)
    m = splits.make_splits(ds, seed=1, val_fraction=0.2)
    assert splits.shared_patients(m, "train", "val") == set()
    counts = m.counts()
    assert counts["test"] == {"NORMAL": 5, "PNEUMONIA": 8}
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 30 + 80 + 4
    # Stratified: each class puts about 20% of its images into validation (whole patients).
    for cls, total in (("NORMAL", 32), ("PNEUMONIA", 82)):
        assert 0.2 * total <= counts["val"][cls] <= 0.2 * total + 4
    assert {r.path for r in m.records if r.split == "test"} == {
        r.path for r in layout.list_images(ds) if r.split == "test"}
    assert tree_digest(ds.parent) == before  # the manifest is written elsewhere


def test_same_seed_same_manifest_other_seed_other_manifest(ds, pneumo_home):
    a = splits.make_splits(ds, seed=1, save=False)
    assert a.records == splits.make_splits(ds, seed=1, save=False).records
    assert a.records != splits.make_splits(ds, seed=2, save=False).records


def test_naive_random_split_leaks_patients(ds):
    naive = splits.naive_random_split(ds, seed=0, val_fraction=0.2)
    assert len(splits.shared_patients(naive, "train", "val")) > 0


def test_manifest_is_saved_under_home_and_loads_back(ds, pneumo_home):
    m = splits.make_splits(ds, seed=3, val_fraction=0.15)
    file = splits.manifest_file(ds, 3, 0.15)
    assert file.is_file() and pneumo_home in file.parents
    loaded = splits.SplitManifest.load(file)
    assert loaded.records == m.records and loaded.data_dir == m.data_dir
    assert loaded.paths("val") == m.paths("val")
    np.testing.assert_array_equal(loaded.labels("train"), m.labels("train"))


def test_writers_of_the_same_manifest_at_once_all_finish_and_leave_it_whole(ds, tmp_path):
    """A chapter and the rehearsal may save the same split manifest at the same moment.

    With one fixed temporary name, one writer truncated or renamed away the other's file
    (FileNotFoundError on the rename, or a short CSV); each writer now has its own.
    """
    from concurrent.futures import ThreadPoolExecutor

    m = splits.make_splits(ds, seed=3, save=False)
    file = tmp_path / "shared" / "manifest.csv"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: m.save(file), range(64)))
    assert splits.SplitManifest.load(file).records == m.records
    assert [p.name for p in file.parent.iterdir()] == ["manifest.csv"]  # no temporary left


def test_class_weights_are_balanced():
    assert splits.class_weights([0, 1, 1, 1]) == {0: 2.0, 1: 4 / 6}
    with pytest.raises(ValueError, match="both classes"):
        splits.class_weights([1, 1, 1])


def test_bad_fraction_and_unknown_split(ds, pneumo_home):
    with pytest.raises(ValueError, match="val_fraction"):
        splits.make_splits(ds, val_fraction=1.5, save=False)
    with pytest.raises(ValueError, match="'valid'"):
        splits.make_splits(ds, save=False).paths("valid")
