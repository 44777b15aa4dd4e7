"""The explorer and the app view on the bright-disc detector, whose answers are known by construction."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from _cam_models import detector_model, disc_images
from _upload_files import png_bytes
from PIL import Image

from pneumo_lib import cam, uploads, widgets


@pytest.fixture(scope="module")
def model():
    return detector_model("flat", "sigmoid")


@pytest.fixture(scope="module")
def test_set():
    """Four disc images (PNEUMONIA for the detector) and three black ones (NORMAL).

    Two labels are deliberately wrong (index 3 says NORMAL, index 6 says PNEUMONIA), so the
    explorer's "wrong" filter must list exactly those two.
    """
    discs, masks, _ = disc_images(4, seed=1)
    images = np.concatenate([discs, np.zeros((3, *discs.shape[1:]), np.float32)])
    labels = np.array([1, 1, 1, 0, 0, 0, 1])
    return images, labels, masks


def _overlay_png(pane: widgets.ResultPane) -> Image.Image:
    src = re.search(r'class="pneumo-overlay"[^>]*src="data:image/png;base64,([^"]+)"', pane.pictures.value)
    return Image.open(io.BytesIO(base64.b64decode(src.group(1))))


def test_explain_predicts_and_explains_the_disc(model, test_set):
    images, _, masks = test_set
    e = widgets.explain(model, images[0])
    assert e.label == "PNEUMONIA" and e.predicted == 1
    assert e.probability == pytest.approx(float(cam.predict(model, images[:1])[1][0, 1]), abs=1e-6)
    assert e.heatmap.shape == (32, 32) and 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0
    peak = np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)
    assert masks[0][peak], "the PNEUMONIA map must peak on the disc"
    assert np.array_equal(e.overlay, cam.overlay(images[0], e.heatmap, alpha=0.4))
    black = widgets.explain(model, images[4])
    assert black.label == "NORMAL" and black.summary().startswith("NORMAL (probability of pneumonia 0.")


def test_threshold_decides_the_label_and_the_explained_class(model, test_set):
    black = test_set[0][4]
    p = widgets.explain(model, black).probability
    strict = widgets.explain(model, black, threshold=p / 2)
    assert strict.label == "PNEUMONIA"
    assert not np.array_equal(strict.heatmap, widgets.explain(model, black).heatmap)


def test_explain_rejects_unknown_methods_and_batches(model, test_set):
    with pytest.raises(ValueError, match="Unknown CAM method 'lime'. Valid methods: grad_cam"):
        widgets.explain(model, test_set[0][0], method="lime")
    with pytest.raises(ValueError, match=r"one image \(S, S, C\), got shape \(2, 32, 32, 1\)"):
        widgets.explain(model, test_set[0][:2])


def test_explorer_filters_by_class_and_by_outcome(model, test_set):
    images, labels, _ = test_set
    ex = widgets.Explorer({"detector": model}, images, labels, names=[f"img{i}.png" for i in range(7)])
    assert ex.shown() == list(range(7)) and ex.picker.value == 0
    assert ex.current.label == "PNEUMONIA"
    assert "img0.png" in ex.result.summary.value and "correct" in ex.result.summary.value
    ex.outcome.value = False
    assert ex.shown() == [3, 6]
    assert ex.picker.value == 3 and ex.current.label == "PNEUMONIA"
    assert "wrong" in ex.result.summary.value
    ex.true_class.value = 1
    assert ex.shown() == [6]
    ex.outcome.value = True
    assert ex.shown() == [0, 1, 2]
    ex.true_class.value, ex.outcome.value = 0, True
    assert ex.shown() == [4, 5]


def test_explorer_controls_redraw_in_place(model, test_set):
    images, labels, _ = test_set
    ex = widgets.Explorer(model, images, labels)
    assert ex.layer.options[0] == ("default (detector)", "")
    assert ex.layer.label == "default (detector)" and ex.current.layer is None
    ex.select(2)
    assert ex.picker.value == 2
    ex.opacity.value = 0.0
    gray = np.repeat((images[2] * 255).round().astype(np.uint8), 3, axis=-1)
    assert np.array_equal(ex.current.overlay, gray)
    ex.method.value = "score_cam"
    assert ex.current.method == "score_cam"
    ex.outcome.value = False
    ex.select(0)  # hidden by the filter: the filters are cleared
    assert ex.outcome.value is None and ex.picker.value == 0
    fig = ex.figure()
    assert len(fig.axes) == 4  # image, heatmap (+ colour bar), overlay
    assert fig.axes[2].get_title() == "overlay, explaining PNEUMONIA"


def test_explorer_uploads_and_errors(model, test_set):
    images, labels, _ = test_set
    ex = widgets.Explorer({"detector": model}, images, labels)
    ex.source.value = "Upload"
    assert ex.current is None and ex.upload.layout.display is None
    disc = (images[0, ..., 0] * 255).astype(np.uint8)
    e = ex.explain_upload(uploads.Upload("mine.png", png_bytes(disc)))
    assert e.label == "PNEUMONIA" and "mine.png" in ex.result.summary.value
    assert ex.explain_upload(uploads.Upload("notes.jpg", b"not an image")) is None
    assert "pneumo-error" in ex.result.summary.value
    assert ex.result.text.startswith("Could not explain notes.jpg: notes.jpg is not a readable image (")
    assert ex.result.pictures.value == ""


def test_explorer_refuses_models_that_do_not_fit_the_images(model, test_set):
    images, labels, _ = test_set
    with pytest.raises(ValueError, match=r"Model 'small' takes inputs \(16, 16, 1\)"):
        widgets.Explorer({"small": detector_model(size=16)}, images, labels)
    with pytest.raises(ValueError, match="7 labels"):
        widgets.Explorer(model, images[:3], labels)


def test_app_view_shows_prediction_overlay_and_download(model, test_set):
    view = widgets.AppView(model, "Model: the detector.")
    disc = (test_set[0][0, ..., 0] * 255).astype(np.uint8)
    e = view.explain_upload(uploads.Upload("scan.png", png_bytes(disc)))
    # A 32 x 32 disc is no radiograph: the result line is dimmed under the warning box.
    assert view.result.summary.value == (
        '<div class="pneumo-result pneumo-doubtful" style="opacity:0.55"><b>scan.png</b>: '
        f'{e.summary()[:-1]}; uncalibrated: the model card holds no fitted temperature) (uploaded)</div>')
    assert view.result.warning_text.startswith("\u26a0 This does not look like a chest X-ray")
    assert _overlay_png(view.result).size == (widgets.DISPLAY_SIZE, widgets.DISPLAY_SIZE)
    assert 'download="scan-grad_cam.png"' in view.result.pictures.value
    view.method.value = "grad_cam_plus_plus"  # redraws the same upload
    assert view.current.method == "grad_cam_plus_plus" and "Grad-CAM++ overlay" in view.result.pictures.value


def test_app_view_escapes_hostile_names_and_keeps_going(model):
    view = widgets.AppView(model)
    hostile = "<img src=x onerror=alert(1)>.jpg"
    assert view.explain_upload(uploads.Upload(uploads.display_name(hostile), b"GIF89a...")) is None
    assert "<img src=x" not in view.result.summary.value
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in view.result.summary.value
    assert view.explain_upload(uploads.Upload("ok.png", png_bytes(np.zeros((32, 32), np.uint8)))).label == "NORMAL"


def test_app_from_environment_loads_the_served_model(tmp_path, monkeypatch):
    from pneumo_lib import app, models, training

    path = training.save_model(models.build_model("paper_cnn", 64), tmp_path / "m.keras")
    monkeypatch.setenv(app.MODEL_ENV, str(path))
    monkeypatch.setenv(app.NOTE_ENV, "Model: m.keras.")
    monkeypatch.delenv(app.NOTICE_ENV, raising=False)
    view = widgets.app_from_environment()
    assert isinstance(view, widgets.AppView) and view.threshold == 0.5
    assert "Model: m.keras. Decision threshold: probability of pneumonia &gt;= 0.50." in view.children[0].value


def test_explain_defaults_to_the_models_own_threshold(model, test_set):
    """No threshold given: the model's (its card's, attached on loading), as everywhere else."""
    from pneumo_lib import decision

    black = test_set[0][4]
    p = widgets.explain(model, black).probability
    carded = decision.attach_threshold(detector_model("flat", "sigmoid"), {"evaluation": {"threshold": p / 2}})
    own = widgets.explain(carded, black)
    assert own.threshold == pytest.approx(p / 2) and own.label == "PNEUMONIA"
    np.testing.assert_array_equal(own.heatmap, widgets.explain(model, black, threshold=p / 2).heatmap)
    assert widgets.explain(carded, black, threshold=0.5).label == "NORMAL"
    view = widgets.AppView(carded)
    assert view.threshold is None and view.decision_threshold() == pytest.approx(p / 2)


def test_the_pure_explanation_module_needs_no_widgets():
    import subprocess
    import sys

    code = ("import sys; from pneumo_lib import explanations; "
            "assert 'ipywidgets' not in sys.modules, 'explanations imported ipywidgets'; "
            "from pneumo_lib import widgets; assert widgets.explain is explanations.explain")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def _write_pngs(folder, images) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"img{i}.png"
        path.write_bytes(png_bytes(np.round(image[..., 0] * 255).astype(np.uint8)))
        paths.append(path)
    return paths


def test_explorer_offers_models_of_another_input_size_and_more_sources(model, test_set, tmp_path):
    """A 16-px detector beside the 32-px one reads the test split's files at 16 px; a second
    source (files only) is offered beside the test split and uploads, with its own labels."""
    images, labels, _ = test_set
    paths = _write_pngs(tmp_path / "test", images)
    extra = widgets.ImageSource([0, 1], ["black.png", "disc.png"],
                                paths=_write_pngs(tmp_path / "extra", images[[4, 0]]))
    small = detector_model(size=16)
    ex = widgets.Explorer({"detector": model, "small": small}, images, labels, paths=paths,
                          threshold={"small": 0.3}, sources={"more": extra})
    assert list(ex.source.options) == [widgets.TEST_SPLIT, "more", widgets.UPLOAD]
    ex.model.value = "small"
    assert ex.current.image.shape == (16, 16, 1) and ex.decision_threshold() == 0.3
    # At 16 px a black image gets exactly sigmoid(-2 * 0.5); the blurred discs more (its own threshold 0.3).
    p = ex.probabilities()
    assert p[4:] == pytest.approx([1 / (1 + np.e)] * 3, abs=1e-6) and (p[:4] > 0.4).all()
    ex.outcome.value = False
    assert ex.shown() == [3, 6]
    ex.outcome.value = None
    shown = ex.select(1, source="more")
    assert ex.image_set is extra and shown.label == "PNEUMONIA" and ex.result.text.startswith("disc.png: PNEUMONIA")
    assert [o[0] for o in ex.picker.options] == ["black.png (true: NORMAL)", "disc.png (true: PNEUMONIA)"]
    ex.model.value = "detector"
    assert ex.current.image.shape == (32, 32, 1) and ex.result.text.startswith("disc.png: PNEUMONIA")
    # An upload is read again at the input size of the model chosen afterwards.
    ex.source.value = widgets.UPLOAD
    ex.explain_upload(uploads.Upload("up.png", paths[0].read_bytes()))
    ex.model.value = "small"
    assert ex.current.image.shape == (16, 16, 1) and ex.result.text.startswith("up.png: PNEUMONIA")
    with pytest.raises(ValueError, match="Unknown source 'nowhere'"):
        ex.select(0, source="nowhere")
    with pytest.raises(ValueError, match="outside 'more', which holds 2 images"):
        ex.select(5, source="more")


def test_explorer_sources_refuse_what_they_cannot_show(model, test_set):
    images, labels, _ = test_set
    with pytest.raises(ValueError, match=r"give the test split's files with paths="):
        widgets.Explorer({"small": detector_model(size=16)}, images, labels)
    arrays = widgets.ImageSource([1], images=images[:1])
    with pytest.raises(ValueError, match=r"images of source 'arr' are \(32, 32, 1\) and it has no files"):
        widgets.Explorer({"detector": model, "small": detector_model(size=16)}, images, labels,
                         paths=[f"x{i}.png" for i in range(7)], sources={"arr": arrays})
    with pytest.raises(ValueError, match="under a name other than 'Test split'"):
        widgets.Explorer(model, images, labels, sources={widgets.TEST_SPLIT: arrays})
    with pytest.raises(ValueError, match="1 labels, 1 names, 2 images"):
        widgets.ImageSource([1], images=images[:2])
    with pytest.raises(ValueError, match="unknown models"):
        widgets.Explorer({"detector": model}, images, labels, threshold={"other": 0.3})


def test_the_real_sample_source_holds_the_16_real_xrays_with_their_labels():
    from pneumo_lib import paths

    if not (paths.dataset_dir("sample")).is_dir():
        pytest.skip("the 16 real images are not cached (pneumo data sample fetches them)")
    src = widgets.real_sample_source()
    assert len(src) == 16 and src.labels.tolist().count(1) == 8
    assert all(("PNEUMONIA" in p) == bool(y) for p, y in zip(src.paths, src.labels))
    assert src.for_input(24, 3).shape == (16, 24, 24, 3)
