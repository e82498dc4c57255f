"""Text cleaning shared by the stages: HTML to paragraphs, furniture, truncation, safe lines.

Below every stage: gather reads article pages with it, compose makes teasers and subjects with
it, render and the audience clean email header values with ``clean_header``. It imports no
stage.

Grapheme-safe: truncation never splits an emoji, a ZWJ sequence or a letter from its accents.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

import regex

# Control, line-separator and bidi-override characters never belong in a title or subject.
_UNSAFE = regex.compile(r"[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SPACE = regex.compile(r"\s+")
_GRAPHEME = regex.compile(r"\X")
_SENTENCE_END = regex.compile(r"[.!?…][\"'”’)\]]*(?=\s)")

# Paragraphs that are page furniture, not the lede.
_FURNITURE = [
    regex.compile(p, regex.IGNORECASE)
    for p in (
        r"^follow us\b",
        r"^share (this|on)\b",
        r"^(sign up|subscribe)\b.*newsletter",
        r"^the post\b.*\bappeared first on\b",
        r"^(continue|keep) reading\b",
        r"^read (more|the full|the rest)\b",
        r"^(photo|image|credit|caption)\s*:",
        r"^by\s+\p{Lu}[\p{L}.'’-]+(\s+\p{Lu}[\p{L}.'’-]+){0,3}$",
        r"^[\w-]+\.(jpe?g|png|gif|webp)$",
        r"^[a-z]+_\d{5,}([_-][\w]+)?$",
        r"^(advertisement|sponsored)$",
    )
]

_BLOCKS = {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "tr"}
_SKIP = {"figcaption", "script", "style", "noscript", "iframe", "svg", "button", "form", "aside"}


def clean_line(text: str) -> str:
    """Decode entities, drop unsafe characters, collapse whitespace, NFC. Idempotent."""
    # Feeds double-encode often ("&amp;amp;"): decode to a fixed point so a second pass is a no-op.
    for _ in range(4):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = _UNSAFE.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return unicodedata.normalize("NFC", text)


class _Paragraphs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] = []
        self._skip = 0

    def _flush(self) -> None:
        text = clean_line("".join(self._buf))
        if text:
            self.paragraphs.append(text)
        self._buf = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCKS:
            self._flush()
        elif tag == "br":
            self._buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buf.append(data)


def paragraphs(fragment: str) -> list[str]:
    """Plain-text paragraphs of an HTML fragment (block elements; double line breaks)."""
    parser = _Paragraphs()
    # Plain text with blank lines is common in thin feeds: treat them as paragraph breaks.
    parser.feed(regex.sub(r"\n\s*\n", "</p><p>", fragment))
    parser.close()
    parser._flush()
    return parser.paragraphs


def is_furniture(text: str, *, also: tuple[str, ...] = ()) -> bool:
    """Whether a paragraph is a caption, credit, share prompt or other page furniture."""
    if any(p.search(text) for p in _FURNITURE):
        return True
    folded = text.casefold()
    return any(a and folded == a.casefold() for a in also)


def graphemes(text: str) -> list[str]:
    return _GRAPHEME.findall(text)


def truncate(text: str, budget: int, *, ellipsis: str = "…") -> str:
    """At most ``budget`` graphemes: whole text, else cut at a sentence end, else a word
    boundary, else anywhere, adding an ellipsis when words were cut."""
    clusters: list[str] = []
    for match in _GRAPHEME.finditer(text):  # no further than needed: titles can be megabytes
        clusters.append(match.group())
        if len(clusters) > budget:
            break
    else:
        return text
    head = "".join(clusters[: max(0, budget - len(ellipsis))])
    ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
    # A sentence end in the last half of the budget reads better than a mid-sentence cut.
    if ends and ends[-1] >= len(head) // 2:
        return head[: ends[-1]].rstrip()
    cut = head.rstrip()
    space = max(cut.rfind(" "), cut.rfind("\u00a0"))
    if space > len(cut) // 2:
        cut = cut[:space]
    cut = cut.rstrip(" ,;:—–-")
    return cut + ellipsis


def single_line(text: str, budget: int) -> str:
    """A clean one-line string of at most ``budget`` graphemes (subjects, preheaders)."""
    return truncate(clean_line(text), budget)


# C0 and C1 controls (CR, LF, NEL, TAB...), line/paragraph separators and bidi overrides.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_HEADER_SPACE = re.compile(r"\s+")


def clean_header(value: str) -> str:
    """One line of text: unsafe characters become spaces, runs of spaces collapse."""
    return _HEADER_SPACE.sub(" ", _HEADER_UNSAFE.sub(" ", value)).strip()


# Languages written right to left (ISO 639 codes), for the `dir` of emails and pages.
_RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ps", "sd", "ug", "ur", "yi"}
)


def text_direction(lang: str) -> str:
    """``"rtl"`` for a language written right to left (``"ar"``, ``"he-IL"``), else ``"ltr"``."""
    return "rtl" if lang.split("-")[0].lower() in _RTL_LANGUAGES else "ltr"
