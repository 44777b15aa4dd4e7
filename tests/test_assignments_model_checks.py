"""Checks of assignments 2-4 (models, Grad-CAM, the mystery model): wrong answers get the hint."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import cam
from pneumo_lib._tf import keras
from pneumo_lib.assignments import CORRECT, INCORRECT, a2_model, a3_gradcam, a4_detective


def _library(model, images, layer, class_index):
    return cam.grad_cam(model, images, layer=layer, class_index=class_index)


def _always_pneumonia(model, images, layer, class_index):
    return cam.grad_cam(model, images, layer=layer, class_index=1 if model.outputs[0].shape[-1] == 1 else class_index)


def _last_layer(model, images, layer, class_index):
    return cam.grad_cam(model, images, class_index=class_index)


def _coarse(model, images, layer, class_index):
    return _library(model, images, layer, class_index)[:, ::2, ::2]


def _unnormalised(model, images, layer, class_index):
    return 3 * _library(model, images, layer, class_index)


def _blurred(model, images, layer, class_index):
    return np.clip(_library(model, images, layer, class_index) + 0.3, 0, 1)


@pytest.mark.parametrize("answer, expected", [
    (_library, {"q1": "", "q2": "", "q3": ""}),
    (_always_pneumonia, {"q1": "", "q2": "your maps explain the other class", "q3": ""}),
    (_last_layer, {q: "your maps come from another layer" for q in ("q1", "q2", "q3")}),
    (_coarse, {q: "must have shape (6, 32, 32); got (6, 16, 16)" for q in ("q1", "q2", "q3")}),
    (_unnormalised, {q: "Maps must lie in [0, 1]" for q in ("q1", "q2", "q3")}),
    (_blurred, {q: "your maps differ from Grad-CAM's by" for q in ("q1", "q2", "q3")}),
])
def test_grad_cam_checks_on_unseen_models(answer, expected):
    for question in a3_gradcam.ASSIGNMENT.questions:
        r = question.evaluate({"my_grad_cam": answer})
        want = expected[question.qid]
        assert (r.status == CORRECT) == (want == ""), (question.qid, r.message)
        assert want in r.message, (question.qid, r.message)


def test_unseen_models_have_their_target_layer_where_the_check_says():
    model, layer = a3_gradcam.unseen_model("nested")
    assert layer not in [l.name for l in model.layers] and model.get_layer("tinynet").get_layer(layer)
    assert not model.get_layer("tinynet").trainable
    maps = cam.grad_cam(model, a3_gradcam.unseen_images(channels=3), layer=layer, class_index=0)
    assert maps.shape == (6, 32, 32) and (maps.max(axis=(1, 2)) > 0).sum() >= 4  # informative, not all-zero


def _small_cnn(size, units=1, activation="sigmoid", dense=False):
    inputs = keras.Input((size, size, 1))
    x = inputs
    if not dense:
        x = keras.layers.Conv2D(4, 3, activation="relu")(x)
        x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(x))


@pytest.mark.parametrize("builder, message", [
    (lambda s: _small_cnn(s), None),
    (lambda s: _small_cnn(s, units=2, activation="softmax"), "must output 3 probabilities"),
    (lambda s: _small_cnn(s, dense=True), "at least two Conv2D layers"),
    (lambda s: _small_cnn(64), "must take images of shape (48, 48, 1)"),
    (lambda s: keras.Sequential([keras.Input((s, s, 1)), keras.layers.Conv2D(128, 3), keras.layers.Conv2D(128, 3),
                                 keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")]),
     "parameters; keep it under 300,000"),
    (lambda s: "a model", "must return a keras.Model"),
])
def test_cnn_builder_check(builder, message):
    r = a2_model.q1.evaluate({"build_cnn": builder})
    if message is None:
        assert r.status == CORRECT, r.message
    else:
        assert r.status == INCORRECT and message in r.message, r.message


def test_trained_model_check_needs_the_timer_the_budget_and_the_auc(monkeypatch):
    constant = _small_cnn(64)
    for layer in constant.layers[-1:]:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])  # P = 0.5 for every image
    q2 = a2_model.q2
    monkeypatch.setattr(q2, "_cpu_seconds", None)
    assert "Train inside `with q2.timer():`" in q2.evaluate({"model": constant}).message
    monkeypatch.setattr(q2, "_cpu_seconds", a2_model.CPU_SECONDS + 1)
    assert "the budget is 240 s" in q2.evaluate({"model": constant}).message
    with q2.timer():
        pass
    assert q2.cpu_seconds < 1
    r = q2.evaluate({"model": constant})
    assert r.status == INCORRECT and "Test ROC AUC 0.500 is below 0.85" in r.message


def test_detective_answers_are_verified_against_the_evidence():
    truth = a4_detective.evidence()
    assert 0 <= truth["heat_on_marker"] <= 1 and truth["looks_at"] in ("marker", "lesion")
    q1, q2, q3 = a4_detective.ASSIGNMENT.questions
    assert q1.evaluate({"heat_on_marker": truth["heat_on_marker"] + 0.01}).status == CORRECT
    assert "is not the mean share" in q1.evaluate({"heat_on_marker": truth["heat_on_marker"] + 0.05}).message
    assert "with a number" in q1.evaluate({"heat_on_marker": "0.1"}).message
    assert q2.evaluate({"prob_drop": truth["prob_drop"]}).status == CORRECT
    if abs(truth["prob_drop"]) > a4_detective.TOLERANCE:
        assert "wrong sign" in q2.evaluate({"prob_drop": -truth["prob_drop"]}).message
    assert q3.evaluate({"looks_at": truth["looks_at"]}).status == CORRECT
    other = {"marker": "lesion", "lesion": "marker"}[truth["looks_at"]]
    assert "Your own evidence disagrees" in q3.evaluate({"looks_at": other}).message
    assert "Answer 'marker' or 'lesion'" in q3.evaluate({"looks_at": "ring"}).message
