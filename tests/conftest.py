"""Shared test set-up: keep everything the library writes inside a temporary home."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def pneumo_home(tmp_path, monkeypatch):
    """A fresh, empty PNEUMO_HOME (and no PNEUMO_DATA) for one test."""
    home = tmp_path / "pneumo-home"
    monkeypatch.setenv("PNEUMO_HOME", str(home))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    return home
