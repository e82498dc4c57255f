"""Text cleaning (digest.text): plain examples, then properties over arbitrary text."""

from __future__ import annotations

import unicodedata

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from digest.text import (
    blocks,
    clean_header,
    clean_line,
    ends_sentence,
    graphemes,
    is_furniture,
    is_junk_label,
    paragraphs,
    single_line,
    strip_furniture,
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


def test_blocks_mark_headings() -> None:
    assert blocks("<h2>Key takeaways</h2><p>Text.</p>") == [
        ("Key takeaways", True),
        ("Text.", False),
    ]


def test_strip_furniture_says_where_the_source_was_cut() -> None:
    assert strip_furniture("Regular readers know […]") == ("Regular readers know…", True)
    assert strip_furniture("It is done. [...]") == ("It is done.", True)
    assert strip_furniture("One. […] Two.") == ("One. Two.", False)
    assert strip_furniture("So it goes … Continue reading Title: Part 1. →") == (
        "So it goes…",
        True,
    )
    assert strip_furniture("You can read more about it in my guide.") == (
        "You can read more about it in my guide.",
        False,
    )
    assert strip_furniture("Done. The post X first appeared on Y.") == ("Done.", False)
    # Markup escaped twice at the source survives as text: it goes too.
    assert strip_furniture('In reply to <a href="https://b.example/#c1">Ann</a>.') == (
        "In reply to Ann.",
        False,
    )


def test_sentence_ends_in_any_script() -> None:
    assert all(ends_sentence(t) for t in ("Done.", "“Done!”", "終わり。", "انتهى؟", "So…"))
    assert not any(ends_sentence(t) for t in ("5% in", "as follows:", "Key takeaways"))


@pytest.mark.parametrize(
    "label",
    ["1", "x", "2026-03-01", "uae-politics-diplomacy", "UAE-POLITICS-DIPLOMACY-SUMMIT",
     "img_0955", "Screenshot_20260206_054950", "photo.jpg", "4f3a9b2c1d", "↩",
     "https://i.example/1"],
)  # fmt: skip
def test_junk_labels(label: str) -> None:
    assert is_junk_label(label)


@pytest.mark.parametrize(
    "label", ["World", "Asia-Pacific", "COVID-19", "e-commerce", "Node.js", "ai", "Middle East"]
)
def test_real_labels(label: str) -> None:
    assert not is_junk_label(label)
