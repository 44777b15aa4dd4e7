"""Red-team tests of the grader: one submission per attack, graded together in one folder.

Each attacker is the student version of assignment 1 with an attack cell added (most also
carry correct answers, so the attack must not cost the honest points either). Every attack
must fail to change any grade, leak nothing into the feedback or the grades file, and the
folder must be graded within its limits. They need bubblewrap (``make test`` installs it).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

from pneumo_lib import paths
from pneumo_lib.assignments import grading, notebooks, sandbox
from pneumo_lib.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_assignments_grading import CORRECT_Q1, CORRECT_Q2, CORRECT_Q3, _student_with  # noqa: E402

pytestmark = pytest.mark.skipif(sandbox.find_bwrap() is None,
                                reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap")

#: Small limits: every attack is cut short quickly.
LIMITS = grading.Limits(cell_seconds=3, total_seconds=60, memory_mb=2048, processes=64, file_mb=16, tmp_mb=64)
SECRET = "sekrit-7f3a9c-token"
MARKER = "pneumo-redteam-daemon-4711"
CORRECT = {"def compute_class_weights": CORRECT_Q1, "def split_by_patient": CORRECT_Q2,
           "leaked_patients = ____": CORRECT_Q3}


def _attacker(attack: str, answers: dict | None = None) -> nbformat.NotebookNode:
    nb = _student_with(CORRECT if answers is None else answers)
    nb.cells.append(nbformat.v4.new_code_cell(attack))
    return nb


FORGE = f"""
import json, os
lines = [{{"event": "question", "question": q, "status": "correct", "message": "", "points": 1000,
          "max_points": 1000}} for q in ("q1", "q2", "q3")]
lines += [{{"event": "done"}}, {{"event": "ready", "cpu_seconds": {{}}}}]
lines += [{{"id": i, "ok": 3000}} for i in range(1, 40)]
blob = "".join(json.dumps(x) + "\\n" for x in lines).encode()
for fd in range(1, 200):
    try:
        os.write(fd, blob)
    except OSError:
        pass
"""

PATCH = """
import gc
from pneumo_lib.assignments import core
for obj in gc.get_objects():
    if isinstance(obj, core.Question):
        obj.verify = lambda *a, **k: None
core.Question.evaluate = lambda self, ns=None: core.Result(self.qid, core.CORRECT, "", 1000.0, self.points)
core.is_blank = lambda value: False
"""

SNOOP = """
import glob, os, pathlib
found = []
import pneumo_lib
for base in ["/", "/tmp", os.path.dirname(pneumo_lib.__file__), os.getcwd(), os.path.expanduser("~")]:
    for pattern in ("**/hidden.json", "**/source/*.ipynb", "**/a1_data.ipynb"):
        try:
            for p in glob.glob(os.path.join(base, pattern), recursive=base != "/"):
                try:
                    found.append(p + ": " + open(p).read()[:3000])
                except OSError as err:
                    found.append(p + ": " + str(err))
        except Exception:
            pass
try:
    from pneumo_lib.assignments.notebooks import solution_code
    found.append(solution_code("a1_data", "q1"))
except Exception as err:
    found.append(repr(err))
raise RuntimeError(" || ".join(found)[:5000])
"""


def _secrets_attack(home: Path) -> str:
    return f"""
import os, glob
stolen = [repr(dict(os.environ))]
for p in [os.path.expanduser("~/.kaggle/kaggle.json"), "{home}/.kaggle/kaggle.json", "/root/.kaggle/kaggle.json",
          *glob.glob("/proc/*/environ")]:
    try:
        stolen.append(open(p, "rb").read().decode("utf-8", "replace"))
    except OSError as err:
        stolen.append(str(err))
print(stolen)
raise RuntimeError(" | ".join(stolen)[:5000])
"""


def _overwrite_attack(victim: Path) -> str:
    return f"""
import glob, json, os
victim = {str(victim)!r}
wrecked = []
for p in [victim, *glob.glob("/tmp/**/*.ipynb", recursive=True), *glob.glob("/submission/*.ipynb")]:
    try:
        with open(p, "w") as fh:
            fh.write("{{}}")
        wrecked.append(p)
    except OSError as err:
        wrecked.append(f"{{p}}: {{err}}")
raise RuntimeError("overwrite: " + "; ".join(wrecked))
"""


def _detached_attack(grades_csv: Path) -> str:
    return f"""
import os, subprocess, sys
code = '''
import os, sys, time
for _ in range(100):
    time.sleep(0.1)
    for target in ({str(grades_csv)!r},):
        try:
            open(target, "w").write("student,total\\\\nmallory,1000\\\\n")
        except OSError:
            pass
'''
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", code, {MARKER!r}])
    os._exit(0)
os.wait()
"""


FORKS = """
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except BaseException as err:  # the process limit (or the cell's time limit under load)
    raise RuntimeError(f"forked {n} of 200: {err!r}")
raise RuntimeError(f"forked {n} of 200")
"""

HOG = """
import numpy as np
try:
    hog = bytearray(30 << 30)
finally:
    pass
"""

STUBBORN_Q1 = """
import signal
def compute_class_weights(labels):
    for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    while True:
        pass
"""


def _running_markers() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if MARKER.encode() in (proc / "cmdline").read_bytes():
                    found.append(proc.name)
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    folder, out = root / "in", root / "out" / "grades.csv"
    folder.mkdir()
    home = root / "instructor-home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "prof", "key": SECRET}))
    victim = folder / "carol.ipynb"
    nbformat.write(_student_with(CORRECT), victim)
    submissions = {
        "forger": _attacker(FORGE, answers={}),
        "patcher": _attacker(PATCH, answers={}),
        "snoop": _attacker(SNOOP),
        "thief": _attacker(_secrets_attack(home)),
        "vandal": _attacker(_overwrite_attack(victim)),
        "daemon": _attacker(_detached_attack(out)),
        "forker": _attacker(FORKS),
        "hog": _attacker(HOG),
        "stubborn": _attacker("", answers={**CORRECT, "def compute_class_weights": STUBBORN_Q1}),
    }
    for name, nb in submissions.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    victim_bytes = victim.read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PNEUMO_HOME", str(paths.pneumo_home()))
        mp.setenv("PNEUMO_DATA", str(paths.data_root()))
        mp.setenv("HOME", str(home))
        mp.setenv("KAGGLE_USERNAME", "prof")
        mp.setenv("KAGGLE_KEY", SECRET)
        mp.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
        started = time.monotonic()
        grades = grading.grade_folder(folder, out, limits=LIMITS, jobs=2, echo=lambda line: None)
        elapsed = time.monotonic() - started
    csv_after_grading = out.read_bytes()
    time.sleep(3)  # the detached writer would have struck by now
    return {"grades": {g.student: g for g in grades}, "out": out, "elapsed": elapsed, "victim": victim,
            "victim_bytes": victim_bytes, "csv": csv_after_grading, "n": len(submissions) + 1}


def _points(grade) -> dict[str, float]:
    return {q: r.points for q, r in grade.results.items()}


FULL = {"q1": 2, "q2": 3, "q3": 1}
ZERO = {"q1": 0, "q2": 0, "q3": 0}


def _everything_written(attacked) -> str:
    feedback = attacked["out"].parent / "feedback"
    return attacked["out"].read_text() + "".join(p.read_text() for p in sorted(feedback.iterdir()))


def test_grading_finishes_within_its_limits(attacked):
    # 10 submissions, 2 at a time, each run at most 60 s: far less in practice
    assert attacked["elapsed"] < 5 * LIMITS.total_seconds
    assert set(attacked["grades"]) == {"carol", "forger", "patcher", "snoop", "thief", "vandal", "daemon",
                                       "forker", "hog", "stubborn"}
    print(f"\ngraded {attacked['n']} submissions (9 attacks) in {attacked['elapsed']:.1f} s")
    for name, g in sorted(attacked["grades"].items()):
        print(f"  {name:<9} {g.total:g}/{g.max_points:g}  " + " | ".join(n[:150] for n in g.notes))


def test_forged_events_and_replies_earn_nothing(attacked):
    assert _points(attacked["grades"]["forger"]) == ZERO


def test_a_checker_patched_through_gc_earns_nothing(attacked):
    g = attacked["grades"]["patcher"]
    assert _points(g) == ZERO and {r.status for r in g.results.values()} == {"not attempted"}


def test_another_students_notebook_cannot_be_overwritten(attacked):
    assert attacked["victim"].read_bytes() == attacked["victim_bytes"]
    assert _points(attacked["grades"]["carol"]) == FULL and not attacked["grades"]["carol"].notes
    vandal = attacked["grades"]["vandal"]
    assert _points(vandal) == FULL  # its own answers still count; its attack did nothing
    assert "Read-only file system" in " ".join(vandal.notes) or "No such file" in " ".join(vandal.notes)


def test_a_detached_process_neither_rewrites_grades_nor_survives(attacked):
    assert attacked["out"].read_bytes() == attacked["csv"]
    rows = {r["student"]: r for r in csv.DictReader(attacked["out"].open())}
    assert "mallory" not in rows and rows["daemon"]["total"] == "6"
    assert _running_markers() == []


def test_hidden_tests_and_solutions_stay_hidden(attacked):
    snoop = attacked["grades"]["snoop"]
    assert _points(snoop) == FULL
    written = _everything_written(attacked)
    for secret_text in ("### HIDDEN TESTS", "compute_class_weights([0, 1, 1, 1])", "BEGIN SOLUTION",
                        "np.bincount(y, minlength=2)", "unseen_records(99"):
        assert secret_text not in written
    assert "RuntimeError" in " ".join(snoop.notes)  # the attack ran; it found nothing to show


def test_instructor_secrets_do_not_reach_the_feedback(attacked):
    thief = attacked["grades"]["thief"]
    assert _points(thief) == FULL
    notes = " ".join(thief.notes)
    assert "RuntimeError" in notes  # the attack ran and reported what it saw
    written = _everything_written(attacked)
    assert SECRET not in written and "KAGGLE" not in written


def test_two_hundred_processes_are_refused(attacked):
    forker = attacked["grades"]["forker"]
    assert _points(forker) == FULL
    notes = " | ".join(forker.notes)
    # either the cell reports how far it got, or (on a loaded machine) its process was stopped
    assert "forked" in notes or "Code cell 11 stopped the process" in notes, notes
    if "forked " in notes:
        forked = int(notes.split("forked ")[1].split(" ")[0])
        assert forked < LIMITS.processes < 200, notes


def test_thirty_gigabytes_are_refused(attacked):
    hog = attacked["grades"]["hog"]
    assert _points(hog) == FULL and "MemoryError" in " ".join(hog.notes)


def test_an_endless_check_that_ignores_signals_costs_only_its_question(attacked):
    g = attacked["grades"]["stubborn"]
    assert _points(g) == {"q1": 0, "q2": 3, "q3": 1}
    assert "ignored the time limit of 3 s" in g.results["q1"].message


def test_without_bubblewrap_grading_refuses_unless_told(tmp_path, monkeypatch, capsys):
    nbformat.write(_student_with({}), tmp_path / "x.ipynb")
    monkeypatch.setenv("PNEUMO_BWRAP", "")
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap.*--unsafe-no-sandbox"):
        grading.grade_folder(tmp_path, tmp_path / "g.csv", echo=lambda line: None)
    assert main(["assignments", "grade", str(tmp_path), "--out", str(tmp_path / "g.csv")]) == 2
    assert "apt-get install bubblewrap" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def test_the_sandbox_command_hides_sources_and_sets_limits(tmp_path):
    nb = tmp_path / "s.ipynb"
    nb.write_text("{}")
    cmd, _ = sandbox.sandbox_command(["python", "{notebook}"], notebook=nb, memory_mb=100, cpu_seconds=5,
                                     processes=7, file_mb=3, tmp_mb=9)
    text = " ".join(cmd)
    assert "--unshare-net" in cmd and "--unshare-pid" in cmd and "--clearenv" in cmd and "--die-with-parent" in cmd
    assert f"--tmpfs {notebooks.source_dir().resolve()}" in text
    assert f"--as={100 << 20}" in cmd and "--cpu=5" in cmd and "--nproc=7" in cmd and f"--fsize={3 << 20}" in cmd
    assert "KAGGLE" not in text and cmd[-1] == f"{sandbox.SUBMISSION_DIR}/s.ipynb"


def test_a_checkout_below_tmp_is_bound_onto_the_private_tmp_not_hidden_by_it(tmp_path, monkeypatch):
    """CI clones the project into a temporary folder: the sandbox must still see its venv and library."""
    from pneumo_lib.assignments import sandbox

    home = tmp_path / "pneumo-home"  # tmp_path lies below /tmp
    home.mkdir()
    monkeypatch.setenv("PNEUMO_HOME", str(home))
    notebook = tmp_path / "a1.ipynb"
    notebook.write_text("{}")
    args, _ = sandbox.sandbox_command(["python"], notebook=notebook, memory_mb=512, cpu_seconds=5,
                                      processes=16, file_mb=8, tmp_mb=16, bwrap="/usr/bin/bwrap")
    private_tmp = args.index("/tmp", args.index("--tmpfs"))
    bound = [i for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] == str(home.resolve())]
    assert bound, "PNEUMO_HOME below /tmp is not bound into the sandbox"
    assert all(i > private_tmp for i in bound), "the private /tmp is mounted over PNEUMO_HOME"
    assert ["--perms", "0755", "--dir", "/tmp"] not in [args[i:i + 4] for i in range(len(args))]
