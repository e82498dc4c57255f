"""The ledger's claim index: (edition, status, id), so a claim reads the next pending rows in
id order straight from the index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_edition_status", table_name="deliveries")
    op.create_index(
        "ix_deliveries_edition_status_id", "deliveries", ["edition_id", "status", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_edition_status_id", table_name="deliveries")
    op.create_index("ix_deliveries_edition_status", "deliveries", ["edition_id", "status"])
