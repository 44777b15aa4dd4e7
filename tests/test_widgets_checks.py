"""What the app and the explorer tell a visitor beside the prediction (issues 18 and 15).

* an upload that does not look like a chest X-ray (1 x 1, noise) gets the
  "This does not look like a chest X-ray" warning, a real Kaggle X-ray does not;
* a multi-frame DICOM gets the FramesWarning (only the first frame is used);
* an upload over the size limit gets a visible error, not the previous result;
* the probability shown is the calibrated one, ``sigmoid(logit / T)``, worked out by hand for
  a model whose logit is known, with the decision left to the one rule.
"""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from _cam_models import detector_model, known_logit_model
from _data_helpers import write_dicom
from _upload_files import png_bytes
from PIL import Image

from pneumo_lib import decision, explanations, uploads, widgets
from pneumo_lib._tf import keras

NOT_XRAY = "This does not look like a chest X-ray"


@pytest.fixture(scope="module")
def detector():
    return detector_model("flat", "sigmoid")


@pytest.fixture(scope="module")
def real_xray():
    """A real chest X-ray of Kaggle's val split (``pneumonia-model-package``, data.sample)."""
    from pneumo_lib import data
    from pneumo_lib.data.sample import SampleError

    try:
        folder = data.ensure_sample()
    except SampleError as err:  # pragma: no cover - needs PyPI the first time
        pytest.skip(f"the 16 real images are not available here: {err}")
    return folder / "val" / "PNEUMONIA" / "person1946_bacteria_4874.jpeg"


def _noise(size: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


# --------------------------------------------------------------------------- not a chest X-ray


def test_a_one_pixel_upload_is_answered_only_under_the_warning(detector):
    view = widgets.AppView(detector, "Model: the detector.")
    e = view.explain_upload(uploads.Upload("dot.png", png_bytes(np.full((1, 1), 128, np.uint8))))
    assert e is not None  # the model still answers, but not without the warning
    warning = view.result.warning_text
    assert warning.startswith(f"\u26a0 {NOT_XRAY}, so the model's answer below means nothing for it:")
    assert "It is too small for a radiograph (1x1 px; at least 64 px a side)." in warning
    assert 'class="pneumo-warning" role="alert"' in view.result.warning.value
    assert 'class="pneumo-result pneumo-doubtful"' in view.result.summary.value
    assert view.warnings == [warning[2:]]
    # The warning is laid out above the result line, in the same pane.
    assert view.result.children[:2] == (view.result.warning, view.result.summary)


def test_a_noise_upload_gets_the_warning_and_keeps_it_on_redraw(detector):
    view = widgets.AppView(detector)
    view.explain_upload(uploads.Upload("noise.png", png_bytes(_noise())))
    warning = view.result.warning_text
    assert warning.startswith(f"\u26a0 {NOT_XRAY}")
    assert "It looks like noise, not anatomy (neighbouring pixels correlate" in warning
    view.method.value = "grad_cam_plus_plus"  # a redraw of the same upload keeps its warning
    assert view.current.method == "grad_cam_plus_plus"
    assert view.result.warning_text == warning


def test_a_real_chest_xray_gets_no_warning(detector, real_xray):
    view = widgets.AppView(detector)
    assert view.explain_upload(uploads.Upload(real_xray.name, real_xray.read_bytes())) is not None
    assert view.result.warning.value == "" and view.warnings == []
    assert "pneumo-doubtful" not in view.result.summary.value
    # ... and after a noise upload, the next real X-ray clears the warning.
    view.explain_upload(uploads.Upload("noise.png", png_bytes(_noise())))
    assert NOT_XRAY in view.result.warning_text
    view.explain_upload(uploads.Upload(real_xray.name, real_xray.read_bytes()))
    assert view.result.warning.value == ""


def test_a_multi_frame_dicom_says_only_the_first_frame_is_used(detector, real_xray):
    gray8 = np.asarray(Image.open(real_xray).convert("L").resize((256, 200)))
    frames = np.stack([gray8, 255 - gray8, gray8 // 2]).astype(np.uint16) * 16
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "series.dcm"
        write_dicom(path, frames)
        content = path.read_bytes()
    view = widgets.AppView(detector)
    assert view.explain_upload(uploads.Upload("series.dcm", content)) is not None
    assert view.result.warning_text.startswith("\u26a0 series.dcm holds 3 frames; only the first is used")
    assert 'class="pneumo-warning" role="alert"' in view.result.warning.value
    assert NOT_XRAY not in view.result.warning_text  # the first frame is the real X-ray


def test_an_upload_over_the_limit_replaces_the_previous_result_with_a_message(detector, real_xray):
    view = widgets.AppView(detector)
    view.explain_upload(uploads.Upload(real_xray.name, real_xray.read_bytes()))
    assert "pneumo-result" in view.result.summary.value
    huge = b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20)
    assert view.explain_upload(uploads.Upload("huge.png", huge)) is None
    assert view.result.text == ("Could not explain huge.png: huge.png is 21.0 MB; the limit is 20 MB. "
                                "Downscale or compress the image first.")
    assert view.result.pictures.value == "" and view.result.warning.value == "" and view.current is None


def test_the_explorer_warns_about_uploads_but_not_about_test_images(detector):
    images = np.zeros((2, 32, 32, 1), np.float32)
    ex = widgets.Explorer(detector, images, [0, 0])
    assert ex.result.warning.value == ""
    ex.source.value = "Upload"
    ex.explain_upload(uploads.Upload("dot.png", png_bytes(np.full((1, 1), 128, np.uint8))))
    assert NOT_XRAY in ex.result.warning_text
    ex.select(1)
    assert ex.result.warning.value == "" and ex.warnings == []


def test_upload_warnings_lists_every_reason_then_the_frames():
    assert widgets.upload_warnings() == []
    assert widgets.upload_warnings(["A.", "B."], ["x.dcm holds 2 frames; only the first is used."]) == [
        f"{NOT_XRAY}, so the model's answer below means nothing for it: A. B.",
        "x.dcm holds 2 frames; only the first is used."]


# --------------------------------------------------------------------------- calibrated probability


# logit = weight * mean gray + bias (default 10 g - 4)
_known_logit_model = partial(known_logit_model, weight=10.0, bias=-4.0)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_the_shown_probability_is_sigmoid_of_logit_over_t():
    model = _known_logit_model()
    image = np.full((8, 8, 1), 0.6, np.float32)  # logit 10 * 0.6 - 4 = 2
    card = {"evaluation": {"threshold": 0.8}, "calibration": {"temperature": 2.0, "fitted_on": "val"}}
    decision.attach_temperature(decision.attach_threshold(model, card), card)
    e = widgets.explain(model, image)
    assert e.probability == pytest.approx(_sigmoid(2.0), abs=1e-6)  # 0.8808: what the rule compares
    assert e.calibrated and e.temperature == 2.0
    assert e.calibrated_probability == pytest.approx(_sigmoid(1.0), abs=1e-6)  # 0.7311 shown
    assert e.shown_probability == e.calibrated_probability
    # The rule is unchanged: raw 0.881 >= 0.8, and on the calibrated scale 0.731 >= sigmoid(ln 4 / 2) = 2/3.
    assert e.label == "PNEUMONIA" and e.threshold == pytest.approx(0.8)
    assert e.shown_threshold == pytest.approx(2 / 3, abs=1e-12)
    assert e.summary() == "PNEUMONIA (probability of pneumonia 0.73)"
    assert e.summary(calibration=True) == (
        "PNEUMONIA (probability of pneumonia 0.73; calibrated: temperature scaling, T = 2.00)")
    view = widgets.AppView(model)
    view.show_image("flat.png", image)
    assert view.result.text == (
        "flat.png: PNEUMONIA (probability of pneumonia 0.73; calibrated: temperature scaling, T = 2.00)")
    assert widgets.decision_note(model) == (
        "Decision threshold: calibrated probability of pneumonia >= 0.67 (0.80 before calibration, chosen "
        "on the validation split). Probabilities are calibrated by temperature scaling (T = 2.00, fitted "
        "on the validation split).")


def test_a_threshold_between_raw_and_calibrated_still_decides_on_the_raw_probability():
    """logit 0.4 at T = 4: raw 0.599, calibrated sigmoid(0.1) = 0.525; threshold 0.55 (raw scale)."""
    model = decision.attach_temperature(_known_logit_model(weight=1.0, bias=0.0), 4.0)
    e = widgets.explain(model, np.full((8, 8, 1), 0.4, np.float32), threshold=0.55)
    assert e.probability == pytest.approx(_sigmoid(0.4), abs=1e-6)
    assert e.calibrated_probability == pytest.approx(_sigmoid(0.1), abs=1e-6)
    assert e.label == "PNEUMONIA"  # 0.599 >= 0.55, although 0.525 < 0.55
    assert e.shown_probability >= e.shown_threshold


def test_without_a_temperature_the_view_says_uncalibrated():
    model = _known_logit_model()
    decision.attach_temperature(model, {})  # a card without "calibration": T = 1
    e = widgets.explain(model, np.full((8, 8, 1), 0.6, np.float32))
    assert not e.calibrated and e.calibrated_probability is None
    assert e.shown_probability == e.probability == pytest.approx(_sigmoid(2.0), abs=1e-6)
    assert e.summary(calibration=True) == (
        "PNEUMONIA (probability of pneumonia 0.88; uncalibrated: the model card holds no fitted temperature)")
    assert widgets.decision_note(model) == (
        "Decision threshold: probability of pneumonia >= 0.50. Probabilities are uncalibrated (not calibrated: "
        "the model card holds no fitted temperature).")


def test_the_explorer_shows_the_calibrated_probability_of_a_test_image():
    model = decision.attach_temperature(_known_logit_model(), 2.0)
    images = np.stack([np.full((8, 8, 1), g, np.float32) for g in (0.6, 0.2)])  # logits 2 and -2
    ex = widgets.Explorer({"known": model}, images, [1, 0], names=["a.png", "b.png"])
    assert ex.result.text == (
        "a.png: PNEUMONIA (probability of pneumonia 0.73; calibrated: temperature scaling, T = 2.00); "
        "true class PNEUMONIA, correct")
    ex.select(1)
    assert ex.current.calibrated_probability == pytest.approx(_sigmoid(-1.0), abs=1e-6)
    np.testing.assert_allclose(explanations.calibrated_probabilities(model, images),
                               [_sigmoid(1.0), _sigmoid(-1.0)], atol=1e-6)
    # The filters decide with the rule on the model's own probabilities, as before.
    np.testing.assert_allclose(ex.probabilities(), [_sigmoid(2.0), _sigmoid(-2.0)], atol=1e-6)


def test_the_app_loads_the_temperature_from_the_model_card(tmp_path, monkeypatch):
    from pneumo_lib import app, training

    path = tmp_path / "m.keras"
    _known_logit_model().save(path)
    card = {"evaluation": {"threshold": 0.8}, "calibration": {"temperature": 2.0, "fitted_on": "val"}}
    training.write_card(path, card)
    monkeypatch.setenv(app.MODEL_ENV, str(path))
    monkeypatch.setenv(app.NOTE_ENV, "Model: m.keras.")
    monkeypatch.delenv(app.NOTICE_ENV, raising=False)
    view = widgets.app_from_environment()
    assert "calibrated probability of pneumonia &gt;= 0.67 (0.80 before calibration" in view.children[0].value
    assert "T = 2.00" in view.children[0].value
    view.show_image("flat.png", np.full((8, 8, 1), 0.6, np.float32))
    assert view.current.shown_probability == pytest.approx(_sigmoid(1.0), abs=1e-6)


def test_a_bad_temperature_is_named():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0.*got -1"):
        explanations.calibration_note(-1)


# --------------------------------------------------------------------------- the page's size guard


def test_the_page_refuses_oversized_files_before_sending_them():
    from pneumo_lib import app

    html = widgets.upload_size_guard_html()
    assert html.startswith("<script>") and html.rstrip().endswith("</script>")
    assert f"limit: {uploads.MAX_UPLOAD_BYTES}," in html and "stopImmediatePropagation" in html
    assert "(Refused in the browser: nothing was sent.)" in html
    assert widgets.upload_size_guard(1000).data == widgets.upload_size_guard_html(1000)
    for bad in (0, -5, 2.5, True, "20"):
        with pytest.raises(ValueError, match=f"limit must be a positive number of bytes, got {bad!r}"):
            widgets.upload_size_guard_html(bad)
    # The app's notebook displays the guard before the page, and the pane carries the classes it finds.
    source = "".join("".join(c["source"]) for c in __import__("json").loads(app.APP_NOTEBOOK.read_text())["cells"])
    assert "display(upload_size_guard())" in source
    pane = widgets.ResultPane()
    assert "pneumo-pane" in pane._dom_classes and "pneumo-summary" in pane.summary._dom_classes
    assert "pneumo-warnings" in pane.warning._dom_classes and "pneumo-pictures" in pane.pictures._dom_classes
