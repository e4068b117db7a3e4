"""The Zuora Sync page inside the Airflow UI, and the data it shows (``docs/ui.md``).

The plugin registers the page as an Airflow UI *external view* (a top-level navigation entry,
"Zuora Sync", at ``/plugin/zuora-sync``); the Airflow UI shows it in an iframe whose document is
``GET /zuora-sync/ui/``, served here from the files in ``static/`` (one HTML document, its script
modules, one style sheet, one icon: package data, no build step, nothing fetched from elsewhere).
The routes read the state store; the shapes they answer are :mod:`zuora_sync.webapp.views`', the
Salesforce allowance :mod:`zuora_sync.webapp.services`'.

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

import datetime as dt
import hashlib
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep, bearer_scheme, get_user
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from zuora_sync.webapp import PAGE_PATH
from zuora_sync.webapp.access import READ_SYNC, require_rejected_records
from zuora_sync.webapp.services import AllowanceCache
from zuora_sync.webapp.views import (
    CLEANUP_STATUS,
    BadRequest,
    event_view,
    history_filter,
    iso,
    parse_instant,
    rejected_csv,
    rejected_view,
    salesforce_objects,
    session_view,
    time_zone_of,
    usage_per_day,
)

log = logging.getLogger(__name__)


MAX_PAGE = 500


#: Bounds of ids and offsets: the database's 64-bit integers (a larger number is a 400, not an overflow).
MAX_ID = 2**63 - 1


SessionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the sync session's id")]


Offset = Annotated[int, Query(ge=0, le=MAX_ID)]


#: The page's files: name → media type.
#: The page's script modules (``static/*.js``, loaded by ``page.js``, the entry point).
SCRIPT_MODULES = ("page.js", "state.js", "dom.js", "api.js", "tabs.js", "status.js", "history.js", "charts.js",
                  "settings.js", "events.js")


ASSETS = {
    **{name: "text/javascript; charset=utf-8" for name in SCRIPT_MODULES},
    "page.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


#: A strict policy: only this origin's script and styles, embeddable only by the Airflow UI.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; "
                           "object-src 'none'")


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
            "filters": {"since": iso(start), "until": iso(end), "type": type or [], "status": status},
            "types": list(SESSION_TYPES), "statuses": [*SESSION_STATUSES, CLEANUP_STATUS], "now": iso(now)}))

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
        salesforce = salesforce_objects()
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
            rejected_csv(store.rejected_for_session(session_id), session_id, salesforce_objects()),
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
            zone = time_zone_of(tz)
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
            from zuora_sync.webapp.services import read_settings_variable

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
