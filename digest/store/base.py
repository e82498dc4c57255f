"""The store's plumbing, shared by every area: opening the database (engine, SQLite pragmas,
Alembic migrations to the newest schema) and the dialect-aware INSERT that skips existing keys.

Each area of the store (``sources``, ``articles``, ``editions``, ``subscribers``, ``ledger``,
``locks``) is a subclass of :class:`StoreBase`; ``digest.store.db`` puts them together as
``Store``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

from digest.errors import PermanentError, StoreUnusable, TransientError

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
    returning: str | tuple[str, ...] | None = None,
) -> list[Any]:
    """Like :func:`_insert_ignore`, returning the first key (or the ``returning`` column, or a
    tuple of the ``returning`` columns) of each row that went in. Rows go in :func:`_chunks`."""
    stmt = _dialect_insert(c)(table).on_conflict_do_nothing(index_elements=keys)
    # Count with RETURNING: drivers disagree on rowcount for many-row executes.
    if isinstance(returning, tuple):
        stmt = stmt.returning(*(table.c[k] for k in returning))
    else:
        stmt = stmt.returning(table.c[returning or keys[0]])
    out: list[Any] = []
    for chunk in _chunks(rows):
        result = c.execute(stmt, chunk)
        out += [tuple(r) for r in result] if isinstance(returning, tuple) else result.scalars()
    return out


def _dialect_insert(c: sa.Connection) -> Any:
    """The dialect's INSERT, which can skip rows whose key exists (ON CONFLICT DO NOTHING)."""
    name = c.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise PermanentError(f"store: database {name!r} is not supported (SQLite, PostgreSQL)")
    return insert


# SQLite's driver keeps the last 128 distinct statements of each connection prepared, and a
# many-row INSERT (or an IN list) is a distinct statement for each number of rows: one of 500
# article rows is a program of about 1.5 MB, so gathering a few hundred feeds of different
# lengths kept hundreds of MB of them. Rows go in chunks whose sizes are powers of two, at most
# this many: eight statement shapes per table, whatever the number of rows.
LARGEST_CHUNK = 128


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` in chunks of 128, 64, … 1: as few chunks as can be, of few distinct sizes."""
    i = 0
    while i < len(items):
        size = min(LARGEST_CHUNK, 1 << ((len(items) - i).bit_length() - 1))
        yield items[i : i + size]
        i += size


def _make_folder(folder: Path) -> None:
    """Make the database's folder (``data_dir``). Raises StoreUnusable, naming what is in
    the way, when it cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return
    except OSError as e:
        reason = e.strerror or str(e)
        if e.filename and Path(e.filename) != folder:
            reason += f" ({e.filename})"
    in_the_way = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if in_the_way is not None:
        reason = f"{in_the_way} is a file, not a folder"
    raise StoreUnusable(
        f"store: cannot make the data folder {folder}: {reason}; set data_dir (or [store] url) "
        "to a folder this user can create and write"
    )


# SQLite's words for a file that is not (or no longer) a database.
_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed")


def _sqlite_unusable(path: str, e: sa.exc.DatabaseError) -> None:
    """Raise StoreUnusable for a SQLite file that is not a database or cannot be opened;
    return for anything else (a lock, say, which passes)."""
    reason = str(e.orig)
    if any(words in reason for words in _NOT_A_DATABASE):
        raise StoreUnusable(
            f"store: {path} is not a SQLite database ({reason}); it was left as it is: restore "
            "it from a backup, or move it away to start an empty store"
        ) from e
    if "unable to open database file" in reason:
        raise StoreUnusable(
            f"store: cannot open {path} ({reason}); check that data_dir is a folder this user "
            "can write and that the path is not a folder"
        ) from e


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
        """Connect to ``url`` and migrate. Raises StoreUnusable when the database's folder
        cannot be made or its file is not a database (the file is never changed then)."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            _make_folder(Path(url.removeprefix("sqlite:///")).parent)
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
        except sa.exc.DatabaseError as e:
            if self.engine.dialect.name == "sqlite":
                _sqlite_unusable(self.engine.url.database or "", e)
            if isinstance(e, sa.exc.OperationalError):
                raise TransientError(f"store: cannot reach the database: {e.orig}") from e
            raise

    def close(self) -> None:
        self.engine.dispose()
