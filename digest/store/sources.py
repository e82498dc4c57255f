"""Sources in the store: each feed's validators for the next conditional GET and its streak
of failed fetches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore


@dataclass(frozen=True)
class SourceState:
    key: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0

    @property
    def note(self) -> str | None:
        """What the last gather, which worked, left out ("12 article pages not read …", then
        one line per page); None when nothing was or the source is failing."""
        return self.last_error if self.consecutive_failures == 0 else None


class SourceStore(StoreBase):
    """The ``sources`` table: what each fetch of a feed left behind."""

    def source_states(self) -> list[SourceState]:
        """Every source that was ever fetched, by key."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.sources).order_by(t.sources.c.key)).all()
        return [self._source_state(r) for r in rows]

    @staticmethod
    def _source_state(row: Any) -> SourceState:
        return SourceState(
            key=row.key,
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            consecutive_failures=row.consecutive_failures,
        )

    def source_state(self, key: str) -> SourceState | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.sources).where(t.sources.c.key == key)).first()
        return None if row is None else self._source_state(row)

    def _upsert_source(self, c: sa.Connection, key: str, url: str, values: dict[str, Any]) -> None:
        _insert_ignore(c, t.sources, [{"key": key, "url": url}], ["key"])
        c.execute(sa.update(t.sources).where(t.sources.c.key == key).values(url=url, **values))

    def record_fetch_success(
        self,
        key: str,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        now: datetime,
        note: str | None = None,
    ) -> None:
        """Keep the validators for the next conditional GET and clear the failure streak.

        ``note``: what this gather left out though it worked (pages not read, feed warnings),
        kept in ``last_error`` with its time; a source is failing only while
        ``consecutive_failures`` is above 0 (see :attr:`SourceState.note`)."""
        with self.engine.begin() as c:
            self._upsert_source(
                c,
                key,
                url,
                {
                    "etag": etag,
                    "last_modified": last_modified,
                    "last_fetched_at": now,
                    "last_success_at": now,
                    "last_error": note,
                    **({"last_error_at": now} if note else {}),
                    "consecutive_failures": 0,
                },
            )

    def record_fetch_failure(self, key: str, url: str, *, error: str, now: datetime) -> int:
        """Record a failed fetch; returns the number of failures in a row."""
        with self.engine.begin() as c:
            row = c.execute(
                sa.select(t.sources.c.consecutive_failures).where(t.sources.c.key == key)
            ).first()
            failures = (row[0] if row else 0) + 1
            self._upsert_source(
                c,
                key,
                url,
                {
                    "last_fetched_at": now,
                    "last_error": error,
                    "last_error_at": now,
                    "consecutive_failures": failures,
                },
            )
        return failures
