"""The store's one class: every stage's database access, put together from one part per area.

Each part lives in its own module: ``sources``, ``articles``, ``editions``, ``subscribers``,
``imports`` (subscribers in bulk), ``ledger`` (deliveries), ``locks``, ``campaigns``,
``clicks``; ``base`` opens the database. Rows hold the whole normalised object as JSON
(``body``) beside the columns that queries need, so the pure stages work with models and never
with rows. Methods are plain and their transactions short.
"""

from __future__ import annotations

from digest.store.articles import ArticleStore
from digest.store.campaigns import CampaignStore
from digest.store.clicks import ClickStore
from digest.store.editions import EditionStore
from digest.store.imports import ImportStore
from digest.store.ledger import LedgerStore
from digest.store.locks import LockStore
from digest.store.sources import SourceStore
from digest.store.subscribers import SubscriberStore


class Store(
    SourceStore,
    ArticleStore,
    EditionStore,
    LedgerStore,
    ImportStore,
    SubscriberStore,
    LockStore,
    CampaignStore,
    ClickStore,
):
    """The project's database. ``Store.open(url)`` connects and migrates to the newest schema."""
