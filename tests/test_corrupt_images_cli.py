"""Every command names a truncated or corrupt image in one line, stderr holds nothing else, nothing changes (issue 18.4)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from _data_helpers import make_tiny, tree_digest
from PIL import Image

from pneumo_lib import cli


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


JPEG, PNG = _encoded("JPEG"), _encoded("PNG")
BAD = {  # file name: (bytes, what the one line says)
    "half.jpeg": (JPEG[: len(JPEG) // 2], "could not be decoded"),
    "noscan.jpeg": (JPEG[: JPEG.index(b"\xff\xda")] + b"\xff\xd9", "could not be decoded"),
    "noise.jpeg": (np.random.default_rng(1).bytes(500), "is not a readable image"),
    "half.png": (PNG[: len(PNG) // 2], "could not be decoded"),
    "noise.dcm": (b"\0" * 128 + b"DICM" + np.random.default_rng(2).bytes(200), "is not a readable DICOM image"),
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from pneumo_lib import models, training

    path = tmp_path_factory.mktemp("model") / "m.keras"
    training.save_model(models.build_model("paper_cnn", 32, channels=1, head="sigmoid", weights=None), path,
                        {"name": "paper_cnn"})
    return path


def _one_line(capfd, *names) -> str:
    captured = capfd.readouterr()  # file-descriptor level: C libraries' prints count too
    err = captured.err
    assert err.startswith("pneumo: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Uncompress" not in err and all(n in err for n in names), err
    return err


@pytest.mark.parametrize("name", sorted(BAD))
def test_explain_names_the_bad_image(tmp_path, model_file, capfd, name):
    content, says = BAD[name]
    image = tmp_path / name
    image.write_bytes(content)
    before = tree_digest(tmp_path)
    assert cli.main(["explain", str(model_file), str(image), "--out", str(tmp_path / "out")]) == 2
    assert says in _one_line(capfd, name)
    assert tree_digest(tmp_path) == before and not (tmp_path / "out").exists()


def test_train_evaluate_and_audit_name_the_bad_images_of_a_dataset(tmp_path, model_file, pneumo_home, capfd):
    root = make_tiny(tmp_path / "d", seed=2, size=40)
    for i, (name, (content, _)) in enumerate(sorted(BAD.items())):
        stem, suffix = os.path.splitext(name)
        (root / "test" / "PNEUMONIA" / f"person9{i}_{stem}{suffix}").write_bytes(content)
    capfd.readouterr()
    before = tree_digest(tmp_path)
    assert cli.main(["train", "--model", "paper_cnn", "--data", str(root), "--out", str(tmp_path / "t.keras"),
                     "--epochs", "1", "--quiet"]) == 2
    assert "test/PNEUMONIA/person9" in _one_line(capfd)
    assert cli.main(["evaluate", str(model_file), "--data", str(root)]) == 2
    assert "test/PNEUMONIA/person9" in _one_line(capfd)
    assert cli.main(["data", "audit", str(root)]) == 1
    captured = capfd.readouterr()
    unreadable = [line for line in captured.out.splitlines() if line.startswith("  unreadable: ")]
    assert len(unreadable) == len(BAD) and captured.err == ""
    assert all(any(os.path.splitext(n)[0] in line for line in unreadable) for n in BAD)
    assert any("noscan" in line and "ends before its image data" in line for line in unreadable), unreadable
    assert tree_digest(tmp_path) == before and not (tmp_path / "t.keras").exists()
    assert not (pneumo_home / "splits").exists()  # no split manifest from a failed run
