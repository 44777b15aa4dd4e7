"""`pneumo evaluate --calibration` (issue 15): the numbers it prints are those of pneumo_lib.calibration.

A hand-built model whose logit is ``10 * mean gray - 5`` on a synthetic data set of uniform gray
images whose classes overlap in gray (a trained CNN on the tiny phantom preset carries no
information after an epoch, so no temperature can be fitted to it); the expected numbers are
worked out here from the same model and the same split with calibration.fit_temperature,
expected_calibration_error, ece_interval, maximum_calibration_error and brier_score.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _cam_models import known_logit_model
from PIL import Image

from pneumo_lib import calibration, cli, data, decision, training
from pneumo_lib.profiles import get_profile


# The model throughout: known_logit_model(), logit = 10 * mean gray - 5 on 8 x 8 inputs: informative about the synthetic data set below,
# not perfectly separating it, so the fitted temperature is finite


def _write_dataset(root: Path) -> Path:
    """A Kaggle-layout folder of uniform gray 48 x 48 PNGs: NORMAL grays 0.25-0.60, PNEUMONIA 0.40-0.75.

    36 images a class in train, 4 in val (merged with train and re-split by the manifest), 24 in
    test, each its own patient; the classes overlap.
    """
    folder = root / "chest_xray"
    for split, n in (("train", 36), ("val", 4), ("test", 24)):
        for label, (lo, hi) in enumerate(((0.25, 0.60), (0.40, 0.75))):
            cls = folder / split / data.CLASSES[label]
            cls.mkdir(parents=True, exist_ok=True)
            for i, g in enumerate(np.linspace(lo, hi, n)):
                value = int(round(g * 255))
                Image.fromarray(np.full((48, 48), value, np.uint8)).save(cls / f"{split}{label}_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A private PNEUMO_HOME, the synthetic data set and the known-logit model saved without a card."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PNEUMO_HOME", str(home))
    mp.delenv("PNEUMO_DATA", raising=False)
    folder = _write_dataset(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("model") / "model.keras"
    known_logit_model().save(out)
    yield folder, out
    mp.undo()


@pytest.fixture(scope="module")
def expected(trained):
    """The calibration numbers worked out directly from the library, on the command's split."""
    folder, out = trained
    model = training.load_model(out)
    P = get_profile("quick", image_size=8)  # no model card: the quick profile's seed and rounds
    manifest = data.make_splits(folder, seed=P.seed, save=False)
    x_val, y_val = data.load_split(manifest, "val", P.image_size)
    x_test, y_test = data.load_split(manifest, "test", P.image_size)
    T = calibration.fit_temperature(calibration.model_logits(model, x_val), y_val)
    z = calibration.model_logits(model, x_test)
    # The logits are 10 g - 5 of each image's gray g (to the 1/255 of the PNG).
    np.testing.assert_allclose(z, 10 * x_test.reshape(len(x_test), -1).mean(1) - 5, atol=1e-4)
    groups = manifest.patients("test")
    numbers = {"T": T, "images": len(y_test), "patients": len(set(groups)), "rounds": P.bootstrap_rounds}
    for key, t in (("before", 1.0), ("after", T)):
        p = calibration.apply_temperature(z, t)
        low, high = calibration.ece_interval(y_test, p, groups=groups, rounds=P.bootstrap_rounds, seed=P.seed)
        numbers[key] = {"ece": calibration.expected_calibration_error(y_test, p), "ece_low": low, "ece_high": high,
                        "mce": calibration.maximum_calibration_error(y_test, p),
                        "brier": calibration.brier_score(y_test, p)}
    return numbers


def test_json_report_equals_the_library_on_the_same_inputs(trained, expected, capsys):
    folder, out = trained
    assert not training.card_path(out).exists()
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--calibration", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and set(report["metrics"]) >= {"accuracy", "roc_auc"}
    cal = report["calibration"]
    assert cal["temperature"] == pytest.approx(expected["T"], rel=1e-9)
    assert cal["fitted_on"] == "val" and cal["split"] == "test" and cal["bins"] == 15
    assert (cal["images"], cal["patients"]) == (expected["images"], expected["patients"])
    for key in ("before", "after"):
        for name, value in expected[key].items():
            assert cal[key][name] == pytest.approx(value, abs=1e-12), (key, name)
        assert 0 <= cal[key]["ece_low"] <= cal[key]["ece"] <= cal[key]["ece_high"] <= 1
    assert cal["bootstrap_rounds"] == expected["rounds"]
    assert cal["stored"] is False and not training.card_path(out).exists()  # nothing written


def test_printed_report_shows_ece_interval_mce_brier_and_temperature(trained, expected, capsys):
    folder, out = trained
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--calibration"]) == 0
    printed = capsys.readouterr().out
    assert "ROC AUC" in printed  # the evaluation comes first, as without --calibration
    assert f"fitted temperature  T = {expected['T']:.4f} (on the val split" in printed
    assert f"calibration on the test split ({expected['images']} images of {expected['patients']} patients" in printed
    b, a = expected["before"], expected["after"]
    ece = re.search(r"^\s+ECE\s+(.*)$", printed, re.MULTILINE).group(1)
    assert ece.split() == [f"{b['ece']:.4f}", "95%", "CI", f"[{b['ece_low']:.4f},", f"{b['ece_high']:.4f}]",
                           f"{a['ece']:.4f}", "95%", "CI", f"[{a['ece_low']:.4f},", f"{a['ece_high']:.4f}]"]
    for title, key in (("MCE", "mce"), ("Brier", "brier")):
        row = re.search(rf"^\s+{title}\s+(.*)$", printed, re.MULTILINE).group(1)
        assert row.split() == [f"{b[key]:.4f}", f"{a[key]:.4f}"], title


def test_store_temperature_writes_the_card_that_the_app_then_uses(trained, expected, tmp_path, capsys):
    import shutil

    folder, out = trained
    copy = tmp_path / "copy.keras"
    shutil.copy(out, copy)
    assert cli.main(["evaluate", str(copy), "--data", str(folder), "--calibration", "--store-temperature"]) == 0
    assert "the temperature is stored in the model card" in capsys.readouterr().out
    card = training.read_card(copy)
    assert card["calibration"]["temperature"] == pytest.approx(expected["T"], rel=1e-9)
    assert card["calibration"]["fitted_on"] == "val" and card["calibration"]["images"] > 0
    model = training.load_model(copy)
    assert decision.model_temperature(model) == pytest.approx(expected["T"], rel=1e-9)
    assert decision.model_threshold(model) == decision.DEFAULT_THRESHOLD  # the rule is not touched


def test_bad_calibration_options_are_one_clear_line(trained, capsys):
    folder, out = trained
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--calibration", "--bins", "0"]) == 2
    assert "--bins must be a positive integer, got 0." in capsys.readouterr().err
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--store-temperature"]) == 2
    assert "--store-temperature and --bins only apply with --calibration." in capsys.readouterr().err


def test_format_report_lines_on_a_hand_made_report():
    s = {"ece": 0.25, "ece_low": 0.125, "ece_high": 0.375, "mce": 0.5, "brier": 0.0625, "nll": 0.75}
    report = {"split": "test", "images": 10, "patients": 8, "bins": 15, "bootstrap_rounds": 20,
              "temperature": 1.5, "fitted_on": "val", "validation_images": 6, "validation_nll_before": 0.7,
              "validation_nll_after": 0.6, "stored": False, "before": s, "after": dict(s, ece=0.125)}
    lines = calibration.format_report(report)
    assert lines[1] == "  fitted temperature  T = 1.5000 (on the val split, 6 images; its NLL 0.7000 -> 0.6000)"
    assert lines[3].split() == ["ECE", "0.2500", "95%", "CI", "[0.1250,", "0.3750]",
                                "0.1250", "95%", "CI", "[0.1250,", "0.3750]"]
    assert lines[4].split() == ["MCE", "0.5000", "0.5000"]
