"""prose: glued values in myst-nb's format, and claims that fail loudly when the book is built."""

import pytest

from pneumo_lib import prose


def test_glue_writes_the_record_myst_nb_reads_and_returns_the_text(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw, metadata: shown.append((obj, metadata)))
    assert prose.glue("auc", 0.99612, ".3f") is None  # a cell may end with it and show nothing
    obj, metadata = shown[0]
    assert obj == {"application/papermill.record/text/plain": "'0.996'"}
    assert metadata == {"scrapbook": {"name": "auc", "mime_prefix": "application/papermill.record/"}}
    # myst-nb's glue:text role literal-evals the stored text: the quotes go away.
    from myst_nb.core.variables import format_plain_text
    assert format_plain_text(obj["application/papermill.record/text/plain"], "") == "0.996"


@pytest.mark.parametrize("value, fmt, text", [(0.1234, ".0%", "12%"), (195, "d", "195"), (1500, ",", "1,500"),
                                              ("NORMAL", None, "NORMAL")])
def test_format_value_known_answers(value, fmt, text):
    assert prose.format_value(value, fmt) == text


def test_bad_names_and_formats_are_named():
    with pytest.raises(ValueError, match="'a b'"):
        prose.glue("a b", 1)
    with pytest.raises(ValueError, match="'d'"):
        prose.format_value("text", "d")


def test_a_false_claim_stops_the_book_build_with_the_statement(monkeypatch):
    monkeypatch.setenv(prose.CLAIMS_ENV, "strict")
    assert prose.claim(0.9 > 0.5, "holds") is None  # a cell may end with it and show nothing
    with pytest.raises(prose.ClaimError, match="beats both baselines"):
        prose.claim(0.2 > 0.5, "Grad-CAM beats both baselines")


def test_a_false_claim_in_a_readers_run_is_a_note_and_the_chapter_goes_on(monkeypatch):
    monkeypatch.delenv(prose.CLAIMS_ENV, raising=False)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw, metadata: shown.append((obj, metadata)))
    prose.claim(0.9 > 0.5, "holds")
    assert shown == []
    assert prose.claim(0.2 > 0.5, "Grad-CAM beats both baselines") is None
    (obj, metadata), = shown
    assert "Grad-CAM beats both baselines" in obj["text/markdown"]
    assert "do not support it" in obj["text/plain"]
    assert metadata == {"pneumo": {"unsupported_claim": "Grad-CAM beats both baselines"}}
