"""Feed bytes → articles: parsing, normalising and sanitising one fetched feed.

This package owns what an entry of an RSS (0.9x, 1.0, 2.0) or Atom feed, or an item of a JSON
Feed (1.0, 1.1), becomes: its canonical URL and stable id, a clean one-line title, authors, UTC
dates, categories, sanitised summary and content HTML and the lead image with alt, caption and
credit. ``parse_feed`` (here) decides which way a body goes:

- ``jsonfeed``: JSON Feed items, translated into feedparser's entry shape;
- ``guard``: hostile XML (an internal DTD subset or ENTITY declarations, the billion-laughs
  family) is refused before feedparser sees it, because its fallback parser expands internal
  entities;
- ``fastpath``: well-formed RSS 2.0 and Atom 1.0 feeds go through lxml (no DTD, no network, no
  entity expansion, no recovery) and a walk that builds exactly the entries feedparser would;
  anything that walk does not reproduce exactly goes to feedparser instead;
- ``feedparser_patch``: the one change made to feedparser (media:description kept apart);
- ``encoding``: feedparser's conversion to UTF-8, done on the bytes when they are UTF-8;
- ``entries``: feedparser-shaped entries, whatever their format, become articles, with
  ``images`` (the lead image) and ``normalise`` (URLs, ids, titles, HTML);
- ``drafts``: what those articles are until ``parse_feed`` returns (plain dataclasses: a parse
  worker does not import the pydantic models).

It is pure: no network, no disk, no clock (``now`` is passed in). feedparser only ever gets an
in-memory stream (given ``bytes`` that look like a path it would open the file, and given a URL
string it would fetch it).

Bad input raises ``FeedError`` and nothing else; a feed that parses with problems yields its
articles plus human-readable ``warnings``.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.errors import FeedError
from digest.gather.feeds import feedparser_patch  # noqa: F401  (the patch applies on import)
from digest.gather.feeds.drafts import DraftFeed
from digest.gather.feeds.entries import ParsedFeed, _articles
from digest.gather.feeds.fastpath import _fast_parse
from digest.gather.feeds.guard import _hostile, _prolog_views
from digest.gather.feeds.jsonfeed import _is_json, _parse_json_feed
from digest.gather.feeds.normalise import (
    _http_or_none,
    _is_http,
    _text,
    article_id,
    canonical_url,
    clean_title,
    sanitize_html,
)

__all__ = [
    "DraftFeed",
    "ParsedFeed",
    "article_id",
    "canonical_url",
    "clean_title",
    "parse_feed",
    "parse_feed_draft",
    "sanitize_html",
]


def parse_feed(
    body: bytes,
    *,
    source: str,
    url: str,
    now: datetime,
    content_type: str | None = None,
    fast: bool = True,
    max_items: int = 0,
) -> ParsedFeed:
    """Parse one fetched feed (RSS 0.9x/1.0/2.0, Atom or JSON Feed) into articles.

    ``source`` is the source key (it names the feed in messages and goes into each article),
    ``url`` the feed's final URL (relative links resolve against it), ``now`` the time of the
    fetch (articles without any date get it as their ``published``: first-seen time) and
    ``content_type`` the HTTP Content-Type header, whose charset decides the decoding.
    ``fast=False`` turns off the lxml fast path for well-formed RSS 2.0 and Atom 1.0 (the
    results are the same; the differential tests compare the two). ``max_items`` (0: no cap)
    keeps only the newest that many items, with a warning giving the counts.
    Raises ``FeedError`` for unusable input, and nothing else.
    """
    return parse_feed_draft(
        body,
        source=source,
        url=url,
        now=now,
        content_type=content_type,
        fast=fast,
        max_items=max_items,
    ).parsed()


def parse_feed_draft(
    body: bytes,
    *,
    source: str,
    url: str,
    now: datetime,
    content_type: str | None = None,
    fast: bool = True,
    max_items: int = 0,
) -> DraftFeed:
    """:func:`parse_feed` with its articles as drafts (``DraftFeed.parsed()`` makes the
    ``ParsedFeed``): what a parse worker answers, since it does not import the models."""
    label = f"feed {source!r} ({url})"
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if not isinstance(body, bytes | bytearray):
        raise FeedError(f"{label}: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    if not body.strip():
        raise FeedError(f"{label}: empty body")
    if _is_json(body, content_type):
        return _parse_json_feed(body, source, url, now, content_type, label, max_items)

    headers = {"content-type": _xml_content_type(content_type, body)}
    if _is_http(url):
        # feedparser's base for xml:base and relative links; it ignores non-http(s) values.
        headers["content-location"] = url
    if any(_hostile(view) for view in _prolog_views(body, headers)):
        raise FeedError(f"{label}: DOCTYPE with internal subset / ENTITY declarations refused")

    fast_result = _fast_parse(body, headers, url) if fast else None
    warnings: list[str] = []
    problem = ""
    if fast_result is not None:
        feed_info: Mapping[str, Any] = fast_result["feed"]
        entries: list[Any] = fast_result["entries"]
    else:
        try:
            parsed = feedparser.parse(
                io.BytesIO(body),
                response_headers=headers,
                # We sanitise with nh3 and resolve links ourselves, against the article's URL.
                resolve_relative_uris=False,
                sanitize_html=False,
            )
        except Exception as e:  # feedparser's own bugs on hostile input
            raise FeedError(f"{label}: the parser failed ({type(e).__name__}: {e})") from None

        entries = parsed.get("entries") or []
        problem = _describe(parsed.get("bozo_exception")) if parsed.get("bozo") else ""
        if problem:
            if not entries:
                raise FeedError(f"{label}: not a usable feed ({problem})")
            warnings.append(f"{label}: parsed despite problems ({problem})")
        elif not entries and not parsed.get("version"):
            # Well-formed but not RSS, Atom or RDF: typically an HTML page where a feed should be.
            raise FeedError(f"{label}: not a feed (no RSS, Atom or RDF root element)")
        feed_info = parsed.get("feed") or {}
    title = clean_title(_text(feed_info.get("title")))
    site = _http_or_none(_text(feed_info.get("link")), url)
    articles = _articles(
        entries, source, url, site, now, warnings, label, feed_title=title, max_items=max_items
    )
    if problem and not articles:
        # Broken markup that yielded only unusable fragments is a broken feed, not an empty one.
        raise FeedError(f"{label}: not a usable feed ({problem}); no entry could be read")
    return DraftFeed(title=title, articles=articles, warnings=warnings)


# What the first bytes show: a byte order mark, or a "<" in UTF-32/UTF-16 (longest first:
# a UTF-32-LE BOM starts with the UTF-16-LE one).
_BYTE_SIGNS = (
    (codecs.BOM_UTF32_LE, "utf-32le"),
    (codecs.BOM_UTF32_BE, "utf-32be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
    (b"<\x00\x00\x00", "utf-32le"),
    (b"\x00\x00\x00<", "utf-32be"),
    (b"<\x00", "utf-16le"),
    (b"\x00<", "utf-16be"),
)


def _xml_content_type(content_type: str | None, body: bytes) -> str:
    """The Content-Type feedparser gets: ``application/xml`` and the charset that applies.

    feedparser applies RFC 3023: ``text/xml`` without a charset means US-ASCII (a UTF-8 feed
    served that way is decoded as a "bozo" fallback), and anything that is not an XML type
    (``text/html``, ``text/plain``, no header at all — servers get this wrong all the time) is
    flagged as a problem, which would make a valid but empty feed an error. RFC 7303, which
    replaced RFC 3023, has one rule for every XML type: the BOM, else the charset parameter,
    else the XML declaration, else UTF-8; this gives feedparser exactly that.

    What the bytes themselves show beats any header, because a header charset that
    contradicts them decodes without error into nonsense (UTF-16 text is valid UTF-8 with NULs
    in it, and any even number of bytes is "valid" UTF-16): a BOM, or a "<" in UTF-16/32, is
    passed on as the charset (feedparser, given a BOM but no declared encoding, tries UTF-8
    first), and a UTF-16/32 charset for bytes that show neither is dropped. So is a charset
    Python has no codec for; the XML declaration then decides.
    """
    for sign, encoding in _BYTE_SIGNS:
        if body.startswith(sign):
            return f"application/xml; charset={encoding}"
    _, charset = feedparser.encodings.parse_content_type(content_type or "")
    try:
        name = codecs.lookup(charset).name if charset else ""
    except LookupError:
        name = ""
    if not name or name.startswith(("utf-16", "utf-32")):
        return "application/xml"
    return f"application/xml; charset={charset}"


def _describe(exc: Any) -> str:
    if exc is None:
        return "unknown problem"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
