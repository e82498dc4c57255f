"""Personal tokens: the placeholders a rendered variant carries, and swapping them per recipient.

A variant is compiled once; per recipient only these tokens change, by one regex pass over each
body. The sentinels are plain ASCII that Jinja's autoescape, MRML and css-inline all leave alone,
both in ``href`` attributes and in text (tests/render check that).

This module's regex is the only place that knows what a token looks like: ``cut`` splits a body
at its tokens once, and ``body_template`` hands providers a variant's bodies already cut
(:class:`~digest.models.BodyTemplate`), so they put their own substitution syntax in the tokens'
places without looking for tokens themselves.
"""

from __future__ import annotations

import html
import re

from digest.models import BodyTemplate, RenderedVariant

UNSUBSCRIBE = "%%UNSUBSCRIBE_URL%%"
PREFERENCES = "%%PREFERENCES_URL%%"
GREETING = "%%GREETING%%"
# Right after each click token, with per-subscriber click analytics on: the reader's part
# (``digest.render.clicks.reader_part``); empty for every copy that is nobody's.
READER = "%%READER%%"

TOKENS = (UNSUBSCRIBE, PREFERENCES, GREETING, READER)
# One group, so that ``split`` keeps the tokens (at the odd indexes of its result).
_TOKEN = re.compile("(" + "|".join(re.escape(t) for t in TOKENS) + ")")
# A name is one line of text: whatever the subscriber typed, it must not reshape the body.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def greeting(name: str) -> str:
    """The greeting line: ``Hello Zoë,`` or ``Hello,`` without a name."""
    clean = " ".join(_UNSAFE_NAME.sub(" ", name).split())
    return f"Hello {clean}," if clean else "Hello,"


def personalise(
    variant: RenderedVariant,
    *,
    unsubscribe_url: str,
    preferences_url: str,
    name: str,
    reader: str = "",
) -> tuple[str, str]:
    """``(html, text)`` of ``variant`` for one recipient.

    In the HTML the URLs are attribute-escaped (they sit in ``href="…"``) and the greeting is
    HTML-escaped; the text part takes them as they are. ``reader``: the recipient's part of
    each click link (empty: links that name nobody, as on the web version and in previews).
    """
    hello = greeting(name)
    html_values = {
        UNSUBSCRIBE: html.escape(unsubscribe_url, quote=True),
        PREFERENCES: html.escape(preferences_url, quote=True),
        GREETING: html.escape(hello, quote=True),
        READER: html.escape(reader, quote=True),
    }
    text_values = {
        UNSUBSCRIBE: unsubscribe_url,
        PREFERENCES: preferences_url,
        GREETING: hello,
        READER: reader,
    }
    out_html = _TOKEN.sub(lambda m: html_values[m.group(0)], variant.html)
    out_text = _TOKEN.sub(lambda m: text_values[m.group(0)], variant.text)
    return out_html, out_text


def cut(body: str) -> list[str]:
    """``body`` split at its tokens: literal text at the even indexes (empty strings included,
    so there is always one more literal than tokens), the tokens at the odd ones."""
    return _TOKEN.split(body)


def body_template(template_id: str, html: str, text: str) -> BodyTemplate:
    """A variant's bodies for providers that substitute per recipient, with their parts cut."""
    return BodyTemplate(
        id=template_id,
        html=html,
        text=text,
        html_parts=tuple(cut(html)),
        text_parts=tuple(cut(text)),
    )
