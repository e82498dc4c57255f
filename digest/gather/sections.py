"""Which articles belong to a section: the filters of ``[sections.*]`` applied to articles.

Pure: plain values in, plain values out. A section takes articles from its ``sources`` and
keeps those whose title starts with ``title_prefix`` (case-insensitively, whitespace
collapsed), whose title matches ``title_regex`` (``re.search``) and not
``exclude_title_regex``, that carry one of ``categories`` (case-insensitively) and none of
``exclude_categories``, and (when ``authors`` is set) that one of those authors wrote. An empty
filter keeps everything. Which source carried an article is checked by the caller: an article
stored once may have come from several sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from digest.config import SectionSettings
from digest.models import Article

__all__ = ["articles_for_section", "in_section"]


def in_section(article: Article, section: SectionSettings) -> bool:
    """Whether ``article`` passes the filters of ``section`` (its source is not checked)."""
    if section.title_prefix:
        title = _fold(article.title)
        if not title.startswith(_fold(section.title_prefix)):
            return False
    if section.title_regex and not _compiled(section.title_regex).search(article.title):
        return False
    if section.exclude_title_regex and _compiled(section.exclude_title_regex).search(article.title):
        return False
    if section.authors and not {_fold(a) for a in article.authors} & {
        _fold(a) for a in section.authors
    }:
        return False
    categories = {_fold(c) for c in article.categories}
    if section.categories and not categories & {_fold(c) for c in section.categories}:
        return False
    return not (
        section.exclude_categories and categories & {_fold(c) for c in section.exclude_categories}
    )


def articles_for_section(
    articles: Iterable[Article],
    section_key: str,
    section: SectionSettings,
    source_key: str,
) -> list[Article]:
    """The articles gathered from source ``source_key`` that belong to section ``section_key``.

    Articles of other sources are ignored, and a source the section does not read yields
    nothing. Order is kept. ``section_key`` names the section for callers' logs; the
    filters themselves come from ``section``.
    """
    if source_key not in section.sources:
        return []
    return [a for a in articles if a.source == source_key and in_section(a, section)]


def _fold(text: str) -> str:
    """Case- and whitespace-insensitive form for comparing titles and categories."""
    return " ".join(text.split()).casefold()


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    # Valid by construction: SectionSettings validates the pattern when the config loads.
    return re.compile(pattern)
