"""Articles in the store: saved once per id whatever the source that carried them, read back by
source, by id, and since a time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from digest.models import Article
from digest.store import schema as t
from digest.store.base import StoreBase, _chunks, _insert_ignore, _insert_ignore_keys


class ArticleStore(StoreBase):
    """The ``articles`` table and which sources carried each (``article_sources``)."""

    def save_articles(self, articles: Iterable[Article], *, now: datetime) -> set[str]:
        """Insert new articles, refresh known ones; returns the ids that were new.

        A known article keeps its first source and its first publication time (feeds without
        dates would otherwise move it to "now" on every fetch); title and content follow the
        latest fetch. New rows go in as few statements (see ``base._chunks``); unchanged known
        rows are not rewritten.
        """
        batch = list({a.id: a for a in articles}.values())
        if not batch:
            return set()
        bodies = {a.id: a.model_dump(mode="json") for a in batch}
        rows = [
            {
                "id": a.id,
                "source": a.source,
                "url": a.url,
                "guid": a.guid,
                "title": a.title,
                "published_at": a.published,
                "updated_at": a.updated,
                "first_seen_at": now,
                "body": bodies[a.id],
            }
            for a in batch
        ]
        with self.engine.begin() as c:
            new = set(_insert_ignore_keys(c, t.articles, rows, ["id"]))
            known = {a.id: a for a in batch if a.id not in new}
            for chunk in _chunks(list(known)):
                kept = dict(
                    c.execute(
                        sa.select(t.articles.c.id, t.articles.c.body).where(
                            t.articles.c.id.in_(chunk)
                        )
                    ).all()
                )
                for article_id in chunk:
                    a, old = known[article_id], kept[article_id]
                    body = {**bodies[a.id], "source": old["source"], "published": old["published"]}
                    if body == old:
                        continue
                    c.execute(
                        sa.update(t.articles)
                        .where(t.articles.c.id == a.id)
                        .values(
                            url=a.url, guid=a.guid, title=a.title, updated_at=a.updated, body=body
                        )
                    )
            carried = [{"article_id": a.id, "source": a.source} for a in batch]
            _insert_ignore(c, t.article_sources, carried, ["article_id", "source"])
        return new

    def articles_from_sources(
        self,
        source_keys: Iterable[str],
        *,
        since: datetime | None = None,
        also: Iterable[str] = (),
    ) -> list[tuple[Article, frozenset[str]]]:
        """Articles carried by any of ``source_keys``, with every source that carried each;
        with ``since``, only those published since then, plus the ids in ``also``."""
        keys = list(source_keys)
        q = (
            sa.select(t.articles.c.body, t.article_sources.c.source)
            .join(t.article_sources, t.article_sources.c.article_id == t.articles.c.id)
            .where(t.article_sources.c.source.in_(keys))
            .order_by(t.articles.c.published_at.desc(), t.articles.c.id)
        )
        if since is not None:
            q = q.where(sa.or_(t.articles.c.published_at >= since, t.articles.c.id.in_(list(also))))
        found: dict[str, tuple[Article, set[str]]] = {}
        with self.engine.connect() as c:
            for body, source in c.execute(q):
                if body["id"] not in found:
                    found[body["id"]] = (Article.model_validate(body), set())
                found[body["id"]][1].add(source)
        return [(a, frozenset(s)) for a, s in found.values()]

    def articles_by_id(self, ids: Iterable[str]) -> dict[str, Article]:
        wanted = list(ids)
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.articles.c.body).where(t.articles.c.id.in_(wanted)))
            return {r.body["id"]: Article.model_validate(r.body) for r in rows}

    def count_articles(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.articles)).scalar_one())
