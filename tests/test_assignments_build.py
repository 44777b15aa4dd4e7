"""Student notebooks from instructor sources: placeholders, no solutions or hidden tests leaked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from pneumo_lib.assignments import ASSIGNMENT_IDS, core, notebooks
from pneumo_lib.cli import main


def _code_lines(nb) -> set[str]:
    return {line.strip() for c in nb.cells for line in c.source.splitlines()}


def _secret_lines(path: Path) -> set[str]:
    """Lines of solution regions and hidden tests that appear nowhere else in the source."""
    src = notebooks.parse_source(path)
    secret = {line.strip() for r in src.regions for line in r.solution}
    secret |= {line.strip() for code in sum(src.hidden.values(), []) for line in code.splitlines()}
    public = _code_lines(src.student)
    return {s for s in secret if len(s) >= 10 and not s.startswith("#") and s not in public}


def test_every_assignment_has_a_source_and_a_committed_up_to_date_student_version(tmp_path):
    built = notebooks.build_student_notebooks(out=tmp_path)
    assert [p.stem for p in built] == sorted(ASSIGNMENT_IDS)
    for path in built:
        committed = notebooks.student_dir() / path.name
        assert committed.is_file(), f"run `pneumo assignments build` to write {committed}"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), f"{committed} is stale"


def test_no_solution_or_hidden_test_reaches_any_student_file(tmp_path):
    out = tmp_path / "student"
    files = notebooks.build_student_notebooks(out=out) + notebooks.build_student_notebooks(
        out=tmp_path / "nosol", solutions=False)
    files += sorted(notebooks.student_dir().glob("*.ipynb"))
    total_secrets = 0
    for aid in ASSIGNMENT_IDS:
        secrets = _secret_lines(notebooks.source_dir() / f"{aid}.ipynb")
        assert secrets, f"{aid}: the scan found nothing to look for"
        total_secrets += len(secrets)
        for f in files:
            text = f.read_text()
            assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "#>" not in text
            leaked = sorted(secrets & _code_lines(nbformat.reads(text, as_version=4)))
            assert not leaked, f"{f} contains solution/hidden-test lines of {aid}: {leaked[:3]}"
    assert total_secrets > 40


def test_placeholders_replace_solutions():
    nb = notebooks.parse_source(notebooks.source_dir() / "a1_data.ipynb").student
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert code.count('    raise NotImplementedError("your code here")') == 2  # q1, q2 function bodies
    assert "leaked_patients = ____  # a whole number" in code
    assert nb.metadata["pneumo"]["assignment"] == "a1_data" and nb.metadata["pneumo"]["student_version"]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_build_without_solutions_turns_them_off(tmp_path, capsys):
    assert main(["assignments", "build", "--out", str(tmp_path), "--no-solutions"]) == 0
    nb = nbformat.read(tmp_path / "a1_data.ipynb", as_version=4)
    switches = [c for c in nb.cells if "allow_solutions(False)" in c.source]
    assert len(switches) == 1
    ns: dict = {}
    exec(switches[0].source, ns)
    try:
        from pneumo_lib.assignments.a1_data import q1

        q1.solution()
        assert "solutions are turned off" in capsys.readouterr().out
    finally:
        core.allow_solutions(None)


def test_solution_and_hint_print_for_self_study(capsys, monkeypatch):
    from pneumo_lib.assignments.a1_data import q1

    monkeypatch.delenv("PNEUMO_SOLUTIONS", raising=False)
    q1.solution()
    out = capsys.readouterr().out
    assert "np.bincount(y, minlength=2)" in out and "BEGIN SOLUTION" not in out
    q1.hint()
    assert "N / (2 * N_c)" in capsys.readouterr().out
    monkeypatch.setenv("PNEUMO_SOLUTIONS", "off")
    q1.solution()
    assert "turned off" in capsys.readouterr().out


def _source(tmp_path: Path, code: str, name: str = "a1_data.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["pneumo"] = {"assignment": "a1_data"}
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("code, message", [
    ("### BEGIN SOLUTION q1\nx = 1\n", r"a1_data.ipynb, cell 0: BEGIN SOLUTION q1 is never closed"),
    ("x = 1\n### END SOLUTION\n", r"a1_data.ipynb, cell 0, line 2: END SOLUTION without BEGIN"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", r"line 1: write the question id"),
    ("### BEGIN SOLUTION q9\nx = 1\n### END SOLUTION\n", r"solution for unknown question 'q9'"),
    ("### HIDDEN TESTS q7\nassert True\n", r"hidden tests for unknown question 'q7'"),
])
def test_bad_markers_name_the_file_and_cell(tmp_path, code, message):
    with pytest.raises(notebooks.SourceError, match=message):
        notebooks.parse_source(_source(tmp_path, code))


def test_malformed_source_and_unknown_assignment_are_named(tmp_path, capsys):
    bad = tmp_path / "a1_data.ipynb"
    bad.write_text('{"cells": [')
    with pytest.raises(notebooks.SourceError, match=re.escape(f"{bad}: not a valid notebook")):
        notebooks.parse_source(bad)
    assert main(["assignments", "build", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "a1_data.ipynb: not a valid notebook" in capsys.readouterr().err
    other = _source(tmp_path, "x = 1", name="homework.ipynb")
    nb = nbformat.read(other, as_version=4)
    nb.metadata["pneumo"]["assignment"] = "a9_magic"
    nbformat.write(nb, other)
    with pytest.raises(notebooks.SourceError, match=r"homework.ipynb: Unknown assignment 'a9_magic'"):
        notebooks.parse_source(other)


def test_book_lists_every_assignment_with_its_goals_time_and_points():
    import yaml

    root = Path(__file__).resolve().parents[1]
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    part = next(p for p in toc["parts"] if p["caption"] == "Assignments")
    assert part["chapters"][0]["file"] == "book/assignments/index"
    assert [s["file"] for s in part["chapters"][0]["sections"]] == [f"book/assignments/{a}" for a in ASSIGNMENT_IDS]
    index = (root / "book" / "assignments" / "index.md").read_text()
    for aid in ASSIGNMENT_IDS:
        a = notebooks.load_assignment(aid)
        page = (root / "book" / "assignments" / f"{aid}.md").read_text()
        assert page.startswith(f"# {a.title}\n")
        assert f"**Expected time:** {a.minutes} minutes · **Points:** {a.max_points:g}" in page
        assert all(goal in page for goal in a.goals)
        assert all(f"| {q.qid} |" in page for q in a.questions)
        assert f"({aid}.md) |" in index and f"| {a.minutes} min | {a.max_points:g} |" in index
        student = nbformat.read(notebooks.student_dir() / f"{aid}.ipynb", as_version=4)
        assert student.cells[0].source.startswith(f"# {a.title}\n")
        assert f"**Expected time:** {a.minutes} minutes" in student.cells[0].source
        assert f"student/{aid}.ipynb" in page  # the Colab link points at the generated notebook
