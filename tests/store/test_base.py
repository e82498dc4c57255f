"""Opening the store: Alembic builds exactly the tables, runs again harmlessly, and carries
an older database's rows forward."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from digest.models import SubscriberStatus
from digest.store import Store
from digest.store.schema import metadata


def test_migrations_build_exactly_the_models(empty_db_url: str) -> None:
    store = Store.open(empty_db_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert diff == []


def test_migrate_twice_is_harmless(empty_db_url: str) -> None:
    Store.open(empty_db_url).close()
    s = Store.open(empty_db_url)
    s.migrate()  # open() checks once per process; run the check again on purpose
    assert s.count_articles() == 0
    s.close()


def test_migration_renames_suppressed_to_bounced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A store written before subscribers had bounced/complained keeps its suppressions."""
    from alembic import command

    from digest.store.base import _alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(
            sa.text(
                "INSERT INTO subscribers (email, name, status, created_at, updated_at) "
                "VALUES ('x@example.org', '', 'suppressed', :t, :t)"
            ),
            {"t": "2026-11-01 00:00:00.000000"},
        )
    engine.dispose()
    store = Store.open(url)
    (s,) = store.subscribers()
    assert s.status is SubscriberStatus.BOUNCED and s.digests is None and s.source == ""
    store.close()
