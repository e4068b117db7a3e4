"""Planning a sync session: its type, its objects and, per object, the window of changes to read.

The rules (SPEC §4) in one place:

- the first sync ever of a scope, and the first after a cleanup, is a full sync, whatever started it;
- a backfill run re-syncs exactly its data interval (plus the look-back overlap);
- a scheduled run reads from the older of its interval start and the object's watermark, so a
  failed or stopped earlier session leaves no gap;
- a manual run without an interval reads from the object's watermark to now;
- a manual run may name its own window in the form;
- a window moves the object's watermark only when it joins it (starts at or before it), and never
  back: a backfill after a gap must not mark the gap as synced;
- a scheduled run whose interval later sessions already synced (every watermark is past its end)
  has nothing to do: the run Airflow starts when ``zuora_incremental_sync`` is unpaused for a
  backfill in Real-time mode is such a run, and recording it would read as Scheduled mode.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

FULL, INCREMENTAL, ON_DEMAND, CATALOG, REAL_TIME = "Full", "Incremental", "On-demand", "Product Catalog", "Real-time"


@dataclass
class SessionPlan:
    """What one session does; passed between tasks as XCom (plain JSON)."""

    session_id: int
    session_type: str
    scope: str
    mode: str                                   # full | window | accounts
    objects: list[str]
    holder: str
    staging: str
    started: str                                # ISO, UTC
    dry_run: bool = False
    windows: dict[str, list[str]] = field(default_factory=dict)   # object -> [start, end] ISO UTC
    accounts: list[str] = field(default_factory=list)

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> "SessionPlan":
        return cls(**value)

    def window(self, obj: str) -> tuple[dt.datetime, dt.datetime] | None:
        if obj not in self.windows:
            return None
        start, end = self.windows[obj]
        return dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)


def holder_name(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


def staging_dir(root: str, dag_id: str, run_id: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    return f"{root}/{dag_id}/{safe_run}"


def parse_instant(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from a form value (ISO text, naive meaning UTC) or a datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def object_windows(
    objects: list[str], watermarks: dict[str, dt.datetime], *, now: dt.datetime,
    interval: tuple[dt.datetime, dt.datetime] | None, backfill: bool, lookback: dt.timedelta,
    requested: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
) -> dict[str, list[str]]:
    """The window of changes each object reads, as ISO strings."""
    windows = {}
    for obj in objects:
        mark = watermarks.get(obj)
        if requested[0] is not None or requested[1] is not None:
            start = requested[0] or mark or (interval[0] if interval else None)
            end = min(requested[1] or now, now)  # changes from the future are not known yet
        elif interval is not None:
            start, end = interval
            if not backfill and mark is not None and mark < start:
                start = mark
        else:
            start, end = mark, now
        if start is None:
            raise ValueError(f"no window for {obj}: no watermark yet, so this must be a full sync")
        if start >= end:
            raise ValueError(f"the window for {obj} is empty or reversed: {start.isoformat()} .. {end.isoformat()}")
        windows[obj] = [(start - lookback).isoformat(), end.isoformat()]
    return windows


def advanced_watermark(current: dt.datetime | None, window: tuple[dt.datetime, dt.datetime], *,
                       started: dt.datetime) -> dt.datetime | None:
    """Where an object's watermark goes once a window of its changes is safely in Salesforce, or
    ``None`` to leave it where it is.

    The watermark says "every change before this is in Salesforce". A window ``[start, end]``
    extends that only when it starts at or before the watermark; otherwise (a backfill, or a form
    window, after an earlier session failed) the changes between the watermark and the window's
    start are still unsynced, and moving the watermark past them would lose them. It moves to the
    window's end, never beyond the session's start (later changes may not be visible to this
    session yet), and never back.

    :param current: the object's watermark now (``None``: none yet, so nothing says the history
        before the window is synced).
    :param window: the window the session read (look-back included).
    :param started: when the session began.
    """
    start, end = window
    if current is None or start > current:
        return None
    moved = min(end, started)
    return moved if moved > current else None


def interval_synced(watermarks: dict[str, dt.datetime], objects: list[str], interval_end: dt.datetime) -> bool:
    """Whether every object's watermark is at or past ``interval_end``: sessions after the interval
    (real-time ones, a manual sync) synced all of it already, so a scheduled run of it has nothing to do.

    An object without a watermark has never been synced: its interval is not.
    """
    return bool(objects) and all(watermarks.get(obj) is not None and watermarks[obj] >= interval_end
                                 for obj in objects)
