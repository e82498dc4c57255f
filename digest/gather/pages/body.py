"""An article page's body: its paragraphs in order, from the first extractor that finds any.

First, prose written outside any paragraph (a body of text and ``<br>``s, a first paragraph
left bare before the first ``<p>``) is wrapped into paragraphs, so that no extractor skips the
lede for want of a ``<p>``. trafilatura comes next: its scoring drops navigation, share bars,
related-article rails and comments best on real pages, and here it runs with
``favor_precision`` and rails pruned first; a rail's paragraph it hoists above the body is
dropped. Where it finds no body (a table layout, a short brief it scores as boilerplate, a
wrapper whose class it distrusts), the page is read again without the pruning, then by
readability's scoring (readability-lxml), then by the page's own rule of thumb: the paragraphs
of the container that holds the most paragraph text. A page with a readable body therefore
always yields paragraphs; which extractor found them does not change what is furniture
(``digest.text.is_furniture`` and the rules in ``extract``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import lxml.html
import regex
import trafilatura
from readability import Document as Readability

from digest.text import clean_line

# Containers that are never the article's body, whatever trafilatura's scoring says: on pages
# built of plain <div>s a rail of related-article cards (each with its own paragraphs) otherwise
# reads as more body text after the real one. A container that holds the headline or the
# article is a page wrapper whatever its class ("has-share-bar"), so it is never pruned.
_RAIL_WORDS = (
    "related", "recommend", "read-next", "readnext", "more-stories", "more-from", "trending",
    "most-popular", "newsletter", "share", "social", "outbrain", "taboola", "comments",
)  # fmt: skip
_LOWER = "translate(@class, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
PRUNE = [
    "//aside[not(.//h1)]",
    "//nav[not(.//h1)]",
    "//footer[not(.//h1)]",
    "//*[not(self::html or self::body or .//h1 or .//article or .//main) and ({})]".format(
        " or ".join(f"contains({_LOWER}, '{word}')" for word in _RAIL_WORDS)
    ),
]
TRAFILATURA_OPTIONS: dict[str, Any] = {
    "favor_precision": True,
    "include_comments": False,
    "include_tables": False,
    "include_images": False,
    "include_links": False,
    "deduplicate": False,
}


_LEDE_LENGTH = 80


def body_candidates(tree: Any, base: str, document: Any) -> Iterator[tuple[str, list[str]]]:
    """(extractor, paragraphs) in the order they are trusted; each computed only when asked.

    ``document`` is trafilatura's first pass (rails pruned), already run for its metadata.
    """
    text = _page_text(tree)
    yield "trafilatura", in_page_order(trafilatura_paragraphs(document), text)
    options = {**TRAFILATURA_OPTIONS, "url": base or None}
    unpruned = trafilatura.bare_extraction(tree, **options)
    yield "trafilatura without pruning", in_page_order(trafilatura_paragraphs(unpruned), text)
    yield "readability", readability_paragraphs(tree)
    yield "page paragraphs", page_paragraphs(tree)


def _page_text(tree: Any) -> str:
    nodes = tree.xpath("//body//text()[not(ancestor::script or ancestor::style)]")
    return clean_line("".join(nodes))


def in_page_order(paragraphs: list[str], page_text: str) -> list[str]:
    """The paragraphs without a leading one that the page shows after the one that follows it.

    trafilatura sometimes hoists a rail's paragraph (a sidebar's guide, a promo) above the
    body it found; in the page, that text comes after the body's first paragraph. Only
    paragraphs of a lede's length are compared: a short line ("See more photos") also occurs
    in headlines and menus, so where the page first shows it tells nothing.
    """
    out = list(paragraphs)
    for _ in range(2):
        long = [p for p in out if len(p) >= _LEDE_LENGTH]
        if len(long) < 2:
            break
        first, second = (page_text.find(p[:_LEDE_LENGTH]) for p in long[:2])
        if not first > second >= 0:
            break
        out.remove(long[0])
    return out


# --------------------------------------------------------------------------------------------
# trafilatura
def trafilatura_paragraphs(document: Any) -> list[str]:
    """Plain-text paragraphs of trafilatura's body tree, in order."""
    body = getattr(document, "body", None)
    return [] if body is None else list(block_paragraphs(body))


# Elements of trafilatura's body (its XML) or of HTML, as paragraphs. Headings (the title, the
# dek, subheads) are never a lede; list items and quotes are paragraphs of their own; tables,
# figures and code are not text. Other containers (trafilatura's own fallbacks hand back HTML
# ``<div>``s) are walked into; text loose in a container is a line of chrome ("05/10/2018 -
# Posted by …"), not a paragraph.
_PARAGRAPH = frozenset({"p", "item", "li"})
_QUOTE = frozenset({"quote", "blockquote"})
_NOT_TEXT = frozenset(
    {"head", "h1", "h2", "h3", "h4", "h5", "h6", "table", "graphic", "img", "figure",
     "figcaption", "code", "pre", "script", "style", "noscript", "form", "button", "select"}
)  # fmt: skip


def block_paragraphs(root: Any) -> Iterator[str]:
    """The paragraphs under ``root`` (trafilatura's body or an HTML element), in order."""
    stack: list[Any] = list(reversed(root))
    while stack:
        element = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in _PARAGRAPH:
            text = _text_of(element)
        elif tag in _QUOTE and any(c.tag in _PARAGRAPH for c in element):
            stack.extend(reversed(element))
            continue
        elif tag in _QUOTE:
            text = _text_of(element)
        elif tag and tag not in _NOT_TEXT:
            stack.extend(reversed(element))
            continue
        else:
            continue
        if text:
            yield text


def _text_of(element: Any) -> str:
    parts: list[str] = []
    for node in element.iter():
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in ("lb", "br"):
            parts.append(" ")
        elif tag and tag not in _NOT_TEXT:
            parts.append(node.text or "")
        if node is not element:
            parts.append(node.tail or "")
    return paragraph_text("".join(parts))


# A dateline set apart by markup alone ("<cite>(CNN)</cite>President …"): a closing bracket
# then a capitalised word never touch in running text.
_DATELINE_GAP = regex.compile(r"(?<=\))(?=\p{Lu}[\p{Ll}\s'’])")


def paragraph_text(raw: str) -> str:
    """One paragraph's text as a reader sees it: entities decoded, whitespace collapsed, a
    dateline that only markup separated from the sentence given its space."""
    return _DATELINE_GAP.sub(" ", clean_line(raw))


# --------------------------------------------------------------------------------------------
# Text outside paragraphs
# Elements that flow inside a line of text; any other element (and ``<br>``) ends a paragraph.
_INLINE = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "data", "dfn", "em", "font", "i", "img", "ins",
     "kbd", "mark", "picture", "q", "s", "samp", "small", "span", "strong", "sub", "sup",
     "time", "u", "var", "wbr"}
)  # fmt: skip
_CONTAINERS = ("div", "section", "article", "main", "td", "center", "font", "body")
# Prose, not a line of chrome ("05/10/2018 - Posted by … - Tags: …"): a sentence ends in it.
_PROSE = regex.compile(r"\p{L}{2}.*[.!?…。！？][\"'”’)\]]*(\s|$)")
_MIN_PROSE = 40


def wrap_loose_text(tree: Any) -> None:
    """Wrap prose written outside any paragraph into ``<p>`` elements, in place.

    Many bodies are text and ``<br>``s in a ``<div>``, or open with a paragraph left bare
    before the first ``<p>``; extractors that count paragraphs skip such text, and with it
    the lede. Each run of text and inline elements between ``<br>``s and block elements that
    reads as prose becomes a paragraph; shorter or sentence-less runs (datelines, bylines,
    tag lists) stay as they were.
    """
    for container in [c for c in tree.iter(*_CONTAINERS) if _has_loose_text(c)]:
        _wrap_runs(container)


def _has_loose_text(container: Any) -> bool:
    # Text beside ``<br>``s or block elements; a container of text and inline elements only is
    # itself a paragraph (a ``<div>`` used as a ``<p>``), which the extractors read as one.
    if not any(not _is_inline(child) for child in container):
        return False
    return bool((container.text or "").strip()) or any(
        (child.tail or "").strip() for child in container
    )


def _wrap_runs(container: Any) -> None:
    items: list[Any] = [container.text or ""]
    for child in container:
        items += [child, child.tail or ""]
        child.tail = None
    container.text = None
    for child in list(container):
        container.remove(child)
    run: list[Any] = []
    for item in [*items, None]:
        if isinstance(item, str) or (item is not None and _is_inline(item)):
            run.append(item)
            continue
        text = "".join(i if isinstance(i, str) else i.text_content() for i in run)
        target = container
        if _is_prose(clean_line(text)):
            target = lxml.html.Element("p")
            container.append(target)
        for part in run:
            _append(target, part)
        run = []
        if item is not None:
            container.append(item)


def _is_prose(text: str) -> bool:
    return len(text) >= _MIN_PROSE and bool(_PROSE.search(text))


def _is_inline(element: Any) -> bool:
    return not isinstance(element.tag, str) or element.tag in _INLINE


def _append(parent: Any, item: Any) -> None:
    if not isinstance(item, str):
        parent.append(item)
    elif len(parent):
        parent[-1].tail = (parent[-1].tail or "") + item
    else:
        parent.text = (parent.text or "") + item


# --------------------------------------------------------------------------------------------
# readability-lxml and the page's own paragraphs
def readability_paragraphs(tree: Any) -> list[str]:
    """The paragraphs of the element readability's scoring takes for the article; none when
    it cannot score the page (the next reader in order still can)."""
    try:
        document = Readability(lxml.html.tostring(tree, encoding="unicode"))
        summary = document.summary(html_partial=True)
        root = lxml.html.fragment_fromstring(summary, create_parent="div")
    except Exception:  # readability on markup it cannot score: Unparseable, lxml's errors
        return []
    return list(block_paragraphs(root))


# Where paragraphs are site furniture, not the article's: by element, or by class or id.
_CHROME_TAGS = frozenset({"header", "nav", "footer", "aside", "form", "button", "figure"})
_CHROME_CLASS = re.compile(
    r"related|recommend|sidebar|promo|advert|newsletter|comment|share|social|footer|menu|"
    r"caption|credit|cookie|consent|subscribe",
    re.I,
)


def page_paragraphs(tree: Any) -> list[str]:
    """The paragraphs (``<p>``, or a ``<div>`` of prose used as one) outside navigation,
    headers, footers, forms and rails, of the container that holds the most paragraph text: a
    rule of thumb for pages that defeat the scoring extractors."""
    groups: dict[Any, list[str]] = {}
    for element in tree.iter("p", "div"):
        if element.tag == "div" and any(not _is_inline(child) for child in element):
            continue
        text = paragraph_text(element.text_content())
        if not text or (element.tag == "div" and not _is_prose(text)) or _in_chrome(element):
            continue
        groups.setdefault(element.getparent(), []).append(text)
    if not groups:
        return []
    return max(groups.values(), key=lambda texts: sum(len(t) for t in texts))


def _in_chrome(element: Any) -> bool:
    for node in [element, *element.iterancestors()]:
        if node.tag in ("body", "html"):
            # The page's own classes ("logged-out subType-unsubscribed") say nothing of it.
            break
        if node.tag in _CHROME_TAGS:
            return True
        if node.tag not in ("article", "main") and _CHROME_CLASS.search(
            f"{node.get('class') or ''} {node.get('id') or ''}"
        ):
            return True
    return False


# --------------------------------------------------------------------------------------------
# The standfirst
_STANDFIRST_CLASS = re.compile(
    r"dek|standfirst|strapline|sub-?head|subtitle|subline|excerpt|abstract", re.I
)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def shown_as_standfirst(tree: Any, description: str) -> bool:
    """Whether the page shows its description as a standfirst: in a heading, in an element
    whose class or id names one ("dek", "standfirst", "subtitle", …), or in a ``<header>``.

    Many CMSs copy the body's first paragraph into the description; shown only there, in the
    body, it is the lede, not furniture.
    """
    words = description.split()[:4]
    if not words:
        return False
    start = " ".join(words)
    for node in tree.iter():
        if not isinstance(node.tag, str) or start not in clean_line(node.text or ""):
            continue
        for element in [node, *node.iterancestors()][:4]:
            if clean_line(element.text_content()) != description:
                continue
            if _is_standfirst(element):
                return True
    return False


def _is_standfirst(element: Any) -> bool:
    if element.tag in _HEADINGS:
        return True
    if any(a.tag == "header" for a in element.iterancestors()):
        return True
    parent = element.getparent()
    for node in (element, parent) if parent is not None else (element,):
        if _STANDFIRST_CLASS.search(f"{node.get('class') or ''} {node.get('id') or ''}"):
            return True
    return False
