"""``pneumo explain``: overlays and JSON lines for image files, on the known-answer model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _cam_models import detector_model, disc_images
from pneumo_lib import cam, cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    model_path = folder / "detector.keras"
    detector_model("nested").save(model_path)
    images, _, _ = disc_images(2, seed=7)
    paths = []
    for i, image in enumerate([*images, np.zeros_like(images[0])]):
        path = folder / f"xray{i}.png"
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return model_path, paths, images


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "scorecam"])
def test_explain_writes_overlays_and_json_lines(files, tmp_path, capsys, method):
    model_path, paths, images = files
    out = tmp_path / "out"
    assert cli.main(["explain", str(model_path), *paths, "--method", method, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prediction"] for r in lines] == ["PNEUMONIA", "PNEUMONIA", "NORMAL"]
    assert [r["explained_class"] for r in lines] == ["PNEUMONIA", "PNEUMONIA", "NORMAL"]
    assert {r["method"] for r in lines} == {method} and {r["layer"] for r in lines} == {"backbone/detector"}
    expected = cam.predict(detector_model("nested"), images)[1][:, 1]
    np.testing.assert_allclose([r["probability"] for r in lines[:2]], expected, atol=1e-5)
    for record in lines:
        overlay = np.asarray(Image.open(record["overlay"]))
        assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8
    saved = (out / "explanations.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in saved] == lines


def test_explain_normal_on_request(files, tmp_path, capsys):
    model_path, paths, _ = files
    assert cli.main(["explain", str(model_path), paths[0], "--class-index", "0", "--out", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["prediction"] == "PNEUMONIA" and record["explained_class"] == "NORMAL"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pneumo: error:") and "Traceback" not in err
    return err


def test_missing_image_is_a_one_line_error(files, tmp_path, capsys):
    model_path, _, _ = files
    missing = tmp_path / "missing.png"
    assert cli.main(["explain", str(model_path), str(missing), "--out", str(tmp_path)]) == 2
    assert "missing.png does not exist" in _one_line_error(capsys)


def test_unknown_layer_is_a_one_line_error_listing_candidates(files, tmp_path, capsys):
    model_path, paths, _ = files
    assert cli.main(["explain", str(model_path), paths[0], "--layer", "conv9", "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "No layer named 'conv9'" in err and "backbone/detector" in err
