"""The Zuora tenant's database: one table per object, named and columned as Data Query sees them.

Tables are the lower-cased object names (``account``, ``rateplancharge``), columns the lower-cased
field names, plus ``deleted`` and ``deleteddate``: a deleted record stays in its table, marked, for
30 days, because Data Query reads deleted rows (``deleted`` column, ``readDeleted``). Stored forms:
text for ids, strings, picklists; ``YYYY-MM-DD`` for dates; UTC ``YYYY-MM-DD HH:MM:SS`` for
datetimes (so text order is time order); integers and 0/1 booleans as INTEGER; decimals as REAL.

Every change made through the API goes through :meth:`TenantStore.insert`, :meth:`update` or
:meth:`delete`, which stamp the audit fields and append one row per record to ``_events``: the
callout sender and the admin API read changes from there.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from sandbox.sqlite_store import SqliteStore, quote
from sandbox.zuora.schema import TenantSchema, ZField, ZObject

RETENTION_DAYS = 30
#: Setting: seconds added to the wall clock when a change made through the API is stamped
#: (``POST /__admin/clock``), so tests can make changes dated in the past.
CLOCK_OFFSET_SETTING = "clock_offset_seconds"
_SQL_TYPES = {"integer": "INTEGER", "boolean": "INTEGER", "decimal": "REAL"}

_INTERNAL_TABLES = """
CREATE TABLE IF NOT EXISTS _events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    object TEXT NOT NULL,
    record_id TEXT NOT NULL,
    change_type TEXT NOT NULL,
    created TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    delivery TEXT NOT NULL DEFAULT 'pending',
    last_status TEXT
);
CREATE INDEX IF NOT EXISTS ix__events_delivery ON _events(delivery, next_attempt);
CREATE TABLE IF NOT EXISTS _oauth_tokens (token TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS _jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, created REAL NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _cursors (id TEXT PRIMARY KEY, created REAL NOT NULL, spec TEXT NOT NULL);
"""


def format_datetime(value: dt.datetime) -> str:
    """A datetime in the stored form: UTC, seconds, a space between date and time."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def new_id() -> str:
    """A fresh Zuora-style Id: 32 lower-case hex characters."""
    return uuid.uuid4().hex


def column_type(f: ZField) -> str:
    return _SQL_TYPES.get(f.type, "TEXT")


class TenantStore(SqliteStore):
    """The tenant's records, its change events and the sandbox's own state."""

    def __init__(self, path: Path, schema: TenantSchema):
        self.schema = schema
        super().__init__(path, _INTERNAL_TABLES)
        with self.write() as conn:
            for obj in schema.objects.values():
                self._create_table(conn, obj)

    def change_time(self) -> str:
        """When a change made now is stamped (UpdatedDate, its event): the wall clock plus the admin
        clock offset (``POST /__admin/clock``; 0 unless a test set one)."""
        offset = float(self.get_setting(CLOCK_OFFSET_SETTING, 0) or 0)
        return format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset))

    @staticmethod
    def _create_table(conn: sqlite3.Connection, obj: ZObject) -> None:
        existing = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(obj.table)})")}
        if not existing:
            columns = [f"{quote(f.column)} {column_type(f)}" + (" PRIMARY KEY" if f.name == "Id" else "")
                       for f in obj.fields.values()]
            columns += ["deleted INTEGER NOT NULL DEFAULT 0", "deleteddate TEXT"]
            conn.execute(f"CREATE TABLE {quote(obj.table)} ({', '.join(columns)})")
        else:
            for f in obj.fields.values():
                if f.column not in existing:
                    conn.execute(f"ALTER TABLE {quote(obj.table)} ADD COLUMN {quote(f.column)} {column_type(f)}")

    def create_indexes(self) -> None:
        """Indexes on change dates, references and unique fields (the generator adds them after loading)."""
        with self.write() as conn:
            for obj in self.schema.objects.values():
                for f in obj.fields.values():
                    if f.name in ("UpdatedDate", "CreatedDate") or f.references or f.unique:
                        index = quote(f"ix_{obj.table}_{f.column}")
                        conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {quote(obj.table)}({quote(f.column)})")

    # -- changes made through the API ----------------------------------------------------------

    def insert(self, conn: sqlite3.Connection, obj: ZObject, records: list[dict[str, Any]], user_id: str,
               when: str | None = None) -> list[str]:
        """Insert ``records`` (field name → stored value); returns their Ids. Records one event each."""
        when = when or self.change_time()
        ids = []
        for record in records:
            row = {f.column: record.get(f.name) for f in obj.fields.values()}
            row["id"] = record.get("Id") or new_id()
            row.update(createddate=when, updateddate=when, createdbyid=user_id, updatedbyid=user_id)
            columns = list(row)
            conn.execute(
                f"INSERT INTO {quote(obj.table)} ({', '.join(map(quote, columns))}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [row[c] for c in columns],
            )
            ids.append(row["id"])
        self.record_events(conn, obj, ids, "create", when)
        return ids

    def update(self, conn: sqlite3.Connection, obj: ZObject, record_id: str, values: dict[str, Any], user_id: str,
               when: str | None = None) -> None:
        """Set ``values`` (field name → stored value) on a live record; stamps UpdatedDate."""
        when = when or self.change_time()
        assignments = {obj.fields[name].column: value for name, value in values.items()}
        assignments.update(updateddate=when, updatedbyid=user_id)
        conn.execute(
            f"UPDATE {quote(obj.table)} SET {', '.join(f'{quote(c)} = ?' for c in assignments)} "
            "WHERE id = ? AND deleted = 0",
            [*assignments.values(), record_id],
        )
        self.record_events(conn, obj, [record_id], "update", when)

    def delete(self, conn: sqlite3.Connection, obj: ZObject, record_ids: Iterable[str], user_id: str,
               when: str | None = None) -> None:
        """Mark records deleted (Data Query keeps them, with ``deleted`` true, for 30 days)."""
        when = when or self.change_time()
        ids = list(record_ids)
        conn.execute(
            f"UPDATE {quote(obj.table)} SET deleted = 1, deleteddate = ?, updateddate = ?, updatedbyid = ? "
            "WHERE id IN (SELECT value FROM json_each(?)) AND deleted = 0",
            (when, when, user_id, json.dumps(ids)),
        )
        self.record_events(conn, obj, ids, "delete", when)

    def get(self, obj: ZObject, record_id: str, include_deleted: bool = False) -> dict[str, Any] | None:
        """A record by Id as field name → stored value, or ``None``."""
        live = "" if include_deleted else " AND deleted = 0"
        cursor = self.conn().execute(f"SELECT * FROM {quote(obj.table)} WHERE id = ?{live}", (record_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        columns = [d[0] for d in cursor.description]
        by_column = {f.column: f.name for f in obj.fields.values()}
        return {by_column.get(c, c): v for c, v in zip(columns, row)}

    def record_events(self, conn: sqlite3.Connection, obj: ZObject, record_ids: list[str], change: str,
                      when: str) -> None:
        """One change event per record, for callouts (``Zuora-Notification-Id`` is fixed here)."""
        event_type = obj.events[change]
        change_type = {"create": "INSERT", "update": "UPDATE", "delete": "DELETE"}[change]
        conn.executemany(
            "INSERT INTO _events(notification_id, event_type, object, record_id, change_type, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(new_id(), event_type, obj.name, record_id, change_type, when) for record_id in record_ids],
        )

    def purge_deleted(self, now: float | None = None) -> int:
        """Forget deleted rows older than the 30-day retention, as Zuora does."""
        cutoff = format_datetime(dt.datetime.fromtimestamp((now or time.time()) - RETENTION_DAYS * 86400, dt.timezone.utc))
        removed = 0
        with self.write() as conn:
            for obj in self.schema.objects.values():
                removed += conn.execute(
                    f"DELETE FROM {quote(obj.table)} WHERE deleted = 1 AND deleteddate < ?", (cutoff,)
                ).rowcount
        return removed
