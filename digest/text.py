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
        r"^(the|this) (post|article|entry)\b.*\b(appeared first|first appeared) (on|in)\b",
        r"^(continue|keep) reading\b",
        r"^read (more|the full|the rest)\b",
        r"^(photo|image|credit|caption)\s*:",
        r"^by\s+\p{Lu}[\p{L}.'’-]+(\s+\p{Lu}[\p{L}.'’-]+){0,3}$",
        r"^[\w-]+\.(jpe?g|png|gif|webp)$",
        r"^[a-z]+_\d{5,}([_-][\w]+)?$",
        r"^(advertisement|sponsored)$",
    )
]

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "div", "li", "blockquote", "figure", "tr", *_HEADINGS}
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
        self.headings: set[int] = set()  # indexes of the paragraphs that are headings
        self._buf: list[str] = []
        self._skip = 0
        self._heading = False

    def _flush(self) -> None:
        text = clean_line("".join(self._buf))
        if text:
            if self._heading:
                self.headings.add(len(self.paragraphs))
            self.paragraphs.append(text)
        self._buf = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCKS:
            self._flush()
            self._heading = tag in _HEADINGS
        elif tag == "br":
            self._buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self._flush()
            self._heading = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buf.append(data)


def paragraphs(fragment: str) -> list[str]:
    """Plain-text paragraphs of an HTML fragment (block elements; double line breaks)."""
    return [text for text, _ in blocks(fragment)]


def blocks(fragment: str) -> list[tuple[str, bool]]:
    """``paragraphs`` of a fragment, each with whether it is a heading (``<h1>``…``<h6>``)."""
    parser = _Paragraphs()
    # Plain text with blank lines is common in thin feeds: treat them as paragraph breaks.
    parser.feed(regex.sub(r"\n\s*\n", "</p><p>", fragment))
    parser.close()
    parser._flush()
    return [(text, i in parser.headings) for i, text in enumerate(parser.paragraphs)]


def is_furniture(text: str, *, also: tuple[str, ...] = ()) -> bool:
    """Whether a paragraph is a caption, credit, share prompt or other page furniture."""
    if any(p.search(text) for p in _FURNITURE):
        return True
    folded = text.casefold()
    return any(a and folded == a.casefold() for a in also)


# Furniture inside a paragraph, removed wherever it stands; what follows it on the same paragraph
# goes too (a more-link's title and arrow, the blog's name).
_MORE = (
    r"continue reading|keep reading|read more|read the (?:full|rest)\b[^.!?]{0,40}|"
    r"more\s*…|weiterlesen|lire la suite|leer m[aá]s|continuar leyendo|leia mais|"
    r"continua a leggere|lees verder|czytaj dalej|l[äa]s mer|les mer|l[æa]s mere|"
    r"читать далее|続きを読む|阅读更多|閱讀更多"
)
# The marker of a cut: WordPress's "[…]" and its spellings, a bracketed "more".
_CUT_MARK = r"[\[(]\s*(?:…|\.{3}|&hellip;|more\s*…?)\s*[\])]"
_CUT = regex.compile(rf"\s*{_CUT_MARK}\s*", regex.IGNORECASE)
_CUT_AT_END = regex.compile(rf"{_CUT_MARK}\s*$", regex.IGNORECASE)
_SPACE_BEFORE_STOP = regex.compile(r"\s+(?=[.,;:!?])")
# A more-link starts a sentence of its own (the paragraph's start, after a sentence end or an
# ellipsis) and runs to the paragraph's end: its words, maybe the post's title, an arrow.
_MORE_LINK = regex.compile(
    rf"(?:^|(?<=[.!?:…\]])\s*|\s*(?=…|\.{{3}}))(?:…|\.{{3}})?\s*(?:{_MORE})\b"
    r"(?:(?![.!?]\s+\w).){0,160}?\s*[→»›>…]*\s*$",
    regex.IGNORECASE,
)
_POST_CREDIT = regex.compile(
    r"\s*\b(?:the|this) (?:post|article|entry)\b.{0,300}?"
    r"\b(?:appeared first|first appeared|was first published|originally appeared) (?:on|in)\b.*$",
    regex.IGNORECASE | regex.DOTALL,
)
# Markup that was escaped twice at the source and so survived as text ("&lt;a href=…&gt;").
_TAG_TEXT = regex.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_ENDS = regex.compile(r"[.!?…。！？؟।‼⁉][\"'”’»)\]」』】\u200f]*$")


def strip_furniture(text: str) -> tuple[str, bool]:
    """A paragraph without its inline furniture (``[…]``, "Continue reading →", "Read more",
    "The post … appeared first on …", markup left as text), and whether the source marked it
    as cut short (so it should end with an ellipsis)."""
    cut = False
    text = _SPACE_BEFORE_STOP.sub("", _TAG_TEXT.sub(" ", text))
    stripped = _POST_CREDIT.sub("", text)
    more = _MORE_LINK.search(stripped)
    if more and more.start() > 0:
        cut = "…" in more.group(0) or "..." in more.group(0)
        stripped = stripped[: more.start()]
    cut = cut or bool(_CUT_AT_END.search(stripped))
    stripped = _CUT.sub(" ", stripped)
    stripped = _SPACE.sub(" ", stripped).strip()
    if cut and stripped and not ends_sentence(stripped):
        stripped = stripped.rstrip(" ,;:—–-") + "…"
    return stripped, cut


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends at a sentence end or an ellipsis (any script's full stop)."""
    return bool(_ENDS.search(text.rstrip()))


def last_sentence_end(text: str) -> int:
    """The offset just past the last sentence end inside ``text`` (0 when none)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text + " ")]
    return ends[-1] if ends else 0


# Labels that name nothing a reader knows: numbers and ids, single characters, slugs
# ("uae-politics-diplomacy", "UAE-POLITICS-DIPLOMACY-SUMMIT", "img_0955"), file names. A
# capitalised compound ("Asia-Pacific", "COVID-19") or a short prefix ("e-commerce") is a word.
_SLUG = regex.compile(
    r"^(?:\S*_\S*"  # an underscore joins words only in identifiers
    r"|\p{Ll}[\p{Ll}\p{N}]+(?:-[\p{Ll}\p{N}]+)+"  # lower-case-words
    r"|[\p{Lu}\p{N}]+(?:-[\p{Lu}\p{N}]+){2,})$"  # UPPER-CASE-WORDS
)
_FILE_NAME = regex.compile(r"\.(?:jpe?g|png|gif|webp|avif|svg|bmp|tiff?|heic|mp4|pdf)$", regex.I)
_ID = regex.compile(
    r"^(?:[\p{N}\p{P}\p{S}\s]+|(?=\S*\d)[0-9a-f-]{8,}|(?:img|dsc|pxl|screenshot)\S*\d\S*)$",
    regex.IGNORECASE,
)


def is_junk_label(text: str) -> bool:
    """Whether a category or alt text is a slug, an id, a number, a file name or one character
    rather than words a reader can use."""
    text = text.strip()
    if len(graphemes(text)) < 2 or not regex.search(r"\p{L}", text):
        return True
    if _FILE_NAME.search(text) or _ID.match(text) or text.startswith(("http://", "https://")):
        return True
    return bool(_SLUG.match(text))


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
