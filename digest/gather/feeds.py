"""Feed bytes → articles: parsing, normalising and sanitising one fetched feed.

This module owns what an entry of an RSS (0.9x, 1.0, 2.0) or Atom feed, or an item of a JSON
Feed (1.0, 1.1), becomes: its canonical URL and stable id, a clean one-line title, authors, UTC
dates, categories, sanitised summary and content HTML and the lead image with alt, caption and
credit. JSON Feed items are translated into feedparser's entry shape and share one path.

It is pure: no network, no disk, no clock (``now`` is passed in). feedparser only ever gets an
in-memory stream (given ``bytes`` that look like a path it would open the file, and given a URL
string it would fetch it). Hostile XML (an internal DTD subset or ENTITY declarations, the
billion-laughs family) is refused before feedparser sees it, because its fallback parser
expands internal entities.

Bad input raises ``FeedError`` and nothing else; a feed that parses with problems yields its
articles plus human-readable ``warnings``.
"""

from __future__ import annotations

import codecs
import contextlib
import email.utils
import hashlib
import html
import io
import json
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import feedparser
import nh3
from feedparser.namespaces import mediarss

from digest.errors import FeedError
from digest.models import Article, Image

__all__ = [
    "ParsedFeed",
    "article_id",
    "canonical_url",
    "clean_title",
    "parse_feed",
    "sanitize_html",
]


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed feed: its title, its articles in feed order, and what went wrong on the way."""

    title: str
    articles: list[Article]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# feedparser and media:description
#
# feedparser 6 treats <media:description> as a plain <description>: it overwrites the entry's
# summary (or pushes the real <description> into ``content``), and never exposes it as a
# caption. We teach its Media RSS mixin to keep media:description apart, as a list
# ``media_description`` of {attributes..., "content": text} like ``media_credit``. This is a
# process-wide change to feedparser, made once, on purpose; tests pin the behaviour so that an
# upgrade that changes it is noticed.
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


# --------------------------------------------------------------------------------------------
# Hostile XML
_WINDOW = 64 * 1024
_ROOT_START = re.compile(rb"<[A-Za-z_:]")
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
# A DOCTYPE whose declaration reaches a "[" outside quoted literals has an internal subset.
_DOCTYPE_SUBSET = re.compile(rb"""<!DOCTYPE(?:[^>\["']|"[^"]*"|'[^']*')*\[""", re.IGNORECASE)
_EBCDIC_XML = b"\x4c\x6f\xa7\x94"  # "<?xm" in EBCDIC (cp037), which feedparser also decodes


def _hostile(view: bytes) -> bool:
    return bool(_ENTITY_DECL.search(view) or _DOCTYPE_SUBSET.search(view))


def _prolog_views(body: bytes, headers: Mapping[str, str]) -> Iterable[bytes]:
    """ASCII-compatible views of the part of ``body`` where DTD declarations can be.

    Decoding-agnostic first: removing NUL bytes turns UTF-16 and UTF-32 markup (with or
    without a BOM) into ASCII for the characters we look for. Then exactly what feedparser will
    parse (its own conversion to UTF-8, honouring the content type and XML declaration), so
    that an exotic declared encoding (UTF-7, EBCDIC) cannot hide a declaration.
    """
    window = body[:_WINDOW]
    stripped = window.replace(b"\x00", b"")
    yield stripped
    if not _ROOT_START.search(stripped):
        # The prolog is longer than the window (or there is no element at all): look at it all.
        yield body.replace(b"\x00", b"")
    if window[:4] == _EBCDIC_XML:
        yield window.decode("cp037", "replace").encode("utf-8")
    try:
        converted = feedparser.encodings.convert_to_utf8(dict(headers), body, {})
    except Exception:  # an encoding feedparser cannot decode cannot hide a DTD
        return
    root = _ROOT_START.search(converted)
    end = max(root.end() if root else len(converted), _WINDOW)
    yield converted[:end]


# --------------------------------------------------------------------------------------------
# Parsing
def parse_feed(
    body: bytes,
    *,
    source: str,
    url: str,
    now: datetime,
    content_type: str | None = None,
) -> ParsedFeed:
    """Parse one fetched feed (RSS 0.9x/1.0/2.0, Atom or JSON Feed) into articles.

    ``source`` is the source key (it names the feed in messages and goes into each article),
    ``url`` the feed's final URL (relative links resolve against it), ``now`` the time of the
    fetch (articles without any date get it as their ``published``: first-seen time) and
    ``content_type`` the HTTP Content-Type header, whose charset decides the decoding.
    Raises ``FeedError`` for unusable input, and nothing else.
    """
    label = f"feed {source!r} ({url})"
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if not isinstance(body, bytes | bytearray):
        raise FeedError(f"{label}: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    if not body.strip():
        raise FeedError(f"{label}: empty body")
    if _is_json(body, content_type):
        return _parse_json_feed(body, source, url, now, content_type, label)

    headers = {"content-type": _xml_content_type(content_type, body)}
    if _is_http(url):
        # feedparser's base for xml:base and relative links; it ignores non-http(s) values.
        headers["content-location"] = url
    if any(_hostile(view) for view in _prolog_views(body, headers)):
        raise FeedError(f"{label}: DOCTYPE with internal subset / ENTITY declarations refused")

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
    warnings: list[str] = []
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
    articles = _articles(entries, source, url, site, now, warnings, label)
    if problem and not articles:
        # Broken markup that yielded only unusable fragments is a broken feed, not an empty one.
        raise FeedError(f"{label}: not a usable feed ({problem}); no entry could be read")
    return ParsedFeed(title=title, articles=articles, warnings=warnings)


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


def _articles(
    entries: list[Any],
    source: str,
    url: str,
    site: str | None,
    now: datetime,
    warnings: list[str],
    label: str,
) -> list[Article]:
    """Articles from feedparser-shaped entries (RSS, Atom and JSON Feed items alike).

    Entries that cannot become an article, and repeats of an earlier one, are skipped with a
    warning rather than failing the feed.
    """
    articles: list[Article] = []
    seen: set[str] = set()
    guid_counts: dict[str, int] = {}
    for entry in entries:
        guid = _text(entry.get("id")).strip() if isinstance(entry, Mapping) else ""
        if guid:
            guid_counts[guid] = guid_counts.get(guid, 0) + 1
    undated = 0
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            warnings.append(f"{label}: entry {position} skipped (not an object)")
            continue
        try:
            article, dated = _article(entry, source, url, site, now, guid_counts, warnings, label)
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


# --------------------------------------------------------------------------------------------
# JSON Feed (https://www.jsonfeed.org/version/1.1/, and 1.0)
#
# Items are translated into the shape feedparser gives RSS and Atom entries, then go through
# the same ``_article`` as those: one normalisation (ids, URLs, dates, sanitising, images)
# for every format.
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
) -> ParsedFeed:
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
    articles = _articles(entries, source, url, site, now, warnings, label)
    # The spec's image has no alt text of its own: the item's title describes it best.
    articles = [
        a.model_copy(update={"image": a.image.model_copy(update={"alt": a.title})})
        if a.image is not None and not a.image.alt
        else a
        for a in articles
    ]
    return ParsedFeed(title=title, articles=articles, warnings=warnings)


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


def _article(
    entry: Mapping[str, Any],
    source: str,
    feed_url: str,
    site: str | None,
    now: datetime,
    guid_counts: Mapping[str, int],
    warnings: list[str],
    label: str,
) -> tuple[Article | None, bool]:
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
    article = Article(
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
    return article, dated


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


def _http_or_none(link: str, base: str) -> str | None:
    """``link`` resolved against ``base`` and canonicalised, if it is an http(s) URL."""
    link = link.strip()
    if not link:
        return None
    try:
        resolved = urljoin(base, link) if base else link
        canonical = canonical_url(resolved)
        parts = urlsplit(canonical)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return canonical


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


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """Non-empty values, first spelling of each (case-insensitively), in order."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        key = value.casefold()
        if value and key not in seen:
            seen.add(key)
            out.append(value)
    return tuple(out)


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


def _media_texts(items: Any) -> list[str]:
    out = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                text = clean_title(_text(item.get("content")))
                if text:
                    out.append(text)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _describe(exc: Any) -> str:
    if exc is None:
        return "unknown problem"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


# --------------------------------------------------------------------------------------------
# Images
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
_PLACEHOLDER_NAME = re.compile(
    r"(?:^|[/_.-])(?:blank|spacer|pixel|placeholder|transparent|lazy|loading|1x1)[^/]*$",
    re.IGNORECASE,
)
_LAZY_ATTRIBUTES = (
    "data-src",
    "data-lazy-src",
    "data-runner-src",
    "data-original",
    "data-srcset",
    "srcset",
)


def _image(
    entry: Mapping[str, Any],
    base: str | None,
    content_raw: str,
    summary_raw: str,
    captions: list[str],
) -> Image | None:
    """The lead image: media:content, media:thumbnail, an image enclosure, or the first <img>."""
    inline = [img for raw in (content_raw, summary_raw) for img in _inline_images(raw, base)]
    chosen: tuple[str, int | None, int | None] | None = None
    for item in _as_list(entry.get("media_content")):
        medium = _text(item.get("medium")).lower()
        kind = _text(item.get("type")).lower()
        src = _text(item.get("url"))
        if (
            medium == "image"
            or kind.startswith("image/")
            or (not medium and not kind and _looks_like_image(src))
        ):
            chosen = _sized(src, item, base)
            if chosen:
                break
    if chosen is None:
        for item in _as_list(entry.get("media_thumbnail")):
            chosen = _sized(_text(item.get("url")), item, base)
            if chosen:
                break
    if chosen is None:
        for item in _as_list(entry.get("links")):
            if item.get("rel") == "enclosure" and _text(item.get("type")).startswith("image/"):
                chosen = _sized(_text(item.get("href")), {}, base)
                if chosen:
                    break
    alt = ""
    if chosen is None and inline:
        src, alt, width, height = inline[0]
        chosen = (src, width, height)
    elif chosen is not None:
        alt = next((a for s, a, _, _ in inline if s == chosen[0]), "")
    if chosen is None:
        return None
    credits = _media_texts(entry.get("media_credit"))
    return Image(
        url=chosen[0],
        alt=alt,
        caption=captions[0] if captions else "",
        credit=", ".join(_unique(credits)),
        width=chosen[1],
        height=chosen[2],
    )


def _as_list(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _sized(
    src: str, attrs: Mapping[str, Any], base: str | None
) -> tuple[str, int | None, int | None] | None:
    url = _http_or_none(src, base or "")
    if url is None:
        return None
    return url, _dimension(attrs.get("width")), _dimension(attrs.get("height"))


def _dimension(value: Any) -> int | None:
    text = _text(value).strip().lower().removesuffix("px")
    if text.isdigit() and len(text) <= 6 and int(text) > 0:
        return int(text)
    return None


def _looks_like_image(src: str) -> bool:
    path = urlsplit(src).path.lower() if src else ""
    return path.endswith(_IMAGE_EXTENSIONS)


def _is_placeholder(src: str) -> bool:
    src = src.strip()
    if not src or src.lower().startswith(("data:", "about:", "javascript:")):
        return True
    path = unquote(urlsplit(src).path)
    return bool(_PLACEHOLDER_NAME.search(path))


class _ImageFinder(HTMLParser):
    """Collects <img> tags as (src, alt, width, height), preferring lazy-load sources."""

    def __init__(self, base: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.found: list[tuple[str, str, int | None, int | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        width, height = _dimension(a.get("width")), _dimension(a.get("height"))
        if (width is not None and width <= 2) or (height is not None and height <= 2):
            return  # a tracking pixel, not a picture
        candidates = [a.get("src", "")]
        if _is_placeholder(candidates[0]):
            candidates = [a.get(name, "") for name in _LAZY_ATTRIBUTES]
        for candidate in candidates:
            if not candidate:
                continue
            first = candidate.split(",")[0].strip().split(" ")[0]  # a srcset's first URL
            if _is_placeholder(first):
                continue
            url = _http_or_none(first, self.base or "")
            if url:
                alt = clean_title(html.escape(a.get("alt", ""), quote=False))
                self.found.append((url, alt, width, height))
                return


def _inline_images(raw: str, base: str | None) -> list[tuple[str, str, int | None, int | None]]:
    if "<img" not in raw.lower():
        return []
    finder = _ImageFinder(base)
    try:
        finder.feed(raw)
        finder.close()
    except (AssertionError, ValueError):  # html.parser on pathological markup
        pass
    return finder.found


# --------------------------------------------------------------------------------------------
# Normalisers
_TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "mc_cid", "mc_eid", "ref_src", "_hsenc", "_hsmi", "igshid"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """The URL an article is known by: scheme and host lower-cased, default port, userinfo
    and fragment dropped, tracking parameters (``utm_*``, ``fbclid``, …) removed, the other
    parameters kept verbatim and in order. Idempotent. Relative URLs come back relative.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if netloc:
        hostinfo = netloc.rpartition("@")[2]  # credentials never go into an email
        host, port = hostinfo, ""
        if hostinfo.startswith("["):
            end = hostinfo.find("]")
            if end != -1:
                host, port = hostinfo[: end + 1], hostinfo[end + 1 :].removeprefix(":")
        elif ":" in hostinfo:
            host, _, port = hostinfo.rpartition(":")
        if port and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme):
            port = ""
        netloc = host.lower() + (f":{port}" if port else "")
    path = parts.path
    if scheme in _DEFAULT_PORTS and netloc and not path:
        path = "/"
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p)]
    return urlunsplit((scheme, netloc, path, "&".join(kept), ""))


def _is_tracking(pair: str) -> bool:
    key = unquote(pair.split("=", 1)[0]).strip().lower()
    return key.startswith("utm_") or key in _TRACKING_PARAMS


# Guids that identify nothing: placeholders and values that feeds emit for every entry.
_GENERIC_GUIDS = frozenset(
    {"null", "none", "undefined", "nil", "guid", "id", "true", "false", "nan", "about:blank"}
)


def _trusted_guid(guid: str | None) -> str | None:
    if guid is None:
        return None
    guid = guid.strip()
    if len(guid) < 4 or guid.lower() in _GENERIC_GUIDS:
        return None
    if guid.isdigit():
        # A counter ("1234") is unique within one feed only, and ids are global.
        return None
    if _is_http(guid):
        parts = urlsplit(guid)
        if parts.path.strip("/") == "" and not parts.query:
            return None  # the site's home page
    return guid


def article_id(guid: str | None, canonical: str) -> str:
    """A stable article id: ``"a"`` + 20 hex digits of SHA-256 of a trustworthy guid, else of
    the canonical URL. A guid that is empty, a placeholder, a bare number or a home page is
    not trusted.
    """
    key = _trusted_guid(guid) or canonical
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return "a" + digest[:20]


_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# What a browser never shows as text, dropped whole (before tags are replaced by spaces): the
# text of raw-text elements such as <script>, comments (an unclosed one runs to the end, as in
# HTML), and <!DOCTYPE …>, <![CDATA[ …, <? … ?> and other markup declarations.
_HIDDEN = re.compile(
    r"<(script|style|noscript|template|iframe)\b[^<>]*>.*?(?:</\1\b[^<>]*>|\Z)"
    r"|<!--.*?(?:--!?>|\Z)|<![^>]*(?:>|\Z)|<\?[^>]*(?:>|\Z)",
    re.DOTALL | re.IGNORECASE,
)
# C0 and C1 controls (including tab and newline, which become spaces) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Line/paragraph separators, bidi embeddings, overrides and isolates, lone surrogates.
_INVISIBLE = re.compile(r"[\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean_title(text: str) -> str:
    """One line of plain text from a title (or name, caption, category) that may hold HTML.

    Entities decoded, tags stripped, control, line-separator and bidi-control characters
    removed, whitespace collapsed, NFC. Repeated until nothing changes, so that the result is
    a fixed point (double-escaped input like ``&amp;lt;b&amp;gt;`` does not leave a tag for the
    next reader to find).
    """
    current = text if isinstance(text, str) else ""
    for _ in range(10):
        step = html.unescape(current)
        step = _TAG.sub(" ", _HIDDEN.sub(" ", step))
        step = _CONTROL.sub(" ", step)
        step = _INVISIBLE.sub("", step)
        step = unicodedata.normalize("NFC", step)
        step = " ".join(step.split())
        if step == current:
            break
        current = step
    return current


_ALLOWED_TAGS = {
    "p", "br", "a", "em", "strong", "b", "i", "ul", "ol", "li", "blockquote",
    "h2", "h3", "h4", "figure", "figcaption", "img",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
# Dropped with everything inside them, not just unwrapped.
_DROP_WITH_CONTENT = {"script", "style", "iframe", "noscript", "template", "object", "svg", "math"}
_URL_SCHEMES = {"http", "https", "mailto"}
# After nh3, attributes are normalised to name="value": these patterns see its output only.
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")
_TRACKING_PIXEL = re.compile(r"<img\s[^>]*\b(?:width|height)=\"[0-2]\"[^>]*>")


def _drop_placeholder_src(tag: str, attribute: str, value: str) -> str | None:
    # A lazy-loading placeholder is not the picture; without a src the img is removed below.
    if tag == "img" and attribute == "src" and _is_placeholder(value):
        return None
    return value


def sanitize_html(html: str, base_url: str | None = None) -> str:
    """Feed HTML reduced to an explicit allow-list of tags and attributes.

    Links and images keep http, https and mailto URLs only; relative ones are resolved against
    ``base_url`` when it is an http(s) URL and dropped otherwise. Lazy-loading placeholders,
    tracking pixels and images left without a source are removed.
    """
    if not html or not html.strip():
        return ""
    relative: Any = "deny"
    if base_url and _is_http(base_url):
        relative = ("rewrite_with_base", base_url)
    try:
        cleaned = nh3.clean(
            html,
            tags=_ALLOWED_TAGS,
            clean_content_tags=_DROP_WITH_CONTENT,
            attributes=_ALLOWED_ATTRIBUTES,
            url_schemes=_URL_SCHEMES,
            url_relative=relative,
            attribute_filter=_drop_placeholder_src,
            strip_comments=True,
        )
    except ValueError:
        # A base URL nh3 cannot use: drop relative URLs rather than fail the article.
        cleaned = nh3.clean(
            html,
            tags=_ALLOWED_TAGS,
            clean_content_tags=_DROP_WITH_CONTENT,
            attributes=_ALLOWED_ATTRIBUTES,
            url_schemes=_URL_SCHEMES,
            url_relative="deny",
            attribute_filter=_drop_placeholder_src,
            strip_comments=True,
        )
    cleaned = _TRACKING_PIXEL.sub("", cleaned)
    return _IMG_WITHOUT_SRC.sub("", cleaned).strip()
