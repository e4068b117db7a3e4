"""Send only what changed: record hashes, Salesforce fingerprints, and four more counts per object.

``zuora_sync_record_hash`` keeps, per scope, object and external id, the hash of the values last
accepted by Salesforce exactly as staged (``zuora_sync.hashes``). ``zuora_sync_sf_fingerprint`` keeps
what Salesforce held of an object's owned records when the last session ended (count, newest
``SystemModstamp``) and how many hashes the store had then, so the next session can tell with one
cheap query whether the hashes still describe Salesforce. Session objects count ``created``,
``updated``, ``unchanged`` and ``removed`` rows (a dry run: what would be).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("created", "updated", "unchanged", "removed")


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "zuora_sync_record_hash",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("object", sa.String(80), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("scope", "object", "external_id", name="pk_zuora_sync_record_hash"),
    )
    op.create_table(
        "zuora_sync_sf_fingerprint",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("object", sa.String(80), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=True),
        sa.Column("last_modified", sa.String(40), nullable=True),
        sa.Column("hashed_count", sa.BigInteger(), nullable=True),
        sa.Column("measured_at", utc, nullable=True),
        sa.PrimaryKeyConstraint("scope", "object", name="pk_zuora_sync_sf_fingerprint"),
    )
    with op.batch_alter_table("zuora_sync_session_object") as batch:
        for name in _COUNTS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("zuora_sync_session_object") as batch:
        for name in _COUNTS:
            batch.drop_column(name)
    op.drop_table("zuora_sync_sf_fingerprint")
    op.drop_table("zuora_sync_record_hash")
