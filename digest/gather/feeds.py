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

Well-formed RSS 2.0 and Atom 1.0 feeds take a fast path: lxml (no DTD, no network, no entity
expansion, no recovery) and a walk that builds exactly the entries feedparser would. Anything
that walk does not reproduce exactly goes to feedparser instead; see ``_FastFeed``.

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
from lxml import etree

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
    fast: bool = True,
) -> ParsedFeed:
    """Parse one fetched feed (RSS 0.9x/1.0/2.0, Atom or JSON Feed) into articles.

    ``source`` is the source key (it names the feed in messages and goes into each article),
    ``url`` the feed's final URL (relative links resolve against it), ``now`` the time of the
    fetch (articles without any date get it as their ``published``: first-seen time) and
    ``content_type`` the HTTP Content-Type header, whose charset decides the decoding.
    ``fast=False`` turns off the lxml fast path for well-formed RSS 2.0 and Atom 1.0 (the
    results are the same; the differential tests compare the two).
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
    articles = _articles(entries, source, url, site, now, warnings, label)
    if problem and not articles:
        # Broken markup that yielded only unusable fragments is a broken feed, not an empty one.
        raise FeedError(f"{label}: not a usable feed ({problem}); no entry could be read")
    return ParsedFeed(title=title, articles=articles, warnings=warnings)


# --------------------------------------------------------------------------------------------
# The fast path: well-formed RSS 2.0 and Atom 1.0 through lxml
#
# feedparser's SAX handlers cost about 80 % of a big feed's parse. For the common, well-formed
# cases lxml builds the tree in a few milliseconds and the entries below are made from it in
# exactly the shape, and by exactly the rules, feedparser's handlers would give them (text
# stripped, links resolved against the feed's URL, feedparser's date parser, its title
# guessing, its UTF-8/windows-1252 repairs, its first-title/first-summary precedence), so that
# ``_article`` normalises both alike. Whatever this path does not reproduce exactly (other
# roots or versions, xml:base, DOCTYPEs, XHTML or base64 text, unknown elements that
# feedparser has a handler for, an encoding problem, anything lxml rejects) makes it decline,
# and feedparser parses the feed as before. tests/gather/test_fastpath.py checks that the two
# paths give equal articles on the feedparser corpus and on generated feeds.
class _Decline(Exception):
    """The fast path does not handle this feed exactly; feedparser will."""


_FP_PARSER: Any = feedparser.api.StrictFeedParser
_FP_NAMESPACES: dict[str, str] = {k.lower(): v for k, v in _FP_PARSER.namespaces.items()}
_FP_PREFIXES = frozenset(_FP_NAMESPACES.values())
_ATOM_NS = "http://www.w3.org/2005/Atom"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_RSS1_NAMESPACES = frozenset({"http://my.netscape.com/rdf/simple/0.9/", "http://purl.org/rss/1.0/"})
# The keys ``_article`` and its helpers read, and the feed-level ones ``parse_feed`` reads: an
# element feedparser has no handler for is stored under its own name, which must not be one.
_READ_KEYS = frozenset(
    {
        "id", "title", "title_detail", "link", "links", "guidislink", "published_parsed",
        "updated_parsed", "author", "authors", "tags", "summary", "summary_detail", "content",
        "media_content", "media_thumbnail", "media_credit", "media_description",
    }
)  # fmt: skip
_RELATIVE = frozenset(_FP_PARSER.can_be_relative_uri)
_TEXT_TYPES = frozenset({"text/plain", "text/html"})
_PUBLISHED = frozenset({"pubdate", "published", "issued", "dcterms_issued"})
_UPDATED = frozenset({"updated", "modified", "dc_date", "dcterms_modified", "lastbuilddate"})
_AUTHORS = frozenset({"author", "dc_creator", "dc_author", "managingeditor"})
# Elements with a feedparser handler that touches nothing the articles are made from.
_HARMLESS_IN_ENTRY = frozenset(
    {"created", "dcterms_created", "expirationdate", "rights", "copyright", "dc_rights",
     "media_rating", "media_restriction", "media_license", "media_player"}
)  # fmt: skip
_HARMLESS_IN_FEED = frozenset(
    {"description", "subtitle", "tagline", "language", "dc_language", "rights", "copyright",
     "dc_rights", "webmaster", "dc_publisher", "generator", "cloud", "icon", "logo", "created",
     "dcterms_created", "category", "dc_subject"} | _PUBLISHED | _UPDATED | _AUTHORS
)  # fmt: skip
_IMAGE_PARTS = frozenset({"url", "title", "link", "width", "height", "description", "name"})
_PERSON_PARTS = frozenset({"name", "email", "url", "uri", "homepage"})
_NS_DECL = re.compile(rb"""xmlns:([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_DEFAULT_NS_DECL = re.compile(rb"""xmlns\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_BASE_ATTRIBUTE = re.compile(rb"(?:xml:|\s)base\s*=")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
# feedparser's guess at a name and an e-mail address in one string (mixin._sync_author_detail).
_AUTHOR_EMAIL = re.compile(
    r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"""
)
_handlers: dict[str, bool] = {}


def _has_handler(name: str) -> bool:
    known = _handlers.get(name)
    if known is None:
        known = hasattr(_FP_PARSER, "_start_" + name) or hasattr(_FP_PARSER, "_end_" + name)
        _handlers[name] = known
    return known


def _repaired(text: str) -> str:
    """feedparser's last steps for text it stores: UTF-8 read as Latin-1, and C1 controls
    meant as windows-1252, are repaired."""
    if text.isascii():
        return text  # nothing to repair, and the common case
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    return text.translate(_CP1252)


_CP1252: dict[int, str] = feedparser.html._cp1252
_urljoin = feedparser.urls._urljoin
_parse_date = feedparser.datetimes._parse_date
_looks_like_html = feedparser.mixin._FeedParserMixin.looks_like_html


def _occurrences(data: bytes, needle: bytes) -> Iterable[int]:
    at = data.find(needle)
    while at != -1:
        yield at
        at = data.find(needle, at + 1)


def _fast_parse(body: bytes, headers: Mapping[str, str], url: str) -> dict[str, Any] | None:
    """``{"feed": {...}, "entries": [...]}`` as feedparser would give them, or None to decline."""
    try:
        return _FastFeed(body, headers, url).run()
    except _Decline:
        return None
    except Exception:  # lxml's errors, and anything unforeseen: feedparser decides
        return None


class _FastFeed:
    def __init__(self, body: bytes, headers: Mapping[str, str], url: str) -> None:
        self.body = body
        self.headers = headers
        base = url if _is_http(url) else ""
        # feedparser re-joins its base with itself at every element; it must be a fixed point.
        once = feedparser.urls.make_safe_absolute_uri(base, base) or base if base else base
        if once != base:
            raise _Decline
        self.base = base
        self.atom = False
        self.title_depth = -1
        self.has_content = False
        self.guidislink = False
        self.depths: dict[str, int] = {}
        self.prefixes: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.data = b""

    # ---- the document
    def run(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        data = feedparser.encodings.convert_to_utf8(dict(self.headers), self.body, result)
        if result.get("bozo") or not result.get("encoding"):
            raise _Decline  # an encoding problem: feedparser's warnings and recovery apply
        root_start = _ROOT_START.search(data)
        if root_start is None or _DOCTYPE.search(data, 0, root_start.start()):
            raise _Decline
        lowered = data.lower()  # feedparser lower-cases attribute names
        if any(
            _BASE_ATTRIBUTE.match(lowered, max(at - 4, 0))
            or _BASE_ATTRIBUTE.match(lowered, max(at - 1, 0))
            for at in _occurrences(lowered, b"base")
        ):
            raise _Decline  # xml:base (or a bare base attribute) would move relative links
        self.data = data
        self._check_namespaces()
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            recover=False,
        )
        root = etree.fromstring(data, parser)
        feed: dict[str, Any] = {}
        entries: list[dict[str, Any]] = []
        if root.tag == "rss" and root.get("version") == "2.0":
            channels = list(root.iterchildren(etree.Element))
            if len(channels) != 1 or channels[0].tag != "channel" or channels[0].attrib:
                raise _Decline
            container, depth = channels[0], 3
        elif root.tag == f"{{{_ATOM_NS}}}feed":
            if any(uri.lower() in _RSS1_NAMESPACES for uri in root.nsmap.values()):
                raise _Decline  # feedparser would take the version from that namespace
            self.atom = True
            container, depth = root, 2
        else:
            raise _Decline
        for child in container.iterchildren(etree.Element):
            name = self._name(child)
            if name in ("item", "entry") and (name == "entry") == self.atom:
                entries.append(self._entry(child, depth))
            else:
                self._feed_element(child, name, feed, depth)
        return {"feed": feed, "entries": entries}

    def _check_namespaces(self) -> None:
        """Namespace prefixes feedparser would map differently from their declarations.

        feedparser names an element by a standard prefix for namespaces it knows, and by a
        prefix declared anywhere earlier for the others; a prefix bound twice, or a
        standard prefix bound to another namespace, could make it call another handler.
        """
        known: dict[str, str] = {}
        counts: dict[str, int] = {}
        for match in _NS_DECL.finditer(self.data):
            prefix = match.group(1).decode("utf-8", "replace")
            uri = (match.group(2) or match.group(3) or b"").decode("utf-8", "replace")
            counts[prefix] = counts.get(prefix, 0) + 1
            standard = _FP_NAMESPACES.get(uri.lower())
            if standard is None:
                if uri in self.prefixes and self.prefixes[uri] != prefix:
                    self.prefixes[uri] = ""  # two prefixes: ambiguous
                else:
                    self.prefixes.setdefault(uri, prefix)
            else:
                known[prefix] = standard
        unknown = {prefix.lower() for prefix in self.prefixes.values()}
        for prefix, standard in known.items():
            if prefix != standard and (prefix in _FP_PREFIXES or prefix in unknown):
                raise _Decline
        for uri, prefix in list(self.prefixes.items()):
            if prefix and counts.get(prefix, 0) != 1:
                self.prefixes[uri] = ""
        for match in _DEFAULT_NS_DECL.finditer(self.data):
            uri = (match.group(1) or match.group(2) or b"").decode("utf-8", "replace")
            if uri in self.prefixes:
                self.prefixes[uri] = ""  # both default and prefixed: order decides, decline

    def _name(self, el: Any) -> str:
        """The name feedparser dispatches an element by (``_start_<name>``)."""
        tag = el.tag
        known = self.names.get(tag)
        if known is not None:
            return known
        if not isinstance(tag, str):
            raise _Decline  # a comment or processing instruction where elements are expected
        if tag[0] != "{":
            self.names[tag] = tag.lower()
            return self.names[tag]
        uri, _, local = tag[1:].partition("}")
        lowered = uri.lower()
        if "backend.userland.com/rss" in lowered:
            raise _Decline
        standard = _FP_NAMESPACES.get(lowered)
        if standard is not None:
            self.names[tag] = f"{standard}_{local}".lower() if standard else local.lower()
            return self.names[tag]
        prefix = self.prefixes.get(uri)
        if prefix == "" or (prefix is None and el.prefix is not None):
            raise _Decline
        return f"{prefix}_{local}".lower() if prefix else local.lower()

    @staticmethod
    def _attrs(el: Any) -> dict[str, str]:
        """Attributes as feedparser's strict parser gives them to its handlers."""
        out: dict[str, str] = {}
        for key, value in el.items():
            if key[0] == "{":
                if key != f"{{{_XML_NS}}}lang":
                    raise _Decline
                key = "xml:lang"
            key = key.lower()
            out[key] = value.lower() if key in ("rel", "type") else value
        return out

    @staticmethod
    def _leaf_text(el: Any) -> str:
        if len(el):
            raise _Decline  # markup, comments or elements inside: feedparser's own business
        return el.text or ""

    def _text(self, raw: str, element: str) -> str:
        """What feedparser's ``pop`` makes of an element's text when it expects text."""
        out = raw.strip()
        if out and element in _RELATIVE and (element != "id" or self.guidislink):
            out = _urljoin(self.base, out)
        return _repaired(out)

    def _harmless(self, el: Any, name: str) -> None:
        """An element without a feedparser handler, stored under a key nobody reads."""
        mapped = feedparser.FeedParserDict.keymap.get(name, name)
        if isinstance(mapped, list):
            mapped = mapped[0]
        if _has_handler(name) or name in _READ_KEYS or mapped in _READ_KEYS or len(el):
            raise _Decline

    # ---- feed level
    def _feed_element(self, el: Any, name: str, feed: dict[str, Any], depth: int) -> None:
        if name == "title":
            self._title(el, name, feed, depth, entry=False)
        elif name == "link":
            self._link(el, feed, entry=False)
        elif name in ("id", "guid"):
            self._guid(el, feed, depth, entry=False)
        elif name in ("image", "textinput"):
            if el.attrib:
                raise _Decline
            self.title_depth = -1
            for part in el.iterchildren(etree.Element):
                if self._name(part) not in _IMAGE_PARTS or len(part):
                    raise _Decline
                if self._name(part) == "title" and self._text(part.text or "", "title"):
                    self.title_depth = depth + 1
        elif name == "contributor" or (name in _AUTHORS and len(el)):
            for part in el.iterchildren(etree.Element):
                if self._name(part) not in _PERSON_PARTS or len(part):
                    raise _Decline
        elif name in _HARMLESS_IN_FEED:
            self._leaf_text(el)
        else:
            self._harmless(el, name)

    # ---- entries
    def _entry(self, el: Any, depth: int) -> dict[str, Any]:
        if el.attrib:
            raise _Decline  # rdf:about, CDF's href and lastmod
        entry: dict[str, Any] = {}
        self.title_depth = -1
        self.guidislink = False
        self.depths = {}
        for child in el.iterchildren(etree.Element):
            self._entry_element(child, self._name(child), entry, depth + 1, top=True)
        self.has_content = False
        return entry

    def _entry_element(
        self, el: Any, name: str, entry: dict[str, Any], depth: int, *, top: bool
    ) -> None:
        if name.startswith("media_"):
            self._media(el, name, entry, depth)
        elif not top:
            raise _Decline  # only Media RSS elements inside media:content and media:group
        elif name == "title":
            self._title(el, name, entry, depth, entry=True)
        elif name == "link":
            self._link(el, entry, entry=True)
        elif name in ("id", "guid"):
            self._guid(el, entry, depth, entry=True)
        elif name in ("description", "summary", "content", "content_encoded"):
            self._content(el, name, entry, depth)
        elif name in _PUBLISHED or name in _UPDATED:
            value = self._text(self._leaf_text(el), "published")
            key = "published_parsed" if name in _PUBLISHED else "updated_parsed"
            entry[key] = _parse_date(value)
        elif name in _AUTHORS:
            self._author(el, entry, depth)
        elif name in ("category", "dc_subject"):
            self._category(self._attrs(el), self._leaf_text(el), entry)
        elif name == "enclosure":
            self._leaf_text(el)
            attrs = self._enforce_href(self._attrs(el))
            attrs["rel"] = "enclosure"
            entry.setdefault("links", []).append(attrs)
        elif name in _HARMLESS_IN_ENTRY:
            self._leaf_text(el)
        else:
            self._harmless(el, name)

    def _store(self, entry: dict[str, Any], key: str, value: Any, depth: int) -> None:
        """An entry's value, unless one from a shallower element is already there."""
        old = self.depths.get(key)
        if old is None or depth <= old:
            self.depths[key] = depth
            entry[key] = value

    def _content_type(self, el: Any, default: str) -> str:
        if not el.attrib:
            return default
        attrs = self._attrs(el)
        if set(attrs) - {"type", "xml:lang"}:
            raise _Decline  # mode="base64", src=…: not plain text or HTML
        kind = attrs.get("type", default)
        kind = {"text": "text/plain", "plain": "text/plain", "html": "text/html"}.get(kind, kind)
        if kind not in _TEXT_TYPES:
            raise _Decline  # XHTML, or a type feedparser would base64-decode
        return kind

    def _title(self, el: Any, name: str, ctx: dict[str, Any], depth: int, *, entry: bool) -> None:
        kind = self._content_type(el, "text/plain")
        out = self._leaf_text(el).strip()
        if not self.atom and kind == "text/plain" and _looks_like_html(out):
            kind = "text/html"
        out = _repaired(out)
        if not -1 < self.title_depth <= depth:
            if entry:
                self._store(ctx, "title", out, depth)
                ctx["title_detail"] = {"type": kind}
            else:
                ctx["title"] = out
        if out and name != "media_title":  # media:title leaves the depth as it was
            self.title_depth = depth

    @staticmethod
    def _enforce_href(attrs: dict[str, str]) -> dict[str, str]:
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            attrs.pop("url", None)
            attrs.pop("uri", None)
            attrs["href"] = href
        return attrs

    def _link(self, el: Any, ctx: dict[str, Any], *, entry: bool) -> None:
        attrs = self._attrs(el)
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        attrs = self._enforce_href(attrs)
        if "href" in attrs:
            attrs["href"] = _urljoin(self.base, attrs["href"])
        links = ctx.setdefault("links", [])
        links.append(attrs)
        text = self._leaf_text(el)
        if "href" in attrs:
            kind = feedparser.mixin._FeedParserMixin.map_content_type(attrs["type"])
            if attrs["rel"] == "alternate" and kind in _FP_PARSER.html_types:
                ctx["link"] = attrs["href"]
            return
        out = self._text(text, "link")
        if entry:
            out = _LINK_ENTITY.sub(r"&\g<1>", out.replace("&amp;", "&"))
            ctx["link"] = out
            if out:
                links[-1]["href"] = out
        else:
            out = _LINK_ENTITY.sub(r"&\g<1>", out)
            ctx["link"] = out
            links[-1]["href"] = out

    def _guid(self, el: Any, ctx: dict[str, Any], depth: int, *, entry: bool) -> None:
        self.guidislink = self._attrs(el).get("ispermalink", "true") == "true"
        out = self._text(self._leaf_text(el), "id")
        if entry:
            self._store(ctx, "id", out, depth)
        else:
            ctx["id"] = out
        ctx.setdefault("guidislink", self.guidislink and "link" not in ctx)
        if self.guidislink:
            ctx.setdefault("link", out)

    def _content(self, el: Any, name: str, entry: dict[str, Any], depth: int) -> None:
        if name in ("description", "summary"):
            if self.atom != (name == "summary"):
                raise _Decline
            if "summary" in entry and not self.has_content:
                raise _Decline  # feedparser would take this one as content
            kind = self._content_type(el, "text/plain" if self.atom else "text/html")
        elif name == "content":
            if not self.atom:
                raise _Decline
            kind = self._content_type(el, "text/plain")
        else:
            kind = self._content_type(el, "text/html")
        out = self._leaf_text(el).strip()
        if not self.atom and kind == "text/plain" and _looks_like_html(out):
            kind = "text/html"
        out = _repaired(out)
        if name in ("description", "summary"):
            self._store(entry, "summary", out, depth)
            entry["summary_detail"] = {"type": kind}
        else:
            self.has_content = True
            entry.setdefault("content", []).append({"type": kind, "value": out})
            entry.setdefault("summary", out)

    def _author(self, el: Any, entry: dict[str, Any], depth: int) -> None:
        authors = entry.setdefault("authors", [])
        authors.append({})
        own = el.text or ""
        for part in el:
            own += part.tail or ""  # text between the parts is the element's own
            if not isinstance(part.tag, str):
                continue  # a comment
            name = self._name(part)
            text = self._leaf_text(part)
            if name in ("name", "email"):
                self._save_author(entry, name, text.strip())
            elif name in ("url", "uri", "homepage"):
                self._save_author(entry, "href", self._text(text, "href"))
            else:
                raise _Decline
        self._store(entry, "author", self._text(own, "author"), depth)
        self._sync_author(entry)

    def _save_author(self, entry: dict[str, Any], key: str, value: str) -> None:
        self._sync_author(entry)
        entry.setdefault("authors", [{}])[-1][key] = value

    @staticmethod
    def _sync_author(entry: dict[str, Any]) -> None:
        """feedparser's ``_sync_author_detail``, for the keys that are read."""
        detail = entry.get("authors", [{}])[-1]
        if detail:
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                entry["author"] = f"{name} ({email})"
            elif name:
                entry["author"] = name
            elif email:
                entry["author"] = email
            return
        author, address = entry.get("author"), None
        if not author:
            return
        match = _AUTHOR_EMAIL.search(author)
        if match:
            address = match.group(0)
            author = author.replace(address, "").replace("()", "").replace("<>", "")
            author = author.replace("&lt;&gt;", "").strip()
            if author and author[0] == "(":
                author = author[1:]
            if author and author[-1] == ")":
                author = author[:-1]
            author = author.strip()
        if author:
            detail["name"] = author
        if address:
            detail["email"] = address

    def _category(self, attrs: dict[str, str], text: str, entry: dict[str, Any]) -> None:
        self._add_tag(
            entry, attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label")
        )
        out = self._text(text, "category")
        if not out:
            return
        tags = entry["tags"]
        if tags and not tags[-1]["term"]:
            tags[-1]["term"] = out
        else:
            self._add_tag(entry, out, None, None)

    @staticmethod
    def _add_tag(
        entry: dict[str, Any], term: str | None, scheme: str | None, label: str | None
    ) -> None:
        tags = entry.setdefault("tags", [])
        if not term and not scheme and not label:
            return
        value = {"term": term, "scheme": scheme, "label": label}
        if value not in tags:
            tags.append(value)

    def _media(self, el: Any, name: str, entry: dict[str, Any], depth: int) -> None:
        if name in ("media_content", "media_group"):
            if name == "media_content":
                entry.setdefault("media_content", []).append(self._attrs(el))
            if depth > 8:
                raise _Decline
            for child in el.iterchildren(etree.Element):
                self._entry_element(child, self._name(child), entry, depth + 1, top=False)
        elif name == "media_title":
            self._title(el, name, entry, depth, entry=True)
        elif name == "media_category":
            attrs = self._attrs(el)
            attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
            self._category(attrs, self._leaf_text(el), entry)
        elif name == "media_thumbnail":
            attrs = self._attrs(el)
            entry.setdefault("media_thumbnail", []).append(attrs)
            url = self._text(self._leaf_text(el), "url")
            if url.strip() and "url" not in attrs:
                attrs["url"] = url
        elif name == "media_credit":
            entry.setdefault("media_credit", []).append(self._attrs(el))
            credit = self._text(self._leaf_text(el), "credit")
            if credit.strip():
                entry["media_credit"][-1]["content"] = credit
        elif name == "media_description":
            entry.setdefault("media_description", []).append(self._attrs(el))
            text = self._leaf_text(el).strip()  # feedparser does not expect text here
            if text.strip():
                entry["media_description"][-1]["content"] = text
        elif name in _HARMLESS_IN_ENTRY:
            self._leaf_text(el)
        else:
            raise _Decline


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
