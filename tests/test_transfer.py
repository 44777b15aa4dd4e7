"""Frozen-feature transfer: nested patient-grouped subsets, the feature cache, the head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo_lib import data, experiments, models, transfer
from pneumo_lib.data.layout import ImageRecord


def _manifest(root: Path, n_patients=(40, 60), per_patient=2, write=False) -> data.SplitManifest:
    records = []
    for label, count in enumerate(n_patients):
        for p in range(count):
            for k in range(per_patient):
                records.append(ImageRecord(f"train/{label}/p{label}_{p}_{k}.png", "train", label, f"p{label}_{p}"))
    for split in ("val", "test"):
        for label in (0, 1):
            records.append(ImageRecord(f"{split}/{label}/x{label}.png", split, label, f"{split}{label}"))
    if write:
        rng = np.random.default_rng(0)
        for r in records:
            (root / r.path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / r.path)
    return data.SplitManifest(root, tuple(records))


def test_subsets_are_nested_patient_grouped_and_start_inside_the_target_part(tmp_path):
    manifest = _manifest(tmp_path)
    subsets = transfer.learning_curve_subsets(manifest, (6, 12, "target", 100, "all"), seed=3)
    sets = {k: set(v[0]) for k, v in subsets.items()}
    target = set(experiments.train_subset(manifest, "target", seed=3)[0])
    assert sets["target"] == target and len(sets["all"]) == 200
    assert len(target) == 20 and sets["6"] <= sets["12"] <= target <= sets["100"] <= sets["all"]
    assert abs(len(sets["12"]) - 12) <= 2 and abs(len(sets["100"]) - 100) <= 2
    for chosen in sets.values():  # whole patients only
        patients = {r.patient for r in manifest.records if manifest.data_dir / r.path in chosen}
        assert all(manifest.data_dir / r.path in chosen for r in manifest.records
                   if r.split == "train" and r.patient in patients)
    labels = subsets["100"][1]
    assert 35 <= int((labels == 0).sum()) <= 45, "class shares of the training split are kept"
    reduced = transfer.subset_manifest(manifest, subsets["12"][0])
    assert reduced.counts()["train"] == {"NORMAL": int((subsets["12"][1] == 0).sum()),
                                         "PNEUMONIA": int((subsets["12"][1] == 1).sum())}
    assert reduced.counts()["test"] == manifest.counts()["test"]


def test_features_are_cached_and_random_weights_are_refused(tmp_path, pneumo_home):
    manifest = _manifest(tmp_path / "chest_xray", n_patients=(1, 1), per_patient=2, write=True)
    weights = tmp_path / "xception.weights.h5"
    models.build_backbone("xception", 71, weights=None).save_weights(weights)
    first = transfer.cached_features(manifest, "train", 71, weights=weights, batch_size=4)
    assert first.features.shape == (4, 2048) and not first.from_cache and first.images_per_second > 0
    assert first.file.parent == pneumo_home / "features"
    again = transfer.cached_features(manifest, "train", 71, weights=weights)
    assert again.from_cache and np.array_equal(again.features, first.features)
    x, y = again.take(manifest.paths("train")[::-1], manifest.data_dir)
    assert np.array_equal(x, first.features[::-1]) and list(y) == list(first.labels[::-1])
    head = transfer.build_head(2048)
    full = transfer.assemble(head, 71, weights=weights)
    images = data.load_images(manifest.paths("train"), 71, channels=3)
    np.testing.assert_allclose(full.predict(images, verbose=0), head.predict(first.features, verbose=0), atol=1e-4)
    with pytest.raises(ValueError, match="not transfer learning"):
        transfer.cached_features(manifest, "train", 71, weights=None)
