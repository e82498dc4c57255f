"""The store: SQLAlchemy over SQLite by default, PostgreSQL by URL, migrated by Alembic."""

from digest.store.db import Store

__all__ = ["Store"]
