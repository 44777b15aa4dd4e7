"""nbval checks that hold on any CPU: numbers from training compared with a stated tolerance.

TensorFlow trains to different weights on different CPU instruction sets, so a number that
comes out of training (an AUC, a threshold, a confusion count) is reproducible on one machine
but not across machines. nbval compares outputs exactly; this pytest plugin adds one tag:

* ``nbval-check-output`` (nbval's own tag): the cell's outputs are compared exactly, as nbval
  always does (after the ``--nbval-sanitize-with`` rules).
* ``nbval-approx``: the cell's outputs are compared too, but every number in them (in
  ``text/plain``, ``text/html``, stream text and glued
  ``application/papermill.record/text/plain`` values, in fact in every text output nbval
  compares) may differ from the stored one by the cell's tolerance; all text around the
  numbers must match exactly, except that a run of spaces counts as one (fixed-width columns
  pad numbers of different lengths differently). The tolerance is cell metadata::

      {"pneumo": {"tolerance": 0.05}}                       # |new - ref| <= 0.05
      {"pneumo": {"tolerance": {"abs": 0.02, "rel": 0.1}}}  # |new - ref| <= 0.02 + 0.1 * |ref|

  Integers compare with the same tolerance (a confusion count 113 vs 116 passes with
  ``{"abs": 5}``); a number printed with ``%`` is compared as a fraction (``83%`` is 0.83), so
  one tolerance fits both ways of printing a rate. Digits inside words (``block5_conv``,
  ``64px``, ``#1f77b4``) and dotted versions (``3.11.4``) are text, compared exactly.
  A tagged cell without a valid tolerance fails, naming the notebook and the cell. Failures
  name the cell as nbval's test id does, ``book/02_scratch_cnn.ipynb::Cell 12`` (code cells
  counted from 0), and each number outside its tolerance with the reference, the new value,
  their difference and the tolerance.

Use: ``pytest --nbval-lax -p pneumo_lib.nbval_tolerance book`` (``make notebooks`` does).

How it meets nbval 0.11: nothing in nbval is patched. When pytest collects an
:class:`nbval.plugin.IPyNbCell` tagged ``nbval-approx``, :func:`pytest_itemcollected` sets its
``options["check"]`` (as ``nbval-check-output`` would) and gives that one item an instance
attribute ``compare_outputs`` (:func:`_approx_compare`), which nbval's ``runtest`` calls instead
of the class method. The replacement masks every number (after nbval's sanitizers) and hands
the masked outputs to nbval's own ``compare_outputs`` (so the text, the set of output keys and
their number are compared, and reported, as nbval does), then compares the numbers it took out.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import nbformat
from nbval.plugin import IPyNbCell

#: The tag that asks for a comparison within the cell's tolerance.
APPROX_TAG = "nbval-approx"
#: What stands for a number in the masked text that is compared exactly (no digits in it,
#: so no sanitizer rule matches it).
PLACEHOLDER = "\u2039n\u203a"

# A number: optional sign, digits with optional thousands groups and decimals, optional
# exponent, optional percent sign; not preceded by a letter, digit, '_' or '.', and not
# followed by one (a sentence's full stop is allowed: '0.93.' ends with a number).
NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+\u2212]?)"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?(?![\w]|\.\d)(?P<pct>%?)")


# Runs of spaces and tabs: a column printed with a fixed width pads a shorter number with more
# spaces ("TN   99" vs "TN  101"), so the masked text keeps one space for any run.
SPACES = re.compile(r"[ \t]+")


def parse_tolerance(metadata: Any) -> tuple[float, float]:
    """``(abs, rel)`` from a cell's metadata ``{"pneumo": {"tolerance": ...}}``.

    Raises:
        ValueError: No tolerance, or not a non-negative number or ``{"abs": a, "rel": r}``
            (either key may be left out; unknown keys are refused).
    """
    pneumo = (metadata or {}).get("pneumo") or {}
    if "tolerance" not in pneumo:
        raise ValueError(
            f'a cell tagged "{APPROX_TAG}" needs a tolerance in its metadata, '
            '{"pneumo": {"tolerance": 0.05}} or {"pneumo": {"tolerance": {"abs": 0.02, "rel": 0.1}}}')
    tol = pneumo["tolerance"]

    def number(value, what):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"tolerance {what} must be a non-negative number, got {value!r}")
        return float(value)

    if isinstance(tol, dict):
        unknown = set(tol) - {"abs", "rel"}
        if unknown or not tol:
            raise ValueError(f'tolerance takes the keys "abs" and "rel", got {tol!r}')
        return number(tol.get("abs", 0.0), '"abs"'), number(tol.get("rel", 0.0), '"rel"')
    return number(tol, "value"), 0.0


def _value(match: re.Match) -> float:
    digits = match["digits"].replace(",", "")
    value = float(digits + (match["exp"] or ""))
    if match["sign"] in ("-", "\u2212"):
        value = -value
    return value / 100 if match["pct"] else value


def split_numbers(text: str) -> tuple[str, list[tuple[str, float]]]:
    """``text`` with every number replaced by :data:`PLACEHOLDER` (and runs of spaces and tabs
    by one space), and the numbers in order.

    Each number is ``(as printed, value)``; a percentage's value is a fraction.
    """
    found: list[tuple[str, float]] = []

    def keep(match: re.Match) -> str:
        found.append((match[0], _value(match)))
        return PLACEHOLDER

    return SPACES.sub(" ", NUMBER.sub(keep, text)), found


def within(ref: float, new: float, tol: tuple[float, float]) -> bool:
    """``|new - ref| <= abs + rel * |ref|`` (with a hair of float slack)."""
    abs_tol, rel_tol = tol
    bound = abs_tol + rel_tol * abs(ref)
    return abs(new - ref) <= bound + 1e-12 * max(1.0, abs(ref))


def _mask(item: IPyNbCell, outputs: list) -> tuple[list, list[tuple[str, list]]]:
    """Outputs with sanitized, number-masked text, and the numbers taken out (by key, in order)."""
    masked, numbers = [], []
    for out in outputs:
        new = dict(out)
        if out.get("output_type") == "stream" and isinstance(out.get("text"), str):
            new["text"], found = split_numbers(item.sanitize(out["text"]))
            numbers.append((out.get("name", "stream"), found))
        if isinstance(out.get("data"), dict):
            new["data"] = dict(out["data"])
            for mime, value in out["data"].items():
                if mime not in item.parent.skip_compare and isinstance(value, str):
                    new["data"][mime], found = split_numbers(item.sanitize(value))
                    numbers.append((mime, found))
        masked.append(nbformat.from_dict(new))
    return masked, numbers


def _where(item: IPyNbCell) -> str:
    return f"{item.parent.path}::Cell {item.cell_num}"


def _approx_compare(item: IPyNbCell, test: list, ref: list, skip_compare=None) -> bool:
    """nbval's ``compare_outputs`` for a cell tagged :data:`APPROX_TAG` (see the module doc)."""
    try:
        if "nbval-check-output" in (item.cell.metadata.get("tags") or []):
            raise ValueError(f'tagged both "nbval-check-output" and "{APPROX_TAG}": choose one')
        tol = parse_tolerance(item.cell.metadata)
    except ValueError as err:
        item.comparison_traceback = [f"{_where(item)}: {err}"]
        return False
    masked_test, test_numbers = _mask(item, test)
    masked_ref, ref_numbers = _mask(item, ref)
    # Text, keys and counts exactly, by nbval itself (it sets item.comparison_traceback).
    if not IPyNbCell.compare_outputs(item, masked_test, masked_ref, skip_compare):
        item.comparison_traceback.insert(
            0, f"{_where(item)}: the text around the numbers differs "
               f"(numbers are shown as {PLACEHOLDER}, compared within tolerance {_tol_text(tol)}):")
        return False
    by_key_test: dict[str, list] = defaultdict(list)
    by_key_ref: dict[str, list] = defaultdict(list)
    for key, found in test_numbers:
        by_key_test[key].extend(found)
    for key, found in ref_numbers:
        by_key_ref[key].extend(found)
    problems = []
    for key, ref_found in by_key_ref.items():
        for index, ((ref_text, ref_value), (new_text, new_value)) in enumerate(
                zip(ref_found, by_key_test[key])):
            if not within(ref_value, new_value, tol):
                problems.append(
                    f"{_where(item)} ({key}, number {index + 1}): reference {ref_text}, new {new_text}, "
                    f"|difference| {abs(new_value - ref_value):.6g} > tolerance {_tol_text(tol, ref_value)}")
    if problems:
        item.comparison_traceback = problems
        return False
    return True


def _tol_text(tol: tuple[float, float], ref: float | None = None) -> str:
    abs_tol, rel_tol = tol
    if not rel_tol:
        return f"{abs_tol:g}"
    text = f"abs {abs_tol:g} + rel {rel_tol:g}"
    return text + (f" x |{ref:g}| = {abs_tol + rel_tol * abs(ref):.6g}" if ref is not None else "")


def pytest_itemcollected(item):
    """Make a cell tagged ``nbval-approx`` a checked cell compared within its tolerance."""
    if not isinstance(item, IPyNbCell):
        return
    tags = item.cell.metadata.get("tags") or []
    if APPROX_TAG not in tags:
        return
    item.options["check"] = True
    item.compare_outputs = _approx_compare.__get__(item)
