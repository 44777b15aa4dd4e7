"""The chapter runner on a tiny stand-in book: real papermill, real kernels."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from pneumo_lib import book


def _chapter(path: Path, body: str, budget: float | None = 30) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"\nepochs = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if budget is not None:
        nb.metadata["pneumo"] = {"budget_seconds": budget}
    nbformat.write(nb, path)


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: book/01_good\n      - file: book/02_broken\n      - file: book/notes\n"
    )
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "book" / "notes.md").write_text("# Notes\n")
    _chapter(tmp_path / "book" / "01_good.ipynb", "print(profile, epochs)", budget=30)
    _chapter(tmp_path / "book" / "02_broken.ipynb", "print('before')\n1 / 0", budget=None)
    return tmp_path


def _outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return ["".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_chapters_come_from_the_toc_in_order_with_budgets(tiny_book):
    chapters = book.list_chapters(tiny_book / "book")  # found from a sub-folder too
    assert [c.name for c in chapters] == ["01_good", "02_broken"]
    assert [c.budget_seconds for c in chapters] == [30.0, None]


def test_unknown_chapter_lists_valid_names(tiny_book):
    with pytest.raises(book.ChapterError, match=r"'03' is not a chapter. Valid chapters: 01_good, 02_broken"):
        book.run_book(["03"], root=tiny_book)


def test_unknown_profile_lists_valid_names(tiny_book):
    with pytest.raises(ValueError, match=r"Valid profiles: quick, full"):
        book.run_book(["01"], profile="huge", root=tiny_book)


def test_undeclared_override_is_refused(tiny_book):
    with pytest.raises(book.ChapterError, match=r"batch\b.*Declared: epochs, profile"):
        book.run_book(["01"], overrides={"batch": 4}, root=tiny_book)


def test_run_injects_only_non_default_parameters_and_reports(tiny_book):
    lines: list[str] = []
    runs = book.run_book(["01"], profile="full", overrides={"epochs": 2}, root=tiny_book, echo=lines.append)
    path = tiny_book / "book" / "01_good.ipynb"
    assert _outputs(path) == ["full 2\n"]
    nb = json.loads(path.read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert "papermill" not in nb["metadata"]
    assert len(runs) == 1 and runs[0].seconds > 0
    assert "01_good" in lines[-1] and "profile full" in lines[-1]

    book.run_book(["01_good"], profile="quick", root=tiny_book, echo=lines.append)
    nb = json.loads(path.read_text())
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert _outputs(path) == ["quick None\n"]


def test_failing_chapter_names_the_cell_and_keeps_the_stored_notebook(tiny_book):
    path = tiny_book / "book" / "02_broken.ipynb"
    before = path.read_bytes()
    with pytest.raises(book.ChapterError) as info:
        book.run_book(["01", "02"], root=tiny_book, echo=lambda _: None)
    message = str(info.value)
    assert "Chapter 02_broken failed in cell 2" in message
    assert "ZeroDivisionError" in message and "left unchanged" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["01_good.ipynb", "02_broken.ipynb", "intro.md", "notes.md"]


def test_report_flags_chapters_over_budget(tmp_path):
    fast = book.ChapterRun(book.Chapter("a", tmp_path / "a.ipynb", 10.0), 4.0)
    slow = book.ChapterRun(book.Chapter("b", tmp_path / "b.ipynb", 10.0), 12.5)
    free = book.ChapterRun(book.Chapter("c", tmp_path / "c.ipynb", None), 99.0)
    report = book.format_report([fast, slow, free], "quick").splitlines()
    assert report[2].split() == ["a", "4.0", "10", "ok"]
    assert report[3].split() == ["b", "12.5", "10", "OVER", "BUDGET"]
    assert report[4].split() == ["c", "99.0", "-", "ok"]
    assert report[5].split() == ["total", "115.5"]


def test_every_chapter_of_this_book_has_the_conventions():
    root = Path(__file__).resolve().parents[1]
    chapters = book.list_chapters(root)
    assert chapters, "the book has no executable chapters"
    for chapter in chapters:
        nb = json.loads(chapter.path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        setup = "".join(code[0]["source"])
        assert 'find_spec("google.colab")' in setup and "%pip install" in setup, chapter.name
        assert "parameters" in code[1]["metadata"].get("tags", []), chapter.name
        assert "profile" in book.declared_parameters(chapter.path), chapter.name
        assert chapter.budget_seconds is not None, f"{chapter.name} has no time budget"
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        for heading in ("## Overview", "## Prerequisites", "## Summary", "## Exercises"):
            assert heading in text, f"{chapter.name} lacks {heading}"
        assert all(not c.get("outputs") or c.get("execution_count") for c in code), f"{chapter.name} is not executed"


def test_cli_run_writes_the_timing_report(tiny_book, capsys):
    from pneumo_lib import cli

    report = tiny_book / "_build" / "times.txt"
    assert cli.main(["book", "run", "01", "--root", str(tiny_book), "--report", str(report)]) == 0
    lines = report.read_text().splitlines()
    assert lines[0] == "Chapter times (profile quick):"
    assert lines[2].split()[0] == "01_good" and lines[2].split()[-1] == "ok"
    assert "done in" in capsys.readouterr().out
