"""What the Zuora Sync page shows: sessions, rejected records and events shaped for the page and
its CSV download, and the history filters read from the query (``docs/ui.md``). Pure functions:
the routes (:mod:`zuora_sync.webapp.page`) read the state store and call them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from zuora_sync.events import event_object
from zuora_sync.settings import SettingsError, check_time_zone
from zuora_sync.vocabulary import SessionType

log = logging.getLogger(__name__)


#: Zuora 360 shows a cleanup session's status as "Sync Clean-up"; the history filter offers it too.
CLEANUP_STATUS = CLEANUP_TYPE = SessionType.CLEANUP


#: The rejected-records CSV's columns.
CSV_COLUMNS = ("session_id", "object", "salesforce_object", "external_id", "error_code", "message",
               "rejected_at", "resolved_at", "resolved_by_session", "record")


class BadRequest(Exception):
    """A query value the endpoint cannot use: 400 with the reason (and what is allowed)."""

    def __init__(self, detail: str, allowed: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.allowed = allowed


def parse_instant(value: str | None, name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """An ISO 8601 datetime (UTC without an offset) or a date (``end_of_day``: the next midnight, UTC).

    A value Python can parse but not move to UTC, or past, such as ``until=9999-12-31`` (whose end
    is in the year 10000), is a :class:`BadRequest` too, never an ``OverflowError``.
    """
    if value in (None, ""):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end_of_day:
                day += dt.timedelta(days=1)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(text)
        return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    except OverflowError:
        raise BadRequest(f"{name}: {value!r} is out of range (dates from {dt.date.min} to "
                         f"{dt.date.max - dt.timedelta(days=1)})") from None
    except ValueError:
        raise BadRequest(f"{name}: {value!r} is not an ISO 8601 date or datetime (e.g. 2025-01-31 or "
                         "2025-01-31T08:00:00Z)") from None


def history_filter(types: list[str] | None, status: str | None) -> tuple[list[str] | None, list[str] | None]:
    """The store's ``(session_types, statuses)`` for the page's type and status filters.

    A cleanup session's status is shown as Sync Clean-up, so "Finished" means a finished session
    that is not a cleanup, and "Sync Clean-up" means every cleanup session.
    """
    from zuora_sync.state import SESSION_STATUSES, SESSION_TYPES

    if types:
        unknown = [t for t in types if t not in SESSION_TYPES]
        if unknown:
            raise BadRequest(f"type: {unknown[0]!r} is not a session type", {"type": list(SESSION_TYPES)})
    statuses_allowed = [*SESSION_STATUSES, CLEANUP_STATUS]
    if status in (None, ""):
        return (list(types) if types else None), None
    if status not in statuses_allowed:
        raise BadRequest(f"status: {status!r} is not a session status", {"status": statuses_allowed})
    wanted_types = list(types) if types else list(SESSION_TYPES)
    if status == CLEANUP_STATUS:
        return [t for t in wanted_types if t == CLEANUP_TYPE], None
    return [t for t in wanted_types if t != CLEANUP_TYPE], [status]


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def dag_run_path(dag_id: str | None, run_id: str | None) -> str | None:
    """The DAG run's page in the Airflow UI, relative to the UI's root (``dags/<dag>/runs/<run>``)."""
    if not dag_id or not run_id:
        return None
    return f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def trigger_label(trigger: str | None) -> str | None:
    """How a session was started, in words: ``DagRunType.MANUAL`` (an enum's ``str()``) is "manual"."""
    if trigger and trigger.startswith("DagRunType."):
        return trigger.split(".", 1)[1].lower().replace("_", " ")
    return trigger


def session_view(session: dict[str, Any], now: dt.datetime, *, details: bool = False) -> dict[str, Any]:
    """A stored session as the page shows it."""
    started, ended = session["started_at"], session["ended_at"]
    duration = ((ended or now) - started).total_seconds() if started else None
    cleanup = session["session_type"] == CLEANUP_TYPE
    view = {
        "id": session["id"],
        "type": session["session_type"],
        "scope": session["scope"],
        "trigger": trigger_label(session["trigger"]),
        "status": session["status"],
        "display_status": CLEANUP_STATUS if cleanup else session["status"],
        "dry_run": session["dry_run"],
        "started_at": iso(started),
        "ended_at": iso(ended),
        "duration_seconds": None if duration is None else round(max(duration, 0.0), 1),
        "window_start": iso(session["window_start"]),
        "window_end": iso(session["window_end"]),
        "error": session["error"],
        "objects": session["objects"],
        "totals": session["totals"],
        "rejected": session["rejected"],
        "api_calls": session["api_calls"],
        "dag_id": session["dag_id"],
        "run_id": session["run_id"],
        "dag_run_path": dag_run_path(session["dag_id"], session["run_id"]),
    }
    if details:
        view["details"] = session["details"]
    return view


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula gets a leading ``'`` (OWASP's advice)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def salesforce_objects() -> dict[str, str]:
    try:
        from zuora_sync.mapping import load_mapping

        return {name: obj.salesforce for name, obj in load_mapping().objects.items()}
    except Exception:  # the download still works without the mapping's names
        log.exception("Could not read the mapping for the rejected-records CSV")
        return {}


def rejected_view(row: dict[str, Any], salesforce: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": row["object"],
        "salesforce_object": salesforce.get(row["object"]),
        "external_id": row["external_id"],
        "error_code": row["error_code"],
        "message": row["message"],
        "rejected_at": iso(row["created_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "resolved_by_session": row["resolved_session_id"],
        "record": row["row"],
    }


def rejected_csv(rows: Iterator[dict[str, Any]], session_id: int, salesforce: dict[str, str]) -> Iterator[bytes]:
    """The CSV download, in chunks: a header, then one line per rejected record (UTF-8, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)   # the csv module quotes commas, quotes and newlines in values
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in rows:
        view = rejected_view(row, salesforce)
        writer.writerow([csv_cell(session_id), csv_cell(view["object"]), csv_cell(view["salesforce_object"]),
                         csv_cell(view["external_id"]), csv_cell(view["error_code"]), csv_cell(view["message"]),
                         csv_cell(view["rejected_at"]), csv_cell(view["resolved_at"]),
                         csv_cell(view["resolved_by_session"]),
                         csv_cell(json.dumps(view["record"], ensure_ascii=False, sort_keys=True, default=str))])
        count += 1
        if count % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of an event: its type and which record changed (not the whole payload)."""
    payload = event["payload"] or {}

    def text(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    return {
        "id": event["id"],
        "notification_id": event["notification_id"],
        "event_type": event["event_type"],
        "object": event_object(payload),
        "object_id": text("objectId"),
        "change_type": text("changeType"),
        "event_timestamp": text("eventTimestamp"),
        "received_at": iso(event["received_at"]),
    }


def usage_per_day(rows: list[dict[str, Any]], days: int, tz: ZoneInfo, today: dt.date) -> list[dict[str, Any]]:
    """API requests per calendar day in ``tz``, the last ``days`` days up to ``today``, zeros included."""
    first = today - dt.timedelta(days=days - 1)
    totals = {first + dt.timedelta(days=i): {"salesforce": 0, "zuora": 0, "sessions": 0} for i in range(days)}
    for row in rows:
        day = row["started_at"].astimezone(tz).date()
        if day in totals:
            totals[day]["salesforce"] += row["salesforce"]
            totals[day]["zuora"] += row["zuora"]
            totals[day]["sessions"] += 1
    return [{"date": day.isoformat(), **values} for day, values in totals.items()]


def time_zone_of(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return check_time_zone("tz", name)  # the settings' rule: a directory of the zone database is no zone
    except SettingsError:
        raise BadRequest(f"tz: {name[:80]!r} is not an IANA time zone (e.g. Europe/Paris, UTC)") from None
