"""Bounded, named failures: one pixel limit, truncated and corrupt files, folders, links, data folders."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from _data_helpers import make_tiny
from PIL import Image

from pneumo_lib import cli, data, paths, uploads
from pneumo_lib.data import audit, layout, pipeline
from pneumo_lib.uploads import Upload, UploadError


def _jpeg(shape=(96, 120), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    small = (rng.random((shape[0] // 8, shape[1] // 8)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.kron(small, np.ones((8, 8), np.uint8))).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _huge_header_jpeg(width=8000, height=6000) -> bytes:
    """Only the start of a JPEG whose frame header declares ``width x height`` (48 million) pixels."""
    sof = b"\xff\xc0" + (11).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


@pytest.fixture
def ds(tmp_path):
    return make_tiny(tmp_path / "ds", seed=2, size=40)


def test_one_pixel_limit_refuses_a_huge_header_everywhere_before_decoding(tmp_path, ds):
    f = tmp_path / "huge.jpeg"
    f.write_bytes(_huge_header_jpeg())
    message = r"huge\.jpeg is too large \(8000x6000 pixels, more than the 40,000,000 pixels allowed\)"
    with pytest.raises(data.ImageReadError, match=message):
        data.read_image(f)
    with pytest.raises(data.ImageReadError, match=message):
        data.make_dataset([f], image_size=16)
    with pytest.raises(UploadError, match=r"^scan\.jpeg is too large"):
        uploads.read_upload(Upload("scan.jpeg", f.read_bytes()), 16)
    (ds / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(f.read_bytes())
    report = audit(ds)
    assert [p for p, _ in report.unreadable] == ["train/NORMAL/IM-0999-0001.jpeg"]
    assert "too large" in report.unreadable[0][1]
    assert data.MAX_PIXELS == 40_000_000


def test_truncated_jpeg_is_named_in_one_line_by_the_pipeline_and_the_audit(tmp_path, ds):
    content = _jpeg()
    (tmp_path / "cut.jpeg").write_bytes(content[: len(content) // 2])
    before = (tmp_path / "cut.jpeg").read_bytes()
    for call in (lambda: data.make_dataset([tmp_path / "cut.jpeg"], image_size=16),
                 lambda: data.load_images([tmp_path / "cut.jpeg"], 16)):
        with pytest.raises(data.ImageReadError, match=r"cut\.jpeg could not be decoded .*truncated") as err:
            call()
        assert "\n" not in str(err.value)
    assert (tmp_path / "cut.jpeg").read_bytes() == before  # never modified


def test_a_jpeg_only_tensorflow_rejects_is_named_not_a_traceback(tmp_path, monkeypatch, capfd):
    content = _jpeg()
    f = tmp_path / "noscan.jpeg"
    f.write_bytes(content[: content.index(b"\xff\xda")] + b"\xff\xd9")  # ends well, holds no scan
    good = tmp_path / "good.jpeg"
    good.write_bytes(content)
    # Refused from its header, before TensorFlow's libjpeg prints "missing SOS marker" to stderr.
    with pytest.raises(data.ImageReadError, match=r"noscan\.jpeg could not be decoded \(a JPEG header that ends "
                                                  r"before its image data\)") as err:
        data.load_images([good, f], 16)
    assert "\n" not in str(err.value) and capfd.readouterr().err == ""
    assert [p for p, _ in pipeline.find_undecodable([good, f])] == [str(f)]
    # A file the checks let through and TensorFlow fails on is still named, from the failed batch.
    monkeypatch.setattr(pipeline, "_ends_before_scan", lambda head, at: False)
    with pytest.raises(data.ImageReadError, match=r"noscan\.jpeg could not be decoded \(jpeg::Uncompress failed") as err:
        data.load_images([good, f], 16)
    assert "\n" not in str(err.value) and "function_node" not in str(err.value)
    assert [p for p, _ in pipeline.find_undecodable([good, f])] == [str(f)]


def test_a_folder_where_a_file_is_expected_is_called_a_folder(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for call in (lambda: data.read_image(folder), lambda: data.load_images([folder], 16),
                 lambda: data.check_image_file(folder)):
        with pytest.raises(data.ImageReadError, match=r"scans is a folder, not an image file"):
            call()
    with pytest.raises(FileNotFoundError, match=r"missing\.png does not exist"):
        data.check_image_file(tmp_path / "missing.png")


def test_audit_reports_symlink_loops_and_broken_links_and_goes_on(ds):
    folder = ds / "train" / "NORMAL"
    os.symlink("IM-0800-0001.jpeg", folder / "IM-0801-0001.jpeg")
    os.symlink("IM-0801-0001.jpeg", folder / "IM-0800-0001.jpeg")  # a two-link loop
    os.symlink("nowhere.jpeg", folder / "IM-0802-0001.jpeg")
    os.symlink(".", folder / "again")  # a folder link to the folder itself
    report = audit(ds)
    found = dict(report.unreadable)
    assert "symbolic-link loop" in found["train/NORMAL/IM-0800-0001.jpeg"]
    assert "symbolic-link loop" in found["train/NORMAL/IM-0801-0001.jpeg"]
    assert "broken symbolic link to nowhere.jpeg" in found["train/NORMAL/IM-0802-0001.jpeg"]
    assert "symbolic-link loop" in found["train/NORMAL/again"]
    assert sum(report.counts["train"].values()) == len(list(layout.list_images(ds, splits=("train",))))
    assert not report.ok
    with pytest.raises(data.ImageReadError, match=r"IM-0800-0001\.jpeg cannot be read \(Too many levels"):
        data.read_image(folder / "IM-0800-0001.jpeg")


def test_every_command_resolves_a_data_folder_the_same_way(tmp_path, capsys):
    parent = tmp_path / "d"
    inner = make_tiny(parent, seed=2, size=40)  # d/chest_xray/{train,val,test}
    assert inner == parent / "chest_xray"
    assert data.resolve_data_dir(parent) == inner and data.resolve_data_dir(inner) == inner
    # The Kaggle archive unpacked as is: chest_xray/chest_xray/ beside __MACOSX/.
    archive = tmp_path / "archive"
    (archive / "chest_xray").mkdir(parents=True)
    os.rename(inner, archive / "chest_xray" / "chest_xray")
    (archive / "chest_xray" / "__MACOSX").mkdir()
    nested = archive / "chest_xray" / "chest_xray"
    for given in (archive, archive / "chest_xray", nested):
        assert data.resolve_data_dir(given) == nested, given
        assert audit(given).data_dir == nested and audit(given).ok
        assert cli.main(["data", "audit", str(given)]) == 0
    assert "OK" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no split folder"):
        data.resolve_data_dir(tmp_path / "archive" / "chest_xray" / "__MACOSX")
    assert data.resolve_data_dir(tmp_path, check=False) == tmp_path.absolute()


def test_train_and_evaluate_refuse_a_truncated_image_by_name_and_write_no_manifest(tmp_path, pneumo_home, capsys):
    root = make_tiny(tmp_path / "d", seed=2, size=40)
    victim = sorted((root / "test" / "PNEUMONIA").glob("*.jpeg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    code = cli.main(["train", "--model", "paper_cnn", "--data", str(tmp_path / "d"),
                     "--out", str(tmp_path / "m.keras"), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pneumo: error: ") and err.count("\n") == 1
    assert victim.name in err and "Traceback" not in err
    assert not (paths.pneumo_home() / "splits").exists()
    assert not (tmp_path / "m.keras").exists()


def test_evaluate_refuses_a_truncated_image_by_name_and_writes_no_manifest(tmp_path, pneumo_home, capsys):
    from pneumo_lib import models, training

    root = make_tiny(tmp_path / "d", seed=2, size=40)
    model = models.build_model("paper_cnn", 32, channels=1, head="sigmoid", weights=None)
    training.save_model(model, tmp_path / "m.keras", {"name": "paper_cnn"})
    victim = sorted((root / "test" / "NORMAL").glob("*.jpeg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    code = cli.main(["evaluate", str(tmp_path / "m.keras"), "--data", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and victim.name in err and "Traceback" not in err
    assert not (paths.pneumo_home() / "splits").exists()


def test_explain_names_a_folder_a_truncated_and_a_huge_image_in_one_line(tmp_path, capsys):
    from _cam_models import detector_model

    model_path = tmp_path / "detector.keras"
    detector_model("nested").save(model_path)
    folder = tmp_path / "scans"
    folder.mkdir()
    content = _jpeg()
    (tmp_path / "cut.jpeg").write_bytes(content[: len(content) // 2])
    (tmp_path / "huge.jpeg").write_bytes(_huge_header_jpeg())
    for image, message in ((folder, "scans is a folder, not an image file"),
                           (tmp_path / "cut.jpeg", "cut.jpeg could not be decoded"),
                           (tmp_path / "huge.jpeg", "huge.jpeg is too large")):
        code = cli.main(["explain", str(model_path), str(image), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("pneumo: error: ") and err.count("\n") == 1, err
        assert message in err and "Traceback" not in err and "Uncompress" not in err
