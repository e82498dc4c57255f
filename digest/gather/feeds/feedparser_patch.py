"""The one change made to feedparser: ``<media:description>`` kept apart from the summary.

feedparser 6 treats <media:description> as a plain <description>: it overwrites the entry's
summary (or pushes the real <description> into ``content``), and never exposes it as a
caption. We teach its Media RSS mixin to keep media:description apart, as a list
``media_description`` of {attributes..., "content": text} like ``media_credit``. This is a
process-wide change to feedparser, made once, on import of this package, on purpose; tests pin
the behaviour so that an upgrade that changes it is noticed.
"""

from __future__ import annotations

from typing import Any

import feedparser
from feedparser.namespaces import mediarss


def _start_media_description(self: Any, attrs_d: dict[str, str]) -> None:
    context = self._get_context()
    context.setdefault("media_description", []).append(feedparser.FeedParserDict(attrs_d))
    # expecting_text=0: pop() hands the text back without storing it anywhere else.
    self.push("digest_media_description", 0)


def _end_media_description(self: Any) -> None:
    text = self.pop("digest_media_description")
    if text is not None and str(text).strip():
        context = self._get_context()
        descriptions = context.get("media_description")
        if descriptions:
            descriptions[-1]["content"] = str(text)


mediarss.Namespace._start_media_description = _start_media_description
mediarss.Namespace._end_media_description = _end_media_description
