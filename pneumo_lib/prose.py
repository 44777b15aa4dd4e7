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
contradiction under it. That is for the stored book: :data:`CLAIMS_ENV` set to ``strict``
(``pneumo book run`` sets it when it stores quick-profile chapters; the Makefile exports it).
A reader's own run (Colab, the full profile, other data) is never stopped by the text: an
unsupported claim is shown as a note under the cell that computed its evidence, saying what
the text says and that this run does not support it, and the chapter goes on.
"""

from __future__ import annotations

import os
from typing import Any

#: Environment variable: ``strict`` makes a false :func:`claim` stop the chapter; anything else
#: (or unset) shows a note and goes on.
CLAIMS_ENV = "PNEUMO_CLAIMS"
#: Key under an unsupported claim's output metadata (``{"pneumo": {UNSUPPORTED_KEY: statement}}``),
#: so runners can count them.
UNSUPPORTED_KEY = "unsupported_claim"

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


def strict_claims() -> bool:
    """True when a false :func:`claim` stops the chapter (:data:`CLAIMS_ENV` is ``strict``)."""
    return os.environ.get(CLAIMS_ENV, "").strip().lower() == "strict"


def claim(condition: Any, statement: str) -> None:
    """Check a statement the chapter's text makes against this run's outputs.

    Args:
        condition: The evidence, truthy when the statement holds.
        statement: The sentence as the text makes it, e.g. ``"Grad-CAM beats both baselines"``.

    Returns nothing (a cell may end with a claim and show nothing). When the statement is
    false and claims are not strict (a reader's run), a note is displayed under the cell: the
    text's statement and that this run's outputs do not support it (its output metadata carries
    ``{"pneumo": {"unsupported_claim": ...}}``).

    Raises:
        ClaimError: ``condition`` is falsy and :func:`strict_claims` is on (building the stored
            book); the message quotes the statement.
    """
    if condition:
        return
    if strict_claims():
        raise ClaimError(
            f"The chapter's text says: {statement!r}, but this run's outputs do not support it. "
            "Re-read the outputs above and rewrite the text (or fix the experiment) before publishing.")
    from IPython.display import display

    plain = (f"Note: the text of this chapter says {statement!r}, but this run's outputs do not "
             "support it. The text was written for the stored book's run (quick profile, phantom "
             "data); your run differs in data, profile or machine. Trust the outputs above.")
    markdown = (f"> **Note.** The text of this chapter says: *{statement}*. This run's outputs do not "
                "support it. The text was written for the stored book's run (quick profile, phantom "
                "data); your run differs in data, profile or machine: trust the outputs above.")
    display({"text/plain": plain, "text/markdown": markdown}, raw=True,
            metadata={"pneumo": {UNSUPPORTED_KEY: statement}})
