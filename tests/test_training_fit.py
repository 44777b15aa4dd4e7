"""The training function: learning, determinism, class weights, checkpoints, two phases."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from _synthetic import dataset, noise_arrays, separable_arrays
from pneumo_lib import evaluation, models, training
from pneumo_lib._tf import keras, tf

QUIET = dict(verbose=0, seed=7)


@pytest.fixture(scope="module")
def separable():
    x, y = separable_arrays(96, seed=0)
    xv, yv = separable_arrays(32, seed=1)
    return dataset(x, y), dataset(xv, yv)


def _weights(model):
    return [np.asarray(w) for w in model.weights]


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_a_small_cnn_learns_a_separable_set(head):
    x, y = separable_arrays(96, size=32, seed=0)
    xv, yv = separable_arrays(32, size=32, seed=1)
    result = training.train("paper_cnn", dataset(x, y), dataset(xv, yv), image_size=32, head=head, epochs=3,
                            learning_rate=3e-3, n_train=96, **QUIET)
    assert result.best_val_auc == pytest.approx(1.0)
    # New images: ranked perfectly, and classified at a threshold chosen on validation.
    x_new, y_new = separable_arrays(40, size=32, seed=5)
    p_val = np.asarray(result.model(xv))[:, -1]
    threshold = evaluation.choose_threshold(yv, p_val)
    p_new = np.asarray(result.model(x_new))[:, -1]
    assert evaluation.binary_metrics(y_new, p_new)["roc_auc"] == pytest.approx(1.0)
    assert ((p_new >= threshold) == y_new).mean() >= 0.95
    assert result.history["phase"] == ["train"] * len(result.history["loss"])
    assert result.images_per_second > 0
    # The hardware decides (one device: the default strategy; a GPU: mixed precision); both hold anywhere.
    gpus = tf.config.list_logical_devices("GPU")
    assert result.strategy == ("MirroredStrategy" if len(gpus) > 1 else "_DefaultDistributionStrategy")
    assert result.replicas == max(1, len(gpus))
    assert result.mixed_precision is bool(tf.config.list_physical_devices("GPU"))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build


def test_same_seed_gives_identical_training(separable):
    train_ds, val_ds = separable
    runs = [training.train("project_b_cnn", train_ds, val_ds, image_size=16, epochs=1, **QUIET) for _ in range(2)]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    for a, b in zip(_weights(runs[0].model), _weights(runs[1].model)):
        np.testing.assert_array_equal(a, b)
    other = training.train("project_b_cnn", train_ds, val_ds, image_size=16, epochs=1, verbose=0, seed=8)
    assert other.history["loss"] != runs[0].history["loss"]


@pytest.mark.parametrize("weights,expect_positive", [({0: 1.0, 1: 20.0}, True), ({0: 20.0, 1: 1.0}, False)])
def test_class_weights_pull_predictions_towards_the_heavier_class(weights, expect_positive):
    x, y = noise_arrays(64, size=32, seed=2)  # nothing to learn: only the class weights decide
    ds = dataset(x, y)
    result = training.train("paper_cnn", ds, ds, image_size=32, epochs=3, learning_rate=3e-3,
                            class_weight=weights, **QUIET)
    mean_p = float(np.asarray(result.model(x)).mean())
    assert (mean_p > 0.5) is expect_positive


def test_best_checkpoint_is_saved_with_its_card_and_matches_the_kept_weights(tmp_path):
    path = tmp_path / "ckpt" / "model.keras"
    x, y = separable_arrays(96, size=32, seed=0)
    xv, yv = separable_arrays(32, size=32, seed=1)
    result = training.train("paper_cnn", dataset(x, y), dataset(xv, yv), image_size=32, epochs=3,
                            checkpoint=path, card={"profile": "test"}, **QUIET)
    card = training.read_card(path)
    assert card["profile"] == "test" and card["architecture"] == "paper_cnn"
    assert card["checkpoint_epoch"] == result.best_epoch
    assert card["checkpoint_val_auc"] == pytest.approx(result.best_val_auc, abs=1e-6)
    assert result.best_val_auc == pytest.approx(max(result.history["val_auc"]))
    loaded = training.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(xv)), np.asarray(result.model(xv)), rtol=1e-5, atol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_interrupted_training_leaves_the_last_best_checkpoint_loadable(separable, tmp_path):
    train_ds, val_ds = separable
    path = tmp_path / "model.keras"
    with pytest.raises(KeyboardInterrupt):
        training.train("project_b_cnn", train_ds, val_ds, image_size=16, epochs=5, checkpoint=path,
                       callbacks=[_Interrupt()], **QUIET)
    card = training.read_card(path)
    assert card["checkpoint_epoch"] in (1, 2)
    model = training.load_model(path)
    assert model.output_shape == (None, 1)
    assert not list(tmp_path.glob(".model.*"))  # no half-written temporary files left


class _RecordKernels(keras.callbacks.Callback):
    def __init__(self, names):
        super().__init__()
        self.names, self.epochs = names, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({n: np.asarray(self.model.get_layer(n).kernel) for n in self.names})


def test_two_phase_transfer_trains_the_head_first_then_only_the_top_block(tmp_path):
    x, y = separable_arrays(32, size=32, seed=0)
    ds = dataset(x, y)
    pretrained = models.build_model("paper_cnn", 32)
    weights = tmp_path / "pretrained.weights.h5"
    pretrained.save_weights(weights)
    names = ("block1_conv", "block5_conv", "dense")
    initial = {n: np.asarray(pretrained.get_layer(n).kernel) for n in names}
    record = _RecordKernels(names)
    result = training.train("paper_cnn", ds, ds, image_size=32, weights=weights, transfer=True, epochs=1,
                            fine_tune_epochs=1, fine_tune_learning_rate=1e-3, callbacks=[record], **QUIET)
    assert result.history["phase"] == ["train", "fine-tune"]
    frozen_phase, fine_tune_phase = record.epochs
    # Phase 1: the pretrained features are frozen, the head learns.
    np.testing.assert_array_equal(frozen_phase["block1_conv"], initial["block1_conv"])
    np.testing.assert_array_equal(frozen_phase["block5_conv"], initial["block5_conv"])
    assert not np.array_equal(frozen_phase["dense"], initial["dense"])
    # Phase 2: the top block (block5_conv) moves too; block1_conv never does.
    np.testing.assert_array_equal(fine_tune_phase["block1_conv"], initial["block1_conv"])
    assert not np.array_equal(fine_tune_phase["block5_conv"], initial["block5_conv"])


def test_only_models_with_a_frozen_backbone_default_to_two_phases():
    model = models.build_model("mobilenet_v2", 32, weights=None)
    assert models.has_frozen_backbone(model)
    models.unfreeze_top(model)
    assert not models.has_frozen_backbone(model)
    assert not models.has_frozen_backbone(models.build_model("mobilenet_v2", 32, weights=None, train_backbone=True))
    assert not models.has_frozen_backbone(models.build_model("project_b_cnn", 16))


def test_progress_is_quiet_in_notebooks_and_a_line_per_epoch_in_logs(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert training.progress_verbosity() == 2
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert training.progress_verbosity() == 1
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert training.progress_verbosity() == 0
    assert training.progress_verbosity(1) == 1
    with pytest.raises(ValueError, match="verbose must be"):
        training.progress_verbosity(3)


def test_strategy_and_precision_are_picked_from_the_hardware():
    gpus = tf.config.list_logical_devices("GPU")
    expected = tf.distribute.MirroredStrategy if len(gpus) > 1 else type(tf.distribute.get_strategy())
    assert isinstance(training.pick_strategy("auto"), expected)
    assert training.use_mixed_precision("auto") is bool(tf.config.list_physical_devices("GPU"))
    assert training.use_mixed_precision(True) is True
    assert training.use_mixed_precision(False) is False
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'.*mirrored"):
        training.pick_strategy("gpu")


def test_bad_epochs_are_rejected(separable):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        training.train("project_b_cnn", *separable, image_size=16, epochs=0, verbose=0)
