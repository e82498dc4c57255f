"""The plain-text part's layout helpers: wrapping at 76 columns without breaking URLs."""

from __future__ import annotations

import re
import textwrap

WIDTH = 76
_SPACE = re.compile(r"\s+")
_BLANK_RUNS = re.compile(r"\n{3,}")


def wrap(text: str, width: int = WIDTH, indent: str = "") -> str:
    """Fill ``text`` to ``width`` columns; continuation lines start with ``indent``.

    Long words are never split and hyphens are not break points, so a URL always stays on one
    line (it may then be longer than ``width``; a broken URL is worse than a long line).
    """
    wrapper = textwrap.TextWrapper(
        width=width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(wrapper.wrap(_SPACE.sub(" ", text).strip()))


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, exactly one final newline.

    The template stays readable when it need not count its own blank lines.
    """
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)) + "\n"
