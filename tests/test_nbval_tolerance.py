"""``pneumo_lib.nbval_tolerance``: nbval's exact checks, and checks of numbers within a stated tolerance.

The end-to-end test runs pytest + nbval + the plugin (as ``make notebooks`` does) on one small
generated notebook in a real ipykernel: each cell's stored output is the reference, its code
prints the "new" output, and each cell's outcome and message are read from a JUnit report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from pneumo_lib.nbval_tolerance import PLACEHOLDER, parse_tolerance, split_numbers, within

ROOT = Path(__file__).resolve().parents[1]


def test_numbers_are_found_as_printed_and_digits_in_words_stay_text():
    text, found = split_numbers("AUC 0.93. TN 113, block5_conv 1,234,567 params, 83% of 64px, "
                                "v3.11.4, #1f77b4 1e-3 -0.5 '0.134'")
    assert text == (f"AUC {PLACEHOLDER}. TN {PLACEHOLDER}, block5_conv {PLACEHOLDER} params, "
                    f"{PLACEHOLDER} of 64px, v3.11.4, #1f77b4 {PLACEHOLDER} {PLACEHOLDER} '{PLACEHOLDER}'")
    assert [value for _, value in found] == [0.93, 113, 1234567, 0.83, 0.001, -0.5, 0.134]
    assert [printed for printed, _ in found][3] == "83%"


def test_tolerance_forms_and_bad_ones():
    assert parse_tolerance({"pneumo": {"tolerance": 0.05}}) == (0.05, 0.0)
    assert parse_tolerance({"pneumo": {"tolerance": {"abs": 5}}}) == (5.0, 0.0)
    assert parse_tolerance({"pneumo": {"tolerance": {"abs": 0.02, "rel": 0.1}}}) == (0.02, 0.1)
    for bad in ({}, {"pneumo": {}}, {"pneumo": {"tolerance": -1}}, {"pneumo": {"tolerance": "0.1"}},
                {"pneumo": {"tolerance": True}}, {"pneumo": {"tolerance": {"absolute": 1}}},
                {"pneumo": {"tolerance": {}}}):
        with pytest.raises(ValueError, match="tolerance"):
            parse_tolerance(bad)
    assert within(113, 116, (5, 0)) and not within(116, 110, (5, 0))
    assert within(0.93, 0.912, (0.02, 0.03)) and not within(0.134, 0.124, (0.005, 0))


def _cell(source, stdout=None, tags=(), tolerance=None, outputs=None):
    cell = nbformat.v4.new_code_cell(source, execution_count=1)
    if tags:
        cell.metadata["tags"] = list(tags)
    if tolerance is not None:
        cell.metadata["pneumo"] = {"tolerance": tolerance}
    if outputs is None:
        outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)] if stdout is not None else []
    cell.outputs = outputs
    return cell


def _record(text):
    """A glued value's output, as ``pneumo_lib.prose.glue`` writes it."""
    return nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": repr(text)},
        metadata={"scrapbook": {"name": "thr", "mime_prefix": "application/papermill.record/"}})


APPROX = ["nbval-approx"]
CELLS = {  # name: (cell, expected outcome, words the failure message must contain)
    "within": (_cell('print("AUC 0.912, TN 116, in 1.0 s")', "AUC 0.93, TN 113, in 12.5 s\n", APPROX,
                     {"abs": 0.02, "rel": 0.03}), "passed", []),
    "padding": (_cell('print(f"TN {101:>5}  AUC {-0.5:>6.2f}")', "TN    99  AUC   0.50\n", APPROX, {"abs": 2}),
                "passed", []),
    "outside": (_cell('print("threshold 0.124")', "threshold 0.134\n", APPROX, 0.005), "failed",
                ["::Cell 2", "reference 0.134, new 0.124", "tolerance 0.005"]),
    "words": (_cell('print("precision 0.90")', "accuracy 0.90\n", APPROX, 0.1), "failed",
              ["::Cell 3", "text around the numbers differs", "accuracy", "precision"]),
    "no_tolerance": (_cell('print("AUC 0.93")', "AUC 0.93\n", APPROX), "failed",
                     ["::Cell 4", "needs a tolerance"]),
    "exact_differs": (_cell('print("TN 114")', "TN 113\n", ["nbval-check-output"]), "failed", ["113", "114"]),
    "exact_same": (_cell('print("TN 113")', "TN 113\n", ["nbval-check-output"]), "passed", []),
    "unchecked": (_cell('print("TN 999")', "TN 113\n"), "passed", []),
    "glue_html_percent": (_cell(
        "from pneumo_lib import prose\nfrom IPython.display import HTML, display\n"
        '_ = prose.glue("thr", 0.1341, ".3f")\ndisplay(HTML("<td>0.97</td><td>85%</td>"))',
        tags=APPROX, tolerance=0.03,
        outputs=[_record("0.136"), nbformat.v4.new_output(
            "display_data", data={"text/html": "<td>0.95</td><td>83%</td>",
                                  "text/plain": "<IPython.core.display.HTML object>"})]),
        "passed", []),
    "glue_outside": (_cell('from pneumo_lib import prose\n_ = prose.glue("thr", 0.1241, ".3f")', tags=APPROX,
                           tolerance={"abs": 0.005}, outputs=[_record("0.134")]),
                     "failed", ["::Cell 9", "application/papermill.record/text/plain", "reference 0.134, new 0.124"]),
    "both_tags": (_cell('print("TN 113")', "TN 113\n", ["nbval-check-output", "nbval-approx"], 5), "failed",
                  ["::Cell 10", "choose one"]),
}


def test_approx_and_exact_cells_under_nbval(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell for cell, _, _ in CELLS.values()]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "pneumo_lib.nbval_tolerance",
         "--nbval-sanitize-with", str(ROOT / "book" / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
         "-o", "addopts=", f"--junitxml={report}", "--rootdir", str(tmp_path), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stdout + proc.stderr
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes = {}
    for case in cases:
        failure = case.find("failure")
        outcomes[case.get("name")] = ("failed", failure.text or "") if failure is not None else ("passed", "")
    assert len(outcomes) == len(CELLS), proc.stdout
    for number, (name, (_, expected, words)) in enumerate(CELLS.items()):
        outcome, message = outcomes[f"Cell {number}"]
        assert outcome == expected, f"{name}: {outcome}\n{message}"
        for word in words + (["tiny.ipynb"] if expected == "failed" and name != "exact_differs" else []):
            assert word in message, f"{name}: {word!r} not in\n{message}"
