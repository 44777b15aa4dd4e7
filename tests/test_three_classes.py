"""Three classes (NORMAL, bacterial, viral): file-name parsing, the stratified patient split,
three-unit models and their maps, metrics against scikit-learn, training and the command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_class_weight

from pneumo_lib import cam, cli, evaluation, models, three_classes, training
from pneumo_lib._tf import keras, tf
from pneumo_lib.data import phantom
from pneumo_lib.data.layout import ImageRecord
from pneumo_lib.data.splits import SplitManifest
from pneumo_lib.data.subtypes import (
    StratificationWarning,
    class_weights3,
    subtype_label,
    three_class_split,
)

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name, label, expected", [
    ("person1946_bacteria_4874.jpeg", 1, 1),
    ("person1_virus_6.jpeg", 1, 2),
    ("PERSON12_VIRUS_30.JPEG", 1, 2),
    ("IM-0115-0001.jpeg", 0, 0),
    ("NORMAL2-IM-0372-0001.jpeg", 0, 0),
    ("train/PNEUMONIA/person3_bacteria_10.jpeg", 1, 1),
])
def test_subtype_from_kaggle_names(name, label, expected):
    assert subtype_label(name, label) == expected


def test_pneumonia_name_that_says_neither_is_named():
    with pytest.raises(ValueError, match=r"IM-0001-0001\.jpeg.*neither 'bacteria' nor 'virus'"):
        subtype_label("test/PNEUMONIA/IM-0001-0001.jpeg", 1)
    with pytest.raises(ValueError, match="both"):
        subtype_label("person1_bacteria_virus_2.jpeg", 1)
    with pytest.raises(ValueError, match="NORMAL folder"):
        subtype_label("person1_virus_6.jpeg", 0)


def test_class_weights3_match_scikit_learn_balanced():
    y = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    weights = class_weights3(y)
    assert weights == pytest.approx({0: 8 / 6, 1: 8 / 12, 2: 8 / 6})
    reference = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert [weights[c] for c in range(3)] == pytest.approx(reference.tolist())
    with pytest.raises(ValueError, match="no viral"):
        class_weights3([0, 1, 1])


# --------------------------------------------------------------------------- the split


def _records(seed: int = 0, patients: int = 420) -> list[ImageRecord]:
    """Hand-made records: NORMAL / bacterial / viral patients with 1-4 images each."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(patients):
        kind = ("normal", "bacteria", "virus")[p % 3 if p % 5 else 1]
        split = "test" if p % 7 == 0 else "train"
        for k in range(int(rng.integers(1, 5))):
            if kind == "normal":
                out.append(ImageRecord(f"{split}/NORMAL/IM-{p:04d}-{k + 1:04d}.jpeg", split, 0, f"IM-{p:04d}"))
            else:
                out.append(ImageRecord(f"{split}/PNEUMONIA/person{p}_{kind}_{k}.jpeg", split, 1, f"person{p}"))
    return out


def _manifest(records, val_patients) -> SplitManifest:
    moved = tuple(ImageRecord(r.path, "val" if r.patient in val_patients else r.split, r.label, r.patient)
                  for r in records)
    return SplitManifest(__import__("pathlib").Path("/nowhere"), moved, tuple(r.split for r in records))


def test_split_not_stratified_by_subtype_is_resplit_without_leaks():
    records = _records()
    # A two-class val holding NORMAL and only *bacterial* patients: not stratified by three classes.
    val = {r.patient for r in records if r.split == "train" and ("bacteria" in r.path or "IM-" in r.path)}
    val = set(sorted(val)[: len(val) // 5])
    given = _manifest(records, val)
    split = three_class_split(given, seed=3)
    assert not split.reused
    gaps = split.share_gaps()
    assert gaps["train"] <= 0.02 and gaps["val"] <= 0.02
    assert split.leaked_patients() == set()
    shares = split.shares()
    for c in ("NORMAL", "bacterial", "viral"):  # by hand: every share within 2 points of the pool's
        for s in ("train", "val"):
            assert abs(shares[s][c] - shares["pool"][c]) <= 0.02
    # The test split is Kaggle's: unchanged, record for record.
    assert [r for r in split.manifest.records if r.split == "test"] == [r for r in given.records if r.split == "test"]
    n_val = sum(split.counts()["val"].values())
    assert 0.1 < n_val / sum(sum(split.counts()[s].values()) for s in ("train", "val")) < 0.2


def test_split_already_stratified_is_reused_as_is():
    # One image per patient: 100 NORMAL, 200 bacterial, 100 viral in train+val; val holds exactly
    # 15, 30 and 15 of them, so every share is the pool's (gap 0) and the split is kept.
    records, val = [], set()
    for kind, n in (("normal", 100), ("bacteria", 200), ("virus", 100)):
        for i in range(n):
            if kind == "normal":
                r = ImageRecord(f"train/NORMAL/IM-{i:04d}-0001.jpeg", "train", 0, f"IM-{i:04d}")
            else:
                r = ImageRecord(f"train/PNEUMONIA/person{i}{kind[0]}_{kind}_1.jpeg", "train", 1, f"person{i}{kind[0]}")
            records.append(r)
            if i < n * 15 // 100:
                val.add(r.patient)
    records += [ImageRecord("test/NORMAL/IM-9000-0001.jpeg", "test", 0, "IM-9000"),
                ImageRecord("test/PNEUMONIA/person9000_bacteria_1.jpeg", "test", 1, "person9000"),
                ImageRecord("test/PNEUMONIA/person9001_virus_1.jpeg", "test", 1, "person9001")]
    given = _manifest(records, val)
    kept = three_class_split(given)
    assert kept.reused and kept.manifest is given
    assert kept.counts()["val"] == {"NORMAL": 15, "bacterial": 30, "viral": 15}
    assert kept.share_gaps()["val"] == pytest.approx(0.0) and kept.share_gaps()["train"] == pytest.approx(0.0)
    assert kept.labels("val").tolist() == [0] * 15 + [1] * 30 + [2] * 15


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory):
    """A small phantom with all three classes in every split (112 images at ~64 px)."""
    spec = dataclasses.replace(phantom.phantom_spec("tiny", size=64),
                               counts={"train": (24, 48), "val": (2, 2), "test": (12, 24)})
    root = tmp_path_factory.mktemp("three") / "phantom"
    phantom.generate_phantom(root, spec)
    return root


def test_phantom_folder_split_has_every_class_and_no_leak(small_phantom):
    with pytest.warns(StratificationWarning):  # 112 images: too few patients for 2 points
        split = three_class_split(small_phantom / "chest_xray", seed=42)
    counts = split.counts()
    assert all(counts[s][c] > 0 for s in ("train", "val", "test") for c in counts["test"])
    assert split.leaked_patients() == set()
    names = [p.name for p in split.paths("test")]
    assert [int("virus" in n) * 2 + int("bacteria" in n) for n in names] == split.labels("test").tolist()


@pytest.mark.filterwarnings("ignore::pneumo_lib.data.subtypes.StratificationWarning")
def test_missing_class_is_a_clear_error(tmp_path):
    spec = dataclasses.replace(phantom.phantom_spec("tiny", size=32),
                               counts={"train": (4, 4), "val": (1, 1), "test": (2, 2)})
    root = phantom.generate_phantom(tmp_path / "p", spec)
    folder = root / "chest_xray" if (root / "chest_xray").is_dir() else root
    for f in folder.glob("*/PNEUMONIA/*virus*"):  # a dataset without any viral image
        f.rename(f.with_name(f.name.replace("virus", "bacteria")))
    with pytest.raises(ValueError, match=r"train has no viral image"):
        three_class_split(folder)


# --------------------------------------------------------------------------- models and maps


def test_three_class_models_keep_layer_names():
    cnn = three_classes.build_model("paper_cnn", 32)
    assert cnn.output_shape == (None, 3) and cnn.name == "paper_cnn"
    assert cnn.get_layer("logits").units == 3 and cnn.get_layer("prediction").activation.__name__ == "softmax"
    backbone = three_classes.build_model("mobilenet_v2", 32, weights=None)
    assert backbone.output_shape == (None, 3) and models.has_frozen_backbone(backbone)
    assert models.architecture_of(backbone).name == "mobilenet_v2"
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    assert np.allclose(cnn.predict(x, verbose=0).sum(axis=1), 1.0, atol=1e-5)
    assert three_classes.classes_of(three_classes.build_model("project_b_cnn", 32, classes=2)) == 2
    with pytest.raises(ValueError, match="classes must be 2 .* or 3"):
        three_classes.build_model("paper_cnn", 32, classes=4)


def test_grad_cam_explains_each_of_three_classes_differently():
    keras.utils.set_random_seed(1)
    model = three_classes.build_model("paper_cnn", 32)
    x = np.random.default_rng(1).random((3, 32, 32, 1)).astype(np.float32)
    maps = [cam.grad_cam(model, x, class_index=k, normalize=False) for k in range(3)]
    assert all(m.shape == (3, 32, 32) for m in maps)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.allclose(maps[a], maps[b], atol=1e-6), (a, b)


def _corner_model(size: int = 32) -> keras.Model:
    """Known answers: channel 0 fires on bright pixels, channel 1 on dark ones; the logits are
    ``(10 * dark, 0, 50 * bright)``: class 2's evidence is the bright disc, class 1 has none."""
    inputs = keras.Input((size, size, 1), name="image")
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(conv(inputs))
    dense = keras.layers.Dense(3, name="logits")
    out = keras.layers.Activation("softmax", name="prediction")(dense(x))
    model = keras.Model(inputs, out, name="corner")
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[..., 0], kernel[..., 1] = 1 / 9, -1 / 9
    conv.set_weights([kernel, np.array([-0.5, 0.5], np.float32)])
    dense.set_weights([np.array([[0, 0, 50], [10, 0, 0]], np.float32), np.zeros(3, np.float32)])
    return model


def test_class_two_map_sits_on_its_evidence_in_the_corner():
    size = 32
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 26) ** 2 + (xx - 26) ** 2 <= 16  # bottom-right corner
    image = disc[None, ..., None].astype(np.float32)
    model = _corner_model(size)
    viral = cam.grad_cam(model, image, class_index=2)[0]
    normal = cam.grad_cam(model, image, class_index=0)[0]
    bacterial = cam.grad_cam(model, image, class_index=1)[0]
    peak = np.unravel_index(viral.argmax(), viral.shape)
    assert peak[0] >= size // 2 and peak[1] >= size // 2 and disc[peak]
    assert viral[disc].sum() / viral.sum() > 0.6 and viral[:16, :16].max() == 0
    inner = (yy - 26) ** 2 + (xx - 26) ** 2 <= 4
    assert normal[inner].max() == 0 and normal[:16, :16].min() > 0.5  # NORMAL: the dark background
    assert np.all(bacterial == 0)  # no evidence for class 1 anywhere
    for method in (cam.grad_cam_plus_plus, cam.score_cam):  # the other methods: class 2 on the disc too
        other = method(model, image, class_index=2)[0]
        assert disc[np.unravel_index(other.argmax(), other.shape)] and other[:16, :16].max() < 0.05, method.__name__


# --------------------------------------------------------------------------- metrics


Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
PRED = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 1])


def _probabilities() -> np.ndarray:
    rng = np.random.default_rng(5)
    p = np.full((Y.size, 3), 0.1) + rng.random((Y.size, 3)) * 0.05
    p[np.arange(Y.size), PRED] = 0.6 + rng.random(Y.size) * 0.3
    return p / p.sum(axis=1, keepdims=True)


def test_metrics_against_scikit_learn_and_by_hand():
    p = _probabilities()
    m = three_classes.metrics3(Y, p)
    assert m["confusion"] == [[3, 1, 0], [0, 3, 1], [0, 1, 3]]
    assert m["confusion"] == skm.confusion_matrix(Y, p.argmax(1)).tolist()
    assert m["accuracy"] == pytest.approx(9 / 12)
    for c, sens, spec in (("NORMAL", 3 / 4, 8 / 8), ("bacterial", 3 / 4, 6 / 8), ("viral", 3 / 4, 7 / 8)):
        assert m[f"sensitivity_{c}"] == pytest.approx(sens)
        assert m[f"specificity_{c}"] == pytest.approx(spec)
    recall = skm.recall_score(Y, p.argmax(1), average=None)
    assert [m[f"sensitivity_{c}"] for c in ("NORMAL", "bacterial", "viral")] == pytest.approx(recall.tolist())
    for k, c in enumerate(("NORMAL", "bacterial", "viral")):
        assert m[f"roc_auc_{c}"] == pytest.approx(skm.roc_auc_score(Y == k, p[:, k]))
    assert m["macro_roc_auc"] == pytest.approx(skm.roc_auc_score(Y, p, multi_class="ovr", average="macro"))
    pn = Y > 0
    assert m["bacterial_vs_viral_auc"] == pytest.approx(
        skm.roc_auc_score(Y[pn] == 2, p[pn, 2] / (p[pn, 1] + p[pn, 2])))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y, p.argmax(1)))


def test_bacterial_vs_viral_auc_known_answer():
    # Pneumonias only: viral scores 0.9, 0.6; bacterial 0.7, 0.2 -> 3 of 4 pairs ordered: AUC 0.75.
    p = np.array([[0.8, 0.1, 0.1], [0.0, 0.1, 0.9], [0.0, 0.4, 0.6], [0.0, 0.3, 0.7], [0.2, 0.64, 0.16]])
    y = np.array([0, 2, 2, 1, 1])
    assert three_classes.metrics3(y, p)["bacterial_vs_viral_auc"] == pytest.approx(0.75)


def test_patient_bootstrap_matches_a_reference_loop():
    p = _probabilities()
    groups = np.repeat(np.arange(6), 2)  # six patients, two images each (same class)
    ci = three_classes.bootstrap_ci3(Y, p, groups=groups, rounds=50, seed=4)
    samples = []
    for idx in evaluation.bootstrap_indices(Y.size, groups, rounds=50, seed=4):
        ys, ps = Y[idx], p[idx]
        if len(np.unique(ys)) == 3:
            samples.append(skm.roc_auc_score(ys, ps, multi_class="ovr", average="macro"))
        assert len(idx) % 2 == 0  # whole patients
    assert ci["macro_roc_auc"] == pytest.approx((np.percentile(samples, 2.5), np.percentile(samples, 97.5)))
    ev = three_classes.evaluate_predictions3(Y, p, groups=groups, bootstrap_rounds=50, seed=4)
    assert ev.ci_unit == "patient" and ev.ci == ci
    assert ev.confusion_frame().loc["viral", "bacterial"] == 1
    assert list(ev.table().index) == ["NORMAL", "bacterial", "viral"]
    json.dumps(ev.as_dict())


def test_wrong_number_of_classes_and_missing_class_are_errors():
    with pytest.raises(ValueError, match="two-class model"):
        three_classes.metrics3([0, 1], [[0.3, 0.7], [0.9, 0.1]])
    with pytest.raises(ValueError, match="no viral image"):
        three_classes.evaluate_predictions3(Y[:8], _probabilities()[:8])
    two = three_classes.build_model("paper_cnn", 32, classes=2)
    three = three_classes.build_model("paper_cnn", 32, classes=3)
    batches = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 1), np.float32), np.array([0, 1, 2, 1]))).batch(2)
    with pytest.raises(ValueError, match="2 output unit.*two-class.*--classes 3"):
        three_classes.evaluate_model3(two, batches)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):  # the reverse: a three-class model in two-class evaluation
        evaluation.evaluate_model(three, batches)


# --------------------------------------------------------------------------- training and the command line


@pytest.mark.filterwarnings("ignore::pneumo_lib.data.subtypes.StratificationWarning")
def test_cli_trains_and_evaluates_three_classes(small_phantom, pneumo_home, tmp_path, capsys):
    out = tmp_path / "three.keras"
    code = cli.main(["train", "--model", "paper_cnn", "--classes", "3", "--data", str(small_phantom),
                     "--out", str(out), "--epochs", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "macro roc auc" in printed and "bacterial" in printed
    card = training.read_card(out)
    assert card["classes"] == 3 and card["labels"] == {"0": "NORMAL", "1": "bacterial", "2": "viral"}
    assert card["training"]["epochs_run"] == 1
    model = training.load_model(out)
    assert model.output_shape == (None, 3)

    assert cli.main(["evaluate", str(out), "--data", str(small_phantom), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == ["NORMAL", "bacterial", "viral"] and result["ci_unit"] == "patient"
    confusion = np.array(result["metrics"]["confusion"])
    assert confusion.sum() == 36 and confusion.sum(axis=1).tolist() == [12, 14, 10]
    # The same numbers from the model's own predictions, scored by scikit-learn.
    split = three_class_split(small_phantom / "chest_xray", seed=42)
    from pneumo_lib.profiles import get_profile

    ds = three_classes.split_dataset3(split, "test", get_profile("quick"))
    y, p = three_classes.predict_proba3(model, ds)
    assert result["metrics"]["macro_roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-6)
    assert confusion.tolist() == skm.confusion_matrix(y, p.argmax(1), labels=[0, 1, 2]).tolist()


@pytest.mark.parametrize("value", ["4", "1", "three"])
def test_cli_rejects_other_class_counts_in_one_line(value, capsys, tmp_path):
    code = cli.main(["train", "--model", "paper_cnn", "--classes", value, "--data", str(tmp_path),
                     "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--classes must be 2 (NORMAL, PNEUMONIA) or 3 (NORMAL, bacterial, viral), got '{value}'" in err


def test_cli_three_classes_need_softmax(capsys, tmp_path):
    code = cli.main(["train", "--model", "paper_cnn", "--classes", "3", "--head", "sigmoid", "--data",
                     str(tmp_path), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "softmax" in capsys.readouterr().err


def test_three_weighted_classes_train_in_two_phases():
    """The transfer recipe (features frozen, then the top block fine-tuned) on a three-unit head; a
    backbone takes the same path (building one is tested above; training it here would take half a minute)."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 1, 2] * 4)
    x = rng.random((y.size, 32, 32, 1)).astype(np.float32) * 0.2 + y[:, None, None, None] * 0.3
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    keras.utils.set_random_seed(0)
    model = three_classes.build_model("paper_cnn", 32)
    result = training.train(model, batches, batches, epochs=1, fine_tune_epochs=1, transfer=True,
                            class_weight=class_weights3(y), warmup_epochs=0, verbose=0)
    assert result.history["phase"] == ["train", "fine-tune"]
    assert all(np.isfinite(result.history["val_auc"])) and result.model.output_shape == (None, 3)
    labels, p = three_classes.predict_proba3(result.model, batches)
    assert labels.tolist() == y.tolist() and np.allclose(p.sum(axis=1), 1, atol=1e-5)


@pytest.mark.filterwarnings("ignore::pneumo_lib.data.subtypes.StratificationWarning")
def test_cached_training_trains_once_then_loads(small_phantom, pneumo_home, monkeypatch):
    from pneumo_lib import data
    from pneumo_lib.profiles import get_profile

    monkeypatch.setattr(data, "ensure_dataset", lambda profile, **kw: small_phantom / "chest_xray")
    P = get_profile("quick", image_size=32, epochs=1, bootstrap_rounds=20)
    first = three_classes.cached_training("paper_cnn", P)
    assert first.trained_now and first.path.parent == pneumo_home / "models" and "3class" in first.path.name
    again = three_classes.cached_training("paper_cnn", P)
    assert not again.trained_now and again.path == first.path
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    assert np.allclose(first.model.predict(x, verbose=0), again.model.predict(x, verbose=0), atol=1e-6)
    ev = three_classes.evaluate_cached(again)
    stored = again.card["evaluation"]["metrics"]
    assert ev.metrics["confusion"] == stored["confusion"]
    assert ev.metrics["macro_roc_auc"] == pytest.approx(stored["macro_roc_auc"], abs=1e-5)


@pytest.mark.parametrize("value", [3.0, True, "3", 4, 1])
def test_check_classes_is_the_decision_check_and_refuses_what_is_not_a_whole_2_or_3(value):
    with pytest.raises(ValueError, match=rf"classes must be 2 \(NORMAL, PNEUMONIA\) or 3 .*got {value!r}"):
        three_classes.check_classes(value)
    assert three_classes.check_classes(np.int64(3)) == 3 and three_classes.check_classes(2) == 2
