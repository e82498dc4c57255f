"""Click analytics: counts per edition and article, the day's visitor hashes, summaries made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from digest.store.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("edition_id", sa.String(200), nullable=False),
        sa.Column("article_id", sa.String(40), nullable=False),
        sa.Column("section", sa.String(100), nullable=False),
        sa.Column("clicks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("filtered", sa.Integer, nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            ondelete="CASCADE",
            name="fk_clicks_edition_id_editions",
        ),
        sa.PrimaryKeyConstraint("edition_id", "article_id", name="pk_clicks"),
    )
    op.create_table(
        "click_visitors",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("visitor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("day", "visitor", name="pk_click_visitors"),
    )
    op.create_table(
        "click_summaries",
        sa.Column("edition_id", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            ondelete="CASCADE",
            name="fk_click_summaries_edition_id_editions",
        ),
        sa.PrimaryKeyConstraint("edition_id", name="pk_click_summaries"),
    )


def downgrade() -> None:
    op.drop_table("click_summaries")
    op.drop_table("click_visitors")
    op.drop_table("clicks")
