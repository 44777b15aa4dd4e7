"""Model files: .keras + JSON card, safe-mode loading, clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pneumo_lib import models, training
from pneumo_lib._tf import keras


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "model.keras"
    model = models.build_model("project_b_cnn", 16)
    training.save_model(model, path, {"profile": "quick", "metrics": {"roc_auc": 0.5}})
    return model, path


def test_save_writes_keras_file_and_card_and_load_gives_the_same_predictions(saved):
    model, path = saved
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == "project_b_cnn"
    assert card["input_shape"] == [16, 16, 1] and card["head"] == "sigmoid"
    assert card["labels"] == {"0": "NORMAL", "1": "PNEUMONIA"}
    assert card["profile"] == "quick" and card["metrics"] == {"roc_auc": 0.5}
    assert card["versions"]["tensorflow"] and card["versions"]["pneumo_lib"]
    assert training.read_card(path) == card
    x = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    loaded = training.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


def test_backbone_model_round_trips_with_its_nested_backbone(tmp_path):
    model = models.build_model("mobilenet_v2", 32, weights=None)
    path = training.save_model(model, tmp_path / "m.keras")
    loaded = training.load_model(path)
    assert loaded.get_layer("mobilenet_v2").get_layer("out_relu") is not None
    assert models.architecture_of(loaded).name == "mobilenet_v2"


def test_wrong_suffix_is_refused_on_save_and_load(saved, tmp_path):
    model, path = saved
    with pytest.raises(ValueError, match=r"\.keras format.*model\.keras"):
        training.save_model(model, tmp_path / "model.h5")
    other = tmp_path / "model.h5"
    other.write_bytes(path.read_bytes())
    with pytest.raises(training.ModelFileError, match="not a .keras model file"):
        training.load_model(other)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.keras does not exist.*pneumo train"):
        training.load_model(tmp_path / "nothing.keras")


def test_truncated_file_is_reported_as_corrupted_or_truncated(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.keras"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(training.ModelFileError, match=r"cut\.keras is corrupted or truncated"):
        training.load_model(cut)


def test_garbage_inside_a_valid_zip_is_reported(tmp_path):
    import zipfile

    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(training.ModelFileError, match=r"bad\.keras could not be loaded.*retrain"):
        training.load_model(bad)


def test_a_model_needing_unsafe_deserialisation_is_refused(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(training.ModelFileError, match="unsafe deserialisation.*Lambda.*safe_mode=False"):
        training.load_model(path)
