"""Sessions get a ``details`` JSON column (a cleanup records the lookups at risk there).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("zuora_sync_session") as batch:
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("zuora_sync_session") as batch:
        batch.drop_column("details")
