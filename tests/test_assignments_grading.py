"""The grader on real notebooks: each submission in its own process, with time and memory limits."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import nbformat
import pytest

from pneumo_lib.assignments import grading, notebooks, sandbox
from pneumo_lib.cli import main

#: Short limits keep the endless submissions cheap; the memory limit is far above what grading needs.
LIMITS = grading.Limits(cell_seconds=3, total_seconds=120, memory_mb=3072)
#: Where bubblewrap is missing these tests grade unsandboxed (tests/test_assignments_sandbox.py skips).
UNSAFE = sandbox.find_bwrap() is None


def _student_with(answers: dict[str, str]) -> nbformat.NotebookNode:
    """The student version of assignment 1 with some placeholder cells replaced."""
    nb = copy.deepcopy(notebooks.parse_source(notebooks.source_dir() / "a1_data.ipynb").student)
    for cell in nb.cells:
        for marker, code in answers.items():
            if cell.cell_type == "code" and marker in cell.source:
                cell.source = code
    return nb


CORRECT_Q1 = """
def compute_class_weights(labels):
    y = np.asarray(labels).astype(int)
    return {c: len(y) / (2 * np.sum(y == c)) for c in (0, 1)}
"""
CORRECT_Q2 = """
def split_by_patient(records, val_fraction=0.15, seed=42):
    from pneumo_lib.data.splits import grouped_split
    keys = grouped_split(records, val_fraction, seed)
    val = [r for r in records if f"{r.label}/{r.patient}" in keys]
    return [r for r in records if f"{r.label}/{r.patient}" not in keys], val
"""
CORRECT_Q3 = """
data_dir = data.ensure_dataset("quick")
naive = data.naive_random_split(data_dir, seed=42)
leaked_patients = len(data.shared_patients(naive))
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    folder = root / "in"
    folder.mkdir()
    (folder / "carol").mkdir()
    nbformat.write(_student_with({"def compute_class_weights": CORRECT_Q1, "def split_by_patient": CORRECT_Q2,
                                  "leaked_patients = ____": CORRECT_Q3}), folder / "carol" / "a1_data.ipynb")
    wrong = _student_with({
        "def compute_class_weights": "def compute_class_weights(labels):\n"
                                     "    y = np.asarray(labels).astype(int)\n"
                                     "    return {c: np.mean(y == c) for c in (0, 1)}",
        "def split_by_patient": "def split_by_patient(records, val_fraction=0.15, seed=42):\n"
                                "    n = int(len(records) * (1 - val_fraction))\n"
                                "    return records[:n], records[n:]",
        "leaked_patients = ____": "leaked_patients = 3.5",
    })
    nbformat.write(wrong, folder / "bob.ipynb")
    crashing = _student_with({
        "def compute_class_weights": CORRECT_Q1,
        "def split_by_patient": CORRECT_Q2 + "\nimport os\nos.abort()  # kills the process",
        "leaked_patients = ____": "hog = bytearray(8 << 30)  # more than the memory limit\n" + CORRECT_Q3,
    })
    nbformat.write(crashing, folder / "dave.ipynb")
    endless = _student_with({
        "def compute_class_weights": "def compute_class_weights(labels):\n    while True:\n        pass",
        "def split_by_patient": CORRECT_Q2,
        "leaked_patients = ____": "while True:\n    try:\n        pass\n    except Exception:\n        pass\n"
                                  + CORRECT_Q3,
    })
    nbformat.write(endless, folder / "erin.ipynb")
    empty = nbformat.v4.new_notebook()
    empty.metadata["pneumo"] = {"assignment": "a1_data"}
    nbformat.write(empty, folder / "fay.ipynb")
    (folder / "gil.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    out = root / "out" / "grades.csv"
    grades = grading.grade_folder(folder, out, limits=LIMITS, jobs=2, echo=lambda line: None,
                                  unsafe_no_sandbox=UNSAFE)
    return {g.student: g for g in grades}, out


def _points(grade) -> dict[str, float]:
    return {q: r.points for q, r in grade.results.items()}


def test_correct_submission_gets_every_point(graded):
    grades, _ = graded
    assert _points(grades["carol"]) == {"q1": 2, "q2": 3, "q3": 1}
    assert grades["carol"].status == "graded" and not grades["carol"].notes


def test_wrong_submission_gets_hints_not_points(graded):
    g = graded[0]["bob"]
    assert _points(g) == {"q1": 0, "q2": 0, "q3": 0}
    assert "the rarer class must get the larger weight" in g.results["q1"].message
    assert "patients have images in both train and val" in g.results["q2"].message
    assert "Answer with a whole number" in g.results["q3"].message
    assert "Hint:" in g.results["q2"].message


def test_crash_and_memory_hog_cost_only_their_questions(graded):
    g = graded[0]["dave"]
    assert _points(g) == {"q1": 2, "q2": 0, "q3": 0}
    assert g.results["q2"].status == "not attempted"  # the cell that crashed the process was skipped
    notes = "\n".join(g.notes)
    assert "stopped the process" in notes and "SIGABRT" in notes
    assert "MemoryError" in notes


def test_endless_loops_are_stopped_and_cost_only_their_questions(graded):
    g = graded[0]["erin"]
    assert _points(g) == {"q1": 0, "q2": 3, "q3": 0}
    assert "time limit of 3 s exceeded" in g.results["q1"].message
    assert any("TimeLimit" in n for n in g.notes)


def test_empty_and_malformed_notebooks(graded, capsys):
    grades, out = graded
    assert _points(grades["fay"]) == {"q1": 0, "q2": 0, "q3": 0}
    assert grades["fay"].status == "graded"
    gil = grades["gil"]
    assert gil.status == "malformed notebook" and "gil.ipynb: not a valid notebook" in gil.notes[0]
    assert _points(gil) == {}  # nothing to tell which assignment it was


def test_csv_and_feedback_files(graded):
    grades, out = graded
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert list(rows) == ["bob", "carol", "dave", "erin", "fay", "gil"]
    assert [rows[s]["total"] for s in ("carol", "bob", "dave", "erin", "fay")] == ["6", "0", "2", "3", "0"]
    assert rows["carol"]["q2"] == "3" and rows["carol"]["max_points"] == "6"
    assert rows["gil"]["status"] == "malformed notebook"
    assert {r["sandbox"] for r in rows.values()} == {"none (unsafe)" if UNSAFE else "bubblewrap"}
    feedback = out.parent / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == [
        "bob-a1_data.txt", "carol-a1_data.txt", "dave-a1_data.txt", "erin-a1_data.txt", "fay-a1_data.txt", "gil.txt"]
    text = (feedback / "bob-a1_data.txt").read_text()
    assert "Total: 0 / 6 points" in text and "rarer class" in text
    assert "np.bincount(y, minlength=2)" not in text  # feedback never shows the solution


def test_a_hang_that_ignores_the_cell_limit_is_killed_and_skipped(tmp_path):
    nb = _student_with({
        "def compute_class_weights": CORRECT_Q1,
        "def split_by_patient": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                "while True:\n    pass",
    })
    path = tmp_path / "hank.ipynb"
    nbformat.write(nb, path)
    grade = grading.grade_notebook(path, limits=grading.Limits(cell_seconds=2, total_seconds=60),
                                   unsafe_no_sandbox=UNSAFE)
    assert _points(grade) == {"q1": 2, "q2": 0, "q3": 0}
    assert any("Code cell 6 stopped the process: it ignored the time limit of 2 s per cell" in n for n in grade.notes)


def test_grade_command_and_bad_arguments(tmp_path, capsys):
    assert main(["assignments", "grade", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert main(["assignments", "grade", str(tmp_path), "--timeout", "0"]) == 2
    assert "--timeout must be positive" in capsys.readouterr().err
    assert main(["assignments", "grade", str(tmp_path)]) == 2
    assert "No submitted notebooks" in capsys.readouterr().err


def test_jobs_must_be_positive(tmp_path):
    nbformat.write(_student_with({}), tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match="jobs must be at least 1, got 0"):
        grading.grade_folder(tmp_path, tmp_path / "g.csv", jobs=0)


def test_unsafe_grading_says_so_everywhere(tmp_path, monkeypatch, capsys):
    empty = nbformat.v4.new_notebook()
    empty.metadata["pneumo"] = {"assignment": "a1_data"}
    (tmp_path / "in").mkdir()
    nbformat.write(empty, tmp_path / "in" / "ann.ipynb")
    monkeypatch.setenv("PNEUMO_BWRAP", "")  # as on a laptop without bubblewrap
    out = tmp_path / "g.csv"
    assert main(["assignments", "grade", str(tmp_path / "in"), "--out", str(out), "--unsafe-no-sandbox"]) == 0
    captured = capsys.readouterr()
    assert "WITHOUT a sandbox" in captured.err and "(NO SANDBOX)" in captured.out
    assert "WITHOUT a sandbox" in (tmp_path / "feedback" / "ann-a1_data.txt").read_text()
    assert next(csv.DictReader(out.open()))["sandbox"] == "none (unsafe)"
