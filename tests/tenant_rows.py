"""Rows read straight from a Zuora sandbox's database file (read-only): what the API answers is
compared with what the tenant holds, not with another answer of the same API."""

from __future__ import annotations

import sqlite3
from typing import Any


def tenant_rows(sandbox: Any, sql: str, *params: Any) -> list[dict]:
    with sqlite3.connect(f"file:{sandbox.data_dir / 'tenant.sqlite3'}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
