"""``pneumo book run|list``: execute the book's chapters with a profile."""

from __future__ import annotations

import argparse
import ast
from pneumo_lib import book
from pneumo_lib.profiles import PROFILES


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("book", help="execute or list the book's chapters")
    sub = parser.add_subparsers(dest="book_command", metavar="ACTION", required=True)

    run = sub.add_parser(
        "run",
        help="execute chapters (in place, or into --out DIR) with papermill and report their times",
        description=(
            "Execute chapters (all by default) with papermill. In place, each chapter is "
            "executed into a temporary file and replaces the stored notebook only on success. "
            "With --out DIR the executed notebooks go to DIR and book/ is never touched; "
            "--profile full --rehearse --out DIR rehearses the full profile on CPU."
        ),
    )
    run.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter name, prefix or path")
    run.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default: quick)")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
        help="override one parameter, e.g. --set epochs=2 (repeatable)",
    )
    run.add_argument("--root", default=None, help="book root (the folder with _toc.yml)")
    run.add_argument("--report", default=None, metavar="FILE", help="also write the timing table to FILE")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="write the executed chapters to DIR (book/ is left untouched; claims not strict)")
    run.add_argument("--rehearse", action="store_true",
                     help="with --profile full --out DIR: every code path of the full profile on CPU, "
                          "small sizes and counts, stand-in data and weights where the real ones are missing")
    run.add_argument("--no-t4-estimate", dest="t4_estimate", action="store_false",
                     help="with --rehearse: skip measuring this CPU for the Colab T4 estimate (a few "
                          "minutes); the trainings are still saved for benchmarks/colab_estimate.py")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="execute N chapters at a time (default 1), each after the chapters its metadata "
                          "names in pneumo.after; times then include sharing the CPU (not with --rehearse)")
    run.add_argument("--strict-budget", action="store_true", help="exit 1 when a chapter is over its budget")
    run.set_defaults(handler=_run)

    listing = sub.add_parser("list", help="list the chapters and their time budgets")
    listing.add_argument("--root", default=None, help="book root (the folder with _toc.yml)")
    listing.set_defaults(handler=_list)


def _parse_override(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--set takes NAME=VALUE, got {text!r}.")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def _run(args: argparse.Namespace) -> int:
    if args.strict_budget and args.jobs > 1:
        raise ValueError(f"--strict-budget compares each chapter with its budget for a run alone; with --jobs "
                         f"{args.jobs} the chapters share the CPU. Drop one of the two.")
    overrides = dict(_parse_override(item) for item in args.overrides)
    runs = book.run_book(args.chapters, profile=args.profile, overrides=overrides, root=args.root,
                         out=args.out, rehearse=args.rehearse, report=args.report,
                         t4_estimate=args.t4_estimate, jobs=args.jobs)
    if args.strict_budget and any(r.over_budget for r in runs):
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    for chapter in book.list_chapters(args.root):
        budget = f"{chapter.budget_seconds:.0f} s" if chapter.budget_seconds is not None else "-"
        after = f"  after {', '.join(chapter.after)}" if chapter.after else ""
        print(f"{chapter.name:<32} budget {budget}{after}")
    return 0
