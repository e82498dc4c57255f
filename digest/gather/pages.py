"""Article page HTML → what a teaser needs: the body's first paragraphs, lead image, metadata.

This module owns reading one fetched article page, for sources whose feed carries only a title
and a link. trafilatura finds the main text (it drops navigation, share bars, related-article
rails and comments); this module then keeps the body's paragraphs only, removes what is still
page furniture (the title and standfirst repeated, captions, credits, image file names, kickers,
"Continue reading" stubs), and reads the lead image, title, publication time, authors and
standfirst from the page's ``<meta>`` tags, JSON-LD and markup.

It is pure: no network, no disk, no clock. trafilatura can download pages, but only its
``fetch_url`` family does; the functions used here parse the text they are given (tests run
them with sockets disabled). trafilatura's metadata pass calls htmldate, which reads today's
date to bound its guesses; that guess is discarded here, so no output depends on the clock.

Bad input raises ``PageError`` and nothing else: a page without article text, a body over
``MAX_PAGE_BYTES``, or markup the parser cannot read.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import trafilatura

from digest.errors import PermanentError
from digest.gather.feeds import canonical_url, clean_title
from digest.models import Image
from digest.text import clean_line, is_furniture

__all__ = ["MAX_PAGE_BYTES", "PageError", "PageExtract", "extract_page"]

# An article page is rarely over 1 MB; five leaves room for inline scripts and keeps the parser
# (and trafilatura's decompression of a compressed body) within a bounded amount of memory.
MAX_PAGE_BYTES = 5 * 1024 * 1024
# Less text than this is what trafilatura finds on pages that have no article (a sign-in form's
# "Forgot your password?", a cookie wall): not a lede. A one-sentence brief is longer.
_MIN_TEXT = 80


class PageError(PermanentError):
    """An article page could not be turned into a lede (no article text, too big, unreadable)."""


@dataclass(frozen=True)
class PageExtract:
    """What a teaser needs from an article page. Text is plain, clean, one line per field."""

    paragraphs: tuple[str, ...]
    image: Image | None
    title: str
    published: datetime | None
    authors: tuple[str, ...]
    description: str


def extract_page(html: bytes | str, *, url: str, max_paragraphs: int = 5) -> PageExtract:
    """Read an article page: its body's first ``max_paragraphs`` paragraphs, lead image,
    title, publication time, authors and standfirst. ``url`` is the page's final URL
    (relative links resolve against it; it names the page in errors).

    Raises ``PageError`` when the page has no article text or cannot be read (and
    ``ValueError`` for ``max_paragraphs`` below 1, a caller's mistake).
    """
    label = f"page {url}"
    if max_paragraphs < 1:
        raise ValueError("max_paragraphs must be at least 1")
    if isinstance(html, bytearray | memoryview):
        html = bytes(html)
    if not isinstance(html, bytes | str):
        raise PageError(f"{label}: expected bytes or str, got {type(html).__name__}")
    size = len(html) if isinstance(html, bytes) else len(html.encode("utf-8", "surrogatepass"))
    if size > MAX_PAGE_BYTES:
        raise PageError(f"{label}: {size} bytes, over the {MAX_PAGE_BYTES}-byte limit")
    if not html.strip():
        raise PageError(f"{label}: empty page")
    base = url if _is_http(url) else ""

    text = _decode(html) if isinstance(html, bytes) else html
    # lxml refuses lone surrogates and NUL; neither belongs in a page.
    text = _UNPARSABLE.sub("", text)
    try:
        tree = trafilatura.load_html(text, MAX_PAGE_BYTES)
    except Exception as e:  # lxml and trafilatura on hostile markup: any failure is the page's
        raise PageError(f"{label}: unreadable HTML ({type(e).__name__})") from None
    if tree is None:
        raise PageError(f"{label}: not an HTML page")

    try:
        return _extract(tree, label, base, max_paragraphs)
    except PageError:
        raise
    except Exception as e:  # trafilatura and our passes on a hostile tree (deep nesting, …)
        raise PageError(f"{label}: extraction failed ({type(e).__name__})") from None


# Containers that are never the article's body, whatever trafilatura's scoring says: on pages
# built of plain <div>s a rail of related-article cards (each with its own paragraphs) otherwise
# reads as more body text after the real one. A container that holds the headline or the
# article is a page wrapper whatever its class ("has-share-bar"), so it is never pruned.
_RAIL_WORDS = (
    "related", "recommend", "read-next", "readnext", "more-stories", "more-from", "trending",
    "most-popular", "newsletter", "share", "social", "outbrain", "taboola", "comments",
)  # fmt: skip
_LOWER = "translate(@class, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
_PRUNE = [
    "//aside[not(.//h1)]",
    "//nav[not(.//h1)]",
    "//footer[not(.//h1)]",
    "//*[not(self::html or self::body or .//h1 or .//article or .//main) and ({})]".format(
        " or ".join(f"contains({_LOWER}, '{word}')" for word in _RAIL_WORDS)
    ),
]


def _extract(tree: Any, label: str, base: str, max_paragraphs: int) -> PageExtract:
    options: dict[str, Any] = {
        "url": base or None,
        "with_metadata": True,
        "favor_precision": True,
        "include_comments": False,
        "include_tables": False,
        "include_images": False,
        "include_links": False,
        "deduplicate": False,
        # trafilatura's metadata pass also guesses a date with htmldate; we read only stated
        # times (``_published``), so keep its search cheap and its bound fixed, not "today".
        "date_extraction_params": {
            "original_date": True,
            "extensive_search": False,
            "max_date": "2200-12-31",
        },
    }
    # trafilatura works on a copy; ``tree`` stays whole for the passes below.
    document = trafilatura.bare_extraction(tree, prune_xpath=_PRUNE, **options)
    if (
        document is None
        or isinstance(document, dict)
        or document.body is None
        or not len(document.body)
    ):
        # Pruning took the body with it (an odd class on a wrapper): trust trafilatura alone.
        document = trafilatura.bare_extraction(tree, **options)
    if document is None or isinstance(document, dict):
        raise PageError(f"{label}: no article text found")

    meta = _Meta.read(tree)
    title = clean_title(document.title or "") or meta.first("og:title", "twitter:title")
    title = title or clean_title(tree.findtext(".//title") or "")
    description = clean_title(document.description or "") or meta.first(
        "og:description", "description", "twitter:description"
    )
    image = _lead_image(tree, meta, base)

    furniture = {title, description, *_captions(tree)}
    if image is not None:
        furniture.update((image.caption, image.credit, image.alt))
    furniture.discard("")
    found = list(_body_paragraphs(document.body))
    kept = _lede(found, furniture, max_paragraphs)
    if not kept and description and description in found:
        # The standfirst is furniture beside a body, but it is all this page has to say.
        kept = [description]
    if sum(len(p) for p in kept) < _MIN_TEXT:
        raise PageError(f"{label}: no article text found")
    return PageExtract(
        paragraphs=tuple(kept),
        image=image,
        title=title,
        published=_published(tree, meta),
        authors=_authors(document.author),
        description=description,
    )


# --------------------------------------------------------------------------------------------
# Decoding
_UNPARSABLE = re.compile(r"[\x00\ud800-\udfff]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode(body: bytes) -> str:
    """The page as text: BOM, else UTF-8, else the declared charset, else trafilatura's guess.

    A declared charset beats a statistical guess; trafilatura only guesses.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(codec, "replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _META_CHARSET.search(body[:4096])
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
            # A page that declares UTF-7 (or a UTF-16/32 it is not written in) is lying or
            # hostile; browsers refuse UTF-7 for the same reason.
            if not codec.startswith(("utf-7", "utf-16", "utf-32")):
                return body.decode(codec, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return trafilatura.utils.decode_file(body, MAX_PAGE_BYTES)
    except Exception:  # a guesser failing is no reason to drop the page
        return body.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# Paragraphs
_SENTENCE = re.compile(r"[.!?…:;][\"'”’)\]]*$|[.!?…][\"'”’)\]]*\s")


def _body_paragraphs(body: Any) -> Iterator[str]:
    """Plain-text paragraphs of trafilatura's body tree, in order.

    Headings (``head``: the title, the dek, subheads) are never a lede; list items and quotes
    are paragraphs of their own; tables and images are not text.
    """
    if body is None:
        return
    for element in body:
        tag = element.tag
        if tag == "p":
            yield from _nonempty(_text_of(element))
        elif tag == "quote":
            inner = [p for p in element if p.tag == "p"]
            for part in inner or [element]:
                yield from _nonempty(_text_of(part))
        elif tag == "list":
            for item in element.iter("item"):
                yield from _nonempty(_text_of(item))


def _text_of(element: Any) -> str:
    parts: list[str] = []
    for node in element.iter():
        if node.tag == "lb":
            parts.append(" ")
        elif node is element or node.tag in ("hi", "ref", "del"):
            parts.append(node.text or "")
        if node is not element:
            parts.append(node.tail or "")
    return clean_line("".join(parts))


def _nonempty(text: str) -> Iterator[str]:
    if text:
        yield text


def _lede(found: Iterable[str], furniture: set[str], limit: int) -> list[str]:
    folded = {f.casefold() for f in furniture}
    out: list[str] = []
    for para in found:
        if para.casefold() in folded or is_furniture(para) or _is_kicker(para) or para in out:
            continue
        out.append(para)
        if len(out) >= limit:
            break
    return out


def _is_kicker(text: str) -> bool:
    """A kicker or breadcrumb ("Analysis | Europe", "News › World"): short labels, no sentence."""
    parts = [p.strip() for p in re.split(r"\s*[|›»/·]\s*", text)]
    return (
        len(parts) >= 2
        and all(p and len(p.split()) <= 3 for p in parts)
        and not _SENTENCE.search(text)
    )


def _authors(value: str | None) -> tuple[str, ...]:
    # trafilatura joins several authors with "; ".
    out: list[str] = []
    for name in (value or "").split(";"):
        name = clean_title(name)
        if name and name.casefold() not in (o.casefold() for o in out):
            out.append(name)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Meta tags and JSON-LD
class _Meta:
    """``<meta>`` values by lower-cased property/name/itemprop, first occurrence kept."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    @classmethod
    def read(cls, tree: Any) -> _Meta:
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


def _jsonld(tree: Any) -> Iterator[dict[str, Any]]:
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


def _published(tree: Any, meta: _Meta) -> datetime | None:
    """The publication time a page states (meta tags, JSON-LD, ``<time>``), aware.

    Only stated times: a date guessed from the text (trafilatura's htmldate does that) could
    be any date the article mentions. A value without a zone is taken as UTC.
    """
    candidates = [
        meta.values.get(k, "")
        for k in ("article:published_time", "og:published_time", "datepublished")
    ]
    for item in _jsonld(tree):
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


# --------------------------------------------------------------------------------------------
# Images
_LAZY_ATTRIBUTES = (
    "data-runner-src",
    "data-src",
    "data-lazy-src",
    "data-original",
    "data-srcset",
    "srcset",
    "data-lazy-srcset",
)
_PLACEHOLDER = re.compile(
    r"(?:^|[/_.-])(?:blank|spacer|pixel|placeholder|transparent|lazy|loading|1x1)[^/]*$", re.I
)
# Where a picture is chrome, not the article's: site furniture by element or by class/id.
_CHROME_TAGS = frozenset({"header", "nav", "footer", "aside", "form", "button"})
_CHROME_CLASS = re.compile(
    r"\b(logo|avatar|author|byline|icon|social|share|related|sidebar|promo|advert|ad-|"
    r"newsletter|comment|menu|nav)",
    re.I,
)
_CAPTION_CLASS = re.compile(r"caption", re.I)
_CREDIT_CLASS = re.compile(r"credit|copyright|attribution", re.I)


def _lead_image(tree: Any, meta: _Meta, base: str) -> Image | None:
    """og:image / twitter:image, else the article's first picture; caption and credit from the
    page where the same picture is shown in the article."""
    body_image = _first_body_image(tree, base)
    shared = ""
    for key in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image"):
        shared = _http_url(meta.values.get(key, ""), base)
        if shared:
            break
    if body_image is not None and (not shared or _same_picture(shared, body_image.url)):
        # The article's own copy: the size its designers chose, with its caption and credit.
        if not body_image.alt and shared:
            return body_image.model_copy(update={"alt": meta.first("og:image:alt")})
        return body_image
    if shared:
        return Image(
            url=shared,
            alt=_usable_alt(meta.first("og:image:alt", "twitter:image:alt")),
            width=_dimension(meta.values.get("og:image:width")),
            height=_dimension(meta.values.get("og:image:height")),
        )
    return body_image


def _first_body_image(tree: Any, base: str) -> Image | None:
    root = next(iter(tree.iter("article")), None)
    if root is None:
        root = next(iter(tree.iter("main")), None)
    if root is None:
        root = tree
    for img in root.iter("img"):
        if _in_chrome(img, root):
            continue
        src = _img_src(img, base)
        if not src:
            continue
        caption, credit = _caption_and_credit(img)
        alt = _usable_alt(clean_title(img.get("alt") or ""))
        return Image(
            url=src,
            alt=alt,
            caption=caption,
            credit=credit,
            width=_dimension(img.get("width")),
            height=_dimension(img.get("height")),
        )
    return None


def _in_chrome(element: Any, root: Any) -> bool:
    for node in [element, *element.iterancestors()]:
        if node is root:
            return False
        if node.tag in _CHROME_TAGS:
            return True
        if _CHROME_CLASS.search(f"{node.get('class') or ''} {node.get('id') or ''}"):
            return True
    return False


def _img_src(img: Any, base: str) -> str:
    width, height = _dimension(img.get("width")), _dimension(img.get("height"))
    if (width is not None and width <= 2) or (height is not None and height <= 2):
        return ""  # a tracking pixel
    src = (img.get("src") or "").strip()
    candidates = [src] if not _is_placeholder(src) else []
    candidates += [img.get(name) or "" for name in _LAZY_ATTRIBUTES]
    for candidate in candidates:
        first = candidate.split(",")[0].strip().split(" ")[0]  # a srcset's first URL
        if first and not _is_placeholder(first):
            url = _http_url(first, base)
            if url:
                return url
    return ""


def _caption_and_credit(img: Any) -> tuple[str, str]:
    """The caption and credit shown with a picture: its ``figcaption``, or the CMS's caption
    and credit elements beside it (RebelMouse: ``media-caption``, ``media-photo-credit``)."""
    container = next((a for a in img.iterancestors() if a.tag == "figure"), None)
    if container is None:
        # Climb past wrappers that hold nothing but the picture (and its <noscript> copy).
        container = img.getparent()
        while container is not None and not _has_text_beside(container, img):
            parent = container.getparent()
            if parent is None or parent.tag in ("body", "article", "main"):
                break
            container = parent
    if container is None:
        return "", ""
    captions: list[str] = []
    credits: list[str] = []
    for node in container.iter():
        if not isinstance(node.tag, str) or node is img:
            continue
        classes = node.get("class") or ""
        if _CREDIT_CLASS.search(classes):
            credits.append(clean_title(node.text_content()))
        elif node.tag == "figcaption" or _CAPTION_CLASS.search(classes):
            text = node.text_content()
            for inner in node.iter():
                if inner is not node and _CREDIT_CLASS.search(inner.get("class") or ""):
                    text = text.replace(inner.text_content(), " ")
            captions.append(clean_title(text))
    caption = next((c for c in captions if c and not is_furniture(c)), "")
    credit = next((c for c in credits if c), "")
    return caption, credit


def _has_text_beside(container: Any, img: Any) -> bool:
    for node in container.iter():
        if node is img or not isinstance(node.tag, str) or node.tag == "noscript":
            continue
        if (node.text or "").strip() or (node is not container and (node.tail or "").strip()):
            return True
    return False


def _captions(tree: Any) -> Iterator[str]:
    """Every caption and credit text on the page: never a paragraph of the body."""
    for node in tree.iter():
        if not isinstance(node.tag, str):
            continue
        if (
            node.tag == "figcaption"
            or _CAPTION_CLASS.search(node.get("class") or "")
            or _CREDIT_CLASS.search(node.get("class") or "")
        ):
            yield clean_title(node.text_content())


def _usable_alt(alt: str) -> str:
    # A file name ("Shutterstock_123456789-scaled", "IMG_0042.jpg") describes nothing.
    return "" if is_furniture(alt) else alt


def _same_picture(a: str, b: str) -> bool:
    # CMSs serve one picture at several sizes: same host and path, different query.
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.hostname, pa.path) == (pb.hostname, pb.path)


def _http_url(value: str, base: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    try:
        resolved = canonical_url(urljoin(base, value) if base else value)
        parts = urlsplit(resolved)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return resolved


def _is_placeholder(src: str) -> bool:
    src = src.strip()
    if not src or src.lower().startswith(("data:", "about:", "javascript:")):
        return True
    return bool(_PLACEHOLDER.search(urlsplit(src).path))


def _dimension(value: Any) -> int | None:
    text = (value if isinstance(value, str) else "").strip().lower().removesuffix("px")
    if text.isdigit() and len(text) <= 6 and int(text) > 0:
        return int(text)
    return None


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))
