"""Reading one article page: decoding, trafilatura's pass with its metadata, the paragraphs
that are the lede (furniture removed), assembled into a ``PageExtract``."""

from __future__ import annotations

import codecs
import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trafilatura

from digest.errors import LocatedError, PermanentError
from digest.gather.feeds import clean_title
from digest.gather.pages.body import (
    PRUNE,
    TRAFILATURA_OPTIONS,
    body_candidates,
    shown_as_standfirst,
    wrap_loose_text,
)
from digest.gather.pages.images import captions, lead_image
from digest.gather.pages.metadata import Meta, authors, published
from digest.models import Image
from digest.text import is_furniture

__all__ = ["MAX_PAGE_BYTES", "PageError", "PageExtract", "extract_page"]

# An article page is rarely over 1 MB; five leaves room for inline scripts and keeps the parser
# (and trafilatura's decompression of a compressed body) within a bounded amount of memory.
MAX_PAGE_BYTES = 5 * 1024 * 1024
# Less text than this is what trafilatura finds on pages that have no article (a sign-in form's
# "Forgot your password?", a cookie wall): not a lede. A one-sentence brief is longer.
_MIN_TEXT = 80


class PageError(LocatedError, PermanentError):
    """An article page could not be turned into a lede (no article text, too big, unreadable).
    Its message starts with "page <url>"."""

    label_prefix = "page "


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
        raise PageError(
            f"{label}: expected bytes or str, got {type(html).__name__}",
            url=url,
            reason="not a page",
        )
    size = len(html) if isinstance(html, bytes) else len(html.encode("utf-8", "surrogatepass"))
    if size > MAX_PAGE_BYTES:
        raise PageError(
            f"{label}: {size} bytes, over the {MAX_PAGE_BYTES}-byte limit",
            url=url,
            reason="page too big",
        )
    if not html.strip():
        raise PageError(f"{label}: empty page", url=url, reason="empty page")
    base = url if _is_http(url) else ""

    text = _decode(html) if isinstance(html, bytes) else html
    # lxml refuses lone surrogates and NUL; neither belongs in a page.
    text = _UNPARSABLE.sub("", text)
    try:
        tree = trafilatura.load_html(text, MAX_PAGE_BYTES)
    except Exception as e:  # lxml and trafilatura on hostile markup: any failure is the page's
        raise PageError(
            f"{label}: unreadable HTML ({type(e).__name__})", url=url, reason="unreadable HTML"
        ) from None
    if tree is None:
        raise PageError(f"{label}: not an HTML page", url=url, reason="not an HTML page")

    try:
        return _extract(tree, url, base, max_paragraphs)
    except PageError:
        raise
    except Exception as e:  # trafilatura and our passes on a hostile tree (deep nesting, …)
        raise PageError(
            f"{label}: extraction failed ({type(e).__name__})", url=url, reason="extraction failed"
        ) from None


# trafilatura's metadata pass also guesses a date with htmldate; we read only stated times
# (``metadata.published``), so keep its search cheap and its bound fixed, not "today".
_DATES: dict[str, Any] = {
    "original_date": True,
    "extensive_search": False,
    "max_date": "2200-12-31",
}


def _extract(tree: Any, url: str, base: str, max_paragraphs: int) -> PageExtract:
    # The text passes work on a copy; ``tree`` stays whole for the images and metadata.
    text_tree = copy.deepcopy(tree)
    wrap_loose_text(text_tree)
    document = trafilatura.bare_extraction(
        text_tree,
        url=base or None,
        prune_xpath=PRUNE,
        with_metadata=True,
        date_extraction_params=_DATES,
        **TRAFILATURA_OPTIONS,
    )
    if not isinstance(document, trafilatura.settings.Document):
        # No body trafilatura trusts: the metadata alone, for the other extractors' paragraphs.
        document = trafilatura.metadata.extract_metadata(
            copy.deepcopy(tree), default_url=base or None, date_config=_DATES
        )

    meta = Meta.read(tree)
    title = clean_title(document.title or "") or meta.first("og:title", "twitter:title")
    title = title or clean_title(tree.findtext(".//title") or "")
    description = clean_title(document.description or "") or meta.first(
        "og:description", "description", "twitter:description"
    )
    image = lead_image(tree, meta, base)

    furniture = {title, *captions(tree)}
    if description and shown_as_standfirst(tree, description):
        furniture.add(description)
    if image is not None:
        furniture.update((image.caption, image.credit, image.alt))
    furniture.discard("")
    kept: list[str] = []
    for _extractor, found in body_candidates(text_tree, base, document):
        kept = _lede(found, furniture, max_paragraphs)
        if not kept and description and description in found:
            # The standfirst is furniture beside a body, but it is all this page has to say.
            kept = [description]
        if sum(len(p) for p in kept) >= _MIN_TEXT:
            break
    else:
        raise PageError(f"page {url}: no article text found", url=url, reason="no article text")
    return PageExtract(
        paragraphs=tuple(kept),
        image=image,
        title=title,
        published=published(tree, meta),
        authors=authors(document.author),
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


def _lede(found: Iterable[str], furniture: set[str], limit: int) -> list[str]:
    folded = {f.casefold() for f in furniture}
    out: list[str] = []
    for para in found:
        if (
            para.casefold() in folded
            or is_furniture(para)
            or _is_kicker(para)
            or _NOTICE.search(para)
            or para in out
        ):
            continue
        out.append(para)
        if len(out) >= limit:
            break
    return out


# A page's licence or copyright notice, wherever its template puts it; a bare link.
_NOTICE = re.compile(
    r"^[a-z][a-z0-9+.-]*://\S+$"
    r"|^this (copy|article|material|content) is for your personal\b"
    r"|^(©|copyright\s*(©|\(c\)|\d{4}))"
    r"|^.{0,120}\ball rights reserved\.?$",
    re.IGNORECASE,
)


def _is_kicker(text: str) -> bool:
    """A kicker or breadcrumb ("Analysis | Europe", "News › World"): short labels, no sentence."""
    parts = [p.strip() for p in re.split(r"\s*[|›»/·]\s*", text)]
    return (
        len(parts) >= 2
        and all(p and len(p.split()) <= 3 for p in parts)
        and not _SENTENCE.search(text)
    )


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))
