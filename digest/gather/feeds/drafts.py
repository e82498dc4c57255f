"""What the parser builds before there is an ``Article``: plain frozen dataclasses.

The domain's models are pydantic models (``digest.models``), and importing them (pydantic, its
core and every model's validator) costs a process about ten megabytes. A parse worker
(``digest.steps.parse_pool``) imports the parser and nothing else, so the parser builds these
drafts, field for field the models' fields, and only :meth:`DraftFeed.parsed` (in the process
that stores the articles) makes ``Article`` and ``Image`` of them. The parser only ever gives
the models' fields values of the models' types, so making the models cannot fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from digest.gather.feeds.entries import ParsedFeed
    from digest.models import Article


@dataclass(frozen=True, slots=True)
class ImageDraft:
    """An ``Image`` to be."""

    url: str
    alt: str = ""
    caption: str = ""
    credit: str = ""
    width: int | None = None
    height: int | None = None

    def model_copy(self, *, update: dict[str, Any]) -> Self:
        """A copy with ``update`` applied (the models' own call, so the normalising code that
        updates drafts also updates models)."""
        return replace(self, **update)


@dataclass(frozen=True, slots=True)
class ArticleDraft:
    """An ``Article`` to be."""

    id: str
    source: str
    url: str
    title: str
    published: datetime
    guid: str | None = None
    authors: tuple[str, ...] = ()
    updated: datetime | None = None
    summary_html: str = ""
    content_html: str = ""
    image: ImageDraft | None = None
    categories: tuple[str, ...] = ()

    def model_copy(self, *, update: dict[str, Any]) -> Self:
        """A copy with ``update`` applied (as :meth:`ImageDraft.model_copy`)."""
        return replace(self, **update)

    def article(self) -> Article:
        from digest.models import Article

        # One validation of the whole: the image goes in as its fields, not as an Image.
        values = {name: getattr(self, name) for name in _ARTICLE_FIELDS}
        image = self.image
        if image is not None:
            values["image"] = {name: getattr(image, name) for name in _IMAGE_FIELDS}
        return Article.model_validate(values)


_IMAGE_FIELDS = tuple(f.name for f in fields(ImageDraft))
_ARTICLE_FIELDS = tuple(f.name for f in fields(ArticleDraft))


@dataclass(frozen=True, slots=True)
class DraftFeed:
    """A parsed feed with draft articles: what a parse worker answers."""

    title: str
    articles: list[ArticleDraft]
    warnings: list[str] = field(default_factory=list)

    def parsed(self) -> ParsedFeed:
        """The ``ParsedFeed``: the same title and warnings, the drafts made articles. A draft
        the models refuse (the parser should never make one) is skipped with a warning, as a
        broken entry is, rather than failing the feed."""
        from digest.gather.feeds.entries import ParsedFeed

        articles: list[Article] = []
        warnings = list(self.warnings)
        for draft in self.articles:
            try:
                articles.append(draft.article())
            except ValueError as e:  # pydantic's ValidationError is one
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                warnings.append(f"entry {draft.url or draft.id!r} skipped ({first})")
        return ParsedFeed(title=self.title, articles=articles, warnings=warnings)
