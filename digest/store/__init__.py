"""The store: SQLAlchemy over SQLite by default, PostgreSQL by URL, migrated by Alembic.

``Store`` (``db``) is put together from one module per area: ``sources``, ``articles``,
``editions``, ``subscribers``, ``ledger`` (deliveries), ``locks``, ``campaigns``, ``clicks``,
over ``base`` (opening the database). ``schema`` holds the tables; ``journal`` writes each
provider answer to disk before the ledger records it. Import these names from ``digest.store``,
not from its modules.
"""

from digest.store import journal
from digest.store.campaigns import CampaignRecord
from digest.store.clicks import ClickCount, ClickRow
from digest.store.db import Store
from digest.store.editions import SentEdition
from digest.store.journal import Journal, discard, edition_dir, replay
from digest.store.ledger import Claimed
from digest.store.locks import lock_owner
from digest.store.sources import SourceState
from digest.store.subscribers import ImportCounts, email_key

__all__ = [
    "CampaignRecord",
    "Claimed",
    "ClickCount",
    "ClickRow",
    "ImportCounts",
    "Journal",
    "SentEdition",
    "SourceState",
    "Store",
    "discard",
    "edition_dir",
    "email_key",
    "journal",
    "lock_owner",
    "replay",
]
