from __future__ import annotations

from pathlib import Path

import pytest

from pneumo_lib import paths, profiles


def test_quick_and_full_differ_where_the_book_says():
    quick, full = profiles.get_profile("quick"), profiles.get_profile("full")
    assert (quick.data_source, quick.weights, quick.image_size) == ("phantom", None, 64)
    assert (full.data_source, full.weights, full.image_size) == ("kaggle", "imagenet", 224)
    assert quick.epochs < full.epochs


def test_single_value_override_keeps_the_rest():
    p = profiles.get_profile("quick", epochs=2, image_size=None)
    assert p.epochs == 2
    assert p.image_size == profiles.PROFILES["quick"].image_size
    assert profiles.PROFILES["quick"].epochs == 8  # the registry is untouched


def test_string_overrides_from_papermill_are_converted():
    p = profiles.get_profile("quick", epochs="3", learning_rate="0.01", weights="imagenet")
    assert p.epochs == 3 and isinstance(p.epochs, int)
    assert p.learning_rate == pytest.approx(0.01)
    assert p.weights == "imagenet"


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown profile 'slow'.*quick, full"):
        profiles.get_profile("slow")


def test_unknown_field_lists_valid_fields():
    with pytest.raises(ValueError, match=r"epoch\b.*Valid fields:.*epochs"):
        profiles.get_profile("quick", epoch=3)


def test_bad_numeric_string_is_named():
    with pytest.raises(ValueError, match=r"'epochs' takes a int, got 'many'"):
        profiles.get_profile("quick", epochs="many")


def test_paths_follow_pneumo_home(pneumo_home):
    assert paths.pneumo_home() == pneumo_home.resolve()
    assert paths.dataset_dir("phantom") == pneumo_home.resolve() / "data" / "phantom" / "chest_xray"
    assert paths.model_cache_dir() == pneumo_home.resolve() / "models"


def test_pneumo_data_moves_only_the_datasets(pneumo_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path / "drive"))
    assert paths.dataset_dir("kaggle") == (tmp_path / "drive" / "kaggle" / "chest_xray").resolve()
    assert paths.model_cache_dir().parent == pneumo_home.resolve()


def test_default_home_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("PNEUMO_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.pneumo_home() == (tmp_path / "xdg" / "pneumo").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert paths.pneumo_home() == Path(tmp_path / "me" / ".cache" / "pneumo").resolve()


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match=r"Unknown data source 'nih'.*phantom, kaggle, sample"):
        paths.dataset_dir("nih")


def test_display_path_hides_the_machines_folders(tmp_path, monkeypatch):
    from pneumo_lib import paths

    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    assert paths.display_path(paths.dataset_dir("phantom")) == "$PNEUMO_HOME/data/phantom/chest_xray"
    assert paths.display_path(tmp_path / "home") == "$PNEUMO_HOME"
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path / "elsewhere"))
    assert paths.display_path(paths.dataset_dir("kaggle")) == "$PNEUMO_DATA/kaggle/chest_xray"
    assert paths.display_path("/opt/x.keras") == "/opt/x.keras"


def test_weights_none_means_random_weights_and_keep_keeps():
    full = profiles.get_profile("full")
    assert full.weights == "imagenet"
    assert profiles.get_profile("full", weights=None).weights is None
    assert profiles.get_profile("full", weights="none").weights is None  # as papermill passes it
    assert profiles.get_profile("full", weights=profiles.KEEP).weights == "imagenet"
    assert profiles.get_profile("quick", weights="imagenet").weights == "imagenet"
    # Every other field: None still keeps the profile's value (chapters' parameters cells).
    kept = profiles.get_profile("full", epochs=None, image_size=profiles.KEEP, seed=None)
    assert (kept.epochs, kept.image_size, kept.seed) == (full.epochs, full.image_size, full.seed)
