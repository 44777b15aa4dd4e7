"""The check machinery: questions that say right, wrong (with a hint) or "not attempted".

A student notebook imports the questions of its assignment and calls them after each answer::

    from pneumo_lib.assignments.a1_data import q1, q2, ____
    answer = ____            # the placeholder: q1.check() says "not attempted yet"
    q1.check()               # reads the names it needs from the notebook's globals
    q1.hint()                # a nudge, never the answer
    q1.solution()            # the instructor's solution cell, unless solutions are off

A :class:`Question` knows the names it reads, a ``verify`` function that raises
:class:`Wrong` with a specific message when an answer is wrong, and a general hint.
Nothing here talks to a server: checks run in the student's own kernel (Colab or local)
and in the instructor's grader (:mod:`pneumo_lib.assignments.grading`), which calls
:meth:`Question.evaluate` on a submission's namespace.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

#: Result states.
CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"

_SYMBOLS = {CORRECT: "✔ Correct", INCORRECT: "✘ Incorrect", NOT_ATTEMPTED: "○ Not attempted yet"}


class Blank:
    """The placeholder ``____`` that student notebooks start from (never a valid answer)."""

    _instance: "Blank | None" = None

    def __new__(cls) -> "Blank":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"


#: What a student replaces: ``answer = ____``.
____ = Blank()


class Wrong(Exception):
    """Raised by a question's ``verify`` function: the answer is wrong; the message says how."""


class NotAttempted(Exception):
    """Raised by a ``verify`` function when the answer is still a placeholder."""


@dataclass(frozen=True)
class Result:
    """The outcome of one check.

    Attributes:
        question: Question id (``"q1"``).
        status: :data:`CORRECT`, :data:`INCORRECT` or :data:`NOT_ATTEMPTED`.
        message: What was wrong (or what to do next); never the solution.
        points: Points earned (the question's points if correct, else 0).
        max_points: The question's points.
    """

    question: str
    status: str
    message: str
    points: float
    max_points: float

    @property
    def correct(self) -> bool:
        """True when the answer passed every check."""
        return self.status == CORRECT

    def text(self) -> str:
        """One human-readable paragraph (what ``check()`` prints)."""
        head = f"{self.question}: {_SYMBOLS[self.status]}"
        return f"{head}. {self.message}" if self.message else f"{head}."


# ----------------------------------------------------------------- solutions switch

_ENV_SOLUTIONS = "PNEUMO_SOLUTIONS"
_solutions_override: bool | None = None


def allow_solutions(allowed: bool | None = True) -> None:
    """Turn ``qN.solution()`` on or off for this session (an instructor's switch).

    ``pneumo assignments build --no-solutions`` writes ``allow_solutions(False)`` into the
    student notebooks; the environment variable ``PNEUMO_SOLUTIONS=off`` does the same for
    a whole machine or classroom image. ``None`` goes back to following the environment.
    """
    global _solutions_override
    _solutions_override = None if allowed is None else bool(allowed)


def solutions_allowed() -> bool:
    """Whether ``qN.solution()`` may show the solution now."""
    if _solutions_override is not None:
        return _solutions_override
    return os.environ.get(_ENV_SOLUTIONS, "on").strip().lower() not in ("off", "0", "false", "no")


# ----------------------------------------------------------------- questions


def _caller_namespace(depth: int = 2) -> dict[str, Any]:
    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back if frame is not None else None
    return dict(frame.f_globals) if frame is not None else {}


def is_blank(value: Any) -> bool:
    """True for the placeholder ``____`` (or ``...``, which some students type instead)."""
    return isinstance(value, Blank) or value is Ellipsis


class Question:
    """One auto-checked question of an assignment.

    Args:
        assignment: Assignment id, e.g. ``"a1_data"`` (where ``solution()`` looks).
        qid: Question id, ``"q1"``; also the name the notebook binds it to.
        title: What the question asks, in a few words.
        names: Notebook names the answer consists of (functions or values).
        verify: ``verify(*values)``; returns on success, raises :class:`Wrong` with a
            specific message, or :class:`NotAttempted`. A ``NotImplementedError`` raised by
            student code also means "not attempted".
        hint: A general hint shown by :meth:`hint` and after a wrong answer.
        points: Points of the question in the grader.
    """

    def __init__(self, assignment: str, qid: str, title: str, names: Sequence[str],
                 verify: Callable[..., None], hint: str, points: float = 1.0):
        self.assignment, self.qid, self.title = assignment, qid, title
        self.names, self.verify, self._hint, self.points = tuple(names), verify, hint, float(points)
        self._cpu_seconds: float | None = None

    def __repr__(self) -> str:
        return f"<{self.assignment} {self.qid}: {self.title} ({self.points:g} points)>"

    def evaluate(self, namespace: Mapping[str, Any] | None = None) -> Result:
        """Check the answer found in ``namespace`` (default: the caller's globals).

        Never raises for a student mistake: exceptions from student code become an
        "incorrect" result naming the exception.
        """
        ns = namespace if namespace is not None else _caller_namespace()
        missing = [n for n in self.names if n not in ns or is_blank(ns[n])]
        if missing:
            return self._result(NOT_ATTEMPTED, f"Fill in {', '.join(missing)}, run the cell, then check again.")
        try:
            self.verify(*(ns[n] for n in self.names))
        except (NotAttempted, NotImplementedError):
            return self._result(NOT_ATTEMPTED, f"Write your code in place of the placeholder for "
                                f"{', '.join(self.names)}, run the cell, then check again.")
        except Wrong as err:
            return self._result(INCORRECT, f"{err}\nHint: {self._hint}")
        except Exception as err:  # student code failed inside the check
            return self._result(INCORRECT, f"Your code raised {type(err).__name__}: {err}\nHint: {self._hint}")
        return self._result(CORRECT, "")

    def _result(self, status: str, message: str) -> Result:
        return Result(self.qid, status, message, self.points if status == CORRECT else 0.0, self.points)

    def check(self, namespace: Mapping[str, Any] | None = None) -> None:
        """Check the answer and print the verdict (right, wrong with a hint, or not attempted)."""
        ns = namespace if namespace is not None else _caller_namespace()
        print(self.evaluate(ns).text())

    def hint(self) -> None:
        """Print a hint for this question (never the solution)."""
        print(f"{self.qid} hint: {self._hint}")

    def solution(self) -> None:
        """Print the instructor's solution code, unless solutions are turned off."""
        if not solutions_allowed():
            print(f"{self.qid}: solutions are turned off for this assignment.")
            return
        from pneumo_lib.assignments.notebooks import solution_code

        print(f"{self.qid} solution:\n\n{solution_code(self.assignment, self.qid)}")

    def timer(self) -> "_CpuTimer":
        """Context manager that records the CPU seconds of the code inside (for time limits)."""
        return _CpuTimer(self)

    @property
    def cpu_seconds(self) -> float | None:
        """CPU seconds recorded by the last ``with q.timer():`` block, or None.

        While the grader judges a submission (:func:`reported_cpu_seconds`), the value the
        submission's sandbox reported for this question, in the grader's thread only.
        """
        reported = getattr(_reported, "seconds", None)
        if reported is not None:
            return reported.get((self.assignment, self.qid))
        return self._cpu_seconds


_reported = threading.local()


@contextmanager
def reported_cpu_seconds(assignment: str, seconds: Mapping[str, float | None]):
    """Within the block (this thread only), ``qN.cpu_seconds`` is what a graded submission reported."""
    previous = getattr(_reported, "seconds", None)
    _reported.seconds = {(assignment, q): s for q, s in seconds.items()}
    try:
        yield
    finally:
        _reported.seconds = previous


class _CpuTimer:
    """``with q.timer():`` measures process CPU time (all threads) and wall time."""

    def __init__(self, question: Question):
        self.question = question

    def __enter__(self) -> "_CpuTimer":
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.question._cpu_seconds = time.process_time() - self._cpu
        print(f"{self.question.qid}: {self.question._cpu_seconds:.0f} s CPU time "
              f"({time.perf_counter() - self._wall:.0f} s wall)")


#: The assignments, in book order (module and notebook name).
ASSIGNMENT_IDS = ("a1_data", "a2_model", "a3_gradcam", "a4_detective")


def load_assignment(assignment_id: str) -> "Assignment":
    """The :class:`Assignment` of an id (``"a1_data"``); ``ValueError`` lists the valid ids."""
    if assignment_id not in ASSIGNMENT_IDS:
        raise ValueError(f"Unknown assignment {assignment_id!r}. Assignments: {', '.join(ASSIGNMENT_IDS)}.")
    return importlib.import_module(f"pneumo_lib.assignments.{assignment_id}").ASSIGNMENT


@dataclass(frozen=True)
class Assignment:
    """One assignment: its questions and what the book lists about it.

    Attributes:
        id: Module and notebook name, e.g. ``"a1_data"``.
        title: Title shown in the book and the grader.
        minutes: Expected working time for a student.
        goals: Learning goals.
        questions: The questions in order.
    """

    id: str
    title: str
    minutes: int
    goals: tuple[str, ...]
    questions: tuple[Question, ...]

    def question(self, qid: str) -> Question:
        """The question with id ``qid``; ``ValueError`` lists the valid ids."""
        for q in self.questions:
            if q.qid == qid:
                return q
        raise ValueError(f"Assignment {self.id} has no question {qid!r}; "
                         f"questions: {', '.join(q.qid for q in self.questions)}.")

    @property
    def max_points(self) -> float:
        """Sum of the questions' points."""
        return sum(q.points for q in self.questions)
