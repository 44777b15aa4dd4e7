"""The pages of the book, as ``_toc.yml`` lists them (shared by the book's tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(root: Path = ROOT) -> list[str]:
    """Every ``root``/``file`` entry of ``_toc.yml``, in its order, without duplicates
    (``book/intro``, ``book/00_getting_started``, ...; no suffix, as the TOC writes them)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return list(dict.fromkeys(files))
