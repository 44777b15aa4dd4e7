"""The book's prose cannot drift from its outputs: static checks of every chapter notebook in ``_toc.yml``.

* Every ``{glue:text}`name``` (``{glue}``, ``{glue:}``, ``{glue:any}``, ... and the ``glue``
  directives) in a markdown cell names a value glued in the same notebook's stored outputs.
* No number is typed into the markdown that the notebook's outputs also show: such a number is
  right only for the run that produced it (this machine, this profile). Glue it instead
  (``prose.glue(name, value, fmt)`` and ``{glue:text}`name```). What counts as a typed number:

  - a decimal (``0.97``): flagged when an output shows a number that rounds to it (printed with
    at least as many decimals; one-decimal numbers only when an output shows exactly that value);
  - a percentage (``83%``): flagged when an output shows the same percentage, or a fraction
    printed with at least two more decimals that rounds to it (``0.834`` for ``83%``);
  - an integer of 10 or more (``116``, ``1,291,265``), years 1900-2099 excepted: flagged when an
    output shows the same integer. Integers below 10 are never flagged.

  Not scanned: fenced code, inline code, roles (``{cite:p}`...```, ``{doc}`...```, glue), link
  targets and URLs, HTML tags. Scanned outputs: text of every code cell (streams, ``text/plain``,
  ``text/html`` without its tags, ``text/markdown``, glued values), error outputs excepted.
  Constants that are neither results nor profile-dependent (a literature value such as Kermany
  et al.'s 0.968, a layer width) go into the notebook's metadata allowlist,
  ``{"pneumo": {"prose_numbers_allowed": ["0.968", "256"]}}``, written as in the prose; an entry
  the prose or the outputs no longer contain is reported too, so the list stays small.
* Separately (a conversion's progress): no nbval comment markers (``# NBVAL_CHECK_OUTPUT`` and
  the like; use nbval's cell tags) in code cells, no nbval marker text in markdown, and every
  cell tagged ``nbval-approx`` has a valid tolerance (``pneumo_lib.nbval_tolerance``).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
import pytest
from _book_toc import ROOT, toc_files
from nbval.plugin import comment_markers

from pneumo_lib.nbval_tolerance import APPROX_TAG, parse_tolerance

GLUE_PREFIX = "application/papermill.record/"


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks ``_toc.yml`` lists, in its order (Markdown pages have no outputs to check)."""
    found = []
    for name in toc_files(root):
        path = root / name
        path = path if path.suffix else path.with_suffix(".ipynb")
        if path.suffix == ".ipynb" and path.exists():
            found.append(path)
    return found


NOTEBOOKS = toc_notebooks()
pytestmark = pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
IDS = [path.stem for path in NOTEBOOKS]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _where(path: Path, index: int, cell) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"{path.relative_to(ROOT)}, cell {index} ({cell.cell_type}: {first[:60]!r})"


def _unexecuted(path: Path, nb) -> list[str]:
    """A note when stored outputs are missing: the checks read them, so run the chapter first."""
    code = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    unrun = [cell for cell in code if cell.get("execution_count") is None]
    return ([f"note: {len(unrun)} of {len(code)} code cells of {path.relative_to(ROOT)} have not been run "
             f"(`pneumo book run {path.stem}` stores their outputs)"] if unrun else [])


# --------------------------------------------------------------------------- glue references

GLUE_ROLE = re.compile(r"\{glue(?::[\w-]*)?\}`([^`]+)`")
GLUE_DIRECTIVE = re.compile(r"^\s*(?:```+|:::+)\s*\{glue(?::[\w-]*)?\}\s+(\S+)", re.MULTILINE)


def glue_references(markdown: str) -> list[str]:
    """Names a markdown text cites with myst-nb's glue roles and directives (format specs dropped)."""
    names = [m.group(1) for m in GLUE_ROLE.finditer(markdown)] + \
        [m.group(1) for m in GLUE_DIRECTIVE.finditer(markdown)]
    return [name.split(":")[0].strip() if "::" not in name else name.strip() for name in names]


def glued_names(nb) -> set[str]:
    """Names glued in a notebook's stored outputs (myst-nb/scrapbook ``metadata.scrapbook.name``)."""
    names = set()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = (out.get("metadata") or {}).get("scrapbook", {}).get("name")
            if name:
                names.add(name)
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_glue_reference_names_a_value_glued_in_the_chapter(path):
    nb = _read(path)
    glued = glued_names(nb)
    missing = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for name in glue_references(cell.source):
            if "::" in name:  # {glue:text}`other_doc::name`: the other notebook's outputs
                doc, _, key = name.partition("::")
                other = (path.parent / doc).with_suffix(".ipynb")
                if other.exists() and key in glued_names(_read(other)):
                    continue
            elif name in glued:
                continue
            missing.append(f"{_where(path, index, cell)}: cites {name!r}, which no cell glues")
    assert not missing, "\n".join(missing + _unexecuted(path, nb))


# --------------------------------------------------------------------------- typed numbers

NUMBER = re.compile(
    r"(?<![\w.\u2212-])[-\u2212]?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w]|\.\d)(?P<pct>%?)")
FENCE = re.compile(r"^(```+|~~~+).*?^\1\s*$", re.MULTILINE | re.DOTALL)
ROLE = re.compile(r"\{[\w:.-]+\}`[^`]*`")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
HTML_TAG = re.compile(r"<[^>]+>")
DIRECTIVE_OPTION = re.compile(r"^\s*:[\w-]+:.*$", re.MULTILINE)


def prose_text(markdown: str) -> str:
    """A markdown cell's text with what is not prose removed (see the module doc)."""
    for pattern in (FENCE, ROLE, INLINE_CODE, LINK_TARGET, HTML_TAG, DIRECTIVE_OPTION):
        markdown = pattern.sub(" ", markdown)
    return html.unescape(markdown)


class Number:
    """A number as written: its value (a fraction for a percentage) and decimals shown."""

    def __init__(self, match: re.Match):
        self.text = match.group(0).lstrip("-\u2212")
        digits = match["digits"].replace(",", "")
        self.percent = bool(match["pct"])
        self.decimals = len(digits.split(".")[1]) if "." in digits else 0
        self.value = float(digits)

    @property
    def is_candidate(self) -> bool:
        if self.percent or self.decimals:
            return True
        return self.value >= 10 and not (1900 <= self.value <= 2099 and "," not in self.text)


def numbers(text: str) -> list[Number]:
    return [Number(m) for m in NUMBER.finditer(text)]


def output_text(nb) -> str:
    """All text a notebook's code cells show (what a reader sees next to the prose)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                continue
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            for mime, value in (out.get("data") or {}).items():
                if not isinstance(value, str):
                    continue
                if mime == "text/html":
                    parts.append(html.unescape(HTML_TAG.sub(" ", value)))
                elif mime in ("text/plain", "text/markdown") or mime.startswith(GLUE_PREFIX):
                    parts.append(value)
    return "\n".join(parts)


def shown_in(prose: Number, shown: list[Number]) -> bool:
    """Whether an output number is what ``prose`` states (see the module doc)."""
    for out in shown:
        if prose.percent:
            if out.percent and abs(out.value - prose.value) < 1e-9 and out.decimals >= prose.decimals:
                if round(out.value, prose.decimals) == prose.value:
                    return True
            if not out.percent and out.decimals >= prose.decimals + 2 \
                    and round(out.value * 100, prose.decimals) == prose.value:
                return True
        elif out.percent:
            continue
        elif prose.decimals == 0:
            if out.decimals == 0 and out.value == prose.value:
                return True
        elif prose.decimals == 1:
            if abs(out.value - prose.value) < 1e-9:
                return True
        elif out.decimals >= prose.decimals and round(out.value, prose.decimals) == round(prose.value, prose.decimals):
            return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_number_in_the_prose_is_typed_from_the_outputs(path):
    nb = _read(path)
    allowed = list((nb.metadata.get("pneumo") or {}).get("prose_numbers_allowed") or [])
    shown = numbers(output_text(nb))
    typed, used = [], set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        here = []
        for number in numbers(prose_text(cell.source)):
            if not number.is_candidate or not shown_in(number, shown):
                continue
            if number.text in allowed:
                used.add(number.text)
            elif number.text not in here:
                here.append(number.text)
        if here:
            typed.append(f"{_where(path, index, cell)}: typed {', '.join(here)}")
    written = {number.text for cell in nb.cells if cell.cell_type == "markdown"
               for number in numbers(prose_text(cell.source))}
    stale = [f"{path.relative_to(ROOT)}: prose_numbers_allowed lists {entry!r}, which "
             + ("no output shows (so it needs no allowance)" if entry in written else "the text no longer has")
             + "; remove it" for entry in allowed if entry not in used]
    hint = ([f"{len(typed)} markdown cell(s) type numbers that an output also shows: glue them "
             "(prose.glue(name, value, fmt) in the code, {glue:text}`name` in the text), or list a "
             'constant in the notebook metadata {"pneumo": {"prose_numbers_allowed": ["0.968", ...]}}']
            if typed else [])
    assert not typed + stale, "\n".join(hint + typed + stale + _unexecuted(path, nb))


# --------------------------------------------------------------------------- nbval markers

MARKER_COMMENT = re.compile(r"^\s*#\s*(%s)\s*$" % "|".join(map(re.escape, comment_markers)), re.MULTILINE)
MARKER_TEXT = re.compile(r"NBVAL_\w+|nbval-[\w-]+|%s" % "|".join(map(re.escape, comment_markers)),
                         re.IGNORECASE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbval_markers_are_tags_and_never_in_the_text(path):
    nb = _read(path)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for match in MARKER_COMMENT.finditer(cell.source):
                tag = match.group(1).lower().replace("_", "-")
                problems.append(f"{_where(path, index, cell)}: '# {match.group(1)}' comment; "
                                f"tag the cell {tag!r} instead (the reader sees comments)")
            tags = cell.metadata.get("tags") or []
            if APPROX_TAG in tags:
                try:
                    parse_tolerance(cell.metadata)
                except ValueError as err:
                    problems.append(f"{_where(path, index, cell)}: {err}")
        elif cell.cell_type == "markdown":
            for match in MARKER_TEXT.finditer(cell.source):
                problems.append(f"{_where(path, index, cell)}: the text shows the nbval marker {match.group(0)!r}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the rules themselves

def test_the_rules_on_a_made_up_chapter():
    text = prose_text("AUC 0.97 (Kermany: 0.968), 83% of 116 images at 64 px in 2018, "
                      "{glue:text}`auc`, `epochs=12`, [x](https://a.b/1234), 3x3, 0.5")
    found = {n.text for n in numbers(text) if n.is_candidate}
    assert found == {"0.97", "0.968", "83%", "116", "64", "0.5"}
    shown = numbers("auc 0.9734  recall 0.834  TN 116  size (64, 64, 1)  0.52  20.0% 1,291,265")
    by_text = {n.text: n for n in numbers(text)}
    assert shown_in(by_text["0.97"], shown) and shown_in(by_text["83%"], shown)
    assert shown_in(by_text["116"], shown) and shown_in(by_text["64"], shown)
    assert not shown_in(by_text["0.968"], shown) and not shown_in(by_text["0.5"], shown)
    assert shown_in(numbers("1,291,265")[0], shown) and shown_in(numbers("20%")[0], shown)
    assert glue_references("{glue:text}`auc` and {glue}`n:.2f` and {glue:}`x`\n```{glue:figure} fig\n```") \
        == ["auc", "n", "x", "fig"]
