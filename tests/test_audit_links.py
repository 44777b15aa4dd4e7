"""`pneumo data audit` names every symbolic-link loop, at any depth and as a split or class folder, and finishes (issue 18.6)."""

from __future__ import annotations

import os
import shutil

import pytest
from _data_helpers import make_tiny, tree_digest

from pneumo_lib import cli
from pneumo_lib.data import audit, layout


@pytest.fixture
def ds(tmp_path):
    return make_tiny(tmp_path / "ds", seed=2, size=40)


def _links(folder):
    return {p.relative_to(folder).as_posix(): os.readlink(p) for p in folder.rglob("*") if p.is_symlink()}


def test_loops_below_a_subfolder_and_as_class_or_split_folders_are_named(ds, capsys):
    normal = ds / "train" / "NORMAL"
    (normal / "sub").mkdir()
    os.symlink("../sub", normal / "sub" / "deep")  # a link to the folder that holds it, one level down
    shutil.rmtree(ds / "test" / "NORMAL")
    os.symlink("NORMAL", ds / "test" / "NORMAL")  # a class folder that is a loop
    shutil.rmtree(ds / "val")
    os.symlink("val", ds / "val")  # a split folder that is a loop
    before, links = tree_digest(ds), _links(ds)
    report = audit(ds)
    found = dict(report.unreadable)
    assert "symbolic-link loop" in found["train/NORMAL/sub/deep"]
    assert "symbolic-link loop" in found["test/NORMAL"]
    assert "symbolic-link loop" in found["val"]
    assert any("val is a symbolic-link loop" in p for p in report.problems)
    assert report.counts["train"] == {"NORMAL": 6, "PNEUMONIA": 10} and report.counts["test"]["PNEUMONIA"] == 5
    assert not report.ok
    assert cli.main(["data", "audit", str(ds)]) == 1  # finishes with its report, no traceback
    out = capsys.readouterr()
    assert "unreadable: train/NORMAL/sub/deep: symbolic-link loop" in out.out
    assert "unreadable: test/NORMAL: symbolic-link loop" in out.out and "Traceback" not in out.err
    assert tree_digest(ds) == before and _links(ds) == links  # nothing changed, no link removed


def test_layout_checks_call_a_looping_folder_a_loop_not_missing(ds, tmp_path):
    shutil.rmtree(ds / "test" / "NORMAL")
    os.symlink("NORMAL", ds / "test" / "NORMAL")
    with pytest.raises(FileNotFoundError, match=r"Class folder .*test/NORMAL is a symbolic-link loop"):
        layout.check_layout(ds)
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"Dataset folder .*/a is a symbolic-link loop"):
        layout.check_layout(tmp_path / "a")
    report = audit(tmp_path / "a")
    assert any("symbolic-link loop" in p for p in report.problems) and not report.ok
    assert layout.link_problem(tmp_path / "missing") is None and layout.link_problem(ds / "train") is None
