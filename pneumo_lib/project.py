"""Where the project lives: the one place for the repository URL and the pinned git ref.

Everything that points readers at the repository agrees with these constants, and
``tests/test_project_links.py`` checks that it does:

* ``pyproject.toml``: ``[project.urls] Homepage`` is :data:`REPOSITORY`;
* ``_config.yml``: ``repository.url`` is :data:`REPOSITORY` (the book's repository, issue
  and edit buttons, and its Colab launch buttons);
* ``README.md``: names :data:`REPOSITORY` and the install line :func:`pip_install_line`;
* every chapter (``book/*.ipynb``) and assignment notebook
  (``pneumo_lib/assignments/{source,student}/*.ipynb``): the Colab setup cell runs
  exactly :func:`pip_install_line`, and the assignment pages' "on Colab" links open
  the notebooks at :data:`REF`.

:data:`REF` is a release tag (``v`` + the package version) or a 40-digit commit, never a
branch: a reader who opens a chapter next year installs the library the chapter was
executed with. Releasing means: bump ``pneumo_lib.__version__``, set :data:`REF` to the
new tag, re-execute the chapters, commit, and push the tag ``git tag v<version>``.

A fork changes :data:`REPOSITORY` here (and the three files above, which the test names
when they disagree); see the README's "Publishing a fork".
"""

from __future__ import annotations

import re

from pneumo_lib import __version__

#: The public GitHub repository of the book and the library (no trailing slash, no ``.git``).
REPOSITORY = "https://github.com/pneumo-lib/explainable-pneumonia"

#: The git ref the Colab install cells pin: the release tag of this version.
REF = f"v{__version__}"

#: The distribution name on the install line (``pyproject.toml``'s ``project.name``).
DISTRIBUTION = "pneumo-lib"

_TAG = re.compile(r"^v\d+\.\d+\.\d+([a-z0-9.+-]*)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_pinned(ref: str) -> bool:
    """Whether ``ref`` is a release tag (``v1.2.3``) or a full 40-hex-digit commit.

    ``is_pinned("v0.1.0") is True``, ``is_pinned("main") is False``,
    ``is_pinned("abc123") is False`` (abbreviated commits are ambiguous).
    """
    return bool(_TAG.match(ref) or _COMMIT.match(ref))


def requirement(ref: str = REF) -> str:
    """The pip requirement installing the library from the repository at ``ref``.

    ``requirement() == "pneumo-lib @ git+https://github.com/pneumo-lib/explainable-pneumonia@v0.1.0"``
    (for version 0.1.0).

    Raises:
        ValueError: ``ref`` is a branch name or an abbreviated commit, not a pinned ref.
    """
    if not is_pinned(ref):
        raise ValueError(
            f"git ref {ref!r} is not pinned: use a release tag like 'v{__version__}' or a full "
            "40-digit commit, never a branch (a branch moves under the readers)."
        )
    return f"{DISTRIBUTION} @ git+{REPOSITORY}@{ref}"


def pip_install_line(ref: str = REF) -> str:
    """The line of the Colab setup cells: ``%pip install --quiet "<requirement(ref)>"``."""
    return f'%pip install --quiet "{requirement(ref)}"'


def colab_url(path: str, ref: str = REF) -> str:
    """The "open in Colab" address of a notebook of the repository at ``ref``.

    ``colab_url("book/04_grad_cam.ipynb")`` ->
    ``"https://colab.research.google.com/github/pneumo-lib/explainable-pneumonia/blob/v0.1.0/book/04_grad_cam.ipynb"``.

    Raises:
        ValueError: ``ref`` is not pinned (see :func:`requirement`) or ``path`` is absolute.
    """
    requirement(ref)
    if path.startswith("/"):
        raise ValueError(f"path {path!r} must be relative to the repository root.")
    slug = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{slug}/blob/{ref}/{path}"
