"""Retries on a schedule (deliveries.next_attempt_at) and the subscriber status audit table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from digest.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime))
    op.create_table(
        "subscriber_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("old_status", sa.String(20)),
        sa.Column("new_status", sa.String(20), nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_subscriber_events_subscriber_id_subscribers",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_events"),
    )
    op.create_index(
        "ix_subscriber_events_subscriber_id", "subscriber_events", ["subscriber_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_subscriber_events_subscriber_id", table_name="subscriber_events")
    op.drop_table("subscriber_events")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("next_attempt_at")
