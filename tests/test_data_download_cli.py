"""`pneumo data download` that fails leaves no folder it created: wrong or no credentials, a bad archive (issue 18.6).

The real ``kaggle`` client talks to the stand-in server of ``test_data_kaggle`` on loopback.
"""

from __future__ import annotations

import pytest
from test_data_kaggle import USER, StandIn, server, tiny_archive  # noqa: F401 (fixtures)

from pneumo_lib import cli
from pneumo_lib.data import kaggle


@pytest.fixture
def loopback(server, monkeypatch, tmp_path):  # noqa: F811
    """The command's client points at the stand-in; a fresh PNEUMO_HOME with the default data folder."""
    real = kaggle.kaggle_api
    monkeypatch.setattr(kaggle, "kaggle_api", lambda args=None: real(["--local"]))
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "pneumo-home"))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    return tmp_path


def _fails_in_one_line(argv, capsys, message):
    assert cli.main(["data", "download", *argv]) == 2
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1]  # before it, only the client's progress bar (a transfer was started)
    assert last.startswith("pneumo: error: ") and message in last, err
    assert "Traceback" not in err and all("%|" in line for line in err.split("\n")[:-2]), err


@pytest.mark.parametrize("key", ["wrong", None])
def test_failed_download_leaves_no_out_folder_and_no_default_data_folder(loopback, monkeypatch, capsys, key):
    if key:
        monkeypatch.setenv("KAGGLE_USERNAME", USER)
        monkeypatch.setenv("KAGGLE_KEY", key)
    message = "rejected the credentials (HTTP 401)" if key else "No Kaggle credentials found"
    _fails_in_one_line(["--out", str(loopback / "new" / "deeper")], capsys, message)
    assert not (loopback / "new").exists()
    _fails_in_one_line([], capsys, message)  # the default: $PNEUMO_HOME/data/kaggle
    assert not (loopback / "pneumo-home").exists()
    (loopback / "kept").mkdir()  # a folder that existed before stays, empty as it was
    _fails_in_one_line(["--out", str(loopback / "kept")], capsys, message)
    assert list((loopback / "kept").iterdir()) == []


def test_a_truncated_archive_leaves_no_folder_either(loopback, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "secret-key")
    StandIn.mode = "truncated"
    _fails_in_one_line(["--out", str(loopback / "new" / "deeper")], capsys, "truncated or corrupt")
    assert not (loopback / "new").exists() and not (loopback / "pneumo-home").exists()
