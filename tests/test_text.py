"""Text cleaning (digest.text): plain examples, then properties over arbitrary text."""

from __future__ import annotations

import unicodedata

import regex
from hypothesis import given
from hypothesis import strategies as st

from digest.text import (
    clean_header,
    clean_line,
    graphemes,
    is_furniture,
    paragraphs,
    single_line,
    text_direction,
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


def test_clean_header() -> None:
    assert clean_header(" a\r\n\tb\u2028c\x85d\u202ee ") == "a b c d e"


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


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_escaped_text_comes_back_with_no_entity_left(texts: list[str]) -> None:
    import html

    markup = "".join(f"<p>{html.escape(t)}</p>" for t in texts)
    assert paragraphs(markup) == [c for c in (clean_line(t) for t in texts) if c]


_TAGS = ["p", "div", "span", "em", "strong", "a", "li", "blockquote", "h2", "figure", "br"]
_PLAIN = st.text(alphabet=st.characters(blacklist_characters="<>&", blacklist_categories=["Cs"]))


@st.composite
def markup(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        if depth < 3 and draw(st.booleans()):
            tag = draw(st.sampled_from(_TAGS))
            attrs = ' href="https://example.org/x?a=1&amp;b=2"' if tag == "a" else ""
            parts.append(f"<{tag}{attrs}>{draw(markup(depth + 1))}</{tag}>")
        else:
            parts.append(draw(_PLAIN))
    return "".join(parts)


@given(markup(), st.integers(min_value=20, max_value=300))
def test_no_tag_survives_and_budget_holds(fragment: str, budget: int) -> None:
    for para in paragraphs(fragment):
        assert "<" not in para and ">" not in para and "&amp;" not in para
        assert len(graphemes(truncate(para, budget))) <= budget


def test_text_direction_follows_the_language_not_the_region() -> None:
    assert text_direction("ar") == "rtl"
    assert text_direction("he-IL") == "rtl"
    assert text_direction("FA") == "rtl"
    assert text_direction("en-US") == "ltr"
    assert text_direction("ur-PK") == "rtl"
    assert text_direction("fr") == "ltr"
