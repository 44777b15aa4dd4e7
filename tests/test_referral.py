"""The referral flag (issue 15.4): "Uncertain: refer to a radiologist" in the explorer and the app.

The measure is the chapter's, ``uncertainty.threshold_entropy`` of the model's probability at its
decision threshold; the level is the card's (``uncertainty.referral_level`` of the validation
probabilities, stored by ``calibrate_referral`` / ``pneumo evaluate --calibration --refer-fraction``)
or ``DEFAULT_REFERRAL_LEVEL``. Known answers: hand-worked entropies, and a hand-built model whose
logit is ``weight * mean gray + bias`` exactly, so an image can be put exactly on the threshold.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cam_models import known_logit_model
from PIL import Image

from pneumo_lib import calibration, cli, data, decision, explanations, training, uncertainty, widgets
from pneumo_lib._tf import keras
from pneumo_lib.profiles import get_profile

FLAG = "Uncertain: refer to a radiologist"


def H(q: float) -> float:
    """Binary entropy in bits, written out."""
    return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _gray(g: float, size: int = 8) -> np.ndarray:
    return np.full((size, size, 1), g, np.float32)


# --------------------------------------------------------------------------- the level, by hand


def test_the_level_from_hand_made_validation_probabilities_is_the_hand_worked_value():
    # threshold 0.5: the entropies are H(p). Sorted: 0.5 -> 1, 0.45 -> H(0.45), 0.6 -> H(0.6), 0.3 and 0.7 ...
    p = [0.9, 0.5, 0.1, 0.6, 0.3, 0.99, 0.45, 0.7, 0.05, 0.8]
    # 20% of 10 images: 2 referred (0.5 and 0.45); the level is halfway to the next, 0.6.
    assert uncertainty.referral_level(p, 0.5, 0.2) == pytest.approx((H(0.45) + H(0.6)) / 2, abs=1e-12)
    # 10%: 1 referred (0.5, 1 bit); halfway to H(0.45).
    assert uncertainty.referral_level(p, 0.5, 0.1) == pytest.approx((1 + H(0.45)) / 2, abs=1e-12)
    flagged = uncertainty.refer(p, 0.5, uncertainty.referral_level(p, 0.5, 0.2))
    assert np.flatnonzero(flagged).tolist() == [1, 6]  # exactly the two referred


def test_the_level_is_measured_at_the_decision_threshold_not_at_one_half():
    # threshold 0.2 (odds 1/4): p's odds divided by 1/4 give q = sigmoid(logit p - logit 0.2).
    # 0.2 -> q 1/2 (1 bit); 1/3 -> q 2/3; 0.1 -> q 4/13; 0.5 -> q 4/5; 0.9 -> q 36/37.
    p = [0.5, 0.2, 0.9, 1 / 3, 0.1]
    assert uncertainty.threshold_entropy(p, 0.2) == pytest.approx(
        [H(0.8), 1.0, H(36 / 37), H(2 / 3), H(4 / 13)], abs=1e-12)
    # 40% of 5: 2 referred (0.2 and 1/3); next most uncertain is 0.1 (H(4/13) = 0.890 > H(0.8) = 0.722).
    assert uncertainty.referral_level(p, 0.2, 0.4) == pytest.approx((H(2 / 3) + H(4 / 13)) / 2, abs=1e-12)
    assert uncertainty.refer(p, 0.2, uncertainty.referral_level(p, 0.2, 0.4)).tolist() == [
        False, True, False, True, False]  # 0.5 is not in doubt for a model whose threshold is 0.2


def test_a_tie_at_the_boundary_leaves_the_tied_images_at_the_level_unflagged():
    p = [0.5, 0.4, 0.6, 0.9]  # H(0.4) == H(0.6); half of 4 = 2 referred, but the 2nd and 3rd tie
    level = uncertainty.referral_level(p, 0.5, 0.5)
    assert level == pytest.approx(H(0.4), abs=1e-12)
    assert uncertainty.refer(p, 0.5, level).tolist() == [True, False, False, False]


def test_the_default_level_flags_odds_within_a_factor_of_three_of_the_threshold():
    assert uncertainty.DEFAULT_REFERRAL_LEVEL == pytest.approx(H(0.25), abs=1e-12)
    t = 0.2  # odds 1/4; odds 3/4 (p = 3/7) and 1/12 (p = 1/13) are at the edge
    inside = [3 / 7 - 1e-6, 1 / 13 + 1e-6, t]
    outside = [3 / 7 + 1e-6, 1 / 13 - 1e-6, 0.9, 0.01]
    assert uncertainty.refer(inside, t).all() and not uncertainty.refer(outside, t).any()


@pytest.mark.parametrize("bad", [0, 1, 1.0, -0.1, 1.5, float("nan"), "a tenth", None, True])
def test_a_fraction_outside_zero_one_is_named(bad):
    with pytest.raises(ValueError, match=rf"referred fraction must be .*got {re_repr(bad)}"):
        uncertainty.referral_level([0.1, 0.5, 0.9], 0.5, bad)


def re_repr(value) -> str:
    import re

    return re.escape(repr(value))


def test_a_fraction_that_refers_no_image_or_every_image_is_refused():
    with pytest.raises(ValueError, match=r"fraction of 0.01 of 10 images refers 0 of them"):
        uncertainty.referral_level(np.linspace(0.05, 0.95, 10), 0.5, 0.01)
    with pytest.raises(ValueError, match=r"fraction of 0.97 of 10 images refers 10 of them"):
        uncertainty.referral_level(np.linspace(0.05, 0.95, 10), 0.5, 0.97)


def test_bad_probabilities_thresholds_and_levels_are_named():
    with pytest.raises(ValueError, match="threshold must be strictly between 0 and 1"):
        uncertainty.referral_level([0.2, 0.8], 1.0, 0.5)
    with pytest.raises(ValueError):
        uncertainty.referral_level([0.2, 1.8], 0.5, 0.5)
    with pytest.raises(ValueError):
        uncertainty.referral_level([], 0.5, 0.5)
    for bad in (1.5, -0.2, float("nan"), "high"):
        with pytest.raises(ValueError, match=rf"referral level must be .*got {re_repr(bad)}"):
            uncertainty.refer([0.5], 0.5, bad)
    with pytest.raises(ValueError, match=r"referral level must be in \[0, 1\] bits.*got 2"):
        uncertainty.referral_from_card({"referral": {"level": 2}})


# --------------------------------------------------------------------------- one image of a hand-built model


def test_an_image_exactly_at_the_threshold_is_flagged_and_one_far_from_it_is_not():
    model = known_logit_model()
    decision.attach_temperature(model, {})  # a card without referral: the default level
    at = widgets.explain(model, _gray(0.5))  # logit 0: P = 0.5 = the threshold
    assert at.probability == 0.5 and at.threshold == 0.5
    assert at.uncertainty == 1.0 and at.refer
    assert at.label == "PNEUMONIA"  # the class is still the rule's (ties go to PNEUMONIA)
    far = widgets.explain(model, _gray(0.9))  # logit 4: P = 0.982
    assert far.uncertainty == pytest.approx(H(1 / (1 + math.exp(-4))), abs=1e-6) and not far.refer
    assert far.label == "PNEUMONIA"
    assert not at.referral.stored and at.referral.level == uncertainty.DEFAULT_REFERRAL_LEVEL


def test_with_a_card_threshold_the_doubt_is_at_that_threshold():
    # Card threshold 0.8 (logit ln 4) and T = 2: an image at logit ln 4 is flagged; one at P = 0.5 is
    # not (q = sigmoid(0 - ln 4) = 0.2, H(0.2) = 0.722 < 0.811), although 0.5 is the usual midpoint.
    model = known_logit_model(weight=10.0, bias=-5.0)
    card = {"evaluation": {"threshold": 0.8}, "calibration": {"temperature": 2.0, "fitted_on": "val"}}
    decision.attach_temperature(decision.attach_threshold(model, card), card)
    at = widgets.explain(model, _gray(0.5 + math.log(4) / 10))
    assert at.probability == pytest.approx(0.8, abs=1e-6) and at.refer
    half = widgets.explain(model, _gray(0.5))
    assert half.uncertainty == pytest.approx(H(0.2), abs=1e-6) and not half.refer
    assert half.label == "NORMAL"


def test_a_level_stored_in_the_card_is_used_and_named():
    model = known_logit_model()
    card = {"referral": {"level": 0.99, "fraction": 0.1, "images": 50, "referred_images": 5, "fitted_on": "val"}}
    decision.attach_temperature(model, card)
    level = uncertainty.model_referral_level(model)
    assert level.stored and level.level == 0.99
    assert level.note() == ("referral level 0.99 bits: the uncertainty above which 10% of the validation images "
                            "(5 of 50) lie, stored in the model card")
    assert widgets.explain(model, _gray(0.5)).refer  # 1 bit > 0.99
    near = widgets.explain(model, _gray(0.46))  # logit -0.4: H(sigmoid(-0.4)) = 0.971 < 0.99
    assert near.uncertainty == pytest.approx(H(1 / (1 + math.exp(0.4))), abs=1e-5) and not near.refer
    assert near.referral_note().startswith("Uncertainty 0.97 bits (entropy at the decision threshold), not above "
                                           "the referral level 0.99 bits: the uncertainty above which 10%")


# --------------------------------------------------------------------------- what the app and the explorer show


def test_the_app_shows_the_flag_for_the_flagged_image_only():
    model = decision.attach_temperature(known_logit_model(), {})
    view = widgets.AppView(model)
    view.show_image("doubt.png", _gray(0.5))
    assert view.result.text == (
        "doubt.png: PNEUMONIA (probability of pneumonia 0.50; uncalibrated: the model card holds no fitted "
        "temperature)")  # the class line is unchanged; the flag comes in addition
    assert view.result.referral_text == (
        "Uncertain: refer to a radiologist. The model's uncertainty about this image, 1.00 bits (entropy at its "
        "decision threshold), is above the referral level 0.81 bits: the default (odds within a factor of 3 of "
        "the threshold's); the model card holds no referral level.")
    assert 'class="pneumo-refer" role="alert"' in view.result.referral.value
    view.show_image("clear.png", _gray(0.9))
    pane = view.result.warning.value + view.result.summary.value + view.result.referral.value + view.result.pictures.value
    assert FLAG not in pane and "pneumo-refer" not in pane
    assert view.result.referral_text == (
        "Uncertainty 0.13 bits (entropy at the decision threshold), not above the referral level 0.81 bits: the "
        "default (odds within a factor of 3 of the threshold's); the model card holds no referral level.")
    view.result.show_error("Could not explain x.png: broken.")
    assert view.result.referral.value == ""


def test_the_explorer_flags_the_test_image_at_the_threshold_and_its_figure_says_so():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = decision.attach_temperature(known_logit_model(), {})
    ex = widgets.Explorer({"known": model}, np.stack([_gray(0.5), _gray(0.9)]), [0, 1], names=["a.png", "b.png"])
    assert ex.current.refer and ex.result.referral_text.startswith(FLAG + ". ")
    fig = ex.figure()
    assert fig._suptitle.get_text().endswith(f"\n{FLAG} (uncertainty 1.00 bits > referral level 0.81 bits)")
    plt.close(fig)
    ex.select(1)
    assert not ex.current.refer and FLAG not in ex.result.referral_text
    fig = ex.figure()
    assert FLAG not in fig._suptitle.get_text()
    plt.close(fig)


def test_the_app_page_reads_the_level_from_the_model_card(tmp_path, monkeypatch):
    from pneumo_lib import app

    path = tmp_path / "m.keras"
    known_logit_model().save(path)
    card = {"evaluation": {"threshold": 0.5},
            "referral": {"level": 0.95, "fraction": 0.2, "images": 40, "referred_images": 8, "fitted_on": "val"}}
    training.write_card(path, card)
    monkeypatch.setenv(app.MODEL_ENV, str(path))
    monkeypatch.setenv(app.NOTE_ENV, "Model: m.keras.")
    monkeypatch.delenv(app.NOTICE_ENV, raising=False)
    view = widgets.app_from_environment()
    assert uncertainty.model_referral_level(view.model).level == 0.95
    page_note = html.unescape(view.children[0].value)
    assert ("are flagged for a radiologist's reading (referral level 0.95 bits: the uncertainty above which 20% "
            "of the validation images (8 of 40) lie, stored in the model card)") in page_note
    assert FLAG not in page_note
    view.show_image("flat.png", _gray(0.5))
    assert view.result.referral_text.startswith(f"{FLAG}. ") and "stored in the model card" in view.result.referral_text


# --------------------------------------------------------------------------- pneumo evaluate --refer-fraction


def _write_dataset(root: Path) -> Path:
    """Kaggle-layout uniform gray 48 x 48 PNGs: NORMAL grays 0.25-0.60, PNEUMONIA 0.40-0.75 (they overlap)."""
    folder = root / "chest_xray"
    for split, n in (("train", 36), ("val", 4), ("test", 24)):
        for label, (lo, hi) in enumerate(((0.25, 0.60), (0.40, 0.75))):
            cls = folder / split / data.CLASSES[label]
            cls.mkdir(parents=True, exist_ok=True)
            for i, g in enumerate(np.linspace(lo, hi, n)):
                Image.fromarray(np.full((48, 48), int(round(g * 255)), np.uint8)).save(cls / f"{split}{label}_{i:02d}.png")
    return folder


def test_evaluate_refer_fraction_stores_the_level_that_the_app_then_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    folder = _write_dataset(tmp_path / "data")
    out = tmp_path / "model.keras"
    known_logit_model().save(out)
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--calibration", "--refer-fraction", "0.1",
                     "--store-temperature", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["calibration"]["referral"]
    # Worked out from the validation grays: logit 10 g - 5, threshold 0.5 (no card): u = H(sigmoid(10 g - 5)).
    P = get_profile("quick", image_size=8)
    manifest = data.make_splits(folder, seed=P.seed, save=False)
    x_val, _ = data.load_split(manifest, "val", 8)
    g = x_val.reshape(len(x_val), -1).mean(1).astype(np.float64)
    u = np.sort([H(1 / (1 + math.exp(-(10 * v - 5)))) if abs(10 * v - 5) > 1e-9 else 1.0 for v in g])[::-1]
    n = round(0.1 * len(u))
    assert report["level"] == pytest.approx((u[n - 1] + u[n]) / 2, abs=1e-5)
    assert report["fraction"] == 0.1 and report["images"] == len(u) and report["fitted_on"] == "val"
    x_test, y_test = data.load_split(manifest, "test", 8)
    z = 10 * x_test.reshape(len(x_test), -1).mean(1).astype(np.float64) - 5
    u_test = np.array([H(1 / (1 + math.exp(-v))) if abs(v) > 1e-9 else 1.0 for v in z])
    assert report["test_referred"] == int((u_test > report["level"] + 1e-6).sum())
    card = training.read_card(out)
    assert card["referral"]["level"] == report["level"] and card["calibration"]["temperature"] > 0
    model = training.load_model(out)
    level = uncertainty.model_referral_level(model)
    assert level.stored and level.level == report["level"] and level.fraction == 0.1
    assert decision.model_threshold(model) == decision.DEFAULT_THRESHOLD  # the rule is not touched
    e = widgets.explain(model, _gray(0.5))
    assert e.refer and "10% of the validation images" in e.referral_note()
    # The printed report names the level.
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--calibration", "--refer-fraction", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert f"referral level {report['level']:.4f} bits (entropy at the threshold 0.5000)" in printed
    assert f"test images above it: {report['test_referred']} of {len(y_test)}" in printed


def test_bad_refer_fraction_options_are_one_clear_line(tmp_path, capsys):
    out = tmp_path / "model.keras"
    assert cli.main(["evaluate", str(out), "--data", str(tmp_path), "--calibration", "--refer-fraction", "1.5"]) == 2
    assert "--refer-fraction must be strictly between 0 and 1 (e.g. 0.1), got 1.5." in capsys.readouterr().err
    assert cli.main(["evaluate", str(out), "--data", str(tmp_path), "--refer-fraction", "0.1"]) == 2
    assert "--refer-fraction only applies with --calibration." in capsys.readouterr().err


def test_calibrate_referral_refuses_the_test_split_and_a_bad_fraction():
    run = type("Run", (), {"model": known_logit_model(), "card": {}, "path": None})()
    with pytest.raises(ValueError, match="not on test"):
        uncertainty.calibrate_referral(run, None, None, split="test")
    with pytest.raises(ValueError, match=r"got 0\b"):
        uncertainty.calibrate_referral(run, None, None, fraction=0)
