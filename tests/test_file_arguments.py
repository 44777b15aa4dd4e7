"""A folder given where a file is expected is called a folder, in one line, and nothing on disk changes (issue 18.6)."""

from __future__ import annotations

import pytest
from _data_helpers import tree_digest

from pneumo_lib import cli, paths


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pneumo: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "does not exist" not in err and "no such file" not in err
    return err


@pytest.fixture
def folder(tmp_path):
    """A folder holding a model file, as a user who meant that file might pass it."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "best.keras").write_bytes(b"not read")
    return models


def test_check_file_names_a_folder_and_what_is_expected(tmp_path, folder):
    with pytest.raises(paths.NotAFileError, match=r"^--model .*models is a folder, not a model file: expected a "
                                                  r"\.keras model file \(it holds best\.keras: pass e\.g\. .*best\.keras\)\.$"):
        paths.check_file(folder, "model file", suffix=".keras", option="--model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(paths.NotAFileError, match=r"empty is a folder, not a weights file: expected a weights file\.$"):
        paths.check_file(tmp_path / "empty", "weights file")
    with pytest.raises(FileNotFoundError, match=r"^Model file .*nothing\.keras does not exist\.$"):
        paths.check_file(tmp_path / "nothing.keras", "model file", suffix=".keras")
    assert paths.check_file(folder / "best.keras", "model file") == folder / "best.keras"
    assert isinstance(paths.NotAFileError("x"), ValueError)  # the command line's one-line errors


def test_explain_and_evaluate_call_a_model_folder_a_folder(tmp_path, folder, pneumo_home, capsys):
    image = tmp_path / "scan.png"
    image.write_bytes(b"\x89PNG not read")
    before = tree_digest(tmp_path)
    assert cli.main(["explain", str(folder), str(image), "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert f"{folder} is a folder, not a model file: expected a .keras model file" in err
    assert "best.keras" in err
    assert cli.main(["evaluate", str(folder), "--data", str(tmp_path)]) == 2
    assert f"{folder} is a folder, not a model file" in _one_line_error(capsys)
    assert tree_digest(tmp_path) == before and not (tmp_path / "out").exists()
    assert not pneumo_home.exists()  # no split manifest, no cache


def test_train_refuses_a_folder_as_its_output_or_weights_before_training(tmp_path, folder, pneumo_home, capsys):
    before = tree_digest(tmp_path)
    argv = ["train", "--model", "paper_cnn", "--data", str(tmp_path / "nowhere"), "--epochs", "1", "--quiet"]
    assert cli.main([*argv, "--out", str(folder)]) == 2
    assert f"{folder} is a folder, not a model file: expected a .keras model file" in _one_line_error(capsys)
    assert cli.main(["train", "--model", "vgg16", "--data", str(tmp_path / "nowhere"), "--weights", str(folder),
                     "--out", str(tmp_path / "m.keras")]) == 2
    assert f"{folder} is a folder, not a weights file" in _one_line_error(capsys)
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert not pneumo_home.exists()


def test_serve_calls_a_model_folder_a_folder(folder, capsys):
    assert cli.main(["serve", "--model", str(folder)]) == 2
    assert f"--model {folder} is a folder, not a model file" in _one_line_error(capsys)


def test_a_file_where_a_folder_is_expected_is_called_a_file(tmp_path, folder, pneumo_home, capsys):
    from pneumo_lib.data import audit

    text = tmp_path / "notes.txt"
    text.write_text("a file")
    image = tmp_path / "scan.png"
    image.write_bytes(b"\x89PNG not read")
    before = tree_digest(tmp_path)
    assert cli.main(["data", "audit", str(text)]) == 1
    assert f"{text} is a file, not a dataset folder" in capsys.readouterr().out
    assert any("is a file, not a dataset folder" in p for p in audit(text).problems)
    assert cli.main(["evaluate", str(folder / "best.keras"), "--data", str(text)]) == 2
    assert f"{text} is a file, not a dataset folder" in _one_line_error(capsys)  # before the model is read
    assert cli.main(["explain", str(folder / "best.keras"), str(image), "--out", str(text)]) == 2
    assert f"--out {text} is a file, not a folder" in _one_line_error(capsys)
    assert tree_digest(tmp_path) == before and not pneumo_home.exists()
