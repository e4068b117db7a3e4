"""The sandbox org's database: one table per sObject, plus the org's internal tables.

Records live in a table named after their object, one column per field, so SOQL compiles to plain
SQL and a million rows stay fast. Internal tables (sessions, Bulk jobs, counters) start with an
underscore. Connections and transactions come from :class:`~sandbox.sqlite_store.SqliteStore`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sandbox.salesforce.schema import DECIMAL_TYPES, FieldDef, Schema, SObjectDef
from sandbox.sfid import org_record_id
from sandbox.sqlite_store import SqliteStore, quote

__all__ = ["Store", "quote", "column_type"]

_SQL_TYPES = {"boolean": "INTEGER", "int": "INTEGER"}

_INTERNAL_TABLES = """
CREATE TABLE IF NOT EXISTS _id_counters (key_prefix TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _sessions (
    token TEXT PRIMARY KEY, user_id TEXT NOT NULL, created REAL NOT NULL, expired INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS _bulk_jobs (
    id TEXT PRIMARY KEY, api TEXT NOT NULL, created REAL NOT NULL, info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _bulk_batches (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, seq INTEGER NOT NULL, info TEXT NOT NULL,
    request TEXT, result TEXT
);
CREATE INDEX IF NOT EXISTS ix__bulk_batches_job ON _bulk_batches(job_id, seq);
CREATE TABLE IF NOT EXISTS _query_cursors (
    id TEXT PRIMARY KEY, created REAL NOT NULL, spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _cursor_rows (cursor_id TEXT NOT NULL, seq INTEGER NOT NULL, rid INTEGER NOT NULL,
    PRIMARY KEY (cursor_id, seq)) WITHOUT ROWID;
"""


def column_type(f: FieldDef) -> str:
    """The SQLite column type; decimals are TEXT so their digits survive exactly."""
    if f.type in DECIMAL_TYPES:
        return "TEXT"
    return _SQL_TYPES.get(f.type, "TEXT")


class Store(SqliteStore):
    """The org's records and internal state in one SQLite database file."""

    def __init__(self, path: Path, schema: Schema):
        self.schema = schema
        super().__init__(path, _INTERNAL_TABLES)
        self.sync_tables()

    # -- tables ------------------------------------------------------------------------------

    def sync_tables(self) -> None:
        """Create missing object tables, columns and indexes (fields may have been added)."""
        with self.write() as conn:
            for obj in self.schema.objects.values():
                self._sync_object(conn, obj)

    def _sync_object(self, conn: sqlite3.Connection, obj: SObjectDef) -> None:
        table = quote(obj.name)
        existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not existing:
            columns = ", ".join(
                f"{quote(f.name)} {column_type(f)}" + (" NOT NULL UNIQUE" if f.name == "Id" else "")
                for f in obj.fields.values()
            )
            conn.execute(f"CREATE TABLE {table} ({columns})")
        else:
            for f in obj.fields.values():
                if f.name not in existing:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(f.name)} {column_type(f)}")
        for f in obj.fields.values():
            index = quote(f"ix_{obj.name}_{f.name}")
            if f.is_key and f.name != "Id":
                collate = "" if f.case_sensitive else " COLLATE NOCASE"
                conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table}({quote(f.name)}{collate})")
            elif f.type == "reference" and f.reference_to != ["User"]:
                # Cascades and lookup clearing find children by these; users are never deleted.
                conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table}({quote(f.name)})")

    # -- ids ---------------------------------------------------------------------------------

    def allocate_ids(self, key_prefix: str, count: int) -> list[str]:
        """``count`` new Ids with ``key_prefix`` (records, jobs, batches)."""
        with self.write() as conn:
            end = conn.execute(
                "INSERT INTO _id_counters(key_prefix, next) VALUES (?, ?) "
                "ON CONFLICT(key_prefix) DO UPDATE SET next = next + ? RETURNING next",
                (key_prefix, count + 1, count),
            ).fetchone()[0]
        return [org_record_id(key_prefix, n) for n in range(end - count, end)]
