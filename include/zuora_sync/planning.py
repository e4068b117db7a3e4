"""Planning a sync session: its type, its objects and, per object, the window of changes to read.

Pure functions of what the begin task read (the request, sync history, watermarks, the clock);
the task itself (:class:`~zuora_sync.operators.session.BeginSyncSessionOperator`) only gathers
those facts and records the plan. The rules (``docs/operations.md``) in one place:

- the first sync ever of a scope, and the first after a cleanup, is a full sync, whatever started it;
- a real-time session after a change of the sync mode is a full sync (:mod:`zuora_sync.sync_mode`);
- a Product Catalog session reads everything; an on-demand one the chosen accounts;
- a backfill run re-syncs exactly its data interval (plus the look-back overlap);
- a scheduled run reads from the older of its interval start and the object's watermark, so a
  failed or stopped earlier session leaves no gap;
- a manual run without an interval reads from the object's watermark to now;
- a manual run may name its own window in the form;
- a window moves the object's watermark only when it joins it (:func:`zuora_sync.reconcile.advanced_watermark`);
- a scheduled run whose interval later sessions already synced (every watermark is past its end)
  has nothing to do: the run Airflow starts when ``zuora_incremental_sync`` is unpaused for a
  backfill in Real-time mode is such a run, and recording it would read as Scheduled mode.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from dataclasses import asdict, dataclass, field
from typing import Any

from zuora_sync.vocabulary import SessionType

FULL, INCREMENTAL, ON_DEMAND, CATALOG, REAL_TIME = (SessionType.FULL, SessionType.INCREMENTAL, SessionType.ON_DEMAND,
                                                    SessionType.CATALOG, SessionType.REAL_TIME)


@dataclass(frozen=True)
class Decision:
    """What a session really is, once sync history has had its say.

    :ivar why: why the type differs from the one asked for (logged), or ``None``.
    """

    session_type: str
    mode: str                                   # full | window | accounts
    objects: list[str]
    why: str | None = None


def decide(requested: str, scope: str, scope_objects: list[str], selected: list[str], *,
           has_full_sync: bool, mode_change: str | None = None) -> Decision:
    """The session's type, mode and objects.

    :param requested: the DAG's session type.
    :param scope_objects: every object of the scope, in load order.
    :param selected: the objects the form chose (in load order), or all of them.
    :param has_full_sync: whether a full sync of the scope has finished (since the last cleanup).
    :param mode_change: why a real-time session follows a change of the sync mode, or ``None``.
    :raises ValueError: an unknown session type.
    """
    if requested == CATALOG:
        return Decision(CATALOG, "full", selected)
    if not has_full_sync:
        why = None if requested == FULL else \
            f"no full sync of {scope} has finished yet (first sync, or after a cleanup): this session is a full sync"
        return Decision(FULL, "full", scope_objects, why)
    if requested == REAL_TIME and mode_change:
        return Decision(FULL, "full", scope_objects, f"this real-time session of {scope} is a full sync: {mode_change}")
    modes = {FULL: "full", ON_DEMAND: "accounts", INCREMENTAL: "window", REAL_TIME: "window"}
    if requested not in modes:
        raise ValueError(f"unknown session type {requested}")
    return Decision(requested, modes[requested], selected)


def select_objects(scope_objects: list[str], wanted: list[str] | None) -> list[str]:
    """The objects a session syncs, in load order: the form's choice, or all of the scope.

    :raises ValueError: the form named an object the scope does not have.
    """
    wanted = list(wanted or []) or scope_objects
    unknown = [o for o in wanted if o not in scope_objects]
    if unknown:
        raise ValueError(f"unknown objects {unknown}; the objects of this scope are {scope_objects}")
    return [o for o in scope_objects if o in wanted]


def session_windows(objects: list[str], watermarks: dict[str, dt.datetime], *, run_type: str, session_type: str,
                    interval: tuple[dt.datetime | None, dt.datetime | None], now: dt.datetime,
                    lookback: dt.timedelta,
                    requested: tuple[dt.datetime | None, dt.datetime | None] = (None, None)) -> dict[str, list[str]]:
    """The windows of a window-mode session, from how its run was started.

    Scheduled and backfill runs read their data interval; a manual run means "sync now". A
    real-time run's interval ends when the run was created, before its sensor waited: it reads
    from the watermark to now.
    """
    run_type = run_type.lower()
    start, end = interval
    scheduled = run_type.endswith(("scheduled", "backfill")) and session_type != REAL_TIME
    chosen = (start, end) if scheduled and start is not None and end is not None and start < end else None
    return object_windows(objects, watermarks, now=now, interval=chosen, backfill=run_type.endswith("backfill"),
                          lookback=lookback, requested=requested)


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
    force: bool = False                         # send every row, whatever its stored hash (full sync's form)

    def as_xcom(self) -> dict[str, Any]:
        # Plain strings: XCom readers need no enum (a StrEnum member equals its value anyway).
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in asdict(self).items()}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> "SessionPlan":
        return cls(**{k: v for k, v in value.items() if k in cls.__dataclass_fields__})

    def window(self, obj: str) -> tuple[dt.datetime, dt.datetime] | None:
        if obj not in self.windows:
            return None
        start, end = self.windows[obj]
        return dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)


@dataclass
class CleanupPlan:
    """What one cleanup does, decided by its begin task; passed to the delete tasks as XCom.

    :ivar delete: whether records are deleted (dry run off and confirmed); otherwise only counted.
    :ivar hard: delete permanently, bypassing the recycle bin.
    :ivar counts: records the sync owns per object, when the cleanup began.
    """

    session_id: int
    scope: str
    holder: str
    delete: bool
    hard: bool
    objects: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    def as_xcom(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in asdict(self).items()}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> CleanupPlan:
        return cls(**value)


def holder_name(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


def staging_dir(root: str, dag_id: str, run_id: str) -> str:
    return f"{root}/{dag_id}/{run_dir_name(run_id)}"


def run_dir_name(run_id: str) -> str:
    """The name of a DAG run's staging directory (under its DAG's)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


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


def interval_synced(watermarks: dict[str, dt.datetime], objects: list[str], interval_end: dt.datetime) -> bool:
    """Whether every object's watermark is at or past ``interval_end``: sessions after the interval
    (real-time ones, a manual sync) synced all of it already, so a scheduled run of it has nothing to do.

    An object without a watermark has never been synced: its interval is not.
    """
    return bool(objects) and all(watermarks.get(obj) is not None and watermarks[obj] >= interval_end
                                 for obj in objects)
