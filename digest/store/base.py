"""The store's plumbing, shared by every area: opening the database (engine, SQLite pragmas,
Alembic migrations to the newest schema) and the dialect-aware INSERT that skips existing keys.

Each area of the store (``sources``, ``articles``, ``editions``, ``subscribers``, ``ledger``,
``locks``) is a subclass of :class:`StoreBase`; ``digest.store.db`` puts them together as
``Store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

from digest.errors import PermanentError, TransientError

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets a reader (the UI, a preview) work while a run writes; FKs are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _insert_ignore(
    c: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]
) -> int:
    """INSERT rows, skipping those whose ``keys`` already exist; returns how many went in.

    One statement, so two writers racing on the same key cannot make either fail.
    """
    return len(_insert_ignore_keys(c, table, rows, keys))


def _insert_ignore_keys(
    c: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    keys: list[str],
    returning: str | None = None,
) -> list[Any]:
    """Like :func:`_insert_ignore`, returning the first key (or the ``returning`` column) of
    each row that went in."""
    if not rows:
        return []
    name = c.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise PermanentError(f"store: database {name!r} is not supported (SQLite, PostgreSQL)")
    stmt = insert(table).on_conflict_do_nothing(index_elements=keys)
    # Count with RETURNING: drivers disagree on rowcount for many-row executes.
    result = c.execute(stmt.returning(table.c[returning or keys[0]]), rows)
    return [r[0] for r in result]


# Databases this process has brought to the newest schema: a run opens the store once per flow,
# and checking the migrations each time costs more than the work of a small flow.
_MIGRATED: set[str] = set()


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class StoreBase:
    """The engine every area's queries run on; ``open`` connects and migrates."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Self:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as e:
            raise PermanentError(f"store: cannot use database URL {url!r}: {e}") from e
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate and url not in _MIGRATED:
            store.migrate()
            _MIGRATED.add(url)
        return store

    def migrate(self) -> None:
        cfg = _alembic_config()
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as e:
            raise TransientError(f"store: cannot reach the database: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()
