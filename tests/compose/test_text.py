"""Cleaning and truncation: plain examples, then properties over arbitrary text."""

from __future__ import annotations

import unicodedata

import regex
from hypothesis import given
from hypothesis import strategies as st

from digest.compose.text import (
    clean_line,
    graphemes,
    is_furniture,
    paragraphs,
    single_line,
    truncate,
)

UNSAFE = regex.compile(r"[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_paragraphs_split_blocks_and_skip_captions() -> None:
    html = (
        "<figure><img src='x.jpg'><figcaption>A caption</figcaption></figure>"
        "<p>First &amp; foremost — “quoted”.</p><div>Second</div>Loose<br><br>text"
    )
    assert paragraphs(html) == ["First & foremost — “quoted”.", "Second", "Loose text"]


def test_plain_text_blank_lines_are_paragraphs() -> None:
    assert paragraphs("One.\n\nTwo.") == ["One.", "Two."]


def test_furniture_is_recognised() -> None:
    for text in (
        "Follow us on social",
        "The post Chile signs a pact appeared first on The Meridian Review.",
        "Continue reading",
        "Shutterstock_645187786-scaled",
        "photo_2024.jpg",
        "By Nadia Petrenko",
    ):
        assert is_furniture(text), text
    assert not is_furniture("By most measures the talks went well and everyone was pleased.")
    assert is_furniture("Exact caption", also=("exact caption",))


def test_truncate_prefers_sentence_then_word() -> None:
    text = "The talks resumed on Monday. Delegates from both sides met for six hours."
    assert truncate(text, 40) == "The talks resumed on Monday."
    words = "Delegates from both sides met for six hours without a break"
    cut = truncate(words, 30)
    assert cut.endswith("…") and len(cut) <= 30 and " ".join(cut[:-1].split()) in words


def test_truncate_keeps_graphemes_whole() -> None:
    family = "👩\u200d👩\u200d👧"
    assert truncate(family * 10, 4) == family * 3 + "…"
    accented = "e\u0301" * 10
    out = truncate(accented, 5)
    assert graphemes(out)[:-1] == ["e\u0301"] * 4


def test_clean_line_strips_controls_and_bidi() -> None:
    assert clean_line("A\u202eB\r\nC\u2028D &amp; E\x00") == "A B C D & E"
    assert clean_line("Grain &amp;amp; gas") == "Grain & gas" == clean_line("Grain & gas")


def test_right_to_left_text_survives() -> None:
    phrase = "وقف إطلاق نار دائم"
    assert clean_line(phrase) == phrase
    assert truncate(phrase, 100) == phrase


@given(st.text(), st.integers(min_value=2, max_value=200))
def test_truncate_never_over_budget_never_splits(text: str, budget: int) -> None:
    out = truncate(text, budget)
    clusters = graphemes(out)
    assert len(clusters) <= budget
    if out != text:
        body = out.removesuffix("…")
        # Every cluster of the output is a cluster of the input (nothing split).
        assert "".join(graphemes(text)).startswith(body)


@given(st.text())
def test_clean_line_is_idempotent_and_safe(text: str) -> None:
    once = clean_line(text)
    assert clean_line(once) == once
    assert not UNSAFE.search(once)
    assert unicodedata.is_normalized("NFC", once)


@given(st.text(), st.integers(min_value=2, max_value=120))
def test_single_line_has_no_line_breaks(text: str, budget: int) -> None:
    out = single_line(text, budget)
    assert "\n" not in out and "\r" not in out and len(graphemes(out)) <= budget
