"""Per-subscriber click analytics: who clicked which article (only with it turned on), and the
unique clickers per article as an aggregate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from digest.store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clicks") as batch:
        batch.add_column(sa.Column("clickers", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "subscriber_clicks",
        sa.Column("edition_id", sa.String(200), nullable=False),
        sa.Column("article_id", sa.String(40), nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("first_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            ondelete="CASCADE",
            name="fk_subscriber_clicks_edition_id_editions",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_subscriber_clicks_subscriber_id_subscribers",
        ),
        sa.PrimaryKeyConstraint(
            "edition_id", "article_id", "subscriber_id", name="pk_subscriber_clicks"
        ),
    )
    op.create_index(
        "ix_subscriber_clicks_subscriber_id", "subscriber_clicks", ["subscriber_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_subscriber_clicks_subscriber_id", "subscriber_clicks")
    op.drop_table("subscriber_clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.drop_column("clickers")
