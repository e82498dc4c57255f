"""An article page's metadata: ``<meta>`` tags, JSON-LD, the publication time it states."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from digest.gather.feeds import clean_title


class Meta:
    """``<meta>`` values by lower-cased property/name/itemprop, first occurrence kept."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    @classmethod
    def read(cls, tree: Any) -> Meta:
        values: dict[str, str] = {}
        for element in tree.iter("meta"):
            key = (
                (element.get("property") or element.get("name") or element.get("itemprop") or "")
                .strip()
                .lower()
            )
            content = element.get("content")
            if key and content and key not in values:
                values[key] = content
        return cls(values)

    def first(self, *keys: str) -> str:
        for key in keys:
            value = clean_title(self.values.get(key, ""))
            if value:
                return value
        return ""


_JSONLD_LIMIT = 512 * 1024


def jsonld(tree: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the page's JSON-LD scripts (``@graph`` and lists flattened)."""
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        raw = script.text or ""
        if len(raw) > _JSONLD_LIMIT:
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        stack: list[tuple[Any, int]] = [(data, 0)]
        while stack:
            item, depth = stack.pop(0)
            if depth > 4:
                continue
            if isinstance(item, list):
                stack.extend((i, depth + 1) for i in item)
            elif isinstance(item, dict):
                yield item
                graph = item.get("@graph")
                if isinstance(graph, list):
                    stack.extend((i, depth + 1) for i in graph)


_ARTICLE_TYPES = re.compile(r"(Article|BlogPosting|Report|Posting)$")


def published(tree: Any, meta: Meta) -> datetime | None:
    """The publication time a page states (meta tags, JSON-LD, ``<time>``), aware.

    Only stated times: a date guessed from the text (trafilatura's htmldate does that) could
    be any date the article mentions. A value without a zone is taken as UTC.
    """
    candidates = [
        meta.values.get(k, "")
        for k in ("article:published_time", "og:published_time", "datepublished")
    ]
    for item in jsonld(tree):
        kinds = item.get("@type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if any(isinstance(k, str) and _ARTICLE_TYPES.search(k) for k in kinds):
            candidates.append(item.get("datePublished") or "")
    candidates += [meta.values.get(k, "") for k in ("pubdate", "publish-date", "date", "dc.date")]
    candidates += [t.get("datetime") or "" for t in tree.iter("time")][:1]
    for value in candidates:
        parsed = _parse_time(value) if isinstance(value, str) else None
        if parsed is not None:
            return parsed
    return None


def _parse_time(value: str) -> datetime | None:
    value = value.strip()
    if not value or len(value) > 64:
        return None
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed is None or not 1990 <= parsed.year <= 2200:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def authors(value: str | None) -> tuple[str, ...]:
    # trafilatura joins several authors with "; ".
    out: list[str] = []
    for name in (value or "").split(";"):
        name = clean_title(name)
        if name and name.casefold() not in (o.casefold() for o in out):
            out.append(name)
    return tuple(out)
