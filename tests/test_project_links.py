"""One place for the repository: every link and install line agrees with pneumo_lib.project."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from pneumo_lib import __version__, project

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    [*ROOT.glob("book/*.ipynb"), *ROOT.glob("pneumo_lib/assignments/source/*.ipynb"),
     *ROOT.glob("pneumo_lib/assignments/student/*.ipynb")]
)
GIT_INSTALL = re.compile(r"git\+https?://")


def test_the_constants_are_a_github_repository_and_a_pinned_ref():
    assert project.REPOSITORY == "https://github.com/pneumo-lib/explainable-pneumonia"
    assert not project.REPOSITORY.endswith(("/", ".git"))
    assert project.REF == f"v{__version__}" == "v0.1.0"
    assert project.is_pinned(project.REF)
    assert project.pip_install_line() == (
        '%pip install --quiet "pneumo-lib @ git+https://github.com/pneumo-lib/explainable-pneumonia@v0.1.0"'
    )
    assert project.colab_url("book/04_grad_cam.ipynb") == (
        "https://colab.research.google.com/github/pneumo-lib/explainable-pneumonia/blob/v0.1.0/book/04_grad_cam.ipynb"
    )
    import pneumo_lib

    assert pneumo_lib.REPOSITORY_URL == project.REPOSITORY


@pytest.mark.parametrize("ref", ["main", "master", "dev", "abc1234", "v1", ""])
def test_a_branch_or_an_abbreviated_commit_is_refused(ref):
    assert not project.is_pinned(ref)
    with pytest.raises(ValueError, match=f"git ref '{ref}' is not pinned"):
        project.requirement(ref)


def test_tags_and_full_commits_are_pinned():
    assert project.is_pinned("v0.4.0") and project.is_pinned("v1.2.3rc1")
    assert project.is_pinned("0123456789abcdef0123456789abcdef01234567")
    assert project.requirement("v0.4.0").endswith("explainable-pneumonia@v0.4.0")


def test_pyproject_homepage_and_issues_point_at_the_repository():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert urls["Homepage"] == project.REPOSITORY, "pyproject.toml [project.urls] Homepage"
    assert urls["Issues"] == f"{project.REPOSITORY}/issues", "pyproject.toml [project.urls] Issues"
    name = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    assert name == project.DISTRIBUTION


def test_the_book_configuration_points_at_the_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == project.REPOSITORY, "_config.yml repository.url"


def test_the_readme_names_the_repository_and_the_install_line():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert project.REPOSITORY in readme
    assert project.requirement() in readme
    stale = [m for m in re.findall(r"git\+https?://[^\s\"'`)]+", readme) if m != f"git+{project.REPOSITORY}@{project.REF}"]
    assert not stale, f"README.md installs from other places than pneumo_lib.project: {stale}"


def test_the_assignment_pages_open_the_notebooks_at_the_pinned_ref():
    pages = sorted((ROOT / "book" / "assignments").glob("a*.md"))
    assert len(pages) == 4
    for page in pages:
        links = re.findall(r"https://colab\.research\.google\.com/github/[^\s)]+", page.read_text(encoding="utf-8"))
        assert links, f"{page.name}: no Colab link"
        for link in links:
            path = link.split("/blob/", 1)[1].split("/", 1)[1]
            assert link == project.colab_url(path), f"{page.relative_to(ROOT)}: {link}"


def _install_lines(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        (index, line.strip())
        for index, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if GIT_INSTALL.search(line)
    ]


def test_there_are_notebooks_with_a_colab_setup_cell():
    assert len(NOTEBOOKS) == 18  # 10 chapters, 4 instructor sources, 4 student notebooks
    for path in NOTEBOOKS:
        assert _install_lines(path), f"{path.relative_to(ROOT)}: no `pip install ... git+https://...` line"


def test_every_notebook_installs_the_pinned_ref_of_the_repository():
    expected = project.pip_install_line()
    wrong = [
        f"{path.relative_to(ROOT)} cell {index}: {line}"
        for path in NOTEBOOKS
        for index, line in _install_lines(path)
        if line != expected
    ]
    assert not wrong, f"install lines must be exactly {expected!r}:\n" + "\n".join(wrong)
