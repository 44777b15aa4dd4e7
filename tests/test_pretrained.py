"""Real pretrained networks from pneumonia-model-package: fetch on a loopback stand-in, integrity, the real model.

The fetch path runs the real ``pip download`` against a local folder (``PIP_NO_INDEX`` +
``PIP_FIND_LINKS``) holding a tiny stand-in wheel with the package's name and version.
The known-answer test on the real model needs the real wheel in the checkout's
``.pneumo/downloads`` (``make book`` or ``pneumo data sample`` fetch it), and is skipped otherwise.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pneumo_lib import models, pretrained

STAND_IN = b"a stand-in for the model file, not a model"
WHEEL_NAME = "pneumonia_model_package-0.3.0-py3-none-any.whl"
REAL_WHEEL = sorted((Path(__file__).parents[1] / ".pneumo" / "downloads").glob("pneumonia_model_package-0.3.0-*.whl"))


def _stand_in_wheel(folder: Path) -> Path:
    """A minimal valid wheel named like the package, holding STAND_IN as the model file."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "pneumonia_model_package-0.3.0.dist-info"
    path = folder / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pneumonia_model_package/__init__.py", "")
        z.writestr(pretrained.MODEL_MEMBER, STAND_IN)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: pneumonia_model_package\nVersion: 0.3.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch, pneumo_home):
    """pip sees only a local folder (no network); returns that folder (empty at first)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    pretrained._verified.clear()
    return links


def test_the_package_is_fetched_with_pip_and_a_file_with_another_sha256_is_refused(local_index, pneumo_home):
    _stand_in_wheel(local_index)
    with pytest.raises(pretrained.IntegrityError, match="SHA-256 mismatch .* refused"):
        pretrained.reference_model_file()
    assert (pneumo_home / "downloads" / WHEEL_NAME).is_file(), "pip fetched the wheel into the cache"
    assert not list((pneumo_home / "pretrained").iterdir()), "nothing unverified is left behind"
    # The same wheel with the stand-in's own digest pinned: extracted, verified, cached.
    digest = hashlib.sha256(STAND_IN).hexdigest()
    path = pretrained.reference_model_file(expected_sha256=digest)
    assert path.read_bytes() == STAND_IN and path.parent == pneumo_home / "pretrained"
    # A cached file that was changed afterwards is refused too.
    path.write_bytes(STAND_IN + b"!")
    with pytest.raises(pretrained.IntegrityError, match="SHA-256 mismatch"):
        pretrained.reference_model_file(expected_sha256=digest)


def test_offline_gives_one_clear_message_naming_the_package(local_index, pneumo_home, monkeypatch):
    assert pretrained.reference_available() is False
    with pytest.raises(pretrained.PretrainedUnavailable, match=r"pneumonia-model-package==0\.3\.0.*pip download --no-deps"):
        pretrained.load_reference_model()
    with pytest.raises(pretrained.PretrainedUnavailable, match="not in the cache"):
        pretrained.reference_model_file(fetch=False)

    # models: no package and no Keras download either -> one error naming both ways.
    from pneumo_lib._tf import keras

    real = keras.applications.Xception

    def offline_xception(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise Exception("URL fetch failure: no network")  # what Keras raises offline
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "Xception", offline_xception)
    with pytest.raises(RuntimeError, match=r"pneumonia-model-package.*xception_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
        models.build_backbone("xception", 71, weights="imagenet")


def test_weights_of_another_architecture_are_refused_naming_both(tmp_path):
    path = tmp_path / "mobilenet.weights.h5"
    models.build_backbone("mobilenet_v2", 32, weights=None).save_weights(path)
    with pytest.raises(models.WeightsMismatchError, match=r"mobilenet\.weights\.h5 does not fit the xception architecture"):
        models.build_backbone("xception", 71, weights=path)


def test_xception_is_a_backbone_with_its_cam_layer_and_builtin_preprocessing():
    model = models.build_model("xception", 71, weights=None)
    assert models.backbone_of(model).name == "xception"
    assert models.architecture_of(model).cam_layer == "block14_sepconv2_act"
    assert type(model.get_layer("preprocessing")).__name__ == "Rescaling"
    with pytest.raises(ValueError, match="at least 71x71"):
        models.build_model("xception", 64, weights=None)


@pytest.fixture(scope="module")
def real_home(tmp_path_factory):
    """A home whose downloads/ holds the real wheel (linked from the checkout's cache)."""
    if not REAL_WHEEL:
        pytest.skip("the real pneumonia-model-package wheel is not in .pneumo/downloads "
                    "(fetched by `make book` / `pneumo data sample` where PyPI is reachable)")
    home = tmp_path_factory.mktemp("real-home")
    (home / "downloads").mkdir()
    os.symlink(REAL_WHEEL[0], home / "downloads" / REAL_WHEEL[0].name)
    return home


def test_the_real_reference_model_gets_13_of_the_16_real_images_right(real_home, monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_HOME", str(real_home))
    from sklearn.metrics import roc_auc_score

    from pneumo_lib.data import layout, sample

    assert pretrained.reference_available()
    folder = sample.install_sample(REAL_WHEEL[0], tmp_path / "sample")
    records = layout.list_images(folder, splits=("val",))
    y = np.array([r.label for r in records])
    images = pretrained.reference_images([folder / r.path for r in records])
    ref = pretrained.load_reference_model()
    assert ref.card["input_size"] == 150 and ref.card["pneumonia_index"] == 1
    p = ref.model.predict(images, verbose=0)
    assert p.shape == (16, 2)
    assert int((p.argmax(1) == y).sum()) == 13
    assert roc_auc_score(y, p[:, 1]) == pytest.approx(0.906, abs=0.01)
    # The library-conforming wrapper computes what the package's own model does on 2x - 1.
    raw = pretrained.load_reference_model(raw=True).model
    logits = raw.predict(images * 2 - 1, verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(p, expected, atol=1e-5)
    # Its backbone is ImageNet Xception: the weights models.build_backbone loads at 96 px offline.
    backbone = models.build_backbone("xception", 96, weights="imagenet")
    stored = raw.get_layer("xception").get_weights()
    assert len(backbone.get_weights()) == len(stored)
    for mine, theirs in zip(backbone.get_weights(), stored):
        np.testing.assert_array_equal(mine, theirs)


def test_reference_input_resizes_like_the_package_and_refuses_bad_arrays():
    gray = np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200)
    x = pretrained.reference_input(gray)
    assert x.shape == (1, 150, 150, 3) and x.dtype == np.float32
    assert np.array_equal(x[..., 0], x[..., 2]) and 0.0 <= x.min() <= x.max() <= 1.0
    with pytest.raises(ValueError, match="shape"):
        pretrained.reference_input(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pretrained.reference_input(gray * 255)
