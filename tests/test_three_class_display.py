"""Three-class models (NORMAL, bacterial, viral) in the explanation path: explain, the result
pane, the app page, the explorer and the served model, on a hand-built model whose answers
are known.

The model: a 1x1 convolution gives ``bright = relu(x - 0.5)`` and ``dark = relu(0.5 - x)``,
global average pooling, then three logits ``log(P_GRAY) + KERNEL^T [bright, dark]``. So

* a uniform 0.5 gray image has ``bright = dark = 0`` exactly: its probabilities are exactly
  ``P_GRAY = (0.35, 0.64, 0.01)``, predicted "bacterial";
* a black image (dark 0.5) adds 5 to the NORMAL logit: predicted NORMAL;
* a white disc on black (bright on about a fifth of the image) adds 100 x mean(bright) to the
  viral logit: predicted "viral", and the viral Grad-CAM peaks on the disc.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pytest
from _upload_files import png_bytes

from pneumo_lib import cam, decision, explanations, uploads, widgets
from pneumo_lib._tf import keras
from pneumo_lib.data.subtypes import THREE_CLASSES

SIZE = 16
P_GRAY = (0.35, 0.64, 0.01)
#: Rows (bright, dark), columns (NORMAL, bacterial, viral).
KERNEL = np.array([[0.0, 0.0, 100.0], [10.0, 0.0, 0.0]], np.float32)
GRAY_LINE = "bacterial (P = 0.64; NORMAL 0.35, bacterial 0.64, viral 0.01)"


def _known_model(units: int = 3, name: str = "three_detector"):
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="detector")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(conv(inputs))
    dense = keras.layers.Dense(units, name="logits")
    out = keras.layers.Activation("softmax" if units > 1 else "sigmoid", name="prediction")(dense(x))
    model = keras.Model(inputs, out, name=name)
    conv.set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2), np.array([-0.5, 0.5], np.float32)])
    if units == 3:
        dense.set_weights([KERNEL, np.log(np.array(P_GRAY, np.float32))])
    elif units == 1:  # two-class companion: logit 100 bright - 2 dark - 1 (gray NORMAL, disc PNEUMONIA)
        dense.set_weights([np.array([[100.0], [-2.0]], np.float32), np.array([-1.0], np.float32)])
    else:
        dense.set_weights([np.zeros((2, units), np.float32), np.zeros(units, np.float32)])
    return model


@pytest.fixture(scope="module")
def model():
    return _known_model()


def _disc() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (((yy - 7.5) ** 2 + (xx - 7.5) ** 2) <= 16).astype(np.float32)[..., None]


GRAY = np.full((SIZE, SIZE, 1), 0.5, np.float32)
BLACK = np.zeros((SIZE, SIZE, 1), np.float32)
DISC = _disc()


def test_explain_gives_the_arg_max_and_all_three_probabilities(model):
    e = explanations.explain(model, GRAY)
    assert e.class_names == THREE_CLASSES and e.n_classes == 3 and not e.two_class
    assert e.probabilities == pytest.approx(P_GRAY, abs=1e-6)
    assert e.predicted == 1 and e.label == "bacterial" and e.explained_label == "bacterial"
    assert e.probability == pytest.approx(0.64, abs=1e-6)
    assert e.summary() == GRAY_LINE
    assert e.summary(calibration=True) == GRAY_LINE[:-1] + "; " + explanations.THREE_CLASS_CALIBRATION_NOTE + ")"
    # Two-class notions: none, said so, nothing crashes.
    assert e.threshold is None and not e.calibrated and e.temperature == 1.0 and e.calibrated_probability is None
    assert e.refer is False and math.isnan(e.uncertainty)
    assert e.referral_note() == explanations.THREE_CLASS_REFERRAL_NOTE
    with pytest.raises(ValueError, match="has no decision threshold"):
        e.shown_threshold
    assert explanations.explain(model, BLACK).label == "NORMAL"
    assert explanations.explain(model, DISC).label == "viral"


def test_the_map_shown_is_the_predicted_class_map_unless_a_class_is_chosen(model):
    e = explanations.explain(model, DISC)
    assert e.predicted == 2 and e.explained == 2
    np.testing.assert_array_equal(e.heatmap, cam.grad_cam(model, DISC[None], class_index=2)[0])
    assert DISC[..., 0][np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)] == 1.0, "viral map on the disc"
    normal = explanations.explain(model, DISC, class_index=0)
    assert normal.label == "viral" and normal.explained_label == "NORMAL"  # the prediction does not move
    np.testing.assert_array_equal(normal.heatmap, cam.grad_cam(model, DISC[None], class_index=0)[0])
    assert not np.array_equal(normal.heatmap, e.heatmap)
    assert normal.heatmap[8, 8] == 0.0 and normal.heatmap[0, 0] > 0  # NORMAL follows the dark background
    pp = explanations.explain(model, DISC, method="grad_cam_plus_plus")
    np.testing.assert_array_equal(pp.heatmap, cam.grad_cam_plus_plus(model, DISC[None], class_index=2)[0])
    with pytest.raises(ValueError, match=r"class_index must be None \(the predicted class\) or an int in 0..2 "
                                         r"\(0 = NORMAL, 1 = bacterial, 2 = viral\), got 3"):
        explanations.explain(model, DISC, class_index=3)
    with pytest.raises(ValueError, match="threshold=0.5 does not apply to model 'three_detector'"):
        explanations.explain(model, DISC, threshold=0.5)


def test_probabilities_and_the_one_rule(model):
    stack = np.stack([GRAY, DISC, BLACK])
    p = explanations.probabilities(model, stack)
    assert p.shape == (3, 3) and p[0] == pytest.approx(P_GRAY, abs=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert decision.predicted_labels(p).tolist() == [1, 2, 0]
    assert cam.predict(model, stack)[0].tolist() == [1, 2, 0]
    # Two classes keep the threshold rule.
    assert decision.predicted_labels(np.array([0.2, 0.5, 0.7]), 0.6).tolist() == [0, 0, 1]
    assert decision.predicted_labels(np.array([[0.8, 0.2], [0.5, 0.5]])).tolist() == [0, 1]
    assert decision.model_classes(model) == 3 and decision.class_names(3) == THREE_CLASSES
    four = _known_model(4, name="four_units")
    with pytest.raises(ValueError, match=r"Model 'four_units' has output shape \(None, 4\)"):
        explanations.explain(four, GRAY)
    with pytest.raises(ValueError, match=r"output shape \(None, 4\)"):
        widgets.AppView(four)
    with pytest.raises(ValueError, match=r"output shape \(None, 4\)"):
        widgets.Explorer({"four": four}, np.stack([GRAY]), [0])
    with pytest.raises(ValueError, match="got 4"):
        decision.class_names(4)


def test_result_pane_and_app_view_show_the_class_and_the_three_probabilities(model):
    view = widgets.AppView(model, "Model: three classes.")
    assert view.decision_threshold() is None
    e = view.show_image("gray.png", GRAY)
    assert e.label == "bacterial"
    assert view.result.text == f"gray.png: {e.summary(calibration=True)}"
    assert GRAY_LINE[:-1] in view.result.text
    for words in ("NORMAL 0.35", "bacterial 0.64", "viral 0.01"):
        assert words in view.result.summary.value
    assert "Grad-CAM, explaining bacterial" in view.result.pictures.value
    assert "pneumo-certainty" in view.result.referral.value and "pneumo-refer" not in view.result.referral.value
    assert view.result.referral_text == explanations.THREE_CLASS_REFERRAL_NOTE
    disc = view.explain_upload(uploads.Upload("disc.png", png_bytes((DISC[..., 0] * 255).astype(np.uint8))))
    assert disc.label == "viral" and "disc.png: viral (P = " in view.result.text
    np.testing.assert_array_equal(disc.heatmap, cam.grad_cam(model, disc.image[None], class_index=2)[0])
    # The page's sentences say plainly that the two-class notions do not apply.
    assert widgets.decision_note(model) == widgets.THREE_CLASS_DECISION_NOTE
    assert "no decision threshold" in widgets.THREE_CLASS_DECISION_NOTE
    assert "no temperature applies" in widgets.THREE_CLASS_DECISION_NOTE
    assert widgets.referral_page_note(model) == widgets.THREE_CLASS_REFERRAL_PAGE_NOTE
    with pytest.raises(ValueError, match="does not apply to a three-class model"):
        widgets.decision_note(model, 0.5)
    with pytest.raises(ValueError, match="does not apply to a three-class model"):
        widgets.AppView(model, threshold=0.5)


def test_explorer_takes_a_three_class_model_and_three_class_labels(model):
    images = np.stack([GRAY, DISC, BLACK, DISC, GRAY])
    labels = [1, 2, 0, 1, 0]  # predictions 1, 2, 0, 2, 1: images 3 and 4 are wrong
    two = _known_model(1, name="two_detector")  # predicts NORMAL, PNEUMONIA, NORMAL, PNEUMONIA, NORMAL
    names = [f"img{i}.png" for i in range(5)]
    ex = widgets.Explorer({"three": model, "two": two}, images, labels, names=names, classes=THREE_CLASSES)
    assert [o[0] for o in ex.true_class.options] == ["any", "NORMAL", "bacterial", "viral"]
    assert [o[0] for o in ex.picker.options][:2] == ["img0.png (true: bacterial)", "img1.png (true: viral)"]
    assert ex.decision_threshold() is None
    assert ex.probabilities().shape == (5, 3) and ex.predicted().tolist() == [1, 2, 0, 2, 1]
    assert ex.result.text == f"img0.png: {GRAY_LINE[:-1]}; {explanations.THREE_CLASS_CALIBRATION_NOTE}); " \
                             "true class bacterial, correct"
    ex.true_class.value = 2
    assert ex.shown() == [1] and ex.current.label == "viral"
    ex.true_class.value = None
    ex.outcome.value = False
    assert ex.shown() == [3, 4] and "true class bacterial, wrong" in ex.result.text
    ex.outcome.value = True
    assert ex.shown() == [0, 1, 2]
    ex.outcome.value = None
    ex.select(1)
    assert ex.figure().axes[2].get_title() == "overlay, explaining viral"
    assert ex.figure()._suptitle.get_text() == f"img1.png: {ex.current.summary(calibration=True)}"
    # The two-class model on the three-class labels: compared as NORMAL versus pneumonia.
    ex.model.value = "two"
    assert ex.decision_threshold() == 0.5 and ex.probabilities().shape == (5,)
    ex.outcome.value = False
    assert ex.shown() == [0]  # gray called NORMAL, truly bacterial
    ex.outcome.value = None
    # A two-class source: its own class names; the three-class model's answer compared as NORMAL vs pneumonia.
    ex.model.value = "three"
    extra = widgets.ImageSource([1, 0], ["disc.png", "gray.png"], images=np.stack([DISC, GRAY]))
    ex2 = widgets.Explorer({"three": model}, images, labels, classes=THREE_CLASSES, sources={"two-class": extra})
    ex2.source.value = "two-class"
    assert [o[0] for o in ex2.true_class.options] == ["any", "NORMAL", "PNEUMONIA"]
    assert ex2.result.text.startswith("disc.png: viral (P = ") and ex2.result.text.endswith(
        "true class PNEUMONIA, correct")
    ex2.outcome.value = False
    assert ex2.shown() == [1]  # gray: bacterial against NORMAL
    ex2.source.value = widgets.TEST_SPLIT
    assert [o[0] for o in ex2.true_class.options] == ["any", "NORMAL", "bacterial", "viral"]


def test_explorer_refuses_what_does_not_fit_three_classes(model):
    images = np.stack([GRAY, DISC])
    with pytest.raises(ValueError, match=r"labels must be in 0..1 \(NORMAL, PNEUMONIA\); found \[2\]\. "
                                         r"Three-class labels .* need classes=THREE_CLASSES"):
        widgets.Explorer({"three": model}, images, [1, 2])
    with pytest.raises(ValueError, match=r"Thresholds given for three-class models \['three'\]"):
        widgets.Explorer({"three": model}, images, [1, 2], classes=THREE_CLASSES, threshold={"three": 0.4})
    with pytest.raises(ValueError, match="classes must be"):
        widgets.ImageSource([0], images=images[:1], classes=("a", "b", "c"))
    # One threshold for all models applies to the two-class ones only.
    ex = widgets.Explorer({"three": model, "two": _known_model(1, name="two_b")}, images, [1, 2],
                          classes=THREE_CLASSES, threshold=0.3)
    assert ex.decision_threshold() is None and ex.current.label == "bacterial"
    ex.model.value = "two"
    assert ex.decision_threshold() == 0.3


def _constant_three_class_file(tmp_path, card):
    """A three-class paper CNN whose logits are the bias log(P_GRAY) for every image, saved with ``card``."""
    from pneumo_lib import three_classes, training

    net = three_classes.build_model("paper_cnn", 64, classes=3)
    logits = net.get_layer("logits")
    kernel, _ = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), np.log(np.array(P_GRAY, np.float32))])
    return training.save_model(net, tmp_path / "three.keras", card)


def test_the_app_serves_a_three_class_model_file_and_shows_its_three_probabilities(tmp_path, monkeypatch):
    from pneumo_lib import app, three_classes

    path = _constant_three_class_file(tmp_path, {"classes": 3, "labels": dict(three_classes.CARD_LABELS)})
    chosen = app.served_model(str(path), folder=tmp_path / "served")
    assert chosen.path == path.resolve() and chosen.card["classes"] == 3
    assert app.THREE_CLASS_SENTENCE in chosen.note
    monkeypatch.setenv(app.MODEL_ENV, str(chosen.path))
    monkeypatch.setenv(app.NOTE_ENV, chosen.note)
    monkeypatch.delenv(app.NOTICE_ENV, raising=False)
    view = widgets.app_from_environment()
    assert view.threshold is None and view.decision_threshold() is None
    note = view.children[0].value
    assert html.escape(widgets.THREE_CLASS_DECISION_NOTE) in note
    assert html.escape(widgets.THREE_CLASS_REFERRAL_PAGE_NOTE) in note
    gray = np.full((64, 64), 128, np.uint8)
    e = view.explain_upload(uploads.Upload("scan.png", png_bytes(gray)))
    assert e.probabilities == pytest.approx(P_GRAY, abs=1e-6) and e.label == "bacterial"
    assert f"scan.png: {GRAY_LINE[:-1]}; " in view.result.text
    assert view.result.referral_text == explanations.THREE_CLASS_REFERRAL_NOTE


def test_a_three_output_file_needs_a_card_saying_three_classes(tmp_path):
    from pneumo_lib import app

    path = _constant_three_class_file(tmp_path, {})
    with pytest.raises(ValueError, match=r"three\.keras: its output is \(N, 3\), but its model card does not "
                                         r"say classes: 3"):
        app.given_model(path, folder=tmp_path / "served")


def test_the_chapter_helpers_offer_the_three_class_model_and_test_split(model, monkeypatch, tmp_path):
    """Without training or data: the helpers hand over what three_classes and the split give."""
    from pneumo_lib import data, experiments, three_classes
    from pneumo_lib.data import subtypes

    calls = []

    def cached(name, profile):
        calls.append((name, profile))
        return experiments.CachedModel(model, tmp_path / "m.keras", {"classes": 3})

    monkeypatch.setattr(three_classes, "cached_training", cached)
    assert widgets.three_class_model_choice("quick") == {widgets.THREE_CLASS_CHOICE: model}
    assert calls == [("paper_cnn", "quick")]

    files = [tmp_path / f"{n}.png" for n in ("IM-1", "person1_bacteria_1", "person2_virus_2")]
    for f, image in zip(files, (BLACK, GRAY, DISC)):
        f.write_bytes(png_bytes(np.round(image[..., 0] * 255).astype(np.uint8)))

    class Split:
        def labels(self, split):
            assert split == "test"
            return np.array([0, 1, 2])

        def paths(self, split):
            return files

    monkeypatch.setattr(data, "ensure_dataset", lambda P: tmp_path)
    monkeypatch.setattr(subtypes, "three_class_split", lambda folder, seed: Split())
    src = widgets.three_class_test_source("quick")
    assert src.classes == THREE_CLASSES and src.labels.tolist() == [0, 1, 2]
    ex = widgets.Explorer({"three": model}, np.stack([GRAY]), [1], classes=THREE_CLASSES,
                          sources={widgets.THREE_CLASS_SOURCE: src})
    ex.select(2, source=widgets.THREE_CLASS_SOURCE)
    assert ex.result.text.startswith("person2_virus_2.png: viral (P = ") and ex.result.text.endswith(
        "true class viral, correct")


def test_a_card_listing_the_two_class_names_still_serves_a_two_class_model(tmp_path):
    """The reference classifier's card lists its classes by name: that is two classes, not an error."""
    from pneumo_lib import app, models, training

    path = training.save_model(models.build_model("paper_cnn", 64), tmp_path / "two.keras",
                               {"classes": ["NORMAL", "PNEUMONIA"]})
    assert app.THREE_CLASS_SENTENCE not in app.given_model(path, folder=tmp_path / "served").note
    wrong = training.save_model(models.build_model("paper_cnn", 64), tmp_path / "wrong.keras", {"classes": 3})
    with pytest.raises(ValueError, match=r"wrong\.keras: its model card says classes 3, but its output is \(None, 1\)"):
        app.given_model(wrong, folder=tmp_path / "served")


def test_pneumo_explain_writes_the_three_probabilities_and_the_arg_max(tmp_path, capsys):
    import json

    from pneumo_lib import cli, three_classes
    from PIL import Image

    path = _constant_three_class_file(tmp_path, {"classes": 3, "labels": dict(three_classes.CARD_LABELS)})
    image = tmp_path / "scan.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(image)
    out = tmp_path / "out"
    assert cli.main(["explain", str(path), str(image), "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Constant logits log(P_GRAY): the arg-max is bacterial with P = 0.64, whatever the image.
    assert record["prediction"] == "bacterial" and record["explained_class"] == "bacterial"
    assert record["probability"] == pytest.approx(0.64, abs=1e-5) and record["threshold"] is None
    assert record["probabilities"] == pytest.approx(dict(zip(THREE_CLASSES, P_GRAY)), abs=1e-5)
    assert (out / "scan_gradcam.png").is_file()
    assert cli.main(["explain", str(path), str(image), "--out", str(out), "--class-index", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["explained_class"] == "viral"
    assert cli.main(["explain", str(path), str(image), "--out", str(out), "--threshold", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "--threshold 0.3 applies to two-class models only" in err and "three.keras" in err
