"""The phantom generator: exact counts, Kaggle names, determinism, known lesions and markers."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json

import numpy as np
import pytest
from _data_helpers import TINY_COUNTS, make_tiny, tree_digest
from PIL import Image, ImageFilter

from pneumo_lib.data import layout, phantom, sources


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


def _marker_boxes(root):
    with open(root / "markers.csv", newline="") as fh:
        return {r["path"]: tuple(int(r[k]) for k in ("x0", "y0", "x1", "y1")) for r in csv.DictReader(fh)}


def test_plain_phantom_bytes_are_pinned(tiny):
    # The digest of the tiny plain dataset (seed 3, 64 px) as generator version 8 (the
    # layered radiograph model of pneumo_lib.data.radiograph) writes it: the plain data (and
    # every model cached on it) must not change unless the version is bumped. A new
    # Pillow/NumPy/SciPy can change the bytes too; then check the pixels and update the digest
    # on purpose.
    digest = hashlib.sha1(json.dumps(tree_digest(tiny.parent), sort_keys=True).encode()).hexdigest()
    assert digest == "55cb030f31a18976d2db3e0dd4c8145cc25412ca"
    spec = json.loads((tiny.parent / "phantom.json").read_text())
    assert spec["version"] == 8 and "shortcut_version" not in spec and spec["hospital"] == "A"


SHORTCUT_COUNTS = {"train": (50, 40), "val": (10, 10), "test": (5, 10)}


@pytest.fixture(scope="module")
def shortcut_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("shortcut")
    marked = make_tiny(base / "marked", shortcut=True, counts=SHORTCUT_COUNTS)
    clean = make_tiny(base / "clean", counts=SHORTCUT_COUNTS)
    return marked.parent, clean.parent


def test_shortcut_marks_every_train_val_pneumonia_few_normals_and_no_test_image(shortcut_pair):
    marked, _ = shortcut_pair
    boxes = _marker_boxes(marked)
    assert phantom.DEFAULT_SETTINGS.rate == 1.0
    for split in ("train", "val"):
        n_normal, n_pneumonia = SHORTCUT_COUNTS[split]
        assert sum(p.startswith(f"{split}/PNEUMONIA/") for p in boxes) == n_pneumonia
        assert sum(p.startswith(f"{split}/NORMAL/") for p in boxes) <= 0.1 * n_normal
    assert not any(p.startswith("test/") for p in boxes)
    spec = json.loads((marked / "phantom.json").read_text())
    assert spec["shortcut"] is True and spec["shortcut_version"] == phantom.SHORTCUT_VERSION
    assert spec["shortcut_params"] == {"rate": 1.0, "normal_rate": 0.02, "lesion_scale": 0.5, "marker_side": 0.14}


def test_shortcut_marker_is_a_bright_box_of_the_stated_size(shortcut_pair):
    marked, _ = shortcut_pair
    for rel, (x0, y0, x1, y1) in list(_marker_boxes(marked).items())[:8]:
        a = np.asarray(Image.open(marked / "chest_xray" / rel), np.float32)
        side = max(10, round(a.shape[0] * phantom.DEFAULT_SETTINGS.marker_side))
        assert (x1 - x0, y1 - y0) == (side, side)
        assert 0.03 * a.shape[0] - 1 <= y0 <= 0.09 * a.shape[0] and 0.3 * a.shape[1] - 1 <= x0 <= 0.62 * a.shape[1]
        assert a[y0:y1 + 1, x0:x1 + 1].max() >= 230


def test_shortcut_variant_is_the_plain_one_with_the_marker_and_fainter_lesions(shortcut_pair):
    marked, clean = shortcut_pair
    boxes = _marker_boxes(marked)
    # Test images are untouched: byte for byte the plain dataset's.
    for file in sorted((clean / "chest_xray" / "test").rglob("*.jpeg")):
        assert (marked / file.relative_to(clean)).read_bytes() == file.read_bytes()
    # Masks are the same everywhere (the lesions' extent does not change, only their opacity).
    for file in sorted((clean / "masks").rglob("*.png")):
        assert (marked / file.relative_to(clean)).read_bytes() == file.read_bytes()
    lesion_gain = []
    for rel in [p for p in boxes if "/PNEUMONIA/" in p][:10]:
        a = np.asarray(Image.open(marked / "chest_xray" / rel), np.float32)
        b = np.asarray(Image.open(clean / "chest_xray" / rel), np.float32)
        x0, y0, x1, y1 = boxes[rel]
        near_box = np.zeros(a.shape, bool)
        near_box[max(0, y0 - 8):y1 + 9, max(0, x0 - 8):x1 + 9] = True  # ring + JPEG blocks next to it
        lesion = np.asarray(Image.open(marked / "masks" / rel.replace(".jpeg", ".png"))) > 0
        near_lesion = np.asarray(Image.fromarray(lesion.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(13))) > 0
        far = ~near_box & ~near_lesion
        assert np.abs(a[far] - b[far]).max() <= 6 and np.abs(a[far] - b[far]).mean() < 0.3
        # Inside the lesion the marked image is darker: its opacity is scaled down.
        twin = np.asarray(_healthy_twin(rel, marked), np.float32)
        lesion_gain.append((a[lesion & ~near_box] - twin[lesion & ~near_box]).mean()
                           / (b[lesion & ~near_box] - twin[lesion & ~near_box]).mean())
    assert np.median(lesion_gain) == pytest.approx(phantom.DEFAULT_SETTINGS.lesion_scale, abs=0.15)


def _healthy_twin(rel, root):
    """The lesion-free rendering of a PNEUMONIA image of a tiny dataset (seed 3, 64 px)."""
    spec = phantom.read_spec(root)
    split, _, name = rel.split("/")
    item = next(i for i in phantom._plan(spec) if i.split == split and i.stem == name[:-5])
    return phantom.render_one(spec.seed, split, 1, item.patient, item.index, "normal", spec.size)[0]


def test_render_one_lesion_scale_changes_only_the_lesion():
    full, mask = phantom.render_one(11, "train", 1, patient=5, index=0, kind="bacteria", size=128)
    faint, faint_mask = phantom.render_one(11, "train", 1, patient=5, index=0, kind="bacteria", size=128,
                                           lesion_scale=0.5)
    twin, _ = phantom.render_one(11, "train", 1, patient=5, index=0, kind="normal", size=128)
    full, faint, twin = (np.asarray(im, np.float32) for im in (full, faint, twin))
    assert np.array_equal(mask, faint_mask)
    gain = (faint[mask] - twin[mask]).mean() / (full[mask] - twin[mask]).mean()
    # Half the attenuation gives more than half the brightening: the film saturates
    # (1 - exp(-k A)), so a dense consolidation's second half adds less than its first.
    assert 0.5 < gain < 0.8
    assert np.array_equal(np.asarray(phantom.render_one(11, "train", 1, 5, 0, "bacteria", 128, lesion_scale=1.0)[0]),
                          full.astype(np.uint8))


def test_an_outdated_shortcut_folder_is_regenerated_and_the_plain_one_is_kept(pneumo_home, monkeypatch):
    from pneumo_lib.data import sources

    monkeypatch.setattr(phantom, "PHANTOM_COUNTS", {**phantom.PHANTOM_COUNTS, "tiny": SHORTCUT_COUNTS})
    clean = sources.ensure_phantom("tiny", 3)
    marked = sources.ensure_phantom("tiny", 3, shortcut=True)
    clean_before = tree_digest(clean.parent)
    # Make the shortcut folder look like one written before SHORTCUT_VERSION existed.
    spec_file = marked.parent / "phantom.json"
    old = json.loads(spec_file.read_text())
    del old["shortcut_version"], old["shortcut_params"]
    spec_file.write_text(json.dumps(old))
    (marked.parent / "markers.csv").write_text("path,x0,y0,x1,y1\n")
    assert sources.ensure_phantom("tiny", 3, shortcut=True) == marked
    assert json.loads(spec_file.read_text())["shortcut_version"] == phantom.SHORTCUT_VERSION
    assert len(_marker_boxes(marked.parent)) >= sum(n for _, n in SHORTCUT_COUNTS.values()) - SHORTCUT_COUNTS["test"][1]
    marked_before = tree_digest(marked.parent)
    # Other shortcut settings are another dataset, in its own folder: phantom.json records them.
    full = phantom.PhantomSettings(lesion_scale=1.0)
    other = sources.ensure_phantom("tiny", 3, shortcut=True, settings=full)
    assert other != marked and other.parent.name.startswith("phantom-tiny-seed3-shortcut-")
    assert json.loads((other.parent / "phantom.json").read_text())["shortcut_params"]["lesion_scale"] == 1.0
    assert sources.ensure_phantom("tiny", 3, shortcut=True, settings=phantom.PhantomSettings()) == marked
    assert sources.ensure_phantom("tiny", 3) == clean
    assert tree_digest(clean.parent) == clean_before and tree_digest(marked.parent) == marked_before
    # Settings are frozen values passed as arguments, never module state to mutate.
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.lesion_scale = 0.3
    with pytest.raises(ValueError, match="lesion_scale must be between 0 and 1, got 2"):
        phantom.PhantomSettings(lesion_scale=2)
    assert not hasattr(phantom, "SHORTCUT_LESION_SCALE")


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


def test_ensure_dataset_takes_shortcut_settings():
    assert sources._settings_of(True) == (True, None)
    assert sources._settings_of(False) == (False, None)
    assert sources._settings_of(phantom.PhantomSettings()) == (True, None)  # the default variant
    full = phantom.PhantomSettings(lesion_scale=1.0)
    assert sources._settings_of(full) == (True, full)
    assert sources.phantom_root("quick", 42, True, full) != sources.phantom_root("quick", 42, True)
    with pytest.raises(TypeError, match="settings must be a phantom.PhantomSettings"):
        phantom.phantom_spec("tiny", shortcut=True, settings={"lesion_scale": 1.0})


def test_the_kaggle_preset_has_kaggles_counts_and_sizes():
    spec = phantom.phantom_spec("kaggle")
    assert spec.counts == phantom.KAGGLE_COUNTS and sum(map(sum, spec.counts.values())) == 5856
    # Heights vary per patient by exp(+-spread) around the nominal size, widths are 1.0 to
    # 1.45 times the height: about 700 to 2,900 px wide, as on Kaggle (384 to 2,916 px).
    low, high = spec.size * np.exp(-spec.size_spread), spec.size * np.exp(spec.size_spread) * 1.45
    assert 600 < low < 800 and 2500 < high < 3000
    image, mask = phantom.render_one(1, "test", 1, 3, 0, "bacteria", spec.size, size_spread=spec.size_spread)
    assert image.mode == "L" and mask.shape == (image.height, image.width) and image.width >= 600


def test_the_class_size_confounder_makes_pneumonia_studies_smaller(tmp_path):
    counts = {"train": (6, 6), "val": (1, 1), "test": (1, 1)}
    plain = make_tiny(tmp_path / "plain", counts=counts)
    sized = phantom.generate_phantom(
        tmp_path / "sized", dataclasses.replace(phantom.phantom_spec("tiny", 3, size=64, class_size=True), counts=counts))

    def mean_area(root, cls):
        sizes = [Image.open(f).size for f in sorted((root / "train" / cls).iterdir())]
        return np.mean([w * h for w, h in sizes])

    assert mean_area(sized, "NORMAL") == mean_area(plain, "NORMAL")
    ratio = mean_area(sized, "PNEUMONIA") / mean_area(plain, "PNEUMONIA")
    assert abs(ratio - phantom.CLASS_SIZE_FACTOR**2) < 0.06


def test_hospital_b_is_recorded_and_draws_other_films_of_the_same_patients(tmp_path):
    a = phantom.render_one(5, "train", 1, 2, 0, "virus", 96)
    b = phantom.render_one(5, "train", 1, 2, 0, "virus", 96, hospital="B")
    assert a[0].size == b[0].size and a[1].any() and b[1].any()  # same patient: same film size, a lesion
    assert not np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    spec = phantom.phantom_spec("tiny", 3, hospital="B")
    assert phantom.PhantomSpec.from_json(spec.to_json()) == spec and spec.to_json()["hospital"] == "B"
    assert sources.phantom_root("quick", 42, hospital="B").name == "phantom-quick-seed42-hospitalB"


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": "huge"}, "Valid scales: quick, full, kaggle, tiny"),
    ({"hospital": "C"}, "Valid hospitals: A, B"),
    ({"size": 8}, "between"),
    ({"size": 100_000}, "between"),
])
def test_bad_presets_hospitals_and_sizes_are_named(kwargs, match):
    scale = kwargs.pop("scale", "tiny")
    with pytest.raises(ValueError, match=match):
        phantom.phantom_spec(scale, **kwargs)


@pytest.mark.parametrize("counts, match", [
    ({"train": (-1, 3)}, "between 0 and"),
    ({"train": (2, 10**9)}, "between 0 and"),
    ({"train": (2.5, 3)}, "whole numbers"),
    ({"tests": (2, 3)}, "Unknown split 'tests'"),
    ({"train": (0, 0)}, "no image"),
])
def test_bad_counts_are_refused_before_anything_is_written(tmp_path, counts, match):
    spec = dataclasses.replace(phantom.phantom_spec("tiny", 3, size=64), counts=counts)
    with pytest.raises(ValueError, match=match):
        phantom.generate_phantom(tmp_path / "ds", spec)
    assert not (tmp_path / "ds").exists()


def test_a_folder_holding_other_files_is_never_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    for force in (False, True):
        with pytest.raises(FileExistsError, match="not a phantom dataset"):
            phantom.generate_phantom(folder, phantom.phantom_spec("tiny", 3, size=64), force=force)
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"] and (folder / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert phantom.generate_phantom(empty, phantom.phantom_spec("tiny", 3, size=64)).is_dir()


def test_worker_processes_write_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    counts = {"train": (20, 30), "val": (2, 2), "test": (4, 6)}
    spec = dataclasses.replace(phantom.phantom_spec("tiny", 8, size=64, shortcut=True), counts=counts)
    one = phantom.generate_phantom(tmp_path / "one", spec, workers=1)
    monkeypatch.setattr(phantom, "PARALLEL_FROM", 10)
    two = phantom.generate_phantom(tmp_path / "two", spec, workers=2)
    assert tree_digest(one.parent) == tree_digest(two.parent)
