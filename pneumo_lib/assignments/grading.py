"""Grade a folder of submitted notebooks offline: points per question and student, and feedback.

Every submission runs in its own child process (:mod:`pneumo_lib.assignments.runner`) with

* a memory limit (``RLIMIT_AS``, set by the child on itself before it reads the notebook,
  inherited by anything it starts),
* a time limit per cell and per check (student code is interrupted, the run goes on),
* a total time limit (the child's whole process group is killed).

When the child dies (a crash, ``os._exit``, the memory limit, an endless loop the per-cell
limit could not interrupt), the events it streamed say which cell or check was running;
that step is skipped and the submission is run again, up to :data:`MAX_ATTEMPTS` times, so
a crash costs only the questions it affects. A file that is not a valid notebook is
reported by name and gets zero points; the grading run always continues.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pneumo_lib.assignments.core import INCORRECT, NOT_ATTEMPTED, Result
from pneumo_lib.assignments.notebooks import (
    ASSIGNMENT_IDS,
    SourceError,
    load_assignment,
    parse_source,
    read_notebook,
    source_dir,
)

#: How often a submission is re-run after its process died.
MAX_ATTEMPTS = 4


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission.

    Attributes:
        cell_seconds: Wall time per code cell and per question check.
        total_seconds: Wall time of one attempt (the whole process group is killed after).
        memory_mb: Address-space limit of the child process, in MiB.
    """

    cell_seconds: float = 300.0
    total_seconds: float = 1800.0
    memory_mb: int = 4096


@dataclass
class Grade:
    """The grade of one submitted notebook.

    Attributes:
        student: Student name (file stem, or the sub-folder for ``SUBMISSIONS/<student>/x.ipynb``).
        notebook: The submitted file.
        assignment: Assignment id, or None if it could not be told.
        results: ``{question: Result}`` in question order.
        notes: Problems with the submission as a whole (malformed file, crashed cells, errors;
            code cells are numbered from 1, counting code cells only).
        status: ``"graded"`` or a short reason it could not be graded.
    """

    student: str
    notebook: Path
    assignment: str | None
    results: dict[str, Result] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "graded"

    @property
    def total(self) -> float:
        """Points earned."""
        return sum(r.points for r in self.results.values())

    @property
    def max_points(self) -> float:
        """Points available (0 when the assignment is unknown)."""
        return load_assignment(self.assignment).max_points if self.assignment else 0.0

    def feedback(self) -> str:
        """A short plain-text report for the student."""
        title = load_assignment(self.assignment).title if self.assignment else "unknown assignment"
        lines = [f"Feedback for {self.student}: {title}", f"File: {self.notebook.name}",
                 f"Total: {self.total:g} / {self.max_points:g} points", ""]
        if self.status != "graded":
            lines.append(f"Not graded: {self.status}")
        for r in self.results.values():
            lines.append(f"{r.question} ({r.points:g}/{r.max_points:g}): {r.status}")
            lines.extend(f"    {line}" for line in r.message.splitlines() if line.strip())
        if self.notes:
            lines += ["", "Problems while running your notebook:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def student_name(path: Path, root: Path) -> str:
    """``alice`` for ``root/alice.ipynb`` and for ``root/alice/a1_data.ipynb``."""
    rel = path.relative_to(root)
    return "-".join(rel.parts[:-1]) if len(rel.parts) > 1 else path.stem


def which_assignment(nb, path: Path, default: str | None) -> str | None:
    """The assignment of a notebook: its metadata, else ``default``, else its file name."""
    found = nb.metadata.get("pneumo", {}).get("assignment") if nb is not None else None
    if found in ASSIGNMENT_IDS:
        return found
    if default:
        return default
    return path.stem if path.stem in ASSIGNMENT_IDS else None


def _read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut off by a kill
            break
    return events


def _run_once(notebook: Path, assignment: str, hidden_file: Path, workdir: Path, limits: Limits,
              skip_cells: set[int], skip_questions: set[str]) -> tuple[list[dict], str | None]:
    """One child run; returns its events and, if it did not finish, why."""
    events_file = workdir / f"events-{len(list(workdir.glob('events-*')))}.jsonl"
    cmd = [sys.executable, "-m", "pneumo_lib.assignments.runner", str(notebook.resolve()),
           "--assignment", assignment, "--events", str(events_file), "--hidden", str(hidden_file),
           "--cell-timeout", str(limits.cell_seconds), "--memory-mb", str(limits.memory_mb),
           "--skip-cells", ",".join(map(str, sorted(skip_cells))),
           "--skip-questions", ",".join(sorted(skip_questions))]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    with open(workdir / "output.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=limits.total_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return _read_events(events_file), f"exceeded the total time limit of {limits.total_seconds:g} s"
    events = _read_events(events_file)
    if events and events[-1]["event"] == "done":
        return events, None
    if code < 0:
        return events, f"was killed by {signal.Signals(-code).name}"
    return events, f"ended with exit code {code} (a crash, or the memory limit of {limits.memory_mb} MiB)"


def _running_step(events: list[dict]) -> tuple[str, object] | None:
    """The cell or check that was running when the child died."""
    last = events[-1] if events else None
    if last and last["event"] == "cell_start":
        return "cell", last["index"]
    if last and last["event"] == "check_start":
        return "question", last["question"]
    return None


def grade_notebook(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                   assignment: str | None = None, sources: str | os.PathLike | None = None,
                   limits: Limits = Limits()) -> Grade:
    """Grade one submitted notebook (see the module docstring for the limits)."""
    path = Path(path)
    grade = Grade(student_name(path, Path(root) if root else path.parent), path, None)
    try:
        nb = read_notebook(path)
    except SourceError as err:
        grade.status = "malformed notebook"
        grade.notes.append(str(err))
        grade.assignment = which_assignment(None, path, assignment)
        return _zero_fill(grade, "Your file could not be read as a notebook.")
    grade.assignment = which_assignment(nb, path, assignment)
    if grade.assignment is None:
        grade.status = "unknown assignment"
        grade.notes.append(f"{path}: no metadata.pneumo.assignment; pass --assignment.")
        return grade
    source = parse_source(Path(sources or source_dir()) / f"{grade.assignment}.ipynb")
    skip_cells: set[int] = set()
    skip_questions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pneumo-grade-") as tmp:
        workdir = Path(tmp)
        hidden_file = workdir / "hidden.json"
        hidden_file.write_text(json.dumps(source.hidden), encoding="utf-8")
        for _ in range(MAX_ATTEMPTS):
            events, failure = _run_once(path, grade.assignment, hidden_file, workdir, limits,
                                        skip_cells, set(skip_questions))
            if failure is None:
                break
            step = _running_step(events)
            if step is None:
                grade.notes.append(f"The grading process {failure} before running your code.")
                break
            kind, which = step
            if kind == "cell":
                skip_cells.add(int(which))
                grade.notes.append(f"Code cell {int(which) + 1} stopped the process: it {failure}; it was skipped.")
            else:
                skip_questions[str(which)] = f"Checking stopped the process: it {failure}."
    for e in events:
        if e["event"] == "cell_end" and e["error"]:
            grade.notes.append(f"Code cell {e['index'] + 1}: {e['error']}")
        elif e["event"] == "question":
            grade.results[e["question"]] = Result(e["question"], e["status"], e["message"],
                                                  e["points"], e["max_points"])
    for qid, why in skip_questions.items():
        grade.results[qid] = Result(qid, INCORRECT, why, 0.0, load_assignment(grade.assignment).question(qid).points)
    return _zero_fill(grade, "Not checked: the grading run stopped before this question.")


def _zero_fill(grade: Grade, message: str) -> Grade:
    """Give every unanswered question a zero result, in question order."""
    if grade.assignment is None:
        return grade
    ordered = {}
    for q in load_assignment(grade.assignment).questions:
        ordered[q.qid] = grade.results.get(q.qid) or Result(q.qid, NOT_ATTEMPTED, message, 0.0, q.points)
    grade.results = ordered
    return grade


def find_submissions(folder: str | os.PathLike) -> list[Path]:
    """Every ``*.ipynb`` below ``folder`` (checkpoints excluded), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Submissions folder {folder} does not exist.")
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def write_grades(grades: list[Grade], out: str | os.PathLike, feedback_dir: str | os.PathLike | None = None) -> Path:
    """Write the grades CSV (one row per submission) and one feedback file per submission.

    Columns: ``student, assignment, notebook``, one column per question id (``q1``, ...),
    ``total, max_points, status``. Feedback goes to ``feedback_dir`` (default: a
    ``feedback`` folder beside the CSV) as ``<student>-<assignment>.txt``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    feedback_dir = Path(feedback_dir) if feedback_dir else out.parent / "feedback"
    feedback_dir.mkdir(parents=True, exist_ok=True)
    qids: list[str] = []
    for g in grades:
        qids += [q for q in g.results if q not in qids]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "assignment", "notebook", *qids, "total", "max_points", "status"])
        for g in grades:
            points = [f"{g.results[q].points:g}" if q in g.results else "" for q in qids]
            writer.writerow([g.student, g.assignment or "", g.notebook.name, *points,
                             f"{g.total:g}", f"{g.max_points:g}", g.status])
    for g in grades:
        name = f"{g.student}-{g.assignment}" if g.assignment else g.student
        (feedback_dir / f"{name}.txt").write_text(g.feedback(), encoding="utf-8")
    return out


def grade_folder(folder: str | os.PathLike, out: str | os.PathLike, *, assignment: str | None = None,
                 sources: str | os.PathLike | None = None, feedback_dir: str | os.PathLike | None = None,
                 limits: Limits = Limits(), jobs: int = 1, echo=print) -> list[Grade]:
    """Grade every notebook below ``folder``; write the CSV ``out`` and the feedback files.

    Args:
        folder: Submissions: ``<student>.ipynb`` files or ``<student>/<anything>.ipynb``.
        out: The grades CSV.
        assignment: Assignment of notebooks that do not say (default: from metadata or name).
        sources: Folder of instructor source notebooks (hidden tests); default: the library's.
        feedback_dir: Where feedback files go (default ``<out folder>/feedback``).
        limits: Time and memory limits per submission.
        jobs: Submissions graded at the same time (each in its own process).
        echo: Called with one progress line per submission (``print`` by default).

    Returns:
        One :class:`Grade` per notebook, in file order.
    """
    missing = [m for m in ("IPython", "nbformat") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"Grading needs {' and '.join(missing)}: pip install 'pneumo-lib[book]'.")
    root = Path(folder)
    files = find_submissions(root)
    if not files:
        raise FileNotFoundError(f"No submitted notebooks (*.ipynb) below {root}.")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}.")

    def grade_one(path: Path) -> Grade:
        return grade_notebook(path, root=root, assignment=assignment, sources=sources, limits=limits)

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait for child processes
        grades = list(pool.map(grade_one, files))
    for path, grade in zip(files, grades):
        if grade.status != "graded":
            print(f"pneumo: {path}: {grade.status}: {'; '.join(grade.notes)}", file=sys.stderr)
        echo(f"{grade.student:<20} {grade.assignment or '?':<14} {grade.total:g}/{grade.max_points:g}  {grade.status}")
    write_grades(grades, out, feedback_dir)
    return grades
