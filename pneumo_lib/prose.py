"""Prose that follows the outputs: values glued into the text, and claims the text makes, checked.

A chapter never types a computed number into its markdown. A code cell computes it and
*glues* it under a name::

    prose.glue("auc", result.metrics["roc_auc"], ".3f")

and the markdown cites it with myst-nb's role, ``{glue:text}`auc```, so the rendered book
shows this run's value on whatever machine, profile and data the chapter was executed
(:func:`glue` writes the same notebook output as ``myst_nb.glue(name, text, display=False)``,
without needing myst-nb in the kernel, e.g. on Colab).

A qualitative sentence ("the shortcut model fails on the clean test split") is backed by
:func:`claim` in the cell that computes its evidence: a re-run that breaks the sentence
stops the chapter with :class:`ClaimError` naming the claim, instead of printing a
contradiction under it.
"""

from __future__ import annotations

from typing import Any

#: Mime-type prefix myst-nb (and scrapbook) use for glued values that are not displayed.
GLUE_PREFIX = "application/papermill.record/"


class ClaimError(AssertionError):
    """A statement the chapter's text makes does not hold for this run's outputs."""


def format_value(value: Any, fmt: str | None = None) -> str:
    """``value`` as the text the book shows: ``format(value, fmt)``, or ``str(value)`` without ``fmt``.

    Args:
        value: A number, string, or anything ``format`` takes.
        fmt: A format spec such as ``".3f"``, ``".0%"``, ``"d"``, ``","``.

    Raises:
        ValueError: The format spec does not apply to the value (names both).
    """
    if fmt is None:
        return str(value)
    try:
        return format(value, fmt)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Cannot format {value!r} with {fmt!r}: {err}") from None


def glue(name: str, value: Any, fmt: str | None = None) -> None:
    """Store ``value``'s text under ``name`` for ``{glue:text}`name``` in the chapter's markdown.

    Args:
        name: A unique name in the notebook (letters, digits, ``_`` and ``-``).
        value: What to show; formatted with ``fmt`` (see :func:`format_value`).
        fmt: Optional format spec; the text is stored already formatted, so the markdown
            cites it as ``{glue:text}`name``` with no spec of its own.

    Returns nothing, so a cell may end with a ``glue`` call without displaying anything
    (the stored text is :func:`format_value` of the same arguments).

    Raises:
        ValueError: An empty or badly formed ``name``, or a format that does not apply.
    """
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"A glue name takes letters, digits, '_' and '-' only; got {name!r}.")
    text = format_value(value, fmt)
    from IPython.display import display

    display({f"{GLUE_PREFIX}text/plain": repr(text)}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})


def claim(condition: Any, statement: str) -> None:
    """Stop the chapter when a statement its text makes is false for this run.

    Args:
        condition: The evidence, truthy when the statement holds.
        statement: The sentence as the text makes it, e.g. ``"Grad-CAM beats both baselines"``.

    Raises:
        ClaimError: ``condition`` is falsy; the message quotes the statement.
    """
    if not condition:
        raise ClaimError(
            f"The chapter's text says: {statement!r}, but this run's outputs do not support it. "
            "Re-read the outputs above and rewrite the text (or fix the experiment) before publishing.")
