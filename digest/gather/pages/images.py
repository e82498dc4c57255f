"""An article page's lead image: og:image or the article's first picture, with its caption
and credit; and every caption on the page (never a paragraph of the body)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from digest.gather.feeds import canonical_url, clean_title
from digest.gather.pages.metadata import Meta
from digest.models import Image
from digest.text import is_furniture

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


def lead_image(tree: Any, meta: Meta, base: str) -> Image | None:
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


def captions(tree: Any) -> Iterator[str]:
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
