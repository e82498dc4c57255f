"""Teasers: what a card shows of an article (kicker, title, image, the lede, the link).

The rules that make a card hold up on real feeds:

- the lede is the first paragraphs of the article's own text: headings, captions, credits,
  labels (a short line that is no sentence), code and a paragraph that only repeats the title
  are skipped; furniture is removed wherever it stands (``[…]``, "Continue reading →", "Read
  more", "The post … appeared first on …");
- it ends at a sentence end, or with an ellipsis where the source stops mid-sentence;
- a summary too short for a card gives way to the content's lede, and a lede shorter than
  ``MIN_CARD_CHARS`` makes a headline-only item, never an empty or two-word card;
- kickers come from real categories only (no numbers, ids, slugs, CMS defaults), or from the
  section's ``kicker_categories``; alt text that is a slug, an id or a file name gives way to
  the caption or the title.
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

from digest.config import SectionSettings
from digest.models import Article, Teaser
from digest.text import (
    blocks,
    clean_line,
    ends_sentence,
    graphemes,
    is_furniture,
    is_junk_label,
    last_sentence_end,
    strip_furniture,
    truncate,
)

# A card needs at least this many characters of lede; with fewer the item is a headline.
MIN_CARD_CHARS = 40
# A summary whose lede is shorter than this gives way to the content's, when that has more.
# ``digest.steps.gather.is_thin`` fetches the page below the same figure.
SHORT_LEDE_CHARS = 80
# A paragraph this short that ends at no sentence end is a label ("Key takeaways"), not text.
LABEL_CHARS = 80
# Categories that CMSs give every uncategorised post: they say nothing about the article.
_DEFAULT_CATEGORIES = frozenset(
    {
        "uncategorized",
        "uncategorised",
        "non classé",
        "sin categoría",
        "sem categoria",
        "senza categoria",
        "allgemein",
        "general",
        "misc",
        "miscellaneous",
        "other",
        "others",
        "default",
        "none",
        "unknown",
    }
)
_MAX_KICKER_CATEGORY = 40
_SEPARATORS = " :|·-–—"
# Code and tables read as symbols: more than this share of them and a paragraph is not prose;
# nor is a list of links.
_SYMBOLS = regex.compile(r"[{}\[\]()<>=$#@\\|/*~^`_%+;]")
_MAX_SYMBOL_SHARE = 0.06
_URL = regex.compile(r"\b(?:https?://|www\.)\S+")
_MAX_URL_SHARE = 0.25


def kicker_for(article: Article, section: SectionSettings) -> str:
    """The section's kicker, with ``{category}`` filled from the article's categories.

    The category is the first real one that is not the section itself (so "Analysis | Europe",
    not "Analysis | Analysis"): never a number, an id, a slug, one character, a list or a CMS
    default ("Uncategorized"); with ``kicker_categories`` set, only one of those. Without one,
    the part around ``{category}`` is dropped.
    """
    template = section.kicker or section.title
    if "{category}" not in template:
        return clean_line(template)
    own = {
        _fold(section.title),
        _fold(template.replace("{category}", "").strip(_SEPARATORS)),
        _fold(section.title_prefix.strip(_SEPARATORS)),
    }
    allowed = {_fold(c) for c in section.kicker_categories}
    category = next(
        (
            c
            for c in (clean_line(c) for c in article.categories)
            if _fold(c) not in own and (_fold(c) in allowed if allowed else is_kicker_category(c))
        ),
        "",
    )
    if category:
        return clean_line(template.replace("{category}", category))
    stripped = template.replace("{category}", "").strip(_SEPARATORS)
    return clean_line(stripped or section.title)


def is_kicker_category(category: str) -> bool:
    """Whether a category reads as a kicker: words, not an id, slug, list or CMS default."""
    return not (
        is_junk_label(category)
        or _fold(category) in _DEFAULT_CATEGORIES
        or len(graphemes(category)) > _MAX_KICKER_CATEGORY
        or category.count(",") >= 2
    )


def card_title(article: Article, section: SectionSettings) -> str:
    """The article's title as the card shows it: without the section's ``title_prefix`` when
    ``strip_title_prefix`` is on (never leaving it empty)."""
    title = clean_line(article.title)
    prefix = clean_line(section.title_prefix)
    if section.strip_title_prefix and prefix and title.casefold().startswith(prefix.casefold()):
        rest = title[len(prefix) :].lstrip(_SEPARATORS)
        if rest:
            return rest
    return title


def lede(
    article: Article, *, max_paragraphs: int, budget: int, skip: Iterable[str] = ()
) -> tuple[str, ...]:
    """The first paragraphs of the article, furniture skipped, within ``budget`` graphemes,
    ending at a sentence end or an ellipsis.

    The summary's lede, unless it is shorter than ``SHORT_LEDE_CHARS`` and the content gives
    more. Empty when neither has a paragraph of text.
    """
    also = tuple(s for s in skip if s)
    best: tuple[str, ...] = ()
    for source in (article.summary_html, article.content_html):
        found = _lede_of(source, article.title, also, max_paragraphs, budget)
        if _size(found) >= SHORT_LEDE_CHARS:
            return found
        if _size(found) > _size(best):
            best = found
    return best


def _lede_of(
    source: str, title: str, also: tuple[str, ...], max_paragraphs: int, budget: int
) -> tuple[str, ...]:
    out: list[str] = []
    left = budget
    for raw, heading in blocks(source):
        if heading:
            continue
        para, _ = strip_furniture(raw)
        if (
            not para
            or is_furniture(para, also=also)
            or _fold(para) == _fold(title)
            or para in out
            or _is_label(para)
            or not _is_prose(para)
        ):
            continue
        size = len(graphemes(para))
        if size <= left:
            out.append(para)
            left -= size
        else:
            # Too short a tail reads as a fragment: end on the previous paragraph instead.
            if not out or left >= SHORT_LEDE_CHARS:
                out.append(truncate(para, max(left, MIN_CARD_CHARS)))
            break
        if len(out) >= max_paragraphs:
            break
    return _ending_at_a_sentence(out)


def _ending_at_a_sentence(out: list[str]) -> tuple[str, ...]:
    """The paragraphs ending at a sentence end: a later paragraph that stops mid-sentence is
    cut back to its last sentence or dropped; a lone one is cut back, or gets an ellipsis."""
    while out and not ends_sentence(out[-1]):
        last = out.pop()
        end = last_sentence_end(last)
        if out:
            if end >= MIN_CARD_CHARS:
                out.append(last[:end].rstrip())
            continue
        if end and end >= len(last) // 2:
            out.append(last[:end].rstrip())
        else:
            out.append(last.rstrip(" ,;:—–-(") + "…")
    return tuple(out)


def _is_label(para: str) -> bool:
    return len(graphemes(para)) < LABEL_CHARS and not ends_sentence(para)


def _is_prose(para: str) -> bool:
    words = _URL.sub("", para)
    if len(para) - len(words) > _MAX_URL_SHARE * len(para):
        return False
    return len(_SYMBOLS.findall(words)) <= _MAX_SYMBOL_SHARE * max(len(words), 1)


def _size(paragraphs: tuple[str, ...]) -> int:
    return sum(len(graphemes(p)) for p in paragraphs)


def _fold(text: str) -> str:
    return " ".join(regex.sub(r"[\p{P}\p{S}]+", " ", text.casefold()).split())


def make_teaser(
    article: Article,
    *,
    section_key: str,
    section: SectionSettings,
    max_paragraphs: int,
    budget: int,
    full: bool = True,
    pinned: bool = False,
) -> Teaser:
    """A card (``full``) or a headline-only item for ``article`` in ``section``.

    A card whose lede would be shorter than ``MIN_CARD_CHARS`` becomes a headline-only item.
    """
    title = card_title(article, section)
    image = article.image
    paragraphs: tuple[str, ...] = ()
    if full:
        skip = (image.caption, image.credit) if image else ()
        paragraphs = lede(article, max_paragraphs=max_paragraphs, budget=budget, skip=skip)
        if image is not None and image.caption and _size(paragraphs) < MIN_CARD_CHARS:
            # A video feed's only text is often its thumbnail's description: the lede, then.
            text = lede(article, max_paragraphs=max_paragraphs, budget=budget, skip=skip[1:])
            if _size(text) >= MIN_CARD_CHARS:
                paragraphs, image = text, image.model_copy(update={"caption": ""})
        full = _size(paragraphs) >= MIN_CARD_CHARS
    if image is not None and not image.alt:
        image = image.model_copy(update={"alt": title})
    elif image is not None and is_junk_label(image.alt):
        # A slug, an id or a file name describes nothing: what the image shows, else the story.
        image = image.model_copy(update={"alt": image.caption or title})
    return Teaser(
        article_id=article.id,
        section=section_key,
        url=article.url,
        kicker=kicker_for(article, section),
        title=title,
        paragraphs=paragraphs if full else (),
        image=image if full else None,
        authors=article.authors,
        published=article.published,
        full=full,
        pinned=pinned,
    )
