"""The phantom generator: exact counts, Kaggle names, determinism, known lesions and markers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _data_helpers import TINY_COUNTS, make_tiny, tree_digest
from PIL import Image, ImageFilter

from pneumo_lib.data import layout, phantom


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("phantom") / "ds")


def test_counts_layout_and_kaggle_names(tiny):
    records = layout.list_images(tiny)
    for split, (n_normal, n_pneu) in TINY_COUNTS.items():
        labels = [r.label for r in records if r.split == split]
        assert labels.count(0) == n_normal and labels.count(1) == n_pneu
    for r in records:
        name = r.path.rsplit("/", 1)[1]
        if r.label == 1:
            assert layout.patient_id(name).startswith("person"), name
            assert ("_bacteria_" in name) or ("_virus_" in name)
        else:
            assert layout.patient_id(name).split("IM-")[0] in ("", "NORMAL2-"), name
    # Several images per patient somewhere (what makes a naive split leak).
    per_patient = {}
    for r in records:
        per_patient[(r.label, r.patient)] = per_patient.get((r.label, r.patient), 0) + 1
    assert max(per_patient.values()) >= 2


def test_images_are_8_bit_grayscale_jpegs_near_the_nominal_size(tiny):
    for r in layout.list_images(tiny)[:6]:
        with Image.open(tiny / r.path) as im:
            assert im.format == "JPEG" and im.mode == "L"
            assert 0.85 * 64 <= im.height <= 1.15 * 64


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, tiny):
    again = make_tiny(tmp_path / "again")
    assert tree_digest(again.parent) == tree_digest(tiny.parent)
    other = make_tiny(tmp_path / "other", seed=4)
    assert tree_digest(other.parent) != tree_digest(tiny.parent)


def test_every_pneumonia_image_has_a_mask_with_a_lesion_and_normals_have_none(tiny):
    for r in layout.list_images(tiny):
        mask_file = layout.mask_path(tiny / r.path)
        if r.label == 0:
            assert not mask_file.exists()
            continue
        mask = np.asarray(Image.open(mask_file))
        with Image.open(tiny / r.path) as im:
            assert mask.shape == (im.height, im.width)
        assert set(np.unique(mask)) == {0, 255}
        assert 0.002 < (mask > 0).mean() < 0.2


@pytest.mark.parametrize("kind", ["bacteria", "virus"])
def test_the_lesion_is_exactly_what_differs_from_the_healthy_twin(kind):
    sick, mask = phantom.render_one(11, "train", 1, patient=5, index=0, kind=kind, size=128)
    twin, twin_mask = phantom.render_one(11, "train", 1, patient=5, index=0, kind="normal", size=128)
    assert not twin_mask.any() and mask.any()
    diff = np.asarray(sick, np.float32) - np.asarray(twin, np.float32)
    # Brighter inside the mask (an opacity) ...
    assert diff[mask].mean() > 25
    # ... and (all but) unchanged more than 6 px away from it: only the opacity's soft edge
    # and the blur reach there, by a few gray levels at most.
    near = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(13))
    far = ~np.asarray(near).astype(bool)
    assert np.abs(diff[far]).max() <= 6 and np.abs(diff[far]).mean() < 0.2


def test_shortcut_marks_most_train_val_pneumonia_and_no_test_image(tmp_path, tiny):
    counts = {"train": (20, 40), "val": (2, 2), "test": (5, 10)}
    marked = make_tiny(tmp_path / "marked", shortcut=True, counts=counts)
    clean = make_tiny(tmp_path / "clean", counts=counts)
    with open(marked.parent / "markers.csv", newline="") as fh:
        boxes = {r["path"]: tuple(int(r[k]) for k in ("x0", "y0", "x1", "y1")) for r in csv.DictReader(fh)}
    pneu = [p for p in boxes if "/PNEUMONIA/" in p]
    assert not any(p.startswith("test/") for p in boxes)
    assert len([p for p in pneu if p.startswith("train/")]) >= 0.75 * 40
    assert len(boxes) - len(pneu) <= 0.25 * 20
    # The marked dataset is the clean one plus the marker: same pixels outside each box.
    for rel, (x0, y0, x1, y1) in list(boxes.items())[:5]:
        a = np.asarray(Image.open(marked / rel), np.float32)
        b = np.asarray(Image.open(clean / rel), np.float32)
        inside = np.zeros(a.shape, bool)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        assert a[inside].max() >= 230  # the bright ring
        outside = ~inside
        outside[max(0, y0 - 8):y1 + 9, max(0, x0 - 8):x1 + 9] = False  # JPEG blocks next to it
        assert np.abs(a[outside] - b[outside]).max() <= 2
    assert json.loads((marked.parent / "phantom.json").read_text())["shortcut"] is True


def test_existing_dataset_is_not_overwritten_without_force(tiny):
    before = tree_digest(tiny.parent)
    with pytest.raises(FileExistsError, match="force"):
        phantom.generate_phantom(tiny.parent, phantom.phantom_spec("tiny", 3, size=64))
    assert tree_digest(tiny.parent) == before


def test_interrupted_generation_leaves_nothing_that_looks_whole(tmp_path):
    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        phantom.generate_phantom(tmp_path / "ds", phantom.phantom_spec("tiny", 1, size=64), progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_full_scale_has_the_kaggle_counts():
    full = phantom.phantom_spec("full").counts
    assert full == {"train": (1341, 3875), "val": (8, 8), "test": (234, 390)}
    assert sum(map(sum, full.values())) == 5856
    plan = phantom._plan(phantom.phantom_spec("full"))
    assert len(plan) == 5856 and len({(p.split, p.stem) for p in plan}) == 5856
