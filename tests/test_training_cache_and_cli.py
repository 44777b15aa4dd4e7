"""The model cache the chapters use, the source/target transfer recipe, and `pneumo train|evaluate`.

Runs on the data layer's "tiny" phantom preset (36 training images) at 32 px, one epoch.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pneumo_lib import cli, data, experiments, models, training
from pneumo_lib.commands import train as train_command
from pneumo_lib.profiles import get_profile


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A private PNEUMO_HOME holding the tiny phantom dataset, and a one-epoch profile for it."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PNEUMO_HOME", str(home))
    mp.delenv("PNEUMO_DATA", raising=False)
    profile = get_profile("quick", phantom_scale="tiny", image_size=32, batch_size=16, epochs=1,
                          fine_tune_epochs=1, bootstrap_rounds=20)
    folder = data.ensure_dataset(profile)
    yield profile, folder
    mp.undo()


def test_cache_trains_once_then_loads_and_records_provenance(tiny):
    profile, folder = tiny
    first = experiments.cached_training("paper_cnn", profile)
    assert first.trained_now and first.path.parent == experiments.paths.model_cache_dir()
    manifest = data.make_splits(folder, seed=profile.seed)
    card = first.card
    assert card["data"]["manifest_hash"] == experiments.manifest_hash(manifest)
    assert card["data"]["source"] == "phantom" and card["profile"] == "quick"
    assert card["data"]["train_images"] == len(manifest.labels("train"))
    assert card["evaluation"]["threshold_source"] == "validation (youden)"
    assert card["evaluation"]["metrics"]["n"] == len(manifest.labels("test"))
    assert len(first.history["loss"]) == 1
    again = experiments.cached_training("paper_cnn", profile)
    assert not again.trained_now and again.path == first.path
    x = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(again.model(x)), np.asarray(first.model(x)), rtol=1e-6)
    # Another configuration is another cache entry; the bootstrap count is not part of the key.
    other = experiments.cache_path(experiments.Recipe("paper_cnn", get_profile(profile, epochs=2)), manifest)
    same = experiments.cache_path(experiments.Recipe("paper_cnn", get_profile(profile, bootstrap_rounds=5)), manifest)
    assert other != first.path and same == first.path


def test_manifest_hash_changes_when_an_image_changes(tiny, tmp_path):
    _, folder = tiny
    copy = tmp_path / "chest_xray"
    shutil.copytree(folder, copy)
    manifest = data.make_splits(copy, seed=1)
    before = experiments.manifest_hash(manifest)
    assert experiments.manifest_hash(data.make_splits(copy, seed=1)) == before
    image = copy / manifest.records[0].path
    image.write_bytes(image.read_bytes() + b"\0")
    assert experiments.manifest_hash(manifest) != before


def test_an_interrupted_checkpoint_in_the_cache_is_retrained(tiny):
    profile, _ = tiny
    first = experiments.cached_training("project_b_cnn", profile)
    card = training.read_card(first.path)
    del card["evaluation"]  # what a checkpoint of an interrupted run looks like
    training.card_path(first.path).write_text(json.dumps(card))
    assert experiments.cached_training("project_b_cnn", profile).trained_now


def test_a_recipe_trains_to_the_same_weights_whatever_the_process_did_before(tiny, tmp_path):
    """TensorFlow pairs the shuffle's seed with its global seed: a chapter that loaded one model
    from the cache and trained the next must get what a fresh process gets. Project B's CNN has
    batch normalisation and dropout, the layers whose results depended on this."""
    from pneumo_lib._tf import keras, tf

    profile, folder = tiny
    manifest = data.make_splits(folder, seed=profile.seed)
    recipe = experiments.Recipe("project_b_cnn", profile)

    def train(out):
        result, _ = experiments.fit_recipe(recipe, manifest, tmp_path / out, verbose=0)
        return result.history, [np.asarray(w) for w in result.model.get_weights()]

    first_history, first = train("a.keras")
    keras.utils.set_random_seed(7)  # what training another model, or user code, leaves behind
    tf.random.uniform((3,))
    second_history, second = train("b.keras")
    assert first_history == second_history
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_source_and_target_subsets_split_the_training_patients(tiny):
    profile, folder = tiny
    manifest = data.make_splits(folder, seed=profile.seed)
    all_paths, all_labels = experiments.train_subset(manifest, "all")
    source, _ = experiments.train_subset(manifest, "source", seed=1)
    target, target_labels = experiments.train_subset(manifest, "target", seed=1)
    assert sorted(map(str, source + target)) == sorted(map(str, all_paths))
    patient = {manifest.data_dir / r.path: (r.label, r.patient) for r in manifest.records}
    assert not {patient[p] for p in source} & {patient[p] for p in target}
    assert set(target_labels.tolist()) == {0, 1}
    assert len(target) < len(source)
    with pytest.raises(ValueError, match="Unknown training subset 'half'"):
        experiments.train_subset(manifest, "half")


def test_source_pretrained_model_is_what_the_target_model_starts_from(tiny):
    profile, _ = tiny
    target = experiments.cached_training("paper_cnn", profile, weights="source")
    assert target.card["data"]["subset"] == "target"
    assert target.card["weights"].startswith("source:paper_cnn-quick-")
    assert target.history["phase"] == ["train", "fine-tune"]
    source_path = experiments.paths.model_cache_dir() / (target.card["weights"].split(":", 1)[1] + ".keras")
    source_card = training.read_card(source_path)
    assert source_card["data"]["subset"] == "source" and source_card["weights"] is None
    source = training.load_model(source_path)
    # block1_conv stays frozen in both phases (fine-tuning starts at block5_conv):
    # the target model kept exactly what the source model learned there.
    np.testing.assert_array_equal(np.asarray(target.model.get_layer("block1_conv").kernel),
                                  np.asarray(source.get_layer("block1_conv").kernel))
    assert not np.array_equal(np.asarray(target.model.get_layer("dense").kernel),
                              np.asarray(source.get_layer("dense").kernel))


def test_cli_model_names_match_the_library():
    assert train_command._MODELS == models.MODEL_NAMES


def test_pneumo_train_then_evaluate_json(tiny, tmp_path, capsys):
    _, folder = tiny
    out = tmp_path / "model.keras"
    code = cli.main(["train", "--model", "paper_cnn", "--data", str(folder.parent), "--out", str(out),
                     "--epochs", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"saved {out}" in printed and "ROC AUC" in printed
    assert training.read_card(out)["data"]["folder"] == str(folder)
    assert cli.main(["evaluate", str(out), "--data", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["threshold_source"] == "validation (youden)"
    assert set(report["metrics"]) >= {"accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"}
    card_metrics = training.read_card(out)["evaluation"]["metrics"]
    assert report["metrics"]["roc_auc"] == pytest.approx(card_metrics["roc_auc"])


def test_cli_errors_are_one_clear_line(tiny, tmp_path, capsys):
    _, folder = tiny
    assert cli.main(["train", "--model", "inception", "--data", str(folder), "--out", str(tmp_path / "m.keras")]) == 2
    assert "Valid models: paper_cnn, project_b_cnn" in capsys.readouterr().err
    no_test = tmp_path / "no_test" / "chest_xray"
    shutil.copytree(folder / "train", no_test / "train")
    shutil.copytree(folder / "val", no_test / "val")
    assert cli.main(["train", "--model", "paper_cnn", "--data", str(no_test), "--out", str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err
    assert "no split folder(s) test" in err and "Traceback" not in err
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["evaluate", str(broken), "--data", str(folder)]) == 2
    assert "corrupted or truncated" in capsys.readouterr().err
