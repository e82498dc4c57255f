"""The editor's note: Markdown in, sanitised HTML for the email and plain text for the text part.

The note is written by a person, not fetched, but it is still treated as untrusted: raw HTML in
the Markdown is escaped by markdown-it (``html: False``), and the HTML it produces then passes
nh3 with an explicit allow-list, so nothing but simple prose markup and http(s)/mailto links can
reach the email. Only the result of ``intro_html`` may be marked safe in a template.

Headings come out as bold paragraphs (the email's own h1–h3 carry its outline) and images as
their alt text (an intro is a note, not a gallery; every image needs alt, size and a CDN URL).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from digest.render.links import is_web_url
from digest.render.text import WIDTH

ALLOWED_TAGS = frozenset({"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "code"})
ALLOWED_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})


def _heading_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return "<p><strong>"


def _heading_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return "</strong></p>\n"


def _image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return escapeHtml(self.renderInlineAsText(tokens[idx].children or [], options, env))


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
    md.add_render_rule("heading_open", _heading_open)
    md.add_render_rule("heading_close", _heading_close)
    md.add_render_rule("image", _image)
    return md


def _linkable(href: str) -> bool:
    return is_web_url(href) or (href.startswith("mailto:") and len(href) > len("mailto:"))


def _keep_attribute(tag: str, attr: str, value: str) -> str | None:
    # nh3 already checks the scheme; this also drops "mailto:" with no address and
    # scheme-relative "//host" links, which have no meaning in an email.
    if tag == "a" and attr == "href" and not _linkable(value):
        return None
    return value


def intro_html(markdown: str) -> str:
    """The editor's note as sanitised HTML ('' for a blank note). Pure.

    The result has no newlines: MRML drops newline-only text between inline elements inside
    an mj-text, which would glue "**a**\\n*b*" into "ab"; a space renders the same as a newline.
    """
    if not markdown.strip():
        return ""
    rendered = _markdown().render(markdown)
    clean = nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_keep_attribute,
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel=None,
        strip_comments=True,
    )
    return " ".join(clean.split("\n")).strip()


# Plain text -------------------------------------------------------------------------------------
def _inline_text(children: Sequence[Token]) -> str:
    """Inline tokens as text: links as "text (url)", bold as *text*, line breaks kept."""
    out: list[str] = []
    links: list[tuple[str, int]] = []
    for tok in children:
        if tok.type in {"text", "code_inline"}:
            out.append(tok.content)
        elif tok.type == "softbreak":
            out.append(" ")
        elif tok.type == "hardbreak":
            out.append("\n")
        elif tok.type in {"strong_open", "strong_close"}:
            out.append("*")
        elif tok.type == "link_open":
            links.append((str(tok.attrs.get("href", "")), len(out)))
        elif tok.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:]).strip()
            shown = href.removeprefix("mailto:")
            if _linkable(href) and shown != label:
                out.append(f" ({href})" if label else href)
        elif tok.type == "image":
            out.append(_inline_text(tok.children or []))
    return "".join(out)


def _fill(text: str, first: str, rest: str, width: int) -> list[str]:
    """Wrap ``text`` (hard breaks kept) without ever splitting a URL or a word."""
    lines: list[str] = []
    for n, part in enumerate(text.split("\n")):
        wrapper = textwrap.TextWrapper(
            width=width,
            initial_indent=first if n == 0 else rest,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.extend(wrapper.wrap(" ".join(part.split())) or [(first if n == 0 else rest)])
    return lines


def intro_text(markdown: str, width: int = WIDTH) -> str:
    """The editor's note as plain text for the text part ('' for a blank note). Pure.

    Paragraphs are wrapped at ``width``; list items get "- " or "1. " with a hanging indent;
    quotes get "> "; links read "text (url)"; bold is *text*; headings are lines of their own.
    """
    if not markdown.strip():
        return ""
    # (lines, the top-level list a tight item's paragraph belongs to, else 0)
    blocks: list[tuple[list[str], int]] = []
    serial = 0
    quote = 0
    numbers: list[int | None] = []  # per open list: the next number, None for bullets
    items: list[int] = []  # per open list item: the width of its marker
    marker = ""  # the marker of the list item whose first block is still to come
    tight = False
    for tok in _markdown().parse(markdown):
        if tok.type == "blockquote_open":
            quote += 1
        elif tok.type == "blockquote_close":
            quote -= 1
        elif tok.type in {"bullet_list_open", "ordered_list_open"}:
            if not numbers:  # a new top-level list
                serial += 1
            ordered = tok.type == "ordered_list_open"
            numbers.append(int(tok.attrs.get("start", 1) or 1) if ordered else None)
        elif tok.type in {"bullet_list_close", "ordered_list_close"}:
            numbers.pop()
        elif tok.type == "list_item_open":
            number = numbers[-1] if numbers else None
            marker = "- " if number is None else f"{number}. "
            if number is not None:
                numbers[-1] = number + 1
            items.append(len(marker))
        elif tok.type == "list_item_close":
            items.pop()
        elif tok.type in {"paragraph_open", "heading_open"}:
            tight = tok.hidden  # a tight list's paragraphs are hidden: no blank line between
        elif tok.type in {"inline", "code_block", "fence", "hr"}:
            prefix = "> " * quote
            hang = prefix + " " * sum(items)
            first = prefix + " " * sum(items[:-1]) + marker if marker else hang
            if tok.type == "inline":
                lines = _fill(_inline_text(tok.children or []), first, hang, width)
            elif tok.type == "hr":
                lines = [first + "* * *"]
            else:
                code = tok.content.rstrip("\n").split("\n")
                lines = [first + "    " + code[0]] + [hang + "    " + line for line in code[1:]]
            blocks.append((lines, serial if tok.type == "inline" and tight and items else 0))
            marker = ""
    parts: list[str] = []
    for n, (lines, tight_list) in enumerate(blocks):
        if n:
            parts.append("\n" if tight_list and tight_list == blocks[n - 1][1] else "\n\n")
        parts.append("\n".join(line.rstrip() for line in lines))
    return "".join(parts)
