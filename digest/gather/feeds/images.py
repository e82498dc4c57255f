"""An entry's lead image: media:content, media:thumbnail, an image enclosure, or the first <img>.

With its alt text, caption (media:description) and credit (media:credit); tracking pixels and
lazy-loading placeholders are passed over for the real picture.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from digest.gather.feeds.drafts import ImageDraft
from digest.gather.feeds.normalise import (
    _http_or_none,
    _is_placeholder,
    _text,
    _unique,
    clean_title,
)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
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
) -> ImageDraft | None:
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
    return ImageDraft(
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


def _media_texts(items: Any) -> list[str]:
    out = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                text = clean_title(_text(item.get("content")))
                if text:
                    out.append(text)
    return out
