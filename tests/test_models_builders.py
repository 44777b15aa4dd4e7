"""Model builders: shapes, heads, preprocessing layers, nesting, weights and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import models
from pneumo_lib._tf import keras

BACKBONES = [n for n, a in models.ARCHITECTURES.items() if a.family == "backbone"]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("head,units", [("sigmoid", 1), ("softmax", 2)])
@pytest.mark.parametrize("name", ["paper_cnn", "project_b_cnn"])
def test_scratch_cnns_map_images_to_probabilities(name, head, units):
    model = models.build_model(name, 32, head=head)
    x = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    p = np.asarray(model(x))
    assert model.input_shape == (None, 32, 32, 1)
    assert p.shape == (3, units)
    assert ((p >= 0) & (p <= 1)).all()
    if head == "softmax":
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_paper_cnn_follows_the_paper_and_has_no_relu_before_the_output():
    model = models.build_model("paper_cnn", 64, head="softmax")
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.get_layer("dense").units == 128
    # Prior project A's bug: softmax(relu(logits)). Here the logits feed the softmax directly.
    logits, out = model.get_layer("logits"), model.get_layer("prediction")
    assert logits.activation.__name__ == "linear"
    assert out.activation.__name__ == "softmax"
    assert out.input is logits.output
    # Negative logits must still give the class a probability below 0.5 but above 0.
    submodel = keras.Model(model.input, [logits.output, out.output])
    z, p = submodel(np.random.default_rng(1).random((8, 64, 64, 1), dtype=np.float32))
    np.testing.assert_allclose(np.asarray(p), keras.ops.softmax(z).numpy(), rtol=1e-5)


def test_project_b_cnn_has_batchnorm_blocks_and_dense_512():
    model = models.build_model("project_b_cnn", 64)
    assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [32, 64, 128, 128]
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers) == 4
    assert model.get_layer("dense").units == 512
    assert model.get_layer("dense_dropout").rate == 0.5


@pytest.mark.parametrize("name", BACKBONES)
def test_backbones_are_nested_with_standard_cam_layers_and_no_lambda(name):
    arch = models.architecture(name)
    model = models.build_model(name, max(32, arch.min_size), weights=None)
    backbone = models.backbone_of(model)
    assert isinstance(backbone, keras.Model) and backbone.name == name
    backbone.get_layer(arch.cam_layer)  # raises if missing
    assert not backbone.trainable
    assert model.output_shape == (None, 1)
    assert not any(isinstance(l, keras.layers.Lambda) for l in _all_layers(model))
    assert models.architecture_of(model) is arch


@pytest.mark.parametrize(
    "name,reference",
    [
        ("vgg16", keras.applications.vgg16.preprocess_input),
        ("resnet50", keras.applications.resnet50.preprocess_input),
        ("mobilenet_v2", keras.applications.mobilenet_v2.preprocess_input),
        ("densenet121", keras.applications.densenet.preprocess_input),
        ("xception", keras.applications.xception.preprocess_input),
    ],
)
def test_builtin_preprocessing_matches_keras_functions_on_gray_images(name, reference):
    size = max(32, models.architecture(name).min_size)
    model = models.build_model(name, size, weights=None)
    gray = np.random.default_rng(2).random((2, size, size, 1), dtype=np.float32)
    rgb = np.repeat(gray, 3, axis=-1)  # the contract: the gray image repeated
    ours = np.asarray(model.get_layer("preprocessing")(rgb))
    expected = np.asarray(reference(rgb * 255.0))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown model 'inception'.*paper_cnn.*densenet121"):
        models.build_model("inception")


@pytest.mark.parametrize("name,minimum", [("vgg16", 32), ("paper_cnn", 32), ("project_b_cnn", 16), ("xception", 71)])
def test_too_small_input_says_the_minimum(name, minimum):
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}.*image_size={minimum // 2}"):
        models.build_model(name, minimum // 2, weights=None)


def test_bad_head_and_channels_are_named():
    with pytest.raises(ValueError, match="Unknown head 'relu'"):
        models.build_model("paper_cnn", 32, head="relu")
    with pytest.raises(ValueError, match="channels must be 1"):
        models.build_model("paper_cnn", 32, channels=2)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        models.build_model("paper_cnn", 32, weights="imagenet")


def test_imagenet_download_failure_says_how_to_supply_a_local_file(tmp_path, monkeypatch):
    """Stand-in for the unreachable download server: the real Keras downloader, pointed at loopback."""
    import keras.src.applications.mobilenet_v2 as mnv2
    import keras.src.backend.config as kconfig

    monkeypatch.setattr(kconfig, "_KERAS_DIR", str(tmp_path))  # empty weights cache
    monkeypatch.setattr(mnv2, "BASE_WEIGHT_PATH", "http://127.0.0.1:9/keras-applications/mobilenet_v2/")
    with pytest.raises(RuntimeError) as info:
        models.build_model("mobilenet_v2", 96, weights="imagenet")
    message = str(info.value)
    assert "Could not download the ImageNet weights of mobilenet_v2" in message
    assert "127.0.0.1:9" in message  # the real downloader tried the (unreachable) server
    assert models.imagenet_weights_url("mobilenet_v2", 96) in message
    assert "weights='/path/to/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5'" in message


def test_backbone_loads_a_local_weights_file(tmp_path):
    source = models.build_backbone("mobilenet_v2", 32, weights=None)
    path = tmp_path / "mobilenet_v2_backbone.weights.h5"
    source.save_weights(path)
    model = models.build_transfer_model("mobilenet_v2", 32, weights=path)
    loaded = models.backbone_of(model)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh = models.build_backbone("mobilenet_v2", 32, weights=None)
    assert not np.array_equal(np.asarray(fresh.weights[0]), np.asarray(source.weights[0]))


def test_scratch_model_loads_a_local_weights_file_and_missing_files_are_named(tmp_path):
    source = models.build_model("project_b_cnn", 16)
    path = tmp_path / "b.weights.h5"
    source.save_weights(path)
    x = np.random.default_rng(3).random((2, 16, 16, 1), dtype=np.float32)
    again = models.build_model("project_b_cnn", 16, weights=path)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(source(x)), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5 does not exist"):
        models.build_model("project_b_cnn", 16, weights=tmp_path / "missing.weights.h5")


def test_imagenet_weights_need_three_channels():
    with pytest.raises(ValueError, match="need channels=3"):
        models.build_backbone("vgg16", 32, channels=1, weights="imagenet")


def test_unfreeze_top_opens_only_the_top_blocks_and_keeps_batchnorm_frozen():
    model = models.build_model("mobilenet_v2", 32, weights=None)
    count = models.unfreeze_top(model)
    backbone = models.backbone_of(model)
    names = [l.name for l in backbone.layers]
    start = names.index("block_13_expand")
    assert count > 0
    assert not any(l.trainable for l in backbone.layers[:start] if l.weights)
    top = backbone.layers[start:]
    assert all(l.trainable for l in top if l.weights and not isinstance(l, keras.layers.BatchNormalization))
    assert not any(l.trainable for l in top if isinstance(l, keras.layers.BatchNormalization))
    with pytest.raises(ValueError, match="'conv9' is not in the mobilenet_v2 backbone"):
        models.unfreeze_top(model, "conv9")


def test_scratch_cnn_freezes_its_conv_blocks_and_fine_tunes_the_top_one():
    model = models.build_model("paper_cnn", 32)
    models.freeze_features(model)
    frozen = {l.name for l in model.layers if l.weights and not l.trainable}
    assert frozen == {f"block{i}_conv" for i in range(1, 6)}
    assert model.get_layer("dense").trainable and model.get_layer("logits").trainable
    assert models.unfreeze_top(model) == 1
    assert model.get_layer("block5_conv").trainable and not model.get_layer("block4_conv").trainable


def test_the_paper_cnn_centres_its_inputs_on_zero():
    model = models.build_scratch_cnn("paper_cnn", 32)
    centre = model.get_layer("centre")
    out = np.asarray(centre(np.array([[[[0.0]], [[0.5]], [[1.0]]]], np.float32)))
    assert np.allclose(out.ravel(), [-1.0, 0.0, 1.0])
    assert model.layers[1].name == "centre"  # right after the input, before block1_conv
    assert "centre" not in [layer.name for layer in models.build_scratch_cnn("project_b_cnn", 32).layers]
