"""Classroom assignments: auto-checked questions for students, a builder and a grader for instructors.

* Students: ``from pneumo_lib.assignments.a1_data import q1, q2, q3, ____``, answer in the
  marked cells, then ``q1.check()`` (right, wrong with a hint, or not attempted yet),
  ``q1.hint()``, ``q1.solution()`` (unless the instructor turned solutions off).
* Instructors: ``pneumo assignments build`` writes the student notebooks from the source
  notebooks (solutions replaced by placeholders, hidden tests removed);
  ``pneumo assignments grade SUBMISSIONS --out grades.csv`` grades a folder offline, each
  submission in its own process with time and memory limits.

Modules: :mod:`.core` (questions and results), :mod:`.notebooks` (source and student
notebooks), :mod:`.runner` and :mod:`.grading` (the grader), and one module per assignment
(:data:`ASSIGNMENT_IDS`) holding its questions and checks.
"""

from pneumo_lib.assignments.core import (
    ASSIGNMENT_IDS,
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    Assignment,
    Question,
    Result,
    Wrong,
    ____,
    allow_solutions,
    load_assignment,
    solutions_allowed,
)

__all__ = [
    "ASSIGNMENT_IDS", "CORRECT", "INCORRECT", "NOT_ATTEMPTED", "Assignment", "Question", "Result",
    "Wrong", "____", "allow_solutions", "load_assignment", "solutions_allowed",
]
