"""Initial schema: sources, articles, editions, subscribers, deliveries, locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from digest.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("last_fetched_at", UTCDateTime),
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", UTCDateTime),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("key", name="pk_sources"),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("guid", sa.Text),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
    )
    op.create_index("ix_articles_published_at", "articles", ["published_at"])
    op.create_table(
        "article_sources",
        sa.Column("article_id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], ondelete="CASCADE",
            name="fk_article_sources_article_id_articles",
        ),
        sa.PrimaryKeyConstraint("article_id", "source", name="pk_article_sources"),
    )
    op.create_table(
        "editions",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(100), nullable=False),
        sa.Column("period", sa.String(50), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("approved_at", UTCDateTime),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("overrides", sa.JSON, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_editions"),
        sa.UniqueConstraint("digest", "period", name="uq_editions_digest"),
    )
    op.create_index("ix_editions_digest", "editions", ["digest"])
    op.create_table(
        "edition_items",
        sa.Column("edition_id", sa.String(200), nullable=False),
        sa.Column("article_id", sa.String(40), nullable=False),
        sa.Column("section", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(
            ["edition_id"], ["editions.id"], ondelete="CASCADE",
            name="fk_edition_items_edition_id_editions",
        ),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name="fk_edition_items_article_id_articles"
        ),
        sa.PrimaryKeyConstraint("edition_id", "article_id", name="pk_edition_items"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("sections", sa.JSON),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("edition_id", sa.String(200), nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failure", sa.String(20)),
        sa.Column("provider_id", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("submitted_at", UTCDateTime),
        sa.ForeignKeyConstraint(
            ["edition_id"], ["editions.id"], ondelete="CASCADE",
            name="fk_deliveries_edition_id_editions",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name="fk_deliveries_subscriber_id_subscribers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("edition_id", "subscriber_id", name="uq_deliveries_edition_id"),
    )
    op.create_index("ix_deliveries_edition_status", "deliveries", ["edition_id", "status"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("deliveries")
    op.drop_table("subscribers")
    op.drop_table("edition_items")
    op.drop_table("editions")
    op.drop_table("article_sources")
    op.drop_table("articles")
    op.drop_table("sources")
