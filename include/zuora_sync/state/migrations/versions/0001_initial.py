"""The initial schema: watermarks, scope resets, sessions and their counts, rejected records,
change events and scope locks.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

    op.create_table(
        "zuora_sync_watermark",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("object", sa.String(80), nullable=False),
        sa.Column("value", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("scope", "object", name="pk_zuora_sync_watermark"),
    )

    op.create_table(
        "zuora_sync_scope_reset",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("reset_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_zuora_sync_scope_reset"),
    )

    op.create_table(
        "zuora_sync_session",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_type", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("window_start", utc, nullable=True),
        sa.Column("window_end", utc, nullable=True),
        sa.Column("started_at", utc, nullable=False),
        sa.Column("ended_at", utc, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("zuora_api_calls", sa.BigInteger(), nullable=False),
        sa.Column("salesforce_api_calls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_zuora_sync_session"),
    )
    op.create_index("ix_zuora_sync_session_scope_started_at", "zuora_sync_session", ["scope", "started_at"])
    op.create_index("ix_zuora_sync_session_started_at", "zuora_sync_session", ["started_at"])

    op.create_table(
        "zuora_sync_session_object",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("object", sa.String(80), nullable=False),
        sa.Column("extracted", sa.BigInteger(), nullable=False),
        sa.Column("upserted", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["zuora_sync_session.id"], ondelete="CASCADE",
                                name="fk_zuora_sync_session_object_session_id_zuora_sync_session"),
        sa.PrimaryKeyConstraint("session_id", "object", name="pk_zuora_sync_session_object"),
    )

    op.create_table(
        "zuora_sync_rejected",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("object", sa.String(80), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("error_code", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("row", sa.JSON(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("resolved_at", utc, nullable=True),
        sa.Column("resolved_session_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["zuora_sync_session.id"], ondelete="CASCADE",
                                name="fk_zuora_sync_rejected_session_id_zuora_sync_session"),
        sa.PrimaryKeyConstraint("id", name="pk_zuora_sync_rejected"),
    )
    op.create_index("ix_zuora_sync_rejected_session_id", "zuora_sync_rejected", ["session_id"])
    op.create_index("ix_zuora_sync_rejected_scope_object_resolved_at", "zuora_sync_rejected",
                    ["scope", "object", "resolved_at"])
    op.create_index("ix_zuora_sync_rejected_object_external_id", "zuora_sync_rejected", ["object", "external_id"])

    op.create_table(
        "zuora_sync_event",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", utc, nullable=False),
        sa.Column("consumed_at", utc, nullable=True),
        sa.Column("consumed_session_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_zuora_sync_event"),
        sa.UniqueConstraint("notification_id", name="uq_zuora_sync_event_notification_id"),
    )
    op.create_index("ix_zuora_sync_event_consumed_at_received_at", "zuora_sync_event",
                    ["consumed_at", "received_at"])
    op.create_index("ix_zuora_sync_event_received_at", "zuora_sync_event", ["received_at"])

    op.create_table(
        "zuora_sync_lock",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(500), nullable=False),
        sa.Column("acquired_at", utc, nullable=False),
        sa.Column("expires_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_zuora_sync_lock"),
    )


def downgrade() -> None:
    op.drop_table("zuora_sync_lock")
    op.drop_index("ix_zuora_sync_event_received_at", table_name="zuora_sync_event")
    op.drop_index("ix_zuora_sync_event_consumed_at_received_at", table_name="zuora_sync_event")
    op.drop_table("zuora_sync_event")
    op.drop_index("ix_zuora_sync_rejected_object_external_id", table_name="zuora_sync_rejected")
    op.drop_index("ix_zuora_sync_rejected_scope_object_resolved_at", table_name="zuora_sync_rejected")
    op.drop_index("ix_zuora_sync_rejected_session_id", table_name="zuora_sync_rejected")
    op.drop_table("zuora_sync_rejected")
    op.drop_table("zuora_sync_session_object")
    op.drop_index("ix_zuora_sync_session_started_at", table_name="zuora_sync_session")
    op.drop_index("ix_zuora_sync_session_scope_started_at", table_name="zuora_sync_session")
    op.drop_table("zuora_sync_session")
    op.drop_table("zuora_sync_scope_reset")
    op.drop_table("zuora_sync_watermark")
