"""Resumable training: a run killed after epoch k and started again ends as an uninterrupted run.

Each training runs in its own process (as on Colab after a disconnect), on a pipeline that
shuffles and augments (the chapters' kind): the uninterrupted run, then a run whose
callback ends the process abruptly (``os._exit``, no clean-up) right after epoch k, then
the same command again, which must resume from the state file and end with exactly the
uninterrupted run's weights and history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from _synthetic import dataset, noise_arrays, separable_arrays
from pneumo_lib import training

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
out, stop, kind = sys.argv[2], int(sys.argv[3]), sys.argv[4]
import numpy as np
from pneumo_lib._tf import keras, tf
from pneumo_lib import models, runtime, training
from pneumo_lib.data import pipeline
from _synthetic import noise_arrays

size = 32 if kind == "two-phase" else 16
x, y = noise_arrays(48, size=size, seed=0)
x[y == 1] *= 0.7  # darker PNEUMONIA: something to learn, slowly (so the epochs differ)
xv, yv = noise_arrays(16, size=size, seed=1)
xv[yv == 1] *= 0.7
runtime.seed_everything(3, deterministic=True)
augment = pipeline.augmentation(5)
train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(48, seed=3, reshuffle_each_iteration=True)
         .batch(16).map(lambda a, b: (augment(a, training=True), b)))
val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(16)


class Exit(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == stop:
            os._exit(75)  # as abrupt as a killed kernel


options = dict(checkpoint=out, card={"run": "resume-test"}, callbacks=[Exit()] if stop else [], verbose=0, seed=3)
if kind == "two-phase":
    keras.utils.set_random_seed(0)
    weights = os.path.join(os.path.dirname(out), "pretrained.weights.h5")
    if not os.path.exists(weights):
        models.build_model("paper_cnn", 32).save_weights(weights)
    result = training.train("paper_cnn", train, val, image_size=32, weights=weights, transfer=True, epochs=3,
                            fine_tune_epochs=2, fine_tune_learning_rate=1e-3, **options)
else:  # early stopping and learning-rate reduction both act within the 8 epochs
    result = training.train("project_b_cnn", train, val, image_size=16, epochs=8, patience=2, lr_patience=1,
                            warmup_epochs=1, **options)
np.savez(out + ".final.npz", *[np.asarray(w) for w in result.model.weights])
print(json.dumps({"history": result.history, "best_epoch": result.best_epoch, "summary": result.summary()}))
"""


def _run(tmp: Path, name: str, stop: int, kind: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parent), str(tmp / name), str(stop), kind],
                          capture_output=True, text=True, env=env, timeout=600)


_REFERENCES: dict[str, tuple[dict, list[np.ndarray]]] = {}


def _reference(tmp_path_factory, kind: str) -> tuple[dict, list[np.ndarray]]:
    """The uninterrupted run of ``kind`` (once per module)."""
    if kind not in _REFERENCES:
        tmp = tmp_path_factory.mktemp(f"uninterrupted-{kind}")
        full = _run(tmp, "full.keras", 0, kind)
        assert full.returncode == 0, full.stderr[-3000:]
        _REFERENCES[kind] = json.loads(full.stdout.strip().splitlines()[-1]), _final(tmp, "full.keras")
    return _REFERENCES[kind]


def _final(tmp: Path, name: str) -> list[np.ndarray]:
    with np.load(tmp / f"{name}.final.npz") as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


@pytest.mark.parametrize("kind,stop", [("early-stopping", 3), ("two-phase", 3), ("two-phase", 4)],
                         ids=["one-phase-killed-after-3", "killed-at-the-end-of-phase-1", "killed-in-fine-tuning"])
def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, tmp_path_factory, kind, stop):
    reference, reference_weights = _reference(tmp_path_factory, kind)
    if kind == "two-phase":  # the same pretrained weights file as the uninterrupted run
        (tmp_path / "pretrained.weights.h5").write_bytes(
            next(tmp_path_factory.getbasetemp().glob("uninterrupted-two-phase*/pretrained.weights.h5")).read_bytes())

    killed = _run(tmp_path, "resumed.keras", stop, kind)
    assert killed.returncode == 75, killed.stderr[-3000:]
    state = training.resume_path(tmp_path / "resumed.keras")
    assert state.is_file()  # the state of epoch `stop`, written before the process died
    resumed = _run(tmp_path, "resumed.keras", 0, kind)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ResumeWarning" not in resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])

    assert result["history"] == reference["history"]  # every epoch's losses, metrics, rates, phases
    assert result["best_epoch"] == reference["best_epoch"]
    for a, b in zip(_final(tmp_path, "resumed.keras"), reference_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not state.exists()  # a finished training leaves no state behind
    if kind == "two-phase":
        assert reference["history"]["phase"] == ["train"] * 3 + ["fine-tune"] * 2
    else:  # the callbacks' states were resumed too: early stopping ended both runs at the same epoch
        assert len(reference["history"]["loss"]) < 8
        assert min(reference["history"]["learning_rate"]) < 1e-3


@pytest.fixture(scope="module")
def tiny():
    x, y = separable_arrays(32, size=16, seed=0)
    xv, yv = separable_arrays(16, size=16, seed=1)
    return dataset(x, y), dataset(xv, yv)


def _train(tiny, path, **kwargs):
    return training.train("project_b_cnn", *tiny, image_size=16, epochs=2, checkpoint=path, verbose=0, seed=4, **kwargs)


@pytest.mark.parametrize("content", [b"not a numpy archive", b"PK\x03\x04 truncated zip", b""],
                         ids=["garbage", "truncated", "empty"])
def test_a_corrupt_state_file_warns_naming_it_and_training_starts_afresh(tiny, tmp_path, content):
    fresh = _train(tiny, tmp_path / "fresh.keras")
    path = tmp_path / "model.keras"
    state = training.resume_path(path)
    assert state == tmp_path / "model.resume.npz"
    state.write_bytes(content)
    with pytest.warns(training.ResumeWarning, match=r"model\.resume\.npz is corrupt or unreadable.*first epoch"):
        result = _train(tiny, path)
    assert result.history == fresh.history  # a fresh start, not a half-restored model
    for a, b in zip(result.model.get_weights(), fresh.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not state.exists()


def test_the_state_of_another_training_is_not_used(tiny, tmp_path):
    class Stop(training.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    path = tmp_path / "model.keras"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, path, learning_rate=1e-2, callbacks=[Stop()])
    assert training.resume_path(path).is_file()
    with pytest.warns(training.ResumeWarning, match=r"model\.resume\.npz belongs to another training"):
        result = _train(tiny, path)  # the default learning rate: another training
    assert len(result.history["loss"]) == 2  # both epochs trained, none taken from the other run
    fresh = _train(tiny, tmp_path / "fresh.keras")
    assert result.history == fresh.history


def test_resume_false_neither_uses_nor_writes_a_state(tiny, tmp_path):
    path = tmp_path / "model.keras"
    state = training.resume_path(path)
    state.write_bytes(b"left over")
    with warnings.catch_warnings():
        warnings.simplefilter("error", training.ResumeWarning)
        _train(tiny, path, resume=False)
    assert not state.exists()
    assert path.is_file()  # the best checkpoint is still written


def test_the_chapters_cache_resumes_an_interrupted_training(tmp_path_factory, monkeypatch):
    """``cached_training`` after a disconnect: the phantom pipeline (shuffled, augmented, class
    weights), interrupted after epoch 1 of 3, resumed by the next call to the same weights."""
    from pneumo_lib import data, experiments
    from pneumo_lib.profiles import get_profile

    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    profile = get_profile("quick", phantom_scale="tiny", image_size=32, batch_size=16, epochs=3, bootstrap_rounds=20)
    manifest = data.make_splits(data.ensure_dataset(profile), seed=profile.seed)
    uninterrupted, _ = experiments.fit_recipe(experiments.Recipe("project_b_cnn", profile), manifest,
                                              tmp_path_factory.mktemp("elsewhere") / "m.keras", verbose=0)

    save = training._Checkpoint.on_epoch_end

    def save_then_disconnect(self, epoch, logs=None):
        save(self, epoch, logs)
        raise KeyboardInterrupt  # Colab's runtime went away after this epoch's state was written

    monkeypatch.setattr(training._Checkpoint, "on_epoch_end", save_then_disconnect)
    with pytest.raises(KeyboardInterrupt):
        experiments.cached_training("project_b_cnn", profile)
    monkeypatch.setattr(training._Checkpoint, "on_epoch_end", save)
    path = experiments.cache_path(experiments.Recipe("project_b_cnn", profile), manifest)
    assert training.resume_path(path).is_file() and "evaluation" not in training.read_card(path)

    skipped = []
    fast_forward = training._fast_forward
    monkeypatch.setattr(training, "_fast_forward", lambda ds, epochs, *a: (skipped.append(epochs), fast_forward(ds, epochs, *a)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", training.ResumeWarning)  # its own state: used, not discarded
        resumed = experiments.cached_training("project_b_cnn", profile)
    assert skipped == [1]  # resumed after epoch 1: trained epochs 2 and 3 only
    assert resumed.trained_now and resumed.path == path
    assert resumed.history == uninterrupted.history and len(resumed.history["loss"]) == 3
    for a, b in zip(resumed.model.get_weights(), uninterrupted.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not training.resume_path(path).exists()
