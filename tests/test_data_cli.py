"""``pneumo data``: phantom, split, prepare and their errors, through the real command line."""

from __future__ import annotations

import pytest
from _data_helpers import tree_digest

from pneumo_lib import paths
from pneumo_lib.cli import main
from pneumo_lib.data import kaggle, layout, sources


def test_phantom_command_with_counts_and_size(tmp_path, capsys):
    out = tmp_path / "my data"
    code = main(["data", "phantom", "--out", str(out), "--seed", "9", "--scale", "tiny",
                 "--counts", "train=3,5", "test=2,2", "--size", "40"])
    assert code == 0 and "Generating 16 images" in capsys.readouterr().out
    assert kaggle.count_images(out / "chest_xray") == {"train": (3, 5), "val": (2, 2), "test": (2, 2)}
    before = tree_digest(out)
    assert main(["data", "phantom", "--out", str(out), "--scale", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert tree_digest(out) == before


@pytest.mark.parametrize("argv, message", [
    (["--counts", "train=3"], "SPLIT=NORMAL,PNEUMONIA"),
    (["--counts", "valid=1,1"], "unknown split"),
    (["--scale", "huge"], "Unknown phantom scale"),
])
def test_phantom_command_bad_arguments(tmp_path, capsys, argv, message):
    assert main(["data", "phantom", "--out", str(tmp_path / "x"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_split_command_prints_counts(tmp_path, capsys, pneumo_home):
    main(["data", "phantom", "--out", str(tmp_path / "d"), "--scale", "tiny", "--size", "40"])
    capsys.readouterr()
    assert main(["data", "split", str(tmp_path / "d" / "chest_xray"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "test  NORMAL 6  PNEUMONIA 10" in out and str(pneumo_home) in out


def test_prepare_generates_once_and_the_kaggle_profile_explains_the_download(pneumo_home, monkeypatch, capsys):
    monkeypatch.setattr(sources.phantom, "PHANTOM_COUNTS",
                        {**sources.phantom.PHANTOM_COUNTS, "quick": {"train": (2, 3), "val": (1, 1), "test": (1, 1)}})
    assert main(["data", "prepare", "--profile", "quick", "--no-sample"]) == 0
    folder = paths.dataset_dir("phantom")
    assert len(layout.list_images(folder)) == 9
    before = tree_digest(folder.parent)
    assert main(["data", "prepare", "--profile", "quick", "--no-sample"]) == 0  # present: nothing regenerated
    assert tree_digest(folder.parent) == before
    capsys.readouterr()
    assert main(["data", "prepare", "--profile", "full", "--no-sample"]) == 2
    assert "pneumo data download" in capsys.readouterr().err
    with pytest.raises(ValueError, match="only for phantom"):
        sources.ensure_dataset("full", shortcut=True)


def test_shortcut_variant_lives_beside_the_default(pneumo_home, monkeypatch):
    monkeypatch.setattr(sources.phantom, "PHANTOM_COUNTS",
                        {**sources.phantom.PHANTOM_COUNTS, "quick": {"train": (2, 6), "val": (1, 1), "test": (1, 1)}})
    clean = sources.ensure_dataset("quick")
    marked = sources.ensure_dataset("quick", shortcut=True)
    assert clean == paths.dataset_dir("phantom")
    assert marked.parent.name == "phantom-quick-seed42-shortcut" and marked.parent.parent == clean.parent.parent
    assert (marked.parent / "markers.csv").read_text().count("\n") > 1
