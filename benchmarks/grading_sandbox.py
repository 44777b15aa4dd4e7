"""Grading time per submission in the bubblewrap sandbox against without it, side by side.

Run: ``.venv/bin/python benchmarks/grading_sandbox.py [--assignment a1_data] [--rounds 1]``

Grades the instructor's own notebook of one assignment (its solutions filled in, so it earns
every point) as a submission: once in the sandbox the grader uses by default, once with
``unsafe_no_sandbox=True`` (the worker runs as the grader's user), alternating, ``--rounds``
times each. Prints the seconds of each run, the points (which must be equal: the sandbox may
cost time, never points) and the ratio of the medians. Needs bubblewrap (``make sandbox``).
Times depend on the machine and on what else runs on it; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pneumo_lib.assignments import grading, notebooks, sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="a1_data")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    sandbox.check_available()
    grading.prepare(args.assignment)  # data the assignment needs, made once before timing
    seconds: dict[str, list[float]] = {"sandbox": [], "no sandbox": []}
    points: dict[str, set[str]] = {"sandbox": set(), "no sandbox": set()}
    with tempfile.TemporaryDirectory() as tmp:
        submission = Path(tmp) / "student.ipynb"
        shutil.copy(notebooks.source_dir() / f"{args.assignment}.ipynb", submission)
        for _ in range(args.rounds):
            for mode, unsafe in (("sandbox", False), ("no sandbox", True)):
                start = time.perf_counter()
                grade = grading.grade_notebook(submission, assignment=args.assignment, unsafe_no_sandbox=unsafe)
                seconds[mode].append(time.perf_counter() - start)
                points[mode].add(f"{grade.total:g}/{grade.max_points:g} ({grade.status})")
                print(f"{mode:<11} {seconds[mode][-1]:6.1f} s  {grade.total:g}/{grade.max_points:g}  {grade.status}",
                      flush=True)
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    print(f"\n{args.assignment}: median {median['sandbox']:.1f} s in the sandbox, {median['no sandbox']:.1f} s "
          f"without; ratio {median['sandbox'] / median['no sandbox']:.2f}")
    if points["sandbox"] != points["no sandbox"]:
        raise SystemExit(f"The sandbox changed the grade: {points}")


if __name__ == "__main__":
    main()
