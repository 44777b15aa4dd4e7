"""Helpers for the data tests: small generated datasets and a digest of a folder tree."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from pneumo_lib.data import phantom

#: Small enough to generate in about a second.
TINY_COUNTS = {"train": (6, 10), "val": (2, 2), "test": (3, 5)}


def make_tiny(root: Path, seed: int = 3, size: int = 64, shortcut: bool = False,
              counts: dict | None = None) -> Path:
    """Generate a tiny phantom dataset at ``root``; returns its chest_xray folder."""
    spec = replace(phantom.phantom_spec("tiny", seed, size=size, shortcut=shortcut),
                   counts=dict(counts or TINY_COUNTS))
    return phantom.generate_phantom(root, spec)


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha1 of bytes}`` of every file below ``folder`` (to prove nothing changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}
