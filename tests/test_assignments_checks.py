"""The checks: right answers pass, wrong ones get a specific hint (never a crash), blanks are "not attempted"."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_lib import data
from pneumo_lib.assignments import CORRECT, INCORRECT, NOT_ATTEMPTED, ____, a1_data, core


def _check(question, **answers):
    return question.evaluate(answers)


def _weights_ok(labels):
    y = np.asarray(labels).astype(int)
    return {c: len(y) / (2 * np.sum(y == c)) for c in (0, 1)}


def _split_ok(records, val_fraction=0.15, seed=42):
    keys = data.splits.grouped_split(records, val_fraction, seed)
    val = [r for r in records if f"{r.label}/{r.patient}" in keys]
    return [r for r in records if f"{r.label}/{r.patient}" not in keys], val


# ----------------------------------------------------------------- the machinery


def test_blank_missing_and_not_implemented_mean_not_attempted(capsys):
    def todo(labels):
        raise NotImplementedError("your code here")

    for ns in ({}, {"compute_class_weights": ____}, {"compute_class_weights": todo}):
        r = a1_data.q1.evaluate(ns)
        assert (r.status, r.points, r.max_points) == (NOT_ATTEMPTED, 0, 2)
    compute_class_weights = ____  # noqa: F841 (read from this frame by check())
    a1_data.q1.check(locals())
    assert capsys.readouterr().out.startswith("q1: ○ Not attempted yet.")


def test_check_reads_the_callers_globals(capsys):
    globals()["compute_class_weights"] = _weights_ok
    try:
        a1_data.q1.check()
    finally:
        del globals()["compute_class_weights"]
    assert capsys.readouterr().out == "q1: ✔ Correct.\n"


def test_student_exceptions_become_incorrect_with_the_hint():
    def broken(labels):
        return {0: 1 / 0, 1: 1.0}

    r = _check(a1_data.q1, compute_class_weights=broken)
    assert r.status == INCORRECT and r.points == 0
    assert "Your code raised ZeroDivisionError: division by zero" in r.message and "Hint: Count each class" in r.message


# ----------------------------------------------------------------- assignment 1


@pytest.mark.parametrize("answer, message", [
    (lambda y: {0: 0.5, 1: 0.5}, "For "),
    (lambda y: {c: float(np.mean(np.asarray(y) == c)) for c in (0, 1)}, "the rarer class must get the larger weight"),
    (lambda y: {c: 2 * _weights_ok(y)[c] for c in (0, 1)}, "ratio of your weights is right but their scale is not"),
    (lambda y: [1.0, 2.0], "Return a dict {0: weight_normal, 1: weight_pneumonia}"),
    (lambda y: {c: len(y) / (2 * np.bincount(y)[c]) for c in (0, 1)}, "Your code raised TypeError"),
])
def test_wrong_class_weights_get_specific_hints(answer, message):
    r = _check(a1_data.q1, compute_class_weights=answer)
    assert r.status == INCORRECT and message in r.message, r.message


def test_right_answers_pass():
    assert _check(a1_data.q1, compute_class_weights=_weights_ok).status == CORRECT
    assert _check(a1_data.q2, split_by_patient=_split_ok).status == CORRECT


def _leaky(records, val_fraction=0.15, seed=42):
    rng = np.random.default_rng(seed)
    is_val = rng.random(len(records)) < val_fraction
    return [r for r, v in zip(records, is_val) if not v], [r for r, v in zip(records, is_val) if v]


def _unstratified(records, val_fraction=0.15, seed=42):
    train, val = _split_ok(records, val_fraction, seed)
    moved = [r for r in val if r.label == 0]  # all NORMAL validation patients go back to train
    return train + moved, [r for r in val if r.label == 1]


def _unseeded(records, val_fraction=0.15, seed=42):
    return _split_ok(records, val_fraction, int(np.random.default_rng().integers(1 << 30)))


@pytest.mark.parametrize("answer, message", [
    (_leaky, "patients have images in both train and val"),
    (_unstratified, "validation holds 0 of"),
    (lambda recs, f, s: (recs[: len(recs) // 2], recs[: len(recs) // 2]), "exactly one of train and val"),
    (lambda recs, f, s: [recs, []], "Return a pair (train_records, val_records)"),
    (_unseeded, "The same seed must give the same split"),
    (lambda recs, f, s: None, None),
])
def test_wrong_splits_get_specific_hints(answer, message):
    r = _check(a1_data.q2, split_by_patient=answer)
    if message is None:
        assert r.status == NOT_ATTEMPTED
    else:
        assert r.status == INCORRECT and message in r.message, r.message


def test_unseen_records_are_grouped_and_imbalanced():
    records = a1_data.unseen_records(5)
    labels = np.array([r.label for r in records])
    patients = {(r.label, r.patient) for r in records}
    assert 0.25 < labels.mean() < 0.9 and len(patients) == 75 and len(records) > 1.5 * len(patients)
    assert records != a1_data.unseen_records(6)


def test_leak_count_is_checked_against_the_data():
    manifest = data.naive_random_split(data.ensure_dataset("quick"), seed=42)
    train = {(r.label, r.patient) for r in manifest.records if r.split == "train"}
    val = {(r.label, r.patient) for r in manifest.records if r.split == "val"}
    truth = len(train & val)
    assert truth > 0
    assert _check(a1_data.q3, leaked_patients=truth).status == CORRECT
    assert _check(a1_data.q3, leaked_patients=np.int64(truth)).status == CORRECT
    assert "is not the number of patients" in _check(a1_data.q3, leaked_patients=truth + 1).message
    assert "whole number" in _check(a1_data.q3, leaked_patients=float(truth)).message


def test_solutions_switch_follows_environment_and_override(monkeypatch):
    monkeypatch.setenv("PNEUMO_SOLUTIONS", "off")
    assert not core.solutions_allowed()
    core.allow_solutions(True)
    try:
        assert core.solutions_allowed()
    finally:
        core.allow_solutions(None)
    monkeypatch.setenv("PNEUMO_SOLUTIONS", "on")
    assert core.solutions_allowed()
