"""One rule for every prediction: ``pneumo explain``, the app and the explorer agree on every image.

The model is the bright-disc detector (``_cam_models``) with its head weights doubled, saved
with a model card whose validation threshold is 0.13. Its P(PNEUMONIA) is known by
construction: logit = 2 (100 bright - 2 dark), so a black image gets sigmoid(-2) = 0.12
(NORMAL at 0.13), flat gray images of 0.3 and 0.45 get sigmoid(-0.8) = 0.31 and
sigmoid(-0.2) = 0.45 (PNEUMONIA at 0.13, NORMAL at 0.5: where a logit >= 0 rule, the CLI's
old one, disagrees with the card), and disc images get about 0.9.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _cam_models import detector_model, disc_images
from pneumo_lib import app, cam, cli, data, training, uploads, widgets

CARD_THRESHOLD = 0.13
#: What the card's threshold says about each file (black, gray 0.3, gray 0.45, two discs).
EXPECTED = ["NORMAL", "PNEUMONIA", "PNEUMONIA", "PNEUMONIA", "PNEUMONIA"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rule")
    model_path = folder / "detector.keras"
    detector_model("nested", scale=2.0).save(model_path)
    training.card_path(model_path).write_text(json.dumps({"evaluation": {"threshold": CARD_THRESHOLD}}))
    discs = disc_images(2, seed=7)[0][..., 0]
    pictures = [np.zeros((32, 32)), np.full((32, 32), 0.3), np.full((32, 32), 0.45), *discs]
    paths = []
    for i, picture in enumerate(pictures):
        path = folder / f"xray{i}.png"
        Image.fromarray(np.round(picture * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return model_path, paths


def _cli(capsys, *args) -> list[dict]:
    assert cli.main(["explain", *map(str, args)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_cli_and_app_give_the_same_labels_and_explain_the_same_class(files, tmp_path, capsys, monkeypatch, method):
    model_path, paths = files
    records = _cli(capsys, model_path, *paths, "--method", method, "--out", tmp_path)
    assert [r["prediction"] for r in records] == EXPECTED
    assert [r["explained_class"] for r in records] == EXPECTED
    assert {r["threshold"] for r in records} == {CARD_THRESHOLD}

    monkeypatch.setenv(app.MODEL_ENV, str(model_path))
    monkeypatch.setenv(app.NOTE_ENV, "")
    view = widgets.app_from_environment()  # the app's code path: load, upload, explain
    view.method.value = {"gradcam": "grad_cam", "scorecam": "score_cam"}[method]
    shown = [view.explain_upload(uploads.Upload(p.name, p.read_bytes())) for p in paths]
    assert [e.label for e in shown] == EXPECTED
    np.testing.assert_allclose([e.probability for e in shown], [r["probability"] for r in records], atol=1e-5)

    # The heatmap the app shows is the map of the class the CLI explained.
    model = training.load_model(model_path)
    images = data.load_images(paths, 32, 1)
    classes = [data.CLASSES.index(r["explained_class"]) for r in records]
    np.testing.assert_allclose(np.stack([e.heatmap for e in shown]),
                               cam.METHODS[method](model, images, class_index=classes), atol=1e-5)
    # The explorer (the chapter's view) says the same.
    explorer = widgets.Explorer({"detector": model}, images, [1] * len(paths), [p.name for p in paths])
    assert [explorer.select(i).label for i in range(len(paths))] == EXPECTED


def test_the_threshold_option_overrides_the_card(files, tmp_path, capsys):
    model_path, paths = files
    records = _cli(capsys, model_path, *paths, "--threshold", "0.5", "--out", tmp_path)
    assert [r["prediction"] for r in records] == ["NORMAL", "NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"]
    assert [r["explained_class"] for r in records] == [r["prediction"] for r in records]
    view = widgets.AppView(training.load_model(model_path), threshold=0.5)
    assert [view.explain_upload(uploads.Upload(p.name, p.read_bytes())).label for p in paths] == \
        [r["prediction"] for r in records]


def test_explanations_jsonl_is_written_afresh_unless_append(files, tmp_path, capsys):
    model_path, paths = files
    _cli(capsys, model_path, paths[0], "--out", tmp_path)
    _cli(capsys, model_path, paths[1], "--out", tmp_path)
    saved = [json.loads(line) for line in (tmp_path / "explanations.jsonl").read_text().splitlines()]
    assert [r["image"] for r in saved] == [str(paths[1])]
    _cli(capsys, model_path, paths[2], "--out", tmp_path, "--append")
    saved = [json.loads(line) for line in (tmp_path / "explanations.jsonl").read_text().splitlines()]
    assert [r["image"] for r in saved] == [str(paths[1]), str(paths[2])]


def test_a_bad_threshold_is_a_one_line_error(files, tmp_path, capsys):
    model_path, paths = files
    assert cli.main(["explain", str(model_path), str(paths[0]), "--threshold", "1.5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pneumo: error:") and "threshold must be strictly between 0 and 1" in err
