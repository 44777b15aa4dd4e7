"""The mixed-precision path (``mixed_float16``, what a GPU trains in) on the CPU.

A model built under the global ``mixed_float16`` policy trains, saves, loads, evaluates and
is explained by every CAM method; the CAM methods also work while that policy is the global
one. Every test that sets the global policy restores it (the ``mixed_policy`` fixture), so
nothing leaks into other tests.

Known answers: the bright-blob detector (``_cam_models``) has fixed weights; under
``mixed_float16`` its maps equal the float32 ones within float16 tolerance (float16 has an
11-bit significand: relative error about 1e-3 per operation; the maps are in [0, 1]).
"""

from __future__ import annotations

import numpy as np
import pytest

from _cam_models import detector_model, disc_images
from _synthetic import dataset, separable_arrays
from pneumo_lib import cam, evaluation, training
from pneumo_lib._tf import keras

#: Maps are in [0, 1]; float16 arithmetic through a conv, a pooling and a head stays within this.
FLOAT16_ATOL = 2e-3
METHODS = [cam.grad_cam, cam.grad_cam_plus_plus, cam.score_cam]
KINDS = ("flat", "nested", "sequential")


@pytest.fixture
def mixed_policy():
    """Sets the global policy to ``mixed_float16`` for the test and restores the previous one."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="module")
def discs():
    images, masks, _ = disc_images(4, seed=3)
    return np.concatenate([images, np.zeros_like(images[:2])]), masks  # 4 discs, 2 black images


def _float32_maps(method, kind, head, images):
    assert keras.mixed_precision.global_policy().name == "float32"
    return method(detector_model(kind, head), images)


def test_the_fixture_restores_the_global_policy(mixed_policy):
    assert keras.mixed_precision.global_policy().name == "mixed_float16"


def test_the_policy_is_float32_outside_the_fixture():
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_a_mixed_float16_model_is_explained_as_its_float32_twin(method, kind, head, discs):
    images, masks = discs
    expected = _float32_maps(method, kind, head, images)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = detector_model(kind, head)
        assert model.get_layer("pool").compute_dtype == "float16"
        maps = method(model, images)  # raised "Tensor conversion requested dtype float32 ..." before
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert maps.dtype == np.float32 and maps.shape == (6, 32, 32)
    np.testing.assert_allclose(maps, expected, atol=FLOAT16_ATOL)
    # The known answer itself: the PNEUMONIA maps of the disc images peak on the disc.
    for m, mask in zip(maps[:4], masks):
        assert mask[np.unravel_index(m.argmax(), m.shape)]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_a_float32_model_explained_under_the_global_mixed_policy_is_unchanged(method, discs, mixed_policy):
    images, _ = discs
    keras.mixed_precision.set_global_policy("float32")
    expected = method(detector_model("nested"), images)
    model = detector_model("nested")  # float32 too, traced (and cached) under the mixed policy:
    keras.mixed_precision.set_global_policy("mixed_float16")
    maps = method(model, images)
    # Nothing is computed in float16: the traced graph keeps the model's own policies.
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_predict_under_mixed_float16_gives_float32_probabilities(discs, mixed_policy):
    images, _ = discs
    labels, probabilities = cam.predict(detector_model("flat"), images)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert labels.tolist() == [1, 1, 1, 1, 0, 0]


def test_mixed_precision_trains_saves_loads_evaluates_and_explains(tmp_path):
    x, y = separable_arrays(64, size=32, seed=0)
    xv, yv = separable_arrays(32, size=32, seed=1)
    path = tmp_path / "mixed.keras"
    result = training.train("paper_cnn", dataset(x, y), dataset(xv, yv), image_size=32, epochs=3,
                            learning_rate=3e-3, mixed_precision=True, checkpoint=path, verbose=0, seed=7)
    assert keras.mixed_precision.global_policy().name == "float32"  # train() restores it
    assert result.mixed_precision is True and result.summary()["mixed_precision"] is True
    model = result.model
    assert model.get_layer("block1_conv").compute_dtype == "float16"
    assert model.get_layer("block1_conv").variable_dtype == "float32"  # weights stay float32
    assert model.output.dtype == "float32"  # the head is float32 (numerically stable)
    assert result.best_val_auc == pytest.approx(1.0)

    loaded = training.load_model(path)
    assert loaded.get_layer("block1_conv").compute_dtype == "float16"
    np.testing.assert_allclose(np.asarray(loaded(xv)), np.asarray(model(xv)), atol=1e-6)

    ev = evaluation.evaluate_model(loaded, dataset(xv, yv), dataset(xv, yv))
    assert ev.metrics["roc_auc"] == pytest.approx(1.0)

    maps = cam.grad_cam(loaded, xv[:4])
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
