"""URL, id, title and HTML normalisers: what every article's fields go through.

``canonical_url`` (the URL an article is known by), ``article_id`` (a stable id from a trusted
guid or the canonical URL), ``clean_title`` (one safe line of plain text), ``cap_article`` (the
length caps on its one-line fields) and ``sanitize_html`` (an explicit allow-list of tags and
attributes), with the small helpers the other modules of the package share.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import nh3

from digest.text import truncate

if TYPE_CHECKING:
    from digest.gather.feeds.drafts import ArticleDraft
    from digest.models import Article

    A = TypeVar("A", Article, ArticleDraft)

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


# Caps on an article's one-line fields, in graphemes: far above any real headline, byline or
# caption, low enough that one broken or hostile item (a 1 MB title) cannot carry megabytes
# into every edition. Longer text is cut at a sentence end or a word, with an ellipsis
# (digest.text.truncate); lists keep their first entries.
TITLE_MAX = 300
NAME_MAX = 200  # an author, an image credit
CATEGORY_MAX = 100
CAPTION_MAX = 500  # an image caption or its alt text
AUTHORS_MAX = 20
CATEGORIES_MAX = 50


def cap_line(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else cut to ``limit`` graphemes."""
    return text if len(text) <= limit else truncate(text, limit)


def cap_article(article: A) -> A:
    """``article`` with its title, authors, categories and image caption, credit and alt text
    held to the caps above (the same article when nothing is over); an ``Article`` or the
    parser's ``ArticleDraft``."""
    changes: dict[str, Any] = {}
    title = cap_line(article.title, TITLE_MAX)
    if title != article.title:
        changes["title"] = title
    authors = _unique(cap_line(a, NAME_MAX) for a in article.authors[:AUTHORS_MAX])
    if authors != article.authors:
        changes["authors"] = authors
    categories = _unique(cap_line(c, CATEGORY_MAX) for c in article.categories[:CATEGORIES_MAX])
    if categories != article.categories:
        changes["categories"] = categories
    image = article.image
    if image is not None:
        texts = {
            "alt": cap_line(image.alt, CAPTION_MAX),
            "caption": cap_line(image.caption, CAPTION_MAX),
            "credit": cap_line(image.credit, NAME_MAX),
        }
        if texts != {"alt": image.alt, "caption": image.caption, "credit": image.credit}:
            changes["image"] = image.model_copy(update=texts)
    return article.model_copy(update=changes) if changes else article


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


# A lazy-loading placeholder or an empty source: never the picture (images, sanitize_html).
_PLACEHOLDER_NAME = re.compile(
    r"(?:^|[/_.-])(?:blank|spacer|pixel|placeholder|transparent|lazy|loading|1x1)[^/]*$",
    re.IGNORECASE,
)


def _is_placeholder(src: str) -> bool:
    src = src.strip()
    if not src or src.lower().startswith(("data:", "about:", "javascript:")):
        return True
    path = unquote(urlsplit(src).path)
    return bool(_PLACEHOLDER_NAME.search(path))


# Small helpers the package's modules share.
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))
