"""Claims with owners: who claimed each ledger row, and the crash record in the store.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(200)))
    op.create_table(
        "send_journal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("delivery_id", sa.Integer, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("bounce", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("retry_after", sa.Float),
        sa.PrimaryKeyConstraint("id", name="pk_send_journal"),
    )
    op.create_index("ix_send_journal_owner_delivery", "send_journal", ["owner", "delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_send_journal_owner_delivery", table_name="send_journal")
    op.drop_table("send_journal")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_by")
