"""The editor's note: Markdown → sanitised HTML (nh3 allow-list) and → readable plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from digest.render import intro_html
from digest.render.intro import ALLOWED_TAGS, intro_text
from digest.render.links import is_web_url


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def _assert_inert(html: str) -> None:
    """Only allow-listed tags, only href attributes, and every href http(s) or mailto."""
    parsed = _parse(html)
    assert set(parsed.tags) <= ALLOWED_TAGS, parsed.tags
    for tag, name, value in parsed.attrs:
        assert (tag, name) == ("a", "href"), (tag, name, value)
        assert value and (is_web_url(value) or value.startswith("mailto:")), value


def test_blank_note_is_empty() -> None:
    assert intro_html("") == intro_html("  \n\n ") == ""
    assert intro_text("") == intro_text("\n \n") == ""


def test_bold_emphasis_links_and_lists_render() -> None:
    html = intro_html(
        "Hello **bold** and *soft*, a [link](https://x.org/a?b=1&c=2) and `code`.\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\nmail <editors@x.org>"
    )
    assert "<strong>bold</strong>" in html and "<em>soft</em>" in html
    assert '<a href="https://x.org/a?b=1&amp;c=2">link</a>' in html
    assert "<code>code</code>" in html
    assert re.search(r"<ul>\s*<li>one</li>\s*<li>two</li>\s*</ul>", html)
    assert re.search(r"<ol>\s*<li>first</li>\s*<li>second</li>\s*</ol>", html)
    assert re.search(r"<blockquote>\s*<p>quoted</p>\s*</blockquote>", html)
    assert '<a href="mailto:editors@x.org">editors@x.org</a>' in html
    _assert_inert(html)


def test_headings_become_bold_paragraphs() -> None:
    # The email's own h1–h3 are its outline; a note's heading must not compete with them.
    html = intro_html("# Big news\n\n## Smaller\n\ntext")
    assert html.startswith("<p><strong>Big news</strong></p> <p><strong>Smaller</strong></p>")
    assert "<h1" not in html and "<h2" not in html


def test_output_has_no_newlines() -> None:
    # MRML drops newline-only text between inline elements: "**a**\n*b*" would read "ab".
    html = intro_html("**a**\n*b*\n\n- x\n- y")
    assert "\n" not in html
    assert "<strong>a</strong> <em>b</em>" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "<script>alert(1)</script>",
        "text <script>alert(1)</script> more",
        '<img src="x" onerror="alert(1)">',
        "before <img src=x onerror=alert(1)> after",
        '<div onclick="alert(1)">\nraw block\n</div>',
        "<iframe src='https://evil.example'></iframe>",
        "<style>body{display:none}</style>",
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](  javascript:alert(1) )",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<javascript:alert(1)>",
        '[x](https://ok.example "title" onmouseover="alert(1)")',
        "![img](https://x.org/a.png) ![x](javascript:alert(1))",
        "</mj-text><mj-raw><script>alert(1)</script></mj-raw>",
        "<!-- a comment --> text",
        "[rel](/relative) [proto](//evil.example/x) [mail](mailto:)",
    ],
)
def test_hostile_markdown_comes_out_inert(markdown: str) -> None:
    html = intro_html(markdown)
    _assert_inert(html)
    # Escaped text ("&lt;img onerror=…&gt;") is inert and may stay visible; tags may not.
    lowered = html.lower()
    for bad in ("<script", "<img", "<div", "<iframe", "<style", "<mj-"):
        assert bad not in lowered, html
    assert 'href="javascript' not in lowered and 'href="data' not in lowered


def test_raw_html_is_shown_as_text_not_dropped() -> None:
    # An editor who typed "<or got wrong>" meant those characters; they must stay visible.
    html = intro_html("tell us what we missed <or got wrong> & we will <b>read</b> it")
    assert "&lt;or got wrong&gt; &amp; we will &lt;b&gt;read&lt;/b&gt; it" in html
    assert "<b>" not in html


def test_images_become_their_alt_text() -> None:
    assert intro_html("see ![a *map* of Geneva](https://x.org/m.png)") == (
        "<p>see a map of Geneva</p>"
    )


def test_plain_text_reads_well() -> None:
    text = intro_text(
        "## This week\n\n"
        "Two summits, **one report**, and a [long read on grain]"
        "(https://meridian.example.org/grain?a=1&b=2). A soft\nbreak.\n\n"
        "- first bullet\n- second bullet that is long enough to need a second line when "
        "wrapped at seventy-six\n\n"
        "1. one\n2. two\n\n"
        "> a quote\n\n"
        "Write to <editors@x.org> or see <https://x.org/>. Raw <b>html</b> & [x](javascript:y)"
    )
    assert text == (
        "This week\n"
        "\n"
        "Two summits, *one report*, and a long read on grain\n"
        "(https://meridian.example.org/grain?a=1&b=2). A soft break.\n"
        "\n"
        "- first bullet\n"
        "- second bullet that is long enough to need a second line when wrapped at\n"
        "  seventy-six\n"
        "\n"
        "1. one\n"
        "2. two\n"
        "\n"
        "> a quote\n"
        "\n"
        "Write to editors@x.org or see https://x.org/. Raw <b>html</b> &\n"
        "[x](javascript:y)"
    )
    for line in text.splitlines():
        assert len(line) <= 76 or "://" in line


def test_plain_text_never_breaks_a_url() -> None:
    url = "https://meridian.example.org/" + "a" * 90
    text = intro_text("word " * 14 + f"[here]({url}) and more words after it")
    assert any(f"({url})" in line for line in text.splitlines()), text
