"""A sandbox's SQLite database: one file in the data dir, a connection per thread, one writer.

Both sandboxes keep everything (records, jobs, sessions, settings) in one SQLite file so a restart
finds the data as it was. Each thread gets its own connection in autocommit mode; writers take one
process-wide lock, so a background job and API calls interleave transaction by transaction
instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

from sandbox.private import make_private_file

_SETTINGS = "CREATE TABLE IF NOT EXISTS _settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def quote(identifier: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


class SqliteStore:
    """Connections, transactions and a key/value settings table over one SQLite file."""

    def __init__(self, path: Path, schema_sql: str = ""):
        self.path = Path(path)
        make_private_file(self.path)  # it holds the sandbox's credentials and live sessions
        self._local = threading.local()
        self.write_lock = threading.RLock()
        self._all_connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.conn().executescript(_SETTINGS + ";\n" + schema_sql)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; transactions are explicit)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-262144")
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.conn = conn
            with self._connections_lock:
                self._all_connections.append(conn)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self.write_lock:
            conn = self.conn()
            if conn.in_transaction:
                # Nested use joins the outer transaction.
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._all_connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all_connections.clear()
        self._local = threading.local()

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.conn().execute("SELECT value FROM _settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO _settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
