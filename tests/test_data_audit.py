"""Layout checks and the audit: every bad-input case is named, nothing on disk changes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _data_helpers import make_tiny, tree_digest
from PIL import Image

from pneumo_lib.cli import main
from pneumo_lib.data import layout
from pneumo_lib.data.audit import audit


@pytest.fixture
def ds(tmp_path):
    return make_tiny(tmp_path / "ds", seed=8, size=48)


def test_clean_dataset_passes_with_exact_counts(ds):
    report = audit(ds)
    assert report.ok, report.summary()
    assert report.counts == {"train": {"NORMAL": 6, "PNEUMONIA": 10}, "val": {"NORMAL": 2, "PNEUMONIA": 2},
                             "test": {"NORMAL": 3, "PNEUMONIA": 5}}
    assert report.modes["NORMAL"] == {"L": 11}
    assert report.sizes["PNEUMONIA"].shape == (17, 2)


def test_bad_files_are_named_and_skipped_never_deleted(ds):
    folder = ds / "train" / "PNEUMONIA"
    good = sorted(folder.glob("*.jpeg"))[0]
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "person900_bacteria_1.jpeg").write_bytes(b"")
    (folder / "person901_bacteria_2.jpeg").write_bytes(good.read_bytes()[:300])
    (folder / "person902_virus_3.png").write_text("not an image")
    Image.new("1", (12_000, 12_000)).save(folder / "person903_virus_4.png")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).convert("CMYK").save(folder / "person904_virus_5.jpeg")
    before = tree_digest(ds.parent)
    report = audit(ds)
    unreadable = dict(report.unreadable)
    assert set(unreadable) == {f"train/PNEUMONIA/{n}" for n in (
        "person900_bacteria_1.jpeg", "person901_bacteria_2.jpeg", "person902_virus_3.png",
        "person903_virus_4.png")}
    assert "empty" in unreadable["train/PNEUMONIA/person900_bacteria_1.jpeg"]
    assert "too large" in unreadable["train/PNEUMONIA/person903_virus_4.png"]
    assert report.ignored == ["train/PNEUMONIA/.DS_Store"]
    assert report.modes["PNEUMONIA"]["CMYK"] == 1  # readable, counted, its mode reported
    assert report.counts["train"]["PNEUMONIA"] == 11
    assert not report.ok
    assert tree_digest(ds.parent) == before


def test_duplicates_and_patients_across_splits(ds):
    src = sorted((ds / "train" / "NORMAL").glob("*.jpeg"))[0]
    shutil.copy(src, ds / "test" / "NORMAL" / src.name)
    report = audit(ds)
    assert report.cross_split_duplicates == [[f"test/NORMAL/{src.name}", f"train/NORMAL/{src.name}"]]
    assert report.shared_patients["train/test"] == [layout.patient_id(src.name)]
    assert not report.ok


def test_empty_class_folder_and_missing_split(ds):
    for f in (ds / "val" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"val/NORMAL holds no images"):
        layout.check_layout(ds)
    shutil.rmtree(ds / "test")
    with pytest.raises(FileNotFoundError, match="no split folder.*test"):
        layout.check_layout(ds)
    report = audit(ds)
    assert any("test" in p for p in report.problems) and not report.ok


def test_layout_one_level_too_deep_names_the_right_folder(tmp_path):
    outer = tmp_path / "unzipped" / "chest_xray"
    make_tiny(outer, seed=1, size=40)  # gives unzipped/chest_xray/chest_xray/{train,...}
    with pytest.raises(FileNotFoundError, match=r"one level deeper: use .*chest_xray/chest_xray"):
        layout.list_images(outer)


def test_images_below_class_folders_are_reported(ds):
    deeper = ds / "train" / "NORMAL" / "extra"
    deeper.mkdir()
    shutil.copy(sorted((ds / "train" / "NORMAL").glob("*.jpeg"))[0], deeper / "IM-9999-0001.jpeg")
    report = audit(ds)
    assert any("extra/IM-9999-0001.jpeg sits below the class folder" in p for p in report.problems)


def test_cli_audit_exit_codes(ds, capsys):
    assert main(["data", "audit", str(ds)]) == 0
    assert "OK" in capsys.readouterr().out
    (ds / "val" / "NORMAL" / "IM-0000-0001.jpeg").write_bytes(b"")
    assert main(["data", "audit", str(ds)]) == 1
    assert "IM-0000-0001.jpeg" in capsys.readouterr().out
