"""Every solution notebook passes all its checks; every student notebook runs and says "not attempted".

Both are run by the grader itself (one process per notebook, hidden tests included), so this is
also the end-to-end test of ``pneumo assignments grade`` on all four assignments.
"""

from __future__ import annotations

import shutil

import pytest

from pneumo_lib.assignments import (
    ASSIGNMENT_IDS, CORRECT, NOT_ATTEMPTED, a4_detective, grading, load_assignment, notebooks, sandbox,
)


@pytest.fixture(scope="module")
def grades(tmp_path_factory):
    a4_detective.mystery_model()  # train the shared cached model once, not in two graded processes at once
    root = tmp_path_factory.mktemp("notebooks")
    for aid in ASSIGNMENT_IDS:
        (root / "in" / "solution").mkdir(parents=True, exist_ok=True)
        shutil.copy(notebooks.source_dir() / f"{aid}.ipynb", root / "in" / "solution" / f"{aid}.ipynb")
    student = notebooks.build_student_notebooks(out=root / "in" / "student")
    assert len(student) == len(ASSIGNMENT_IDS)
    limits = grading.Limits(cell_seconds=240, total_seconds=900)
    found = grading.grade_folder(root / "in", root / "grades.csv", limits=limits, jobs=2, echo=lambda line: None,
                                 unsafe_no_sandbox=sandbox.find_bwrap() is None)  # sandboxed wherever bwrap is
    return {(g.student, g.assignment): g for g in found}


@pytest.mark.parametrize("aid", ASSIGNMENT_IDS)
def test_solution_notebook_passes_every_check_and_hidden_test(grades, aid):
    g = grades[("solution", aid)]
    assert g.notes == [], g.notes  # no cell raised
    assert {q: r.status for q, r in g.results.items()} == {q.qid: CORRECT for q in load_assignment(aid).questions}, \
        g.feedback()
    assert g.total == load_assignment(aid).max_points


@pytest.mark.parametrize("aid", ASSIGNMENT_IDS)
def test_student_notebook_runs_clean_and_is_not_attempted(grades, aid):
    g = grades[("student", aid)]
    assert g.notes == [], g.notes  # top to bottom without an error
    assert {r.status for r in g.results.values()} == {NOT_ATTEMPTED} and g.total == 0
    assert len(g.results) == len(load_assignment(aid).questions)
