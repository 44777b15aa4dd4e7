"""Run one submission in this process and report, event by event (the grader's child process).

``python -m pneumo_lib.assignments.runner NOTEBOOK --assignment a1_data --events FILE``
executes the notebook's code cells in an IPython shell (magics work, no Jupyter kernel or
server needed), each under a time limit, then evaluates every question of the assignment
on the resulting namespace and runs its hidden tests. Every step is appended to the events
file as one JSON line and flushed at once, so when student code kills the process (a
crash, ``os._exit``, the memory limit) the grader knows what finished and which cell or
check was running. The parent (:mod:`pneumo_lib.assignments.grading`) chooses the limits
and enforces the total time; the memory limit is applied here, before any student code.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from pneumo_lib.assignments.core import INCORRECT, Result


class TimeLimit(BaseException):
    """Raised in student code when its time is up (a BaseException: ``except Exception`` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimit` in the main thread after ``seconds`` of wall time."""
    def _expire(signum, frame):
        raise TimeLimit(f"time limit of {seconds:g} s exceeded")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Events:
    """Append-only JSON-lines log, flushed and synced after every event."""

    def __init__(self, path: str):
        self._fh = open(path, "a", encoding="utf-8")

    def emit(self, kind: str, **fields: Any) -> None:
        """Write one event ``{"event": kind, ...}``."""
        self._fh.write(json.dumps({"event": kind, **fields}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())


def _describe(err: BaseException | None) -> str | None:
    if err is None:
        return None
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def run_cells(shell, cells: list[str], skip: set[int], timeout: float, events: Events) -> None:
    """Execute code cells in order; errors and timeouts are recorded, never fatal."""
    for index, source in enumerate(cells):
        if index in skip:
            continue
        events.emit("cell_start", index=index)
        error: BaseException | None = None
        try:
            with time_limit(timeout):
                result = shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except TimeLimit as err:  # fired outside user code (rare): same meaning
            error = err
        events.emit("cell_end", index=index, error=_describe(error))


def check_question(question, namespace: dict, hidden: list[str], timeout: float) -> Result:
    """Evaluate one question, then its hidden tests, under one time limit."""
    try:
        with time_limit(timeout):
            result = question.evaluate(namespace)
            if not result.correct:
                return result
            for number, code in enumerate(hidden, 1):
                exec(compile(code, f"<hidden test {number} of {question.qid}>", "exec"), dict(namespace))
    except TimeLimit as err:
        return Result(question.qid, INCORRECT, f"Checking stopped: {err} (an endless loop?).", 0.0, question.points)
    except AssertionError as err:
        detail = f": {err}" if str(err) else ""
        return Result(question.qid, INCORRECT, f"A hidden test failed{detail}.", 0.0, question.points)
    except Exception as err:
        return Result(question.qid, INCORRECT, f"A hidden test failed ({_describe(err)}).", 0.0, question.points)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pneumo_lib.assignments.runner")
    parser.add_argument("notebook")
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--hidden", default=None, help="JSON file {question: [code, ...]}")
    parser.add_argument("--cell-timeout", type=float, default=300.0)
    parser.add_argument("--memory-mb", type=int, default=None, help="address-space limit (MiB)")
    parser.add_argument("--skip-cells", default="", help="comma-separated code-cell indices")
    parser.add_argument("--skip-questions", default="", help="comma-separated question ids")
    args = parser.parse_args(argv)

    if args.memory_mb:
        limit = args.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    from pneumo_lib.assignments.notebooks import load_assignment

    events = Events(args.events)
    nb = nbformat.read(args.notebook, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    hidden = json.load(open(args.hidden, encoding="utf-8")) if args.hidden else {}
    skip_cells = {int(i) for i in args.skip_cells.split(",") if i}
    skip_questions = set(filter(None, args.skip_questions.split(",")))

    shell = InteractiveShell.instance()
    events.emit("start", cells=len(cells))
    run_cells(shell, cells, skip_cells, args.cell_timeout, events)
    assignment = load_assignment(args.assignment)
    for question in assignment.questions:
        if question.qid in skip_questions:
            continue
        events.emit("check_start", question=question.qid)
        result = check_question(question, shell.user_ns, hidden.get(question.qid, []), args.cell_timeout)
        events.emit("question", question=question.qid, status=result.status, message=result.message,
                    points=result.points, max_points=result.max_points)
    events.emit("done")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
