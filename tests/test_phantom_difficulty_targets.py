"""The difficulty benchmark's verdict on the issue's two targets, on hand-made scores.

``benchmarks/phantom_difficulty.py`` trains models (minutes), so only its verdict is tested
here: the paper CNN inside [0.90, 0.97] on every seed, every model strictly below 0.99, and
four decimals so that 0.98974 is not printed as the ceiling it does not reach.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "phantom_difficulty", Path(__file__).resolve().parents[1] / "benchmarks" / "phantom_difficulty.py")
difficulty = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(difficulty)


def test_both_targets_met_just_below_the_ceiling():
    table = {"paper_cnn": [0.9123, 0.9320, 0.90], "project_b_cnn": [0.97, 0.98974, 0.98]}
    paper, ceiling = difficulty.target_report(table, [42, 1, 2])
    assert paper == "paper_cnn between 0.90 and 0.97 on every seed: met (0.9000 to 0.9320)"
    assert ceiling == "every model below 0.99: met (highest 0.9897, project_b_cnn on seed 1)"


def test_one_seed_outside_the_range_or_at_the_ceiling_misses():
    table = {"paper_cnn": [0.95, 0.891], "project_b_cnn": [0.99, 0.97]}
    paper, ceiling = difficulty.target_report(table, [42, 1])
    assert paper.startswith("paper_cnn between 0.90 and 0.97 on every seed: MISSED (0.8910 to 0.9500)")
    assert ceiling == "every model below 0.99: MISSED (highest 0.9900, project_b_cnn on seed 42)"


def test_without_the_paper_cnn_only_the_ceiling_is_judged():
    assert difficulty.target_report({"project_b_cnn": [0.95]}, [3]) == [
        "every model below 0.99: met (highest 0.9500, project_b_cnn on seed 3)"]
