"""Tables. Alembic migrations under ``migrations/`` build exactly this; a test compares them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, whatever the backend keeps."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


sources = sa.Table(
    "sources",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_fetched_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", UTCDateTime),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("guid", sa.Text),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("published_at", UTCDateTime, nullable=False, index=True),
    sa.Column("updated_at", UTCDateTime),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    # The whole normalised Article, so that adding a field needs no migration.
    sa.Column("body", sa.JSON, nullable=False),
)

# Which sources carried an article: an article in two feeds is stored once.
article_sources = sa.Table(
    "article_sources",
    metadata,
    sa.Column(
        "article_id",
        sa.String(40),
        sa.ForeignKey("articles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("source", sa.String(100), primary_key=True),
)

editions = sa.Table(
    "editions",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(100), nullable=False, index=True),
    sa.Column("period", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("approved_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    # Editor overrides (intro, subject, pins, exclusions) kept apart from the composed body.
    sa.Column("overrides", sa.JSON, nullable=False, default=dict),
    sa.Column("body", sa.JSON, nullable=False),
    sa.UniqueConstraint("digest", "period"),
)

edition_items = sa.Table(
    "edition_items",
    metadata,
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("article_id", sa.String(40), sa.ForeignKey("articles.id"), primary_key=True),
    sa.Column("section", sa.String(100), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    # NULL: every section of the digest; otherwise a JSON list of section keys.
    sa.Column("sections", sa.JSON),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # NULL: every digest; otherwise a JSON list of digest keys.
    sa.Column("digests", sa.JSON),
    # Where the address came from: "import:<file>", "signup", "operator".
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    # Soft bounces reported by providers in a row, each within the window of the one before.
    sa.Column("soft_bounces", sa.Integer, nullable=False, server_default="0"),
    sa.Column("soft_bounced_at", UTCDateTime),
    # The address as compared (case-folded in Python: SQL's lower() is ASCII-only in SQLite).
    sa.Column("email_key", sa.String(320), unique=True),
    # What links carry instead of the id: random, so a link tells nothing of the list (its size,
    # its growth, who joined when).
    sa.Column("token_id", sa.BigInteger, unique=True),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # For failed rows: "transient" (tried again once next_attempt_at has passed), "permanent"
    # (never tried again) or "exhausted" (transient, but out of attempts: reported, kept, and
    # only tried again when an operator asks).
    sa.Column("failure", sa.String(20)),
    sa.Column("provider_id", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at", UTCDateTime),
    sa.Column("next_attempt_at", UTCDateTime),
    # The owner (a sending run or shard) whose claim moved the row to ``sending``; while the
    # row is ``sending`` only that owner records its answer, and another owner settles it
    # only once the owner's claim lease (``claim:<owner>`` in ``locks``) has run out.
    sa.Column("claimed_by", sa.String(200)),
    sa.UniqueConstraint("edition_id", "subscriber_id"),
    # Rows of one edition and status in id order: a claim reads the next pending ones after
    # the last it took straight from here (PostgreSQL keeps equal keys in heap order, not in
    # id order, and would otherwise walk the sent rows by primary key or sort every pending one).
    sa.Index("ix_deliveries_edition_status_id", "edition_id", "status", "id"),
)

# Every change of a subscriber's status, with when and why: nothing about a person is lost.
subscriber_events = sa.Table(
    "subscriber_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("old_status", sa.String(20)),
    sa.Column("new_status", sa.String(20), nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
)

# Provider webhook events already handled (providers redeliver): one row per event id.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("provider", sa.String(20), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
)

# Leases: an edition's delivery lease (``deliver:<edition>``, one run at a time prepares and
# finishes it) and each sending owner's claim lease (``claim:<owner>``); see Store.acquire_lock.
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# The crash record on a shared database: each provider answer, written by the sending process
# the moment it is known (before the next message), under the owner whose claim the row is.
# Rows go once the answer is in the ledger; a dead owner's are settled by the owner taking over.
send_journal = sa.Table(
    "send_journal",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("delivery_id", sa.Integer, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("provider_id", sa.Text, nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("bounce", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("retry_after", sa.Float),
    sa.Index("ix_send_journal_owner_delivery", "owner", "delivery_id"),
)

# Campaigns handed to a provider that owns the list (Mailchimp, listmonk): one per edition and
# variant, ever. The row is written as soon as the provider names the campaign, before it is
# started, so a re-run finds it instead of making a second.
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("variant_key", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(20), nullable=False),
    sa.Column("campaign_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # created, started
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
)


# Clicks on an edition's links, counted per article: readers (``clicks``) and requests taken
# for link scanners and prefetchers (``filtered``). Nothing about who clicked (subscriber_clicks
# does, only with per-subscriber analytics on).
clicks = sa.Table(
    "clicks",
    metadata,
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("article_id", sa.String(40), primary_key=True),
    sa.Column("section", sa.String(100), nullable=False),
    sa.Column("clicks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("filtered", sa.Integer, nullable=False, server_default="0"),
    # With per-subscriber analytics: how many subscribers clicked the link (an aggregate that
    # stays when their subscriber_clicks rows are deleted).
    sa.Column("clickers", sa.Integer, nullable=False, server_default="0"),
)

# With per-subscriber analytics only (``analytics.per_subscriber``): which subscriber clicked
# which article of an edition, first time. Deleted when the subscriber leaves (unsubscribed,
# bounced, complained) or their row is deleted.
subscriber_clicks = sa.Table(
    "subscriber_clicks",
    metadata,
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("article_id", sa.String(40), primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    sa.Column("first_at", UTCDateTime, nullable=False),
)

# Repeated clicks on one link by one visitor count once: a salted hash of the visitor's address,
# agent and the link, with a salt made each UTC day and kept only in the web app's memory, so a
# row cannot be turned back into an address. Rows of earlier days are deleted.
click_visitors = sa.Table(
    "click_visitors",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("visitor", sa.String(64), primary_key=True),
)

# Editions whose click summary has been made (the Prefect artifact, a day after sending).
click_summaries = sa.Table(
    "click_summaries",
    metadata,
    sa.Column(
        "edition_id",
        sa.String(200),
        sa.ForeignKey("editions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
