"""Grade a folder of submitted notebooks offline: points per question and student, and feedback.

Who decides what
----------------
Student code is untrusted: it may patch anything in the process it runs in (``gc`` finds
and replaces the check functions), write to any file or pipe that process can reach, read
anything it can see, and leave processes behind. So the grader splits the work in two:

* **The sandbox** (:mod:`.sandbox`, bubblewrap) runs the submission's cells in a worker
  (:mod:`.runner`) as an unprivileged user, without network, on a read-only view of the
  system and library (the instructor notebooks, which hold the solutions and hidden tests,
  are covered), with a private temporary home and ``/tmp``, an environment built from a
  whitelist (no ``KAGGLE_*``, no instructor home, so no ``~/.kaggle``), ``prlimit`` limits
  on memory, CPU seconds, processes and file size, and a wall-clock limit that kills the
  whole pid namespace (detached processes included). It never receives a hidden test, an
  expected value or a verdict: it only answers *"what is the value of ``name``?"* and
  *"call ``name`` on these arguments"*, with data (:mod:`.wire`: JSON, numpy arrays from raw
  bytes, Keras models as ``.keras`` files loaded in safe mode; never a pickle or code).
* **The grader** (this process, trusted) runs every question's check and every hidden test
  itself, on those values; a student function is a proxy whose calls run in the sandbox.
  Points come only from checks run here. What the sandbox sends can only ever be the
  student's answers: forging events or replies, patching the checker inside the sandbox or
  returning made-up values changes nothing a correct answer would not.

Limits: a time limit per cell and per question (interrupted in the sandbox; if the
interrupt is ignored, the grader kills the sandbox after :data:`GRACE` more seconds), a
total time limit per run, and the ``prlimit`` limits above. When the sandbox dies (a
crash, ``os._exit``, a limit), the events it streamed say which cell was running; that
cell is skipped and the submission is run again, up to :data:`MAX_ATTEMPTS` times, so a
crash costs only the questions it affects. A file that is not a valid notebook is reported
by name and gets zero points; the grading run always continues.

Without bubblewrap grading refuses to run unless the instructor asks for
``unsafe_no_sandbox=True`` (``--unsafe-no-sandbox``): the worker then runs as the
instructor's own user with the same limits and the same whitelisted environment, and the
verdicts are still decided here, but student code can read and write the instructor's
files; every report and feedback file says so.

What the sandbox does not stop: a student who reimplements the checks (or copies a
classmate's answer) gets the points, as in any auto-grader; a Keras model an answer sends
is loaded in the grader in Keras's safe mode, so the grader relies on that mode. The CPU
seconds a ``with q.timer():`` block reports are measured in the sandbox and are the
student's claim; the sandbox's CPU limit caps what any submission can spend.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumo_lib.assignments import sandbox, wire
from pneumo_lib.assignments.core import CORRECT, INCORRECT, NOT_ATTEMPTED, Result, reported_cpu_seconds
from pneumo_lib.assignments.notebooks import (
    ASSIGNMENT_IDS,
    SourceError,
    load_assignment,
    parse_source,
    read_notebook,
    source_dir,
)

#: How often a submission is re-run after its sandbox died.
MAX_ATTEMPTS = 4
#: Seconds past a time limit before a sandbox that ignores the interrupt is killed.
GRACE = 5.0
#: What feedback and reports say about a run without a sandbox.
UNSAFE_NOTE = ("WARNING: graded WITHOUT a sandbox (--unsafe-no-sandbox): student code ran as the "
               "instructor's user and could read and change the instructor's files.")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission.

    Attributes:
        cell_seconds: Wall time per code cell and per question check.
        total_seconds: Wall time of one run of the notebook (the whole sandbox is killed after).
        memory_mb: Address-space limit of the sandbox's processes, in MiB.
        cpu_seconds: CPU seconds per process of the sandbox (None: ``total_seconds``).
        processes: Processes and threads the sandbox may run at once.
        file_mb: Largest file the sandbox may write, in MiB.
        tmp_mb: Size of the sandbox's private home and of its ``/tmp``, in MiB each.
    """

    cell_seconds: float = 300.0
    total_seconds: float = 1800.0
    memory_mb: int = 4096
    cpu_seconds: float | None = None
    processes: int = 256
    file_mb: int = 256
    tmp_mb: int = 512

    def describe(self) -> str:
        """The limits in one line (for reports)."""
        return (f"{self.cell_seconds:g} s a cell, {self.total_seconds:g} s a run, {self.memory_mb} MiB, "
                f"{self.cpu_seconds or self.total_seconds:g} CPU s, {self.processes} processes, "
                f"{self.file_mb} MiB a file, {self.tmp_mb} MiB of /tmp")


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
        sandbox: ``"bubblewrap"``, or ``"none (unsafe)"`` when graded without a sandbox.
    """

    student: str
    notebook: Path
    assignment: str | None
    results: dict[str, Result] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "graded"
    sandbox: str = "bubblewrap"

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
        if self.sandbox != "bubblewrap":
            lines[3:3] = [UNSAFE_NOTE]
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


# ----------------------------------------------------------------- the sandboxed worker


class _Lost(BaseException):
    """The sandbox died, hung past its limit or broke the channel (``reason`` says which)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _CheckTimeout(BaseException):
    """A student function ran out of its time (interrupted inside the sandbox)."""


class RemoteError(Exception):
    """An exception student code raised in the sandbox (its type name and message only)."""


def _remote_error(kind: str, message: str) -> BaseException:
    if kind == "TimeLimit":
        return _CheckTimeout(message)
    if kind in ("NotImplementedError", "NotAttempted"):
        return NotImplementedError(message)
    name = re.sub(r"\W", "", kind)[:60] or "Error"
    return type(name, (RemoteError,), {})(message)


_EOF = object()


class _Session:
    """One run of the worker (in the sandbox, or unsandboxed when ``sandboxed`` is False)."""

    def __init__(self, notebook: Path, assignment: str, limits: Limits, skip_cells: set[int], *,
                 sandboxed: bool, sources: Path | None, log: Path, hide: list[Path] = ()):
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe()
        cpu = limits.cpu_seconds or limits.total_seconds
        worker = [sys.executable, "-m", "pneumo_lib.assignments.runner", "{notebook}", "--assignment", assignment,
                  "--out-fd", str(out_w), "--in-fd", str(in_r), "--cell-timeout", str(limits.cell_seconds),
                  "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(cpu),
                  "--processes", str(limits.processes), "--file-mb", str(limits.file_mb),
                  "--skip-cells", ",".join(map(str, sorted(skip_cells)))]
        self.workdir = None
        self.cell_seconds = limits.cell_seconds
        if sandboxed:
            cmd, _ = sandbox.sandbox_command(worker, notebook=notebook, memory_mb=limits.memory_mb,
                                             cpu_seconds=cpu, processes=limits.processes,
                                             file_mb=limits.file_mb, tmp_mb=limits.tmp_mb, sources=sources,
                                             hide=list(hide), scratch=Path(tempfile.mkdtemp(dir=log.parent)))
            env, cwd = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, None
        else:
            self.workdir = tempfile.mkdtemp(prefix="pneumo-unsafe-")
            cmd = [c.replace("{notebook}", str(notebook)) for c in worker]
            env, cwd = {**sandbox.unsafe_env(), "HOME": self.workdir, "TMPDIR": self.workdir}, self.workdir
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                         pass_fds=(out_w, in_r), env=env, cwd=cwd, start_new_session=True)
        os.close(out_w)
        os.close(in_r)
        self._in = os.fdopen(in_w, "wb", buffering=0)
        self._messages: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(os.fdopen(out_r, "rb"),), daemon=True)
        self._reader.start()
        self.events: list[dict] = []
        self.next_id = 0
        self.dead_reason: str | None = None

    def _read(self, stream) -> None:
        try:
            while True:
                line = stream.readline(wire.MAX_LINE + 1)
                if not line:
                    break
                if len(line) > wire.MAX_LINE:
                    self._messages.put(("broken", f"sent a message longer than {wire.MAX_LINE >> 20} MiB"))
                    break
                try:
                    self._messages.put(("message", wire.loads(line)))
                except wire.WireError as err:
                    self._messages.put(("broken", f"wrote something that is not a grading message ({err})"))
                    break
        finally:
            stream.close()
            self._messages.put(("eof", None))

    def next(self, timeout: float) -> dict:
        """The next message; :class:`_Lost` when the sandbox ended, broke the channel or timed out."""
        try:
            kind, value = self._messages.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise _Lost("timeout") from None
        if kind == "message":
            if "event" in value:
                self.events.append(value)
            return value
        if kind == "eof":
            try:
                self.proc.wait(timeout=3)  # let it finish dying, to say how it ended
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.dead_reason = value if kind == "broken" else self.ending()
        self._messages.put((kind, value))  # later calls see the same end
        raise _Lost(self.dead_reason)

    def ending(self) -> str:
        """How the sandbox's process ended (after it did)."""
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        if code is not None and code > 128 and code - 128 in signal.Signals._value2member_map_:
            return f"was killed by {signal.Signals(code - 128).name}"
        return f"ended with exit code {code} (a crash, or a limit)"

    def request(self, message: dict, timeout: float) -> dict:
        """Send a request and wait up to ``timeout`` s for its answer (other lines are ignored)."""
        self.next_id += 1
        rid = self.next_id
        data = wire.dumps({**message, "id": rid})
        writer = threading.Thread(target=self._write, args=(data,), daemon=True)
        deadline = time.monotonic() + timeout
        writer.start()
        while True:
            try:
                reply = self.next(deadline - time.monotonic())
            except _Lost as lost:
                if lost.reason == "timeout":
                    self.kill()
                raise
            if reply.get("id") == rid and "event" not in reply:
                return reply

    def _write(self, data: bytes) -> None:
        try:
            self._in.write(data)
        except (BrokenPipeError, OSError, ValueError):
            pass

    def kill(self) -> None:
        """End the sandbox and everything in it."""
        sandbox.kill(self.proc)

    def close(self) -> None:
        """Hang up, then make sure nothing of the sandbox is left running."""
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _Proxy:
    """A student function: calling it runs it in the sandbox on data the grader sends."""

    def __init__(self, session: _Session, ref: str, name: str, deadline: float):
        self.session, self.ref, self.__name__, self.deadline = session, ref, name, deadline

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"

    def __call__(self, *args, **kwargs):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _CheckTimeout(f"time limit of {self.session.cell_seconds:g} s exceeded")
        message = {"op": "call", "ref": self.ref, "timeout": remaining,
                   "args": wire.encode(list(args)), "kwargs": wire.encode(dict(kwargs))}
        try:
            reply = self.session.request(message, remaining + GRACE)
        except _Lost as lost:
            if lost.reason == "timeout":
                raise _Lost(f"ignored the time limit of {self.session.cell_seconds:g} s") from None
            raise
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise _remote_error(str(err.get("type", "Error")), str(err.get("message", ""))[:2000])
        return _value(self.session, reply, self.deadline)


def _value(session: _Session, reply: dict, deadline: float):
    try:
        value = wire.decode(reply.get("ok"))
    except (wire.WireError, ValueError, TypeError, KeyError) as err:
        raise RemoteError(f"the value your code gave could not be read ({err})") from None
    if isinstance(value, wire.Callable):
        return _Proxy(session, value.ref, value.name or value.ref, deadline)
    return value


def _run_cells(session: _Session, limits: Limits, started: float) -> dict:
    """Wait for the cells to run; the ``ready`` event, or :class:`_Lost` saying why not."""
    running: float | None = None
    while True:
        total_left = started + limits.total_seconds - time.monotonic()
        wait = total_left if running is None else min(total_left, running + limits.cell_seconds + GRACE - time.monotonic())
        try:
            event = session.next(wait)
        except _Lost as lost:
            if lost.reason != "timeout":
                raise
            session.kill()
            if total_left <= wait + 0.01 or running is None:
                raise _Lost(f"exceeded the total time limit of {limits.total_seconds:g} s") from None
            raise _Lost(f"ignored the time limit of {limits.cell_seconds:g} s per cell") from None
        kind = event.get("event")
        if kind == "cell_start":
            running = time.monotonic()
        elif kind == "cell_end":
            running = None
        elif kind == "ready":
            return event


def _running_cell(events: list[dict]) -> int | None:
    """The code cell that was running when the sandbox died."""
    last = events[-1] if events else None
    if last and last.get("event") == "cell_start" and isinstance(last.get("index"), int):
        return last["index"]
    return None


def _judge(question, session: _Session, hidden: list[str], limits: Limits, cpu_seconds: dict) -> Result:
    """Check one question here, in the grader, on the values the sandbox gives for its names."""
    deadline = time.monotonic() + limits.cell_seconds
    namespace: dict = {}
    try:
        for name in question.names:
            reply = session.request({"op": "get", "name": name}, limits.cell_seconds + GRACE)
            if reply.get("missing"):
                continue
            try:
                namespace[name] = _value(session, reply, deadline)
            except RemoteError as err:
                namespace[name] = wire.Opaque("?", f"<{err}>")
        with reported_cpu_seconds(question.assignment, cpu_seconds):
            result = question.evaluate(namespace)
            if not result.correct:
                return result
            for number, code in enumerate(hidden, 1):
                exec(compile(code, f"<hidden test {number} of {question.qid}>", "exec"), {"np": np, **namespace})
    except _CheckTimeout:
        return Result(question.qid, INCORRECT, f"Checking stopped: time limit of {limits.cell_seconds:g} s "
                      "exceeded (an endless loop?).", 0.0, question.points)
    except AssertionError as err:
        detail = f": {err}" if str(err) else ""
        return Result(question.qid, INCORRECT, f"A hidden test failed{detail}.", 0.0, question.points)
    except Exception as err:
        text = str(err).strip().splitlines()
        what = f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
        return Result(question.qid, INCORRECT, f"A hidden test failed ({what}).", 0.0, question.points)
    return Result(question.qid, CORRECT, "", question.points, question.points)


# ----------------------------------------------------------------- grading


_prepared: set[str] = set()
_prepare_lock = threading.Lock()


def prepare(assignment: str) -> None:
    """Make, in the grader, what an assignment's notebooks read (they see it read-only)."""
    with _prepare_lock:
        if assignment in _prepared:
            return
        from pneumo_lib import data

        if assignment in ("a1_data", "a2_model"):
            data.ensure_dataset("quick")
        elif assignment == "a4_detective":
            from pneumo_lib.assignments import a4_detective

            data.ensure_dataset("quick")
            data.ensure_dataset("quick", shortcut=True)
            a4_detective.mystery_model()
        _prepared.add(assignment)


def grade_notebook(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                   assignment: str | None = None, sources: str | os.PathLike | None = None,
                   limits: Limits = Limits(), unsafe_no_sandbox: bool = False) -> Grade:
    """Grade one submitted notebook (see the module docstring for the sandbox and the limits).

    Raises:
        sandbox.SandboxUnavailable: bubblewrap is missing and ``unsafe_no_sandbox`` is False.
    """
    path = Path(path)
    sandboxed = not unsafe_no_sandbox
    if sandboxed:
        sandbox.check_available()
    grade = Grade(student_name(path, Path(root) if root else path.parent), path, None,
                  sandbox="bubblewrap" if sandboxed else "none (unsafe)")
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
    source_folder = Path(sources) if sources else source_dir()
    source = parse_source(source_folder / f"{grade.assignment}.ipynb")
    prepare(grade.assignment)
    questions = load_assignment(grade.assignment).questions
    skip_cells: set[int] = set()
    judged: dict[str, Result] = {}
    events: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pneumo-grade-") as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "submission"
        folder.mkdir()
        copy = folder / "submission.ipynb"
        shutil.copyfile(path, copy)  # the sandbox sees this private copy, read-only
        os.chmod(tmp_path, 0o755)
        os.chmod(folder, 0o755)
        os.chmod(copy, 0o644)
        for _ in range(MAX_ATTEMPTS):
            session = _Session(copy, grade.assignment, limits, skip_cells, sandboxed=sandboxed,
                               sources=source_folder, log=tmp_path / "output.log",
                               hide=[Path(root) if root else path.parent])
            started = time.monotonic()
            try:
                try:
                    ready = _run_cells(session, limits, started)
                except _Lost as lost:
                    events = session.events
                    cell = _running_cell(events)
                    if cell is None:
                        grade.notes.append(f"The grading process {lost.reason} before running your code.")
                        _log_tail(path, tmp_path / "output.log")
                        break
                    skip_cells.add(cell)
                    grade.notes.append(f"Code cell {cell + 1} stopped the process: it {lost.reason}; it was skipped.")
                    continue
                events = session.events
                cpu = ready.get("cpu_seconds") if isinstance(ready.get("cpu_seconds"), dict) else {}
                cpu = {str(k): float(v) if type(v) in (int, float) else None for k, v in cpu.items()}
                lost_in = None
                for q in questions:
                    if q.qid in judged:
                        continue
                    try:
                        judged[q.qid] = _judge(q, session, source.hidden.get(q.qid, []), limits, cpu)
                    except _Lost as lost:
                        judged[q.qid] = Result(q.qid, INCORRECT, f"Checking stopped the process: it {lost.reason}.",
                                               0.0, q.points)
                        lost_in = q.qid
                        break
                if lost_in is None:
                    break
            finally:
                session.close()
    for e in events:
        if e.get("event") == "cell_end" and e.get("error") and isinstance(e.get("index"), int):
            grade.notes.append(f"Code cell {e['index'] + 1}: {str(e['error'])[:400]}")
    grade.results.update(judged)
    return _zero_fill(grade, "Not checked: the grading run stopped before this question.")


def _log_tail(path: Path, log: Path) -> None:
    """The end of a sandbox's output, for the instructor (never in feedback)."""
    try:
        text = log.read_bytes()[-2000:].decode("utf-8", "replace")
    except OSError:
        return
    if text.strip():
        print(f"pneumo: {path}: the grading process's last output:\n{text}", file=sys.stderr)


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
    ``total, max_points, status, sandbox`` (``bubblewrap``, or ``none (unsafe)``). Feedback goes to ``feedback_dir`` (default: a
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
        writer.writerow(["student", "assignment", "notebook", *qids, "total", "max_points", "status", "sandbox"])
        for g in grades:
            points = [f"{g.results[q].points:g}" if q in g.results else "" for q in qids]
            writer.writerow([g.student, g.assignment or "", g.notebook.name, *points,
                             f"{g.total:g}", f"{g.max_points:g}", g.status, g.sandbox])
    for g in grades:
        name = f"{g.student}-{g.assignment}" if g.assignment else g.student
        (feedback_dir / f"{name}.txt").write_text(g.feedback(), encoding="utf-8")
    return out


def grade_folder(folder: str | os.PathLike, out: str | os.PathLike, *, assignment: str | None = None,
                 sources: str | os.PathLike | None = None, feedback_dir: str | os.PathLike | None = None,
                 limits: Limits = Limits(), jobs: int = 1, echo=print,
                 unsafe_no_sandbox: bool = False) -> list[Grade]:
    """Grade every notebook below ``folder``; write the CSV ``out`` and the feedback files.

    Args:
        folder: Submissions: ``<student>.ipynb`` files or ``<student>/<anything>.ipynb``.
        out: The grades CSV.
        assignment: Assignment of notebooks that do not say (default: from metadata or name).
        sources: Folder of instructor source notebooks (hidden tests); default: the library's.
        feedback_dir: Where feedback files go (default ``<out folder>/feedback``).
        limits: Time and memory limits per submission.
        jobs: Submissions graded at the same time (each in its own sandbox).
        echo: Called with one progress line per submission (``print`` by default).
        unsafe_no_sandbox: Run student code without a sandbox (only when bubblewrap is
            missing and you trust the submissions; every report says so).

    Raises:
        sandbox.SandboxUnavailable: bubblewrap is missing and ``unsafe_no_sandbox`` is False.

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
    if unsafe_no_sandbox:
        print(f"pneumo: {UNSAFE_NOTE}", file=sys.stderr)
    else:
        sandbox.check_available()
    for aid in sorted({_assignment_of(f, assignment) for f in files} - {None}):
        prepare(aid)  # once, before any sandbox reads it

    def grade_one(path: Path) -> Grade:
        return grade_notebook(path, root=root, assignment=assignment, sources=sources, limits=limits,
                              unsafe_no_sandbox=unsafe_no_sandbox)

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait for child processes
        grades = list(pool.map(grade_one, files))
    for path, grade in zip(files, grades):
        if grade.status != "graded":
            print(f"pneumo: {path}: {grade.status}: {'; '.join(grade.notes)}", file=sys.stderr)
        echo(f"{grade.student:<20} {grade.assignment or '?':<14} {grade.total:g}/{grade.max_points:g}  {grade.status}"
             + ("  (NO SANDBOX)" if grade.sandbox != "bubblewrap" else ""))
    write_grades(grades, out, feedback_dir)
    return grades


def _assignment_of(path: Path, default: str | None) -> str | None:
    try:
        return which_assignment(read_notebook(path), path, default)
    except (SourceError, OSError):
        return None
