"""Feedparser-shaped entries → articles (RSS, Atom and JSON Feed items alike).

One normalisation for every format: an entry's canonical URL and stable id, a clean one-line
title, authors, UTC dates, categories, sanitised summary and content HTML and the lead image.
``ParsedFeed`` is what a parsed feed comes to.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from digest.gather.feeds.drafts import ArticleDraft
from digest.gather.feeds.images import _image, _media_texts
from digest.gather.feeds.normalise import (
    _http_or_none,
    _is_http,
    _text,
    _unique,
    article_id,
    canonical_url,
    cap_article,
    clean_title,
    sanitize_html,
)

if TYPE_CHECKING:
    from digest.models import Article


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed feed: its title, its articles in feed order, and what went wrong on the way."""

    title: str
    articles: list[Article]
    warnings: list[str] = field(default_factory=list)


def _articles(
    entries: list[Any],
    source: str,
    url: str,
    site: str | None,
    now: datetime,
    warnings: list[str],
    label: str,
    feed_title: str = "",
    max_items: int = 0,
) -> list[ArticleDraft]:
    """Articles from feedparser-shaped entries (RSS, Atom and JSON Feed items alike).

    Entries that cannot become an article, and repeats of an earlier one, are skipped with a
    warning rather than failing the feed. A category that is the feed's own title is dropped:
    it names the feed, not the article. With ``max_items`` (0: no cap), only the newest that
    many entries are read (a warning gives the counts).
    """
    articles: list[ArticleDraft] = []
    seen: set[str] = set()
    guid_counts: dict[str, int] = {}
    for entry in entries:
        guid = _text(entry.get("id")).strip() if isinstance(entry, Mapping) else ""
        if guid:
            guid_counts[guid] = guid_counts.get(guid, 0) + 1
    positions = _newest(entries, max_items)
    if len(positions) < len(entries):
        warnings.append(
            f"{label}: {len(entries)} items, more than the cap of {max_items} "
            f"(http.max_feed_items); kept the newest {max_items}, left out "
            f"{len(entries) - max_items}"
        )
    undated = 0
    for position in positions:
        entry = entries[position - 1]
        if not isinstance(entry, Mapping):
            warnings.append(f"{label}: entry {position} skipped (not an object)")
            continue
        try:
            article, dated = _article(entry, source, url, site, now, guid_counts, warnings, label)
            if article is not None and feed_title:
                own = feed_title.casefold()
                kept = tuple(c for c in article.categories if c.casefold() != own)
                if kept != article.categories:
                    article = article.model_copy(update={"categories": kept})
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            warnings.append(f"{label}: entry {position} skipped ({type(e).__name__}: {e})")
            continue
        if article is None:
            warnings.append(f"{label}: entry {position} skipped (neither a link nor a title)")
            continue
        if article.id in seen:
            warnings.append(f"{label}: entry {position} skipped (duplicate of {article.url})")
            continue
        seen.add(article.id)
        undated += not dated
        articles.append(article)
    if undated:
        warnings.append(
            f"{label}: {undated} entr{'y' if undated == 1 else 'ies'} without a date; "
            "dated at first sight"
        )
    return articles


def _article(
    entry: Mapping[str, Any],
    source: str,
    feed_url: str,
    site: str | None,
    now: datetime,
    guid_counts: Mapping[str, int],
    warnings: list[str],
    label: str,
) -> tuple[ArticleDraft | None, bool]:
    title = _entry_title(entry)
    guid = _text(entry.get("id")).strip() or None
    link = _entry_link(entry, feed_url)
    if link is None and not title:
        return None, False
    # A guid shared by several entries of one feed identifies none of them.
    trusted_guid = guid if guid and guid_counts.get(guid, 0) == 1 else None
    if link is not None:
        url = link
        ident = article_id(trusted_guid, link)
    else:
        # Title but no link: point at the site and derive the id from what we have.
        url = site or (canonical_url(feed_url) if _is_http(feed_url) else "")
        ident = article_id(trusted_guid, f"{url}\x1f{title}")
        warnings.append(f"{label}: entry {title[:60]!r} has no link; it points to {url or '-'}")

    published = _datetime(entry.get("published_parsed"))
    # dict.get: FeedParserDict would answer a missing updated_parsed with published_parsed.
    updated = _datetime(dict.get(entry, "updated_parsed") if isinstance(entry, dict) else None)
    dated = True
    if published is None:
        published, updated = updated, None
    if published is None:
        published, dated = now, False
    if updated == published:
        updated = None

    base = url if _is_http(url) else (feed_url if _is_http(feed_url) else None)
    summary_raw = _html_of(entry.get("summary"), entry.get("summary_detail"))
    content_raw = ""
    contents = entry.get("content")
    if isinstance(contents, list) and contents and isinstance(contents[0], Mapping):
        content_raw = _html_of(contents[0].get("value"), contents[0])
    captions = _media_texts(entry.get("media_description"))
    if not summary_raw and not content_raw and captions:
        # Some feeds (video feeds) carry their only description in media:description.
        summary_raw = html.escape(captions[0])

    image = _image(entry, base, content_raw, summary_raw, captions)
    article = ArticleDraft(
        id=ident,
        source=source,
        url=url,
        guid=guid,
        title=title,
        authors=_authors(entry),
        published=published,
        updated=updated,
        summary_html=sanitize_html(summary_raw, base),
        content_html=sanitize_html(content_raw, base),
        image=image,
        categories=_categories(entry),
    )
    # The id above came from the whole title (when it had to); what is kept is capped.
    return cap_article(article), dated


def _newest(entries: list[Any], limit: int) -> list[int]:
    """The 1-based positions of the newest ``limit`` entries (every one when ``limit`` is 0 or
    not exceeded), in feed order. An entry without a date counts as newest: it will be dated
    at first sight."""
    if not limit or len(entries) <= limit:
        return list(range(1, len(entries) + 1))

    def when(position: int) -> tuple[int, ...]:
        entry = entries[position - 1]
        if not isinstance(entry, Mapping):
            return (0,)
        for key in ("published_parsed", "updated_parsed"):
            value = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
            moment = _datetime(value)
            if moment is not None:
                return (1, *moment.timetuple()[:6])
        return (2,)

    # Newest first (ties: the feed's order), then back into the feed's order.
    ranked = sorted(range(1, len(entries) + 1), key=lambda p: (when(p), -p), reverse=True)
    return sorted(ranked[:limit])


def _entry_title(entry: Mapping[str, Any]) -> str:
    raw = _text(entry.get("title"))
    detail = entry.get("title_detail")
    if isinstance(detail, Mapping) and detail.get("type") == "text/plain":
        # Plain text: "<" means a less-than sign, not a tag.
        raw = html.escape(raw, quote=False)
    return clean_title(raw)


def _entry_link(entry: Mapping[str, Any], feed_url: str) -> str | None:
    candidates = [_text(entry.get("link"))]
    links = entry.get("links")
    if isinstance(links, list):
        for item in links:
            if isinstance(item, Mapping) and item.get("rel", "alternate") == "alternate":
                candidates.append(_text(item.get("href")))
    guid = _text(entry.get("id"))
    if entry.get("guidislink") or guid.startswith(("http://", "https://")):
        candidates.append(guid)
    for candidate in candidates:
        resolved = _http_or_none(candidate, feed_url)
        if resolved:
            return resolved
    return None


def _authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    authors = entry.get("authors")
    if isinstance(authors, list):
        # feedparser lists every dc:creator / author here; ``author`` keeps only one of them.
        for item in authors:
            if isinstance(item, Mapping):
                names.append(_text(item.get("name")))
    if not any(names):
        names.append(_text(entry.get("author")))
    return _unique(clean_title(n) for n in names)


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    terms = []
    tags = entry.get("tags")
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, Mapping):
                terms.append(clean_title(_text(tag.get("term"))))
    return _unique(terms)


def _datetime(value: Any) -> datetime | None:
    """feedparser's UTC struct_time as an aware datetime; None when absent or impossible."""
    if not isinstance(value, time.struct_time | tuple) or len(value) < 6:
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (ValueError, TypeError, OverflowError):
        return None


def _html_of(value: Any, detail: Any) -> str:
    """The HTML of a text construct: plain text is escaped, HTML is passed on as is."""
    text = _text(value)
    if not text:
        return ""
    kind = detail.get("type", "text/html") if isinstance(detail, Mapping) else "text/html"
    if kind == "text/plain":
        return html.escape(text, quote=False)
    return text
