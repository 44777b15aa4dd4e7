"""``pneumo assignments build|grade|list``: the instructor's side of the classroom assignments."""

from __future__ import annotations

import argparse
from pathlib import Path

from pneumo_lib.assignments import grading, notebooks


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("assignments", help="build student notebooks and grade submissions")
    sub = parser.add_subparsers(dest="assignments_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build", help="write the student notebooks from the instructor source notebooks",
        description="Solutions are replaced by placeholders and hidden tests removed.",
    )
    build.add_argument("--source", default=None, metavar="DIR",
                       help=f"instructor notebooks (default: {notebooks.source_dir()})")
    build.add_argument("--out", default=None, metavar="DIR",
                       help=f"where student notebooks go (default: {notebooks.student_dir()})")
    build.add_argument("--no-solutions", action="store_true", help="turn qN.solution() off in the student notebooks")
    build.set_defaults(handler=_build)

    grade = sub.add_parser(
        "grade", help="grade a folder of submitted notebooks into a CSV and feedback files",
        description=("Each submission runs in its own bubblewrap sandbox (unprivileged user, no network, "
                     "read-only system, private /tmp, no instructor environment or files) with limits on "
                     "time, memory, CPU, processes and file size; the checks and hidden tests run outside "
                     "it, on the answers it returns. "
                     "SUBMISSIONS holds <student>.ipynb files or <student>/<name>.ipynb."),
    )
    grade.add_argument("submissions", metavar="SUBMISSIONS")
    grade.add_argument("--out", default="grades.csv", metavar="CSV", help="grades file (default: grades.csv)")
    grade.add_argument("--feedback", default=None, metavar="DIR", help="feedback folder (default: beside the CSV)")
    grade.add_argument("--assignment", default=None, choices=notebooks.ASSIGNMENT_IDS,
                       help="assignment of notebooks whose metadata does not say")
    grade.add_argument("--source", default=None, metavar="DIR", help="instructor notebooks (hidden tests)")
    defaults = grading.Limits()
    grade.add_argument("--cell-timeout", type=float, default=defaults.cell_seconds, metavar="S",
                       help=f"seconds per cell and per check (default {defaults.cell_seconds:g})")
    grade.add_argument("--timeout", type=float, default=defaults.total_seconds, metavar="S",
                       help=f"seconds per submission run (default {defaults.total_seconds:g})")
    grade.add_argument("--memory", type=int, default=defaults.memory_mb, metavar="MIB",
                       help=f"memory limit per submission in MiB (default {defaults.memory_mb})")
    grade.add_argument("--cpu", type=float, default=None, metavar="S",
                       help="CPU seconds per sandboxed process (default: the --timeout)")
    grade.add_argument("--processes", type=int, default=defaults.processes, metavar="N",
                       help=f"processes and threads per submission (default {defaults.processes})")
    grade.add_argument("--file-size", type=int, default=defaults.file_mb, metavar="MIB",
                       help=f"largest file a submission may write, MiB (default {defaults.file_mb})")
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="submissions graded at once (default 1)")
    grade.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade without bubblewrap: student code runs as you, can read and change your "
                            "files (every report says so); only for trusted submissions")
    grade.set_defaults(handler=_grade)

    listing = sub.add_parser("list", help="list the assignments, their questions and points")
    listing.set_defaults(handler=_list)


def _build(args: argparse.Namespace) -> int:
    for path in notebooks.build_student_notebooks(args.source, args.out, solutions=not args.no_solutions):
        print(f"wrote {path}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    for value, name in ((args.cell_timeout, "--cell-timeout"), (args.timeout, "--timeout"), (args.memory, "--memory"),
                        (args.cpu, "--cpu"), (args.processes, "--processes"), (args.file_size, "--file-size")):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}.")
    limits = grading.Limits(args.cell_timeout, args.timeout, args.memory, cpu_seconds=args.cpu,
                            processes=args.processes, file_mb=args.file_size)
    grading.grade_folder(args.submissions, args.out, assignment=args.assignment, sources=args.source,
                         feedback_dir=args.feedback, limits=limits, jobs=args.jobs,
                         unsafe_no_sandbox=args.unsafe_no_sandbox)
    print(f"grades: {Path(args.out).resolve()}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for aid in notebooks.ASSIGNMENT_IDS:
        a = notebooks.load_assignment(aid)
        print(f"{aid:<14} {a.title} ({a.minutes} min, {a.max_points:g} points)")
        for q in a.questions:
            print(f"  {q.qid}  {q.points:g}  {q.title}")
    return 0
