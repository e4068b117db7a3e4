"""The state store's tables, as SQLAlchemy 2.x declarative models.

These models describe the schema; the schema itself is created and changed only by the alembic
migrations in ``migrations/versions`` (``tests/sync/test_state_store.py`` checks that both agree).
A change here needs a new migration.

Every table is prefixed ``zuora_sync_`` (and alembic's version table is
``zuora_sync_alembic_version``), so the store can share a database with other applications without
a clash. Types are portable (SQLite, PostgreSQL): datetimes are timezone-aware UTC (``timestamptz``
on PostgreSQL; on SQLite UTC without offset, converted back to aware UTC when read).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UTC = dt.UTC

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: An autoincrementing 64-bit id on PostgreSQL; SQLite only autoincrements ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime as a plain ``datetime`` in UTC; a naive one is refused."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the state store takes timezone-aware datetimes")
    value = value.astimezone(UTC)
    return dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                       value.microsecond, tzinfo=UTC)


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime, stored the same way on every backend.

    PostgreSQL keeps it as ``timestamp with time zone``; SQLite as text in UTC without an offset
    (the same fixed-width format for every value, so comparisons and ordering are correct).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


class Watermark(Base):
    """Per scope and Zuora object: every change up to ``value`` is safely in Salesforce."""

    __tablename__ = "zuora_sync_watermark"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    object: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ScopeReset(Base):
    """When a scope's watermarks were last reset (a cleanup): full syncs before it no longer count."""

    __tablename__ = "zuora_sync_scope_reset"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    reset_at: Mapped[dt.datetime]


class SyncSession(Base):
    """One sync session (a row of sync history)."""

    __tablename__ = "zuora_sync_session"
    __table_args__ = (
        Index(None, "scope", "started_at"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_type: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(32))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    window_start: Mapped[dt.datetime | None]
    window_end: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    zuora_api_calls: Mapped[int] = mapped_column(BigInteger)
    salesforce_api_calls: Mapped[int] = mapped_column(BigInteger)
    #: What a session wants on record besides counts (e.g. a cleanup's lookups at risk); migration 0002.
    details: Mapped[dict[str, Any] | None]


class SessionObject(Base):
    """A session's counts for one Zuora object."""

    __tablename__ = "zuora_sync_session_object"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("zuora_sync_session.id", ondelete="CASCADE"), primary_key=True)
    object: Mapped[str] = mapped_column(String(80), primary_key=True)
    extracted: Mapped[int] = mapped_column(BigInteger)
    upserted: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    #: Rows compared with their stored hash (migration 0003): created or updated in Salesforce,
    #: unchanged (not sent), removed. A dry run records what would be.
    created: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unchanged: Mapped[int] = mapped_column(BigInteger, server_default="0")
    removed: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RejectedRecord(Base):
    """A row Salesforce (or the conversion) rejected; open until a later session syncs it."""

    __tablename__ = "zuora_sync_rejected"
    __table_args__ = (
        Index(None, "session_id"),
        Index(None, "scope", "object", "resolved_at"),
        Index(None, "object", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("zuora_sync_session.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(32))
    object: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    row: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]
    resolved_session_id: Mapped[int | None] = mapped_column(Integer)


class ChangeEvent(Base):
    """A received Zuora callout (data-change event), unique by its notification id."""

    __tablename__ = "zuora_sync_event"
    __table_args__ = (
        Index(None, "consumed_at", "received_at"),
        Index(None, "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[dt.datetime]
    consumed_at: Mapped[dt.datetime | None]
    consumed_session_id: Mapped[int | None] = mapped_column(Integer)


class RecordHash(Base):
    """The hash of a record's mapped values as Salesforce last accepted them, exactly as staged.

    A row whose hash is unchanged (and that Salesforce still holds) is not sent again
    (:mod:`zuora_sync.hashes`). No row here means "send it": never synced, rejected, written with
    an optional lookup emptied, or removed.
    """

    __tablename__ = "zuora_sync_record_hash"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    object: Mapped[str] = mapped_column(String(80), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))


class SalesforceFingerprint(Base):
    """What Salesforce held of an object's owned records when the last writing session ended.

    ``record_count`` and ``last_modified`` (the newest ``SystemModstamp``) as Salesforce answered,
    ``hashed_count`` the record hashes the store had then. No row (or no count): unknown, so the
    next session asks Salesforce for its keys (:func:`zuora_sync.hashes.fingerprint_trusted`).
    """

    __tablename__ = "zuora_sync_sf_fingerprint"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    object: Mapped[str] = mapped_column(String(80), primary_key=True)
    record_count: Mapped[int | None] = mapped_column(BigInteger)
    last_modified: Mapped[str | None] = mapped_column(String(40))
    hashed_count: Mapped[int | None] = mapped_column(BigInteger)
    measured_at: Mapped[dt.datetime | None]


class ScopeLock(Base):
    """A held scope lock (``accounts``, ``catalog``, ``cleanup``, ...) with its lease."""

    __tablename__ = "zuora_sync_lock"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(500))
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
