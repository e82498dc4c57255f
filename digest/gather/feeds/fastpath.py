"""The fast path: well-formed RSS 2.0 and Atom 1.0 through lxml, to feedparser's entries.

feedparser's SAX handlers cost about 80 % of a big feed's parse. For the common, well-formed
cases lxml (no DTD, no network, no entity expansion, no recovery) builds the tree in a few
milliseconds and the entries below are made from it in exactly the shape, and by exactly the
rules, feedparser's handlers would give them (text stripped, links resolved against the feed's
URL, feedparser's date parser, its title guessing, its UTF-8/windows-1252 repairs, its
first-title/first-summary precedence), so that ``entries._article`` normalises both alike.
Whatever this path does not reproduce exactly (other roots or versions, xml:base, DOCTYPEs,
XHTML or base64 text, unknown elements that feedparser has a handler for, an encoding problem,
anything lxml rejects) makes it decline, and feedparser parses the feed as before.
tests/gather/test_fastpath.py checks that the two paths give equal articles on the feedparser
corpus and on generated feeds.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import feedparser
from lxml import etree

from digest.gather.feeds.encoding import _convert_to_utf8
from digest.gather.feeds.guard import _ROOT_START
from digest.gather.feeds.normalise import _is_http


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
        data = _convert_to_utf8(dict(self.headers), self.body, result)
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
