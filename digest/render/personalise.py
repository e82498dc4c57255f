"""Personal tokens: the placeholders a rendered variant carries, and swapping them per recipient.

A variant is compiled once; per recipient only these tokens change, by one regex pass over each
body. The sentinels are plain ASCII that Jinja's autoescape, MRML and css-inline all leave alone,
both in ``href`` attributes and in text (tests/render check that).
"""

from __future__ import annotations

import html
import re

from digest.models import RenderedVariant

UNSUBSCRIBE = "%%UNSUBSCRIBE_URL%%"
PREFERENCES = "%%PREFERENCES_URL%%"
GREETING = "%%GREETING%%"

TOKENS = (UNSUBSCRIBE, PREFERENCES, GREETING)
_PATTERN = re.compile("|".join(re.escape(t) for t in TOKENS))
# A name is one line of text: whatever the subscriber typed, it must not reshape the body.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def greeting(name: str) -> str:
    """The greeting line: ``Hello Zoë,`` or ``Hello,`` without a name."""
    clean = " ".join(_UNSAFE_NAME.sub(" ", name).split())
    return f"Hello {clean}," if clean else "Hello,"


def personalise(
    variant: RenderedVariant, *, unsubscribe_url: str, preferences_url: str, name: str
) -> tuple[str, str]:
    """``(html, text)`` of ``variant`` for one recipient.

    In the HTML the URLs are attribute-escaped (they sit in ``href="…"``) and the greeting is
    HTML-escaped; the text part takes them as they are.
    """
    hello = greeting(name)
    html_values = {
        UNSUBSCRIBE: html.escape(unsubscribe_url, quote=True),
        PREFERENCES: html.escape(preferences_url, quote=True),
        GREETING: html.escape(hello, quote=True),
    }
    text_values = {UNSUBSCRIBE: unsubscribe_url, PREFERENCES: preferences_url, GREETING: hello}
    out_html = _PATTERN.sub(lambda m: html_values[m.group(0)], variant.html)
    out_text = _PATTERN.sub(lambda m: text_values[m.group(0)], variant.text)
    return out_html, out_text
