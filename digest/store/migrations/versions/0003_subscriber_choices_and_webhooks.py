"""Subscribers: digests chosen, source, soft bounces; statuses bounced/complained; webhook events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import secrets

import sqlalchemy as sa
from alembic import op

from digest.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("digests", sa.JSON))
        batch.add_column(sa.Column("source", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("soft_bounces", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("soft_bounced_at", UTCDateTime))
        batch.add_column(sa.Column("email_key", sa.String(320)))
        batch.add_column(sa.Column("token_id", sa.BigInteger))
    # The lookup key of every known address, computed as the store computes it.
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, email FROM subscribers")).all()
    for sid, email in rows:
        bind.execute(
            sa.text("UPDATE subscribers SET email_key = :k, token_id = :t WHERE id = :i"),
            {"k": email.strip().casefold(), "t": secrets.randbits(62) or 1, "i": sid},
        )
    with op.batch_alter_table("subscribers") as batch:
        batch.create_unique_constraint("uq_subscribers_email_key", ["email_key"])
        batch.create_unique_constraint("uq_subscribers_token_id", ["token_id"])
    # "suppressed" is now told apart by its cause; every earlier suppression was a hard bounce.
    op.execute("UPDATE subscribers SET status = 'bounced' WHERE status = 'suppressed'")
    op.execute(
        "UPDATE subscriber_events SET new_status = 'bounced' WHERE new_status = 'suppressed'"
    )
    op.execute(
        "UPDATE subscriber_events SET old_status = 'bounced' WHERE old_status = 'suppressed'"
    )
    op.create_table(
        "webhook_events",
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name="pk_webhook_events"),
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.execute(
        "UPDATE subscribers SET status = 'suppressed' WHERE status IN ('bounced', 'complained')"
    )
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("uq_subscribers_token_id", type_="unique")
        batch.drop_constraint("uq_subscribers_email_key", type_="unique")
        batch.drop_column("token_id")
        batch.drop_column("email_key")
        batch.drop_column("soft_bounced_at")
        batch.drop_column("soft_bounces")
        batch.drop_column("source")
        batch.drop_column("digests")
