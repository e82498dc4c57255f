"""JSON Feed (https://www.jsonfeed.org/version/1.1/, and 1.0) → articles.

Items are translated into the shape feedparser gives RSS and Atom entries, then go through
the same ``entries._article`` as those: one normalisation (ids, URLs, dates, sanitising,
images) for every format.
"""

from __future__ import annotations

import codecs
import contextlib
import email.utils
import html
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.errors import FeedError
from digest.gather.feeds.drafts import DraftFeed
from digest.gather.feeds.entries import _articles
from digest.gather.feeds.normalise import _http_or_none, clean_title, sanitize_html

_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_JSON_FEED_VERSION = re.compile(r"https?://(?:www\.)?jsonfeed\.org/version/\S+", re.IGNORECASE)
# What may come before the first character: whitespace, BOMs, the NULs of UTF-16/32.
_JSON_LEAD = b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TITLE_FROM_TEXT = 80  # characters of an untitled item's text that make its title


def _is_json(body: bytes, content_type: str | None) -> bool:
    """JSON when the body opens with ``{``; else when the Content-Type says JSON.

    The body decides first because servers mislabel feeds both ways (XML as
    ``application/json``, JSON as ``text/plain`` or ``text/html``).
    """
    first = body[:1024].lstrip(_JSON_LEAD)[:1]
    if first == b"{":
        return True
    if first == b"<":
        return False
    media = feedparser.encodings.parse_content_type(content_type or "")[0].lower()
    return media in _JSON_TYPES or media.endswith("+json")


def _parse_json_feed(
    body: bytes,
    source: str,
    url: str,
    now: datetime,
    content_type: str | None,
    label: str,
    max_items: int = 0,
) -> DraftFeed:
    warnings: list[str] = []
    # The body is already capped by the fetcher; nesting is capped by the interpreter's
    # recursion limit, which the C decoder honours (RecursionError, not a crash).
    text = _decode_json(body, content_type, warnings, label)
    try:
        document = json.loads(text)
    except RecursionError:
        raise FeedError(f"{label}: malformed JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, and integers too long to convert
        raise FeedError(f"{label}: malformed JSON ({_short(str(e))})") from None
    version = _json_str(document.get("version")) if isinstance(document, dict) else ""
    if not _JSON_FEED_VERSION.fullmatch(version.strip()):
        raise FeedError(
            f'{label}: not a JSON Feed (no https://jsonfeed.org/version/… in "version")'
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError(f'{label}: not a usable JSON Feed ("items" is not an array)')
    feed_authors = _json_authors(document)
    entries = [
        _json_entry(item, feed_authors) if isinstance(item, dict) else item for item in items
    ]
    title = clean_title(_json_str(document.get("title")))
    site = _http_or_none(_json_str(document.get("home_page_url")), url)
    articles = _articles(
        entries, source, url, site, now, warnings, label, feed_title=title, max_items=max_items
    )
    # The spec's image has no alt text of its own: the item's title describes it best.
    articles = [
        a.model_copy(update={"image": a.image.model_copy(update={"alt": a.title})})
        if a.image is not None and not a.image.alt
        else a
        for a in articles
    ]
    return DraftFeed(title=title, articles=articles, warnings=warnings)


def _decode_json(body: bytes, content_type: str | None, warnings: list[str], label: str) -> str:
    """The body as text: UTF-8/16/32 as the bytes show (RFC 8259), else a declared charset.

    Invalid bytes become U+FFFD with a warning: one bad byte should not cost the whole feed.
    """
    encoding: str = json.detect_encoding(body)
    _, charset = feedparser.encodings.parse_content_type(content_type or "")
    if encoding == "utf-8" and charset:
        # Only a legacy 8-bit charset can be right here: UTF-16/32 would show in the bytes.
        with contextlib.suppress(LookupError):
            declared = codecs.lookup(charset).name
            if not declared.startswith("utf"):
                encoding = declared
    try:
        return body.decode(encoding)
    except UnicodeDecodeError:
        warnings.append(f"{label}: bytes that are not valid {encoding} were replaced")
        return body.decode(encoding, "replace")


def _json_str(value: Any) -> str:
    """A JSON string value, or "" for anything else; lone surrogates (``"\\ud800"``) replaced,
    because nothing downstream (nh3, the database, email) can encode them."""
    if not isinstance(value, str):
        return ""
    return _SURROGATE.sub("\ufffd", value)


def _json_authors(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """``authors`` (1.1) or ``author`` (1.0) as feedparser's list of {"name": …}."""
    raw = obj.get("authors")
    people = raw if isinstance(raw, list) else [obj.get("author")]
    names = [_json_str(p.get("name")) for p in people if isinstance(p, dict)]
    return [{"name": n} for n in names if n.strip()]


def _json_entry(item: Mapping[str, Any], feed_authors: list[dict[str, str]]) -> dict[str, Any]:
    """One JSON Feed item in the shape of a feedparser entry, for ``_article``."""
    entry: dict[str, Any] = {}
    ident = item.get("id")
    if isinstance(ident, int | float) and not isinstance(ident, bool):
        ident = str(ident)  # the spec: a reader must coerce a numeric id to a string
    if _json_str(ident):
        entry["id"] = _json_str(ident)
    entry["link"] = _json_str(item.get("url"))
    links: list[dict[str, str]] = []
    external = _json_str(item.get("external_url"))
    if external:
        # A link post's subject: the article when the item has no permalink of its own.
        links.append({"rel": "alternate", "href": external})
    attachments = item.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else []:
        if isinstance(attachment, dict):
            links.append(
                {
                    "rel": "enclosure",
                    "href": _json_str(attachment.get("url")),
                    "type": _json_str(attachment.get("mime_type")).lower(),
                }
            )
    entry["links"] = links

    content_html = _json_str(item.get("content_html"))
    content_text = _json_str(item.get("content_text"))
    summary = _json_str(item.get("summary"))
    if content_html.strip():
        entry["content"] = [{"value": content_html, "type": "text/html"}]
    elif content_text.strip():
        entry["content"] = [{"value": _paragraphs(content_text), "type": "text/html"}]
    if summary.strip():
        entry["summary"] = summary
        entry["summary_detail"] = {"type": "text/plain"}  # the spec: plain text

    title = _json_str(item.get("title"))
    if not title.strip():
        # Microblog items have no title; their text's opening words stand in for one.
        # Only the opening is cleaned (a long text would be cleaned whole for 80 characters);
        # HTML is sanitised first, because a <script>'s text is not the item's opening words.
        title = _title_from(
            clean_title(html.escape(content_text[:1000], quote=False))
            or clean_title(sanitize_html(content_html[:4000]))
            or clean_title(html.escape(summary[:1000], quote=False))
        )
    entry["title"] = title
    entry["title_detail"] = {"type": "text/plain"}

    for key, field_name in (
        ("published_parsed", "date_published"),
        ("updated_parsed", "date_modified"),
    ):
        when = _rfc3339(item.get(field_name))
        if when is not None:
            entry[key] = when.utctimetuple()

    entry["authors"] = _json_authors(item) or feed_authors  # 1.1: items inherit the feed's
    tags = item.get("tags")
    if isinstance(tags, list):
        entry["tags"] = [{"term": _json_str(t)} for t in tags if _json_str(t)]
    for key in ("image", "banner_image"):
        image = _json_str(item.get(key))
        if image.strip():
            entry["media_content"] = [{"url": image, "medium": "image"}]
            break
    return entry


def _paragraphs(text: str) -> str:
    """Plain text as HTML: a paragraph per blank-line-separated block, line breaks kept."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "".join(
        "<p>" + "<br>".join(html.escape(line.strip(), quote=False) for line in lines) + "</p>"
        for block in blocks
        if (lines := [line for line in block.split("\n") if line.strip()])
    )


def _title_from(text: str, limit: int = _TITLE_FROM_TEXT) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, with an ellipsis.

    Cutting at a space keeps grapheme clusters whole; text without spaces (CJK) is cut at
    ``limit``, moved back past combining marks and joiners so no cluster is split.
    """
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    if cut < limit // 2:
        cut = limit
        while cut > 0 and (
            unicodedata.combining(text[cut])
            or text[cut] in "\u200d\ufe0e\ufe0f"
            or text[cut - 1] == "\u200d"
        ):
            cut -= 1
    return text[:cut].rstrip(" ,;:.-–—") + "…"


def _rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 date (as JSON Feed requires) in UTC; RFC 822 dates are accepted too,
    since feeds converted from RSS carry them. A date without an offset is taken as UTC."""
    text = _json_str(value).strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."
