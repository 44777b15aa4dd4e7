"""The one prediction rule (pneumo_lib.decision): known answers worked out by hand."""

import numpy as np
import pytest

from pneumo_lib import decision


class _Model:
    """Stands in for a Keras model: the rule only reads one attribute."""


def test_the_rule_is_p_at_or_above_the_threshold():
    p = np.array([0.0, 0.12, 0.13, 0.5, 0.99])
    assert decision.predicted_class(p, 0.13).tolist() == [0, 0, 1, 1, 1]
    assert decision.predicted_class(p, 0.5).tolist() == [0, 0, 0, 1, 1]


def test_softmax_rows_use_the_pneumonia_column_and_ties_go_to_pneumonia():
    rows = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    assert decision.predicted_class(rows, 0.5).tolist() == [0, 1, 1]
    assert decision.predicted_class(rows[:, 1:], 0.15).tolist() == [0, 1, 1]


def test_the_card_threshold_wins_over_the_default_and_an_explicit_one_over_both():
    model = _Model()
    assert decision.model_threshold(model) == 0.5
    decision.attach_threshold(model, {"evaluation": {"threshold": 0.134}})
    assert decision.model_threshold(model) == pytest.approx(0.134)
    assert decision.model_threshold(model, threshold=0.7) == 0.7
    assert decision.predict_classes(model, [0.2, 0.1]).tolist() == [1, 0]
    decision.attach_threshold(model, {})  # a card without an evaluation
    assert decision.model_threshold(model) == 0.5


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "high", None])
def test_a_threshold_outside_zero_one_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match="threshold"):
        decision.check_threshold(bad)


def test_bad_probability_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(N, 3\)|\(2, 3\)"):
        decision.pneumonia_probability(np.zeros((2, 3)))
