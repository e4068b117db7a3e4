"""The org's daily API request allowance, counted as Salesforce counts it.

Every authenticated REST and Bulk API request counts (logins do not). Past the allowance,
requests get ``403 REQUEST_LIMIT_EXCEEDED`` until the next UTC day or until an admin raises the
allowance. The count is kept in memory and written to the data dir at most once a second, so
counting costs no database write per request and survives a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path


class ApiUsage:
    """Requests used today against ``daily_max``."""

    def __init__(self, path: Path, daily_max: int):
        self.path = Path(path)
        self.daily_max = daily_max
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._day = self._today()
        self._used = 0
        self._flushed_at = 0.0
        self._dirty = False
        try:
            saved = json.loads(self.path.read_text())
            if saved.get("day") == self._day:
                self._used = int(saved.get("used", 0))
            self.daily_max = int(saved.get("daily_max", daily_max))
        except (OSError, ValueError):
            pass

    @staticmethod
    def _today() -> str:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._used = today, 0

    def record(self) -> tuple[bool, int, int]:
        """Count one request; returns (allowed, used, max). A refused request is not counted."""
        with self._lock:
            self._roll()
            if self._used >= self.daily_max:
                return False, self._used, self.daily_max
            self._used += 1
            self._dirty = True
            used = self._used
        self._maybe_flush()
        return True, used, self.daily_max

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            self._roll()
            return self._used, self.daily_max

    def set(self, daily_max: int | None = None, used: int | None = None) -> None:
        with self._lock:
            self._roll()
            if daily_max is not None:
                self.daily_max = int(daily_max)
            if used is not None:
                self._used = int(used)
            self._dirty = True
        self.flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._flushed_at >= 1.0:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            payload = json.dumps({"day": self._day, "used": self._used, "daily_max": self.daily_max})
            self._dirty = False
            self._flushed_at = time.monotonic()
        with self._flush_lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(payload)
            os.replace(tmp, self.path)
