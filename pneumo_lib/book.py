"""The chapter runner: execute the book's notebooks with papermill, in place, safely.

The chapters are listed in ``_toc.yml``; each chapter notebook may carry a time
budget in its metadata (``{"pneumo": {"budget_seconds": 180}}``). The runner

* executes each chosen chapter into a temporary file beside it, with the chosen
  profile and any single-value overrides injected into its ``parameters`` cell,
* replaces the stored notebook only when the whole chapter succeeded (a failing
  chapter leaves the previously stored notebook untouched and names the cell),
* reports the wall time of every chapter against its budget as a table.
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pneumo_lib import prose
from pneumo_lib.profiles import PROFILES


class ChapterError(RuntimeError):
    """A chapter could not be found or failed to execute."""


@dataclass(frozen=True)
class Chapter:
    """One executable chapter of the book.

    Attributes:
        name: The notebook's stem, e.g. ``"00_getting_started"``.
        path: Absolute path of the ``.ipynb`` file.
        budget_seconds: Wall-time budget of a quick-profile run, or ``None``.
    """

    name: str
    path: Path
    budget_seconds: float | None


@dataclass(frozen=True)
class ChapterRun:
    """The result of executing one chapter: its wall time against its budget."""

    chapter: Chapter
    seconds: float

    @property
    def over_budget(self) -> bool:
        """True when the chapter has a budget and took longer than it."""
        budget = self.chapter.budget_seconds
        return budget is not None and self.seconds > budget


def find_book_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``_toc.yml``: ``start`` (default: cwd) or its nearest parent.

    Raises:
        ChapterError: No ``_toc.yml`` above ``start``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise ChapterError(
        f"No _toc.yml found in {here} or any parent folder. Run this inside the book's "
        "checkout or pass --root."
    )


def _toc_files(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if "file" in node:
            yield str(node["file"])
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def list_chapters(root: str | os.PathLike[str] | None = None) -> list[Chapter]:
    """The notebook chapters of the book in table-of-contents order.

    Args:
        root: The book root (the folder with ``_toc.yml``); found from cwd if ``None``.
    """
    import yaml

    book_root = find_book_root(root)
    toc = yaml.safe_load((book_root / "_toc.yml").read_text(encoding="utf-8"))
    chapters = []
    for entry in [toc.get("root"), *_toc_files(toc.get("parts") or toc.get("chapters") or [])]:
        if not entry:
            continue
        path = book_root / entry
        if path.suffix != ".ipynb":
            path = path.with_suffix(".ipynb")
        if not path.is_file():
            continue  # a Markdown page, not an executable chapter
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        budget = meta.get("pneumo", {}).get("budget_seconds")
        chapters.append(Chapter(path.stem, path, float(budget) if budget is not None else None))
    return chapters


def select_chapters(names: Iterable[str], chapters: list[Chapter]) -> list[Chapter]:
    """Pick chapters by stem, by unique prefix (``"01"``) or by file path.

    Raises:
        ChapterError: A name matches no chapter or several; lists the valid names.
    """
    names = list(names)
    if not names:
        return list(chapters)
    chosen = []
    for name in names:
        stem = Path(name).stem
        matches = [c for c in chapters if c.name == stem] or [
            c for c in chapters if c.name.startswith(stem)
        ]
        if len(matches) != 1:
            valid = ", ".join(c.name for c in chapters)
            what = "matches several chapters" if matches else "is not a chapter"
            raise ChapterError(f"{name!r} {what}. Valid chapters: {valid}.")
        chosen.append(matches[0])
    return chosen


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and default values assigned in a notebook's ``parameters`` cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            found: dict[str, Any] = {}
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    if isinstance(target, ast.Name):
                        try:
                            found[target.id] = ast.literal_eval(node.value)
                        except ValueError:
                            found[target.id] = ast.unparse(node.value)
            return found
    raise ChapterError(f"{path.name} has no cell tagged 'parameters'; every chapter needs one.")


def _write_without_injected_cells(source: Path, target: Path) -> None:
    """Copy a notebook, dropping the parameters a previous run injected."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb["cells"] = [
        c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _strip_run_metadata(path: Path) -> None:
    """Drop papermill's per-cell timestamps so re-runs do not churn the stored files."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run_chapter(chapter: Chapter, parameters: dict[str, Any], *, kernel_name: str | None = None) -> ChapterRun:
    """Execute one chapter in place with papermill.

    Only parameters whose value differs from the chapter's declared default are
    injected, so a quick-profile run stores a notebook without an injected cell.

    Raises:
        ChapterError: The chapter failed; the message names the cell and the error,
            and the stored notebook is left as it was.
    """
    import papermill

    declared = declared_parameters(chapter.path)
    inject = {k: v for k, v in parameters.items() if k in declared and declared[k] != v}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # A stored chapter never contradicts its text: a false prose.claim stops it.
    os.environ[prose.CLAIMS_ENV] = "strict"
    # A headless MPLBACKEND=Agg (common on servers and CI) would make plt.show() draw
    # nothing and silently drop every figure from the stored chapter.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{chapter.name}.", suffix=".ipynb", dir=chapter.path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _write_without_injected_cells(chapter.path, tmp)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(tmp),
            str(tmp),
            parameters=inject,
            cwd=str(chapter.path.parent),
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
        )
    except papermill.PapermillExecutionError as err:
        tmp.unlink(missing_ok=True)
        raise ChapterError(
            f"Chapter {chapter.name} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The stored notebook {chapter.path} was left unchanged."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    _strip_run_metadata(tmp)
    os.replace(tmp, chapter.path)
    return ChapterRun(chapter, seconds)


def _say(message: str) -> None:
    print(message, flush=True)


def format_report(runs: list[ChapterRun], profile: str) -> str:
    """A plain-text table of chapter wall times against budgets."""
    width = max([len("chapter")] + [len(r.chapter.name) for r in runs])
    lines = [
        f"Chapter times (profile {profile}):",
        f"  {'chapter':<{width}}  {'seconds':>8}  {'budget':>8}  status",
    ]
    for run in runs:
        budget = run.chapter.budget_seconds
        status = "OVER BUDGET" if run.over_budget else "ok"
        budget_text = f"{budget:8.0f}" if budget is not None else f"{'-':>8}"
        lines.append(f"  {run.chapter.name:<{width}}  {run.seconds:8.1f}  {budget_text}  {status}")
    total = sum(r.seconds for r in runs)
    lines.append(f"  {'total':<{width}}  {total:8.1f}")
    return "\n".join(lines)


def run_book(
    names: Iterable[str] = (),
    *,
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    echo: Any = None,
) -> list[ChapterRun]:
    """Execute chapters (all, by default) with a profile; print progress and a report.

    Args:
        names: Chapter stems, unique prefixes or paths; empty means every chapter.
        profile: A profile name (validated against :data:`pneumo_lib.profiles.PROFILES`).
        overrides: Single parameter values to inject, e.g. ``{"epochs": 2}``. Each must
            be declared by at least one chosen chapter's parameters cell.
        root: The book root; found from cwd if ``None``.
        kernel_name: Jupyter kernel; default: the notebook's own.
        echo: Where progress lines go (default: stdout, flushed).

    Returns:
        One :class:`ChapterRun` per executed chapter, in order.

    Raises:
        ValueError: Unknown profile.
        ChapterError: Unknown chapter, undeclared override, or a failing chapter
            (the chapters before it keep their new outputs; it and those after it
            keep their stored ones).
    """
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILES)}.")
    chosen = select_chapters(names, list_chapters(root))
    overrides = dict(overrides or {})
    declared_by_any = set()
    for chapter in chosen:
        declared_by_any |= set(declared_parameters(chapter.path))
    undeclared = sorted(set(overrides) - declared_by_any)
    if undeclared:
        raise ChapterError(
            f"No chosen chapter declares the parameter(s) {', '.join(undeclared)}. "
            f"Declared: {', '.join(sorted(declared_by_any))}."
        )
    parameters = {"profile": profile, **overrides}
    echo = echo or _say
    runs = []
    for chapter in chosen:
        echo(f"running {chapter.name} ...")
        run = run_chapter(chapter, parameters, kernel_name=kernel_name)
        echo(f"  done in {run.seconds:.1f} s")
        runs.append(run)
    echo(format_report(runs, profile))
    return runs
