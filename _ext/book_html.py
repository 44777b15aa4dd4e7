"""Sphinx extension for the book's HTML: MathJax from the book's own site, and each script once.

**MathJax without a CDN.**
MathJax 3 comes from the ``django-static-mathjax`` package on PyPI (pure static files, no
Django needed; listed in pyproject's ``book`` extras). ``_config.yml`` sets
``mathjax_path: mathjax/tex-mml-chtml.js`` (relative, so under ``_static/``) and this
extension copies what that file needs into ``_static/mathjax/`` of the built HTML: the
component, its TeX extensions (loaded on demand), its CHTML fonts, the menu and its
accessibility parts, and MathJax's licence.

**Each inline script once.** sphinx-thebe adds its configuration script (``const THEBE_JS_URL
= ...``) every time Sphinx reads sources, and Jupyter Book makes it read twice, so every page
declared the constant twice and raised a JavaScript error; identical inline scripts are kept
once per page.

Enabled in ``_config.yml`` under ``sphinx.local_extensions``; ``tests/test_book_pages.py``
checks the result in a browser.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

#: What tex-mml-chtml.js loads, relative to MathJax's es5/ folder.
PARTS = ("tex-mml-chtml.js", "input/tex", "output/chtml", "ui", "a11y")
TARGET = Path("_static") / "mathjax"


def mathjax_source() -> Path:
    """MathJax's es5/ folder as installed by django-static-mathjax."""
    try:
        import mathjax  # the django-static-mathjax package
    except ImportError:
        raise ExtensionError("The book serves MathJax itself: pip install django-static-mathjax "
                             "(pyproject's `book` extras)") from None
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / PARTS[0]).is_file():
        raise ExtensionError(f"django-static-mathjax has no {PARTS[0]} under {source}")
    return source


def _check(app) -> None:
    mathjax_source()
    if str(app.config.mathjax_path).startswith(("http:", "https:", "//")):
        raise ExtensionError(f"mathjax_path is a URL ({app.config.mathjax_path}); the book serves "
                             f"MathJax itself: set it to {TARGET.relative_to('_static') / PARTS[0]}")


def _copy(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / TARGET
    for part in PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")


def _one_copy_of_each_inline_script(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        body = getattr(script, "attributes", {}).get("body") if not getattr(script, "filename", None) else None
        if body is not None:
            if body in seen:
                continue
            seen.add(body)
        kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("builder-inited", _check)
    app.connect("html-page-context", _one_copy_of_each_inline_script)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
