"""The Zuora Sync page inside the Airflow UI, and the data it shows (``docs/ui.md``).

The plugin registers the page as an Airflow UI *external view* (a top-level navigation entry,
"Zuora Sync", at ``/plugin/zuora-sync``); the Airflow UI shows it in an iframe whose document is
``GET /zuora-sync/ui/``, served here from the files in ``static/`` (one HTML document, one script,
one style sheet, one icon: package data, no build step, nothing fetched from elsewhere).

Every route needs an Airflow login (the UI's ``_token`` cookie, or ``Authorization: Bearer``,
checked by Airflow's own :func:`~airflow.api_fastapi.core_api.security.get_user`). The page itself
answers a visitor who is not logged in with a redirect to the auth manager's login page (which
comes back to the page); its assets and data endpoints answer 401. The data endpoints also need
read access to the sync DAGs' runs, and the rejected records more (:mod:`zuora_sync.webapp.access`):
403 otherwise.

Data endpoints (JSON unless said otherwise; times are ISO 8601 UTC):

- ``GET /sessions``: sync history, newest first, paged (``limit``, ``offset``), filtered by start
  date (``since``, ``until``), ``type`` (repeatable) and ``status``; ``Sync Clean-up`` is a status
  here, as in Zuora 360's sync history (a cleanup session's status is shown as Sync Clean-up);
- ``GET /sessions/{id}``: one session with its counts per object and details;
- ``GET /sessions/{id}/rejected``: a page of its rejected records;
- ``GET /sessions/{id}/rejected.csv``: all of them as a CSV download (object, Zuora id, Salesforce
  error code and message, ... per record);
- ``GET /pending-events``: data change events not consumed by a session yet, newest first;
- ``GET /api-usage``: API requests the sync's sessions used per day (in the viewer's time zone)
  and the org's Salesforce daily allowance, read from Salesforce's ``/limits`` at most every
  :data:`ALLOWANCE_TTL_SECONDS` (that read is itself one API request).

``GET /status`` and ``GET``/``PUT /settings`` (in :mod:`zuora_sync.webapp.app`) complete what the
page uses.
"""

from __future__ import annotations

import concurrent.futures
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from airflow.api_fastapi.core_api.security import GetUserDep, bearer_scheme, get_user
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from zuora_sync import clients
from zuora_sync.events import event_object
from zuora_sync.settings import SettingsError, check_time_zone
from zuora_sync.webapp import PAGE_PATH
from zuora_sync.webapp.access import READ_SYNC, require_rejected_records
from zuora_sync.vocabulary import SessionType

log = logging.getLogger(__name__)

#: Zuora 360 shows a cleanup session's status as "Sync Clean-up"; the history filter offers it too.
CLEANUP_STATUS = CLEANUP_TYPE = SessionType.CLEANUP
MAX_PAGE = 500
#: Bounds of ids and offsets: the database's 64-bit integers (a larger number is a 400, not an overflow).
MAX_ID = 2**63 - 1
SessionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the sync session's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
#: How long a read of Salesforce's daily allowance is reused (each read costs one API request).
ALLOWANCE_TTL_SECONDS = 600.0
#: After a failed read, try again no sooner than this.
ALLOWANCE_RETRY_SECONDS = 60.0
#: How long a request waits for a read of the allowance under way before answering without it.
ALLOWANCE_WAIT_SECONDS = 15.0
#: The rejected-records CSV's columns.
CSV_COLUMNS = ("session_id", "object", "salesforce_object", "external_id", "error_code", "message",
               "rejected_at", "resolved_at", "resolved_by_session", "record")

#: The page's files: name → media type.
ASSETS = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
#: A strict policy: only this origin's script and styles, embeddable only by the Airflow UI.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; "
                           "object-src 'none'")


# --------------------------------------------------------------------------------------------
# Static files (package data)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


_assets: dict[str, Asset] = {}
_assets_lock = threading.Lock()


def asset(name: str) -> Asset:
    """A file of ``zuora_sync/webapp/static`` (read once), with its ETag."""
    cached = _assets.get(name)
    if cached is None:
        with _assets_lock:
            media_type = "text/html; charset=utf-8" if name == "index.html" else ASSETS[name]
            body = resources.files("zuora_sync.webapp").joinpath("static", name).read_bytes()
            cached = _assets[name] = Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return cached


def _serve(request: Request, item: Asset, *, cache: str = "no-cache") -> Response:
    headers = {"ETag": item.etag, "Cache-Control": f"private, {cache}", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


# --------------------------------------------------------------------------------------------
# Query values


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


def _iso(value: dt.datetime | None) -> str | None:
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
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "duration_seconds": None if duration is None else round(max(duration, 0.0), 1),
        "window_start": _iso(session["window_start"]),
        "window_end": _iso(session["window_end"]),
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


# --------------------------------------------------------------------------------------------
# Rejected records


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula gets a leading ``'`` (OWASP's advice)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _salesforce_objects() -> dict[str, str]:
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
        "rejected_at": _iso(row["created_at"]),
        "resolved_at": _iso(row["resolved_at"]),
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


# --------------------------------------------------------------------------------------------
# Pending events


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
        "received_at": _iso(event["received_at"]),
    }


# --------------------------------------------------------------------------------------------
# API usage and the Salesforce allowance


def read_salesforce_allowance(conn_id: str = "salesforce_default") -> dict[str, Any]:
    """The org's daily API allowance from Salesforce's ``/limits`` (one API request)."""
    from zuora_sync.salesforce_loader import ApiBudgetExhausted

    loader = clients.salesforce(conn_id, reserve=False, interactive=True)
    try:
        remaining, maximum = loader.check_budget()
    except ApiBudgetExhausted as exc:  # REQUEST_LIMIT_EXCEEDED: the allowance is used up
        maximum = getattr(exc, "maximum", None) or (loader.api_usage[1] if loader.api_usage else None)
        remaining = 0
    return {"max": maximum, "remaining": remaining,
            "used": None if maximum is None else max(int(maximum) - int(remaining), 0)}


class AllowanceCache:
    """The last read of the allowance, refreshed in a background thread at most every ``ttl`` seconds.

    A request waits at most ``wait`` seconds for a read under way (Salesforce may be slow or
    unreachable); it then answers with what is known and the read finishes for the next request.
    """

    def __init__(self, reader: Callable[[], dict[str, Any]] = read_salesforce_allowance, *,
                 ttl: float = ALLOWANCE_TTL_SECONDS, retry: float = ALLOWANCE_RETRY_SECONDS,
                 wait: float = ALLOWANCE_WAIT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.reader, self.ttl, self.retry, self.wait, self.clock = reader, ttl, retry, wait, clock
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._checked_at: dt.datetime | None = None
        self._error: str | None = None
        self._fresh_until = 0.0
        self._future: concurrent.futures.Future | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="zuora-sync-allowance")

    def _read(self) -> None:
        try:
            value = self.reader()
        except Exception as exc:
            log.warning("Could not read the Salesforce API allowance: %s", type(exc).__name__)
            with self._lock:
                self._error = ("the allowance could not be read from Salesforce "
                               f"({type(exc).__name__}); checked again within {self.retry:.0f} s")
                self._fresh_until = self.clock() + self.retry
            return
        with self._lock:
            self._value, self._error = value, None
            self._checked_at = dt.datetime.now(dt.UTC)
            self._fresh_until = self.clock() + self.ttl

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self.clock() >= self._fresh_until and (self._future is None or self._future.done()):
                self._future = self._pool.submit(self._read)
            future = self._future
        if future is not None and not future.done():
            try:
                future.result(timeout=self.wait)
            except concurrent.futures.TimeoutError:
                pass
        with self._lock:
            pending = self._future is not None and not self._future.done()
            error = self._error or ("still reading the allowance from Salesforce" if pending and self._value is None
                                    else None)
            return {"allowance": None if self._value is None else {**self._value, "checked_at": _iso(self._checked_at)},
                    "allowance_error": error}


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


def _zone(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return check_time_zone("tz", name)  # the settings' rule: a directory of the zone database is no zone
    except SettingsError:
        raise BadRequest(f"tz: {name[:80]!r} is not an IANA time zone (e.g. Europe/Paris, UTC)") from None


# --------------------------------------------------------------------------------------------
# The routes


def _bad_request(exc: BadRequest) -> JSONResponse:
    body: dict[str, Any] = {"detail": exc.detail}
    if exc.allowed is not None:
        body["allowed"] = exc.allowed
    return JSONResponse(body, status_code=400)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def login_url(request: Request) -> str:
    """The auth manager's login page, coming back to the page afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return get_auth_manager().get_url_login(next_url=target)


def create_page_router(intake: Any, login_required: list[Any], *,
                       allowance: AllowanceCache | None = None) -> APIRouter:
    """The page (``/ui/``), its assets (``/ui/assets/<name>``) and its data endpoints.

    :param intake: the web app's :class:`~zuora_sync.webapp.callouts.Intake` (its state store).
    :param login_required: the route dependencies that demand an Airflow login.
    :param allowance: where the Salesforce allowance comes from (default: ``/limits``, cached).
    """
    allowance = allowance or AllowanceCache()
    router = APIRouter()
    assets = APIRouter(dependencies=login_required)
    data = APIRouter(dependencies=[*login_required, *READ_SYNC], tags=["sync page"])

    def store_or_503() -> Any:
        try:
            return intake.store.get()
        except Exception:
            log.exception("Could not open the state store")
            raise HTTPException(503, "the state store cannot be reached") from None

    # ---------------------------------------------------------------- the page

    @router.get("/ui", include_in_schema=False)
    def page_without_slash(request: Request) -> RedirectResponse:
        return RedirectResponse(request.url.path + "/", status_code=307)

    @router.get(PAGE_PATH, summary="The Zuora Sync page (Airflow login required; otherwise a redirect to it)",
                response_class=Response, responses={200: {"content": {"text/html": {}}},
                                                    307: {"description": "Not logged in: to the login page"}})
    async def page(request: Request, bearer: Annotated[Any, Depends(bearer_scheme)] = None) -> Response:
        try:
            await get_user(request, None, bearer)
        except HTTPException as exc:
            if exc.status_code not in (401, 403):
                raise
            return RedirectResponse(login_url(request), status_code=307, headers={"Cache-Control": "no-store"})
        response = _serve(request, asset("index.html"))
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @assets.get("/ui/assets/{name}", summary="The page's script, style sheet and icon", include_in_schema=False)
    def page_asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            return JSONResponse({"detail": "no such file"}, status_code=404)
        return _serve(request, asset(name))

    # ---------------------------------------------------------------- sync history

    @data.get("/sessions", summary="Sync history: sessions, newest first, filtered and paged")
    def sessions(
        since: Annotated[str | None, Query(description="started at or after (ISO date or datetime)")] = None,
        until: Annotated[str | None, Query(description="started before (a date: to the end of that day, UTC)")] = None,
        type: Annotated[list[str] | None, Query(description="session type(s)")] = None,  # noqa: A002
        status: Annotated[str | None, Query(description="a session status, or Sync Clean-up")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
        offset: Offset = 0,
    ) -> JSONResponse:
        from zuora_sync.state import SESSION_STATUSES, SESSION_TYPES

        try:
            start = parse_instant(since, "since")
            end = parse_instant(until, "until", end_of_day=True)
            session_types, statuses = history_filter(type, status)
        except BadRequest as exc:
            return _bad_request(exc)
        store = store_or_503()
        now = dt.datetime.now(dt.UTC)
        if session_types == []:
            rows, total = [], 0
        else:
            rows, total = store.search_sessions(limit=limit, offset=offset, session_types=session_types,
                                                statuses=statuses, since=start, until=end)
        return _no_store(JSONResponse({
            "sessions": [session_view(s, now) for s in rows], "total": total, "limit": limit, "offset": offset,
            "filters": {"since": _iso(start), "until": _iso(end), "type": type or [], "status": status},
            "types": list(SESSION_TYPES), "statuses": [*SESSION_STATUSES, CLEANUP_STATUS], "now": _iso(now)}))

    @data.get("/sessions/{session_id}", summary="One session: counts per object, API requests, details")
    def one_session(session_id: SessionId) -> JSONResponse:
        store = store_or_503()
        try:
            session = store.get_session(session_id)
        except KeyError:
            return JSONResponse({"detail": f"no sync session {session_id}"}, status_code=404)
        return _no_store(JSONResponse(_jsonable(session_view(session, dt.datetime.now(dt.UTC), details=True))))

    def session_with_rejected_records(session_id: int, request: Request, user: Any) -> dict[str, Any] | None:
        """The session, once the user may see its rejected records (403 otherwise); None: no such session."""
        store = store_or_503()
        try:
            session = store.get_session(session_id)
        except KeyError:
            return None
        require_rejected_records(request, user, session["dag_id"])
        return session

    @data.get("/sessions/{session_id}/rejected", summary="A page of a session's rejected records",
              responses={403: {"description": "The user may not read the session DAG's task logs or run it"}})
    def rejected(session_id: SessionId, request: Request, user: GetUserDep,
                 limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50, offset: Offset = 0) -> JSONResponse:
        if session_with_rejected_records(session_id, request, user) is None:
            return JSONResponse({"detail": f"no sync session {session_id}"}, status_code=404)
        store = store_or_503()
        rows, total = store.rejected_page(session_id, limit=limit, offset=offset)
        salesforce = _salesforce_objects()
        return _no_store(JSONResponse(_jsonable({
            "session_id": session_id, "total": total, "limit": limit, "offset": offset,
            "rows": [rejected_view(r, salesforce) for r in rows]})))

    @data.get("/sessions/{session_id}/rejected.csv", summary="A session's rejected records as CSV (download)",
              response_class=StreamingResponse,
              responses={200: {"content": {"text/csv": {}}},
                         403: {"description": "The user may not read the session DAG's task logs or run it"}})
    def rejected_download(session_id: SessionId, request: Request, user: GetUserDep) -> Response:
        if session_with_rejected_records(session_id, request, user) is None:
            return JSONResponse({"detail": f"no sync session {session_id}"}, status_code=404)
        store = store_or_503()
        filename = f"zuora-sync-session-{session_id}-rejected.csv"
        return StreamingResponse(
            rejected_csv(store.rejected_for_session(session_id), session_id, _salesforce_objects()),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store",
                     "X-Content-Type-Options": "nosniff"})

    # ---------------------------------------------------------------- events and API usage

    @data.get("/pending-events", summary="Data change events waiting for the next session, newest first")
    def pending_events(limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                       offset: Offset = 0) -> JSONResponse:
        store = store_or_503()
        total = store.pending_event_count()
        events = store.pending_events(limit=limit, offset=offset)
        return _no_store(JSONResponse({"total": total, "limit": limit, "offset": offset,
                                       "events": [event_view(e) for e in events]}))

    @data.get("/api-usage", summary="API requests per day and the Salesforce daily allowance")
    def api_usage(days: Annotated[int, Query(ge=1, le=366)] = 30,
                  tz: Annotated[str | None, Query(description="IANA time zone of the days (default UTC)")] = None,
                  ) -> JSONResponse:
        try:
            zone = _zone(tz)
        except BadRequest as exc:
            return _bad_request(exc)
        store = store_or_503()
        today = dt.datetime.now(zone).date()
        first = today - dt.timedelta(days=days - 1)
        since = dt.datetime(first.year, first.month, first.day, tzinfo=zone)
        per_day = usage_per_day(store.session_api_calls(since), days, zone, today)
        reserve = None
        try:
            from zuora_sync import settings as sync_settings
            from zuora_sync.webapp.app import read_settings_variable

            reserve = sync_settings.parse_settings(read_settings_variable()).salesforce_api_reserve
        except Exception:
            log.debug("No API reserve for the usage chart", exc_info=True)
        return _no_store(JSONResponse({"timezone": zone.key, "days": per_day, "reserve": reserve,
                                       **allowance.get()}))

    router.include_router(assets)
    router.include_router(data)
    return router


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
