"""Teasers: what a card shows of an article (kicker, title, image, the lede, the link)."""

from __future__ import annotations

from collections.abc import Iterable

from digest.config import SectionSettings
from digest.models import Article, Image, Teaser
from digest.text import clean_line, graphemes, is_furniture, paragraphs, truncate


def kicker_for(article: Article, section: SectionSettings) -> str:
    """The section's kicker, with ``{category}`` filled from the article's categories.

    The category is the first one that is not the section itself (so "Analysis | Europe", not
    "Analysis | Analysis"). Without one, the part around ``{category}`` is dropped.
    """
    template = section.kicker or section.title
    if "{category}" not in template:
        return clean_line(template)
    own = {section.title.casefold(), template.replace("{category}", "").strip(" |·-").casefold()}
    category = next((c for c in article.categories if c.strip().casefold() not in own), "")
    if category:
        return clean_line(template.replace("{category}", category))
    stripped = template.replace("{category}", "").strip(" |·-—")
    return clean_line(stripped or section.title)


def lede(
    article: Article, *, max_paragraphs: int, budget: int, skip: Iterable[str] = ()
) -> tuple[str, ...]:
    """The first paragraphs of the article, furniture skipped, within ``budget`` graphemes."""
    also = (*(s for s in skip if s), article.title)
    out: list[str] = []
    left = budget
    for source in (article.summary_html, article.content_html):
        for para in paragraphs(source):
            if is_furniture(para, also=also) or para in out:
                continue
            size = len(graphemes(para))
            if size <= left:
                out.append(para)
                left -= size
            else:
                # Too short a tail reads as a fragment: end on the previous paragraph instead.
                if not out or left >= 80:
                    out.append(truncate(para, max(left, 40)))
                return tuple(out)
            if len(out) >= max_paragraphs:
                return tuple(out)
        if out:
            break
    return tuple(out)


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
    """A card (``full``) or a headline-only item for ``article`` in ``section``."""
    image = article.image
    if image is not None and not image.alt:
        image = Image(**{**image.model_dump(), "alt": article.title})
    skip = (image.caption, image.credit) if image else ()
    return Teaser(
        article_id=article.id,
        section=section_key,
        url=article.url,
        kicker=kicker_for(article, section),
        title=clean_line(article.title),
        paragraphs=lede(article, max_paragraphs=max_paragraphs, budget=budget, skip=skip)
        if full
        else (),
        image=image if full else None,
        authors=article.authors,
        published=article.published,
        full=full,
        pinned=pinned,
    )
