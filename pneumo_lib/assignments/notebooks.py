"""Instructor source notebooks and the student versions generated from them.

A source notebook is an ordinary notebook with two kinds of marked code:

* **Solutions**: lines between ``### BEGIN SOLUTION q1`` and ``### END SOLUTION``.
  In the student version the region is replaced by its placeholder: the lines of the
  region written as ``#> code`` (uncommented, e.g. ``#> answer = ____``), or when there
  are none, ``# YOUR CODE HERE`` followed by ``raise NotImplementedError`` at the
  region's indentation (so a function body stays valid and its check says "not attempted").
* **Hidden tests**: a code cell whose first line is ``### HIDDEN TESTS q2``. It is removed
  from the student version; the grader runs it after the question's check, and the
  question earns its points only if the check passes and every hidden test cell of it runs
  without error (a failing ``assert``'s message goes into the student's feedback).

Student versions carry ``metadata.pneumo.assignment`` (the grader's key) and no outputs.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from pneumo_lib.assignments.core import ASSIGNMENT_IDS, load_assignment

_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+(?P<q>\w+))?\s*$")
_END = re.compile(r"^\s*### END SOLUTION\s*$")
_HIDDEN = re.compile(r"^\s*### HIDDEN TESTS\s+(?P<q>\w+)\s*$")
_PLACEHOLDER = re.compile(r"^(?P<indent>\s*)#> ?(?P<code>.*)$")


class SourceError(ValueError):
    """A source notebook is malformed (the message names the file and the cell)."""


def source_dir() -> Path:
    """Folder of the instructor source notebooks shipped with the library."""
    return Path(__file__).parent / "source"


def student_dir() -> Path:
    """Folder of the generated student notebooks shipped with the library."""
    return Path(__file__).parent / "student"


def read_notebook(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read and validate a notebook; ``SourceError`` names the file when it is not one."""
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except FileNotFoundError:
        raise
    except Exception as err:  # JSON errors, schema errors, empty files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"{path}: not a valid notebook ({first[:200]}).") from None
    return nb


@dataclass(frozen=True)
class Region:
    """One solution region: question id, solution lines and student placeholder lines."""

    question: str
    solution: tuple[str, ...]
    placeholder: tuple[str, ...]


def split_cell(source: str, where: str) -> tuple[list[str], list[Region]]:
    """Student lines of a code cell and the solution regions it held.

    Args:
        source: The cell's code.
        where: ``"file, cell N"`` for error messages.

    Raises:
        SourceError: Unbalanced markers, a region without a question id, nested regions.
    """
    out: list[str] = []
    regions: list[Region] = []
    current: tuple[str, str, list[str], list[str]] | None = None  # (q, indent, solution, placeholder)
    for number, line in enumerate(source.splitlines(), 1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if current is not None:
                raise SourceError(f"{where}, line {number}: BEGIN SOLUTION inside another solution region.")
            if not begin["q"]:
                raise SourceError(f"{where}, line {number}: write the question id: '### BEGIN SOLUTION q1'.")
            current = (begin["q"], begin["indent"], [], [])
        elif end:
            if current is None:
                raise SourceError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION.")
            q, indent, solution, placeholder = current
            if not placeholder:
                placeholder = [f"{indent}# YOUR CODE HERE"]
                if indent:
                    placeholder.append(f'{indent}raise NotImplementedError("your code here")')
            out.extend(placeholder)
            regions.append(Region(q, tuple(solution), tuple(placeholder)))
            current = None
        elif current is not None:
            ph = _PLACEHOLDER.match(line)
            if ph:
                current[3].append(ph["indent"] + ph["code"])
            else:
                current[2].append(line)
        else:
            out.append(line)
    if current is not None:
        raise SourceError(f"{where}: BEGIN SOLUTION {current[0]} is never closed by '### END SOLUTION'.")
    return out, regions


def hidden_question(cell) -> str | None:
    """The question id of a hidden-tests cell, or None for any other cell."""
    if cell.cell_type != "code" or not cell.source.strip():
        return None
    match = _HIDDEN.match(cell.source.lstrip().splitlines()[0])
    return match["q"] if match else None


@dataclass
class SourceNotebook:
    """A parsed instructor notebook.

    Attributes:
        path: Where it was read from.
        assignment: Its assignment id (from ``metadata.pneumo.assignment`` or the file name).
        student: The student version (a new notebook).
        regions: Every solution region, in order.
        hidden: ``{question: [hidden test code, ...]}``.
    """

    path: Path
    assignment: str
    student: nbformat.NotebookNode
    regions: list[Region]
    hidden: dict[str, list[str]]


def parse_source(path: str | os.PathLike, *, solutions: bool = True) -> SourceNotebook:
    """Parse a source notebook and generate its student version.

    Args:
        path: The instructor notebook.
        solutions: False: the student version turns ``qN.solution()`` off
            (a cell calling :func:`~pneumo_lib.assignments.core.allow_solutions` after the
            first import of the assignment's questions).

    Raises:
        SourceError: Malformed notebook or markers (naming the file and cell), unknown
            assignment, or a region/hidden test naming a question the assignment lacks.
    """
    path = Path(path)
    nb = read_notebook(path)
    assignment = nb.metadata.get("pneumo", {}).get("assignment", path.stem)
    try:
        questions = {q.qid for q in load_assignment(assignment).questions}
    except ValueError as err:
        raise SourceError(f"{path}: {err}") from None
    student = copy.deepcopy(nb)
    cells, regions, hidden, switched = [], [], {}, False
    for index, cell in enumerate(nb.cells):
        where = f"{path.name}, cell {index}"
        q = hidden_question(cell)
        if q is not None:
            if q not in questions:
                raise SourceError(f"{where}: hidden tests for unknown question {q!r}.")
            hidden.setdefault(q, []).append(cell.source)
            continue
        new = copy.deepcopy(cell)
        if cell.cell_type == "code":
            lines, found = split_cell(cell.source, where)
            for r in found:
                if r.question not in questions:
                    raise SourceError(f"{where}: solution for unknown question {r.question!r}.")
            regions.extend(found)
            new.source = "\n".join(lines)
            new.outputs, new.execution_count = [], None
        cells.append(new)
        if not solutions and not switched and f"assignments.{assignment} import" in cell.source:
            switch = nbformat.v4.new_code_cell(
                "from pneumo_lib.assignments import allow_solutions\n"
                "allow_solutions(False)  # your instructor turned solutions off")
            switch.id = "solutions-off"
            cells.append(switch)
            switched = True
    student.cells = cells
    student.metadata.setdefault("pneumo", {}).update(
        assignment=assignment, student_version=True,
        source_sha256=hashlib.sha256(path.read_bytes()).hexdigest()[:16])
    return SourceNotebook(path, assignment, student, regions, hidden)


def build_student_notebooks(sources: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                            *, solutions: bool = True) -> list[Path]:
    """Write the student version of every ``*.ipynb`` in ``sources`` into ``out``.

    Args:
        sources: Folder of instructor notebooks (default: :func:`source_dir`).
        out: Target folder (default: :func:`student_dir`); created if needed.
        solutions: False turns ``qN.solution()`` off in the generated notebooks.

    Returns:
        The written files, sorted.
    """
    sources = Path(sources) if sources is not None else source_dir()
    out = Path(out) if out is not None else student_dir()
    files = sorted(sources.glob("*.ipynb"))
    if not files:
        raise FileNotFoundError(f"No source notebooks (*.ipynb) in {sources}.")
    parsed = [parse_source(f, solutions=solutions) for f in files]  # all or nothing
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in parsed:
        target = out / f"{src.assignment}.ipynb"
        nbformat.write(src.student, target)
        written.append(target)
    return written


def solution_code(assignment: str, question: str, sources: str | os.PathLike | None = None) -> str:
    """The solution lines of one question, from the instructor notebook (for ``qN.solution()``)."""
    path = Path(sources or source_dir()) / f"{assignment}.ipynb"
    regions = [r for r in parse_source(path).regions if r.question == question]
    if not regions:
        raise SourceError(f"{path}: no solution region for {question}.")
    return "\n\n".join(_dedent("\n".join(r.solution)) for r in regions)


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")
