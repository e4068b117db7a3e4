"""The sync's FastAPI app and its operator routes: callout intake, real-time status, settings, mode.

Mounted by the plugin (``plugins/zuora_sync_plugin.py``) on the Airflow API server under
``/zuora-sync``; it runs in the API server's process, where Airflow's metadata database is at hand
(``_AIRFLOW_PROCESS_CONTEXT=server``), so settings and DAG states are read from there directly.

Routes:

- ``POST /events``: Zuora callouts, authenticated by their signature or Basic credentials
  (:mod:`zuora_sync.webapp.callouts`);
- ``GET /status``: the sync mode, the settings in effect, pending events, "N more data change
  events, or at most M minutes, until the next sync", the last session and the lock holders;
- ``GET /settings``, ``PUT /settings``: the ``zuora_sync_settings`` Variable, validated (the
  body at most :data:`MAX_SETTINGS_BYTES`); the user who saves is added to ``email_recipients``
  unless ``add_me_to_recipients=false`` (Zuora 360 sends the emails to the user who set them up);
- ``PUT /mode``: the sync mode (None, Scheduled, Real-time), by pausing and unpausing
  ``zuora_incremental_sync`` and ``zuora_realtime_sync``;
- ``GET /ui/``: the Zuora Sync page, and its data endpoints (:mod:`zuora_sync.webapp.page`).

Routes only read the request and answer: what they do is :mod:`zuora_sync.webapp.services`' (the
Variable, the paused flags, the status), what the page shows :mod:`zuora_sync.webapp.views`'.

Airflow does not protect plugin apps: every route but ``/events`` depends on Airflow's own
:func:`~airflow.api_fastapi.core_api.security.get_user`, which accepts the UI's JWT cookie (so a
page inside the Airflow UI needs no second login) or ``Authorization: Bearer`` from
``POST /auth/token``, and answers 401 otherwise; and on the user's permissions, which Airflow's
auth manager decides (:mod:`zuora_sync.webapp.access`): reading needs read access to the sync
DAGs' runs, ``PUT /settings`` edit access to the Variable, ``PUT /mode`` edit access to the two
mode DAGs, rejected records more (403 otherwise).

Run on its own (tests, benchmarks): ``uvicorn zuora_sync.webapp.app:app``; it then initializes
Airflow's auth manager itself, so tokens signed with the configured ``[api_auth] jwt_secret``
are accepted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from zuora_sync import settings as sync_settings
from zuora_sync.webapp.access import (
    EDIT_MODE,
    READ_SYNC,
    EditSettings,
    can_change_mode,
    can_edit_settings,
)
from zuora_sync.webapp.bodies import Refused, parse_json_object, read_body
from zuora_sync.webapp.callouts import Intake, create_router
from zuora_sync.webapp.page import create_page_router
from zuora_sync.webapp.services import (
    MODES,
    allowed_values,
    build_status,
    change_mode,
    settings_view,
    update_settings,
    user_email,
)

log = logging.getLogger(__name__)


#: Route dependencies that require an Airflow login; use them for every new router.
LOGIN_REQUIRED = [Depends(get_user)]


#: A settings change is a few hundred bytes; recipients lists included, far less than this.
MAX_SETTINGS_BYTES = 64 * 1024


#: ``PUT /mode``'s body is ``{"mode": "Real-time"}``.
MAX_MODE_BYTES = 1024


def _login_router(intake: Intake) -> APIRouter:
    router = APIRouter(dependencies=[*LOGIN_REQUIRED, *READ_SYNC], tags=["operator"])

    @router.get("/status", summary="Real-time sync status (read access to the sync DAGs required)")
    def status() -> JSONResponse:
        try:
            store = intake.store.get()
        except Exception:
            log.exception("Could not open the state store")
            return JSONResponse({"detail": "the state store cannot be reached"}, status_code=503)
        return JSONResponse(_jsonable(build_status(store)))

    @router.get("/settings", summary="The settings (read access to the sync DAGs required)")
    def get_settings(user: GetUserDep) -> JSONResponse:
        view = settings_view()
        return JSONResponse({**view, "allowed": allowed_values(), "defaults": sync_settings.Settings().as_dict(),
                             "can_edit": can_edit_settings(user), "can_change_mode": can_change_mode(user),
                             "me": {"name": _user_name(user), "email": user_email(user)}})

    @router.put("/settings", summary="Change settings (validated; edit access to the Variable required)",
                responses={400: {"description": "A value is not allowed; the answer lists what is"},
                           403: {"description": "The user may not edit the zuora_sync_settings Variable"},
                           409: {"description": "The Variable is set elsewhere (environment, secrets backend)"},
                           413: {"description": f"Body larger than {MAX_SETTINGS_BYTES} bytes"}},
                openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                    "schema": sync_settings.json_schema(),
                    "example": {"max_events_before_sync": 50, "max_minutes_between_syncs": 30}}}}})
    async def put_settings(request: Request, user: GetUserDep, _allowed: EditSettings,
                           add_me_to_recipients: Annotated[bool, Query(
                               description="Add the user's email address to email_recipients (when the auth "
                                           "manager knows one); false opts out")] = True) -> JSONResponse:
        # The body is read here, not by FastAPI: its size is capped, as the callouts' is.
        try:
            changes = parse_json_object(await read_body(request, MAX_SETTINGS_BYTES))
        except Refused as refused:
            return JSONResponse({"detail": refused.reason}, status_code=refused.status)
        email = user_email(user) if add_me_to_recipients else None
        code, answer = await run_in_threadpool(update_settings, changes, email)
        if code == 200:
            log.info("Zuora sync settings changed by %s: %s%s", _user_name(user), sorted(changes),
                     " (added to email_recipients)" if answer.get("added_recipient") else "")
            answer["can_edit"] = True
            if add_me_to_recipients and email is None:
                answer["recipient_note"] = (f"Your Airflow user ({_user_name(user)}) has no email address, so it "
                                            "was not added to the email recipients: add yours to them.")
        return JSONResponse(answer, status_code=code)

    @router.put("/mode", summary="Change the sync mode: None, Scheduled or Real-time (edit access to "
                                 "zuora_incremental_sync and zuora_realtime_sync required)",
                dependencies=EDIT_MODE,
                responses={400: {"description": "Not a sync mode; the answer lists the modes"},
                           403: {"description": "The user may not pause or unpause the two DAGs"},
                           409: {"description": "A DAG is not loaded, or the DAG to pause is running a session"},
                           413: {"description": f"Body larger than {MAX_MODE_BYTES} bytes"}},
                openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"mode": {"enum": list(MODES)}},
                               "required": ["mode"], "additionalProperties": False},
                    "example": {"mode": "Real-time"}}}}})
    async def put_mode(request: Request, user: GetUserDep) -> JSONResponse:
        try:
            body = parse_json_object(await read_body(request, MAX_MODE_BYTES))
        except Refused as refused:
            return JSONResponse({"detail": refused.reason}, status_code=refused.status)
        try:
            store = intake.store.get()
        except Exception:
            log.exception("Could not open the state store")
            return JSONResponse({"detail": "the state store cannot be reached"}, status_code=503)
        code, answer = await run_in_threadpool(change_mode, body, store, _user_name(user))
        return JSONResponse(_jsonable(answer), status_code=code)

    return router


def _user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:
        return "?"


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 (not FastAPI's 422) with a readable reason, as ``docs/ui.md`` promises for malformed input."""
    reasons = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error") or error.get("msg")
            reasons.append(f"body is not valid JSON: {detail}")
            continue
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        reasons.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(reasons) or "malformed request"}, status_code=400)


def ensure_auth_manager() -> None:
    """Outside the API server (tests, benchmarks), set up Airflow's auth manager for ``get_user``."""
    from airflow.api_fastapi.app import create_auth_manager, get_auth_manager

    try:
        get_auth_manager()
    except RuntimeError:
        create_auth_manager()


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Runs only when this app is served on its own: the plugin mounts it lazily, so inside the
    # API server Airflow's lifespan never calls this (and its auth manager is already set up).
    ensure_auth_manager()
    yield


def create_app(intake: Intake | None = None) -> FastAPI:
    """The web app.

    :param intake: the callout intake (its webhook auth and state store loaders); default: read
        the Airflow connections ``zuora_sync_webhook`` and ``zuora_sync_state``.
    """
    intake = intake or Intake()
    app = FastAPI(
        title="Zuora sync",
        version="1",
        description="Zuora callout intake, real-time status and settings of the Zuora → Salesforce sync.",
        lifespan=_lifespan,
    )
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.include_router(create_router(intake))
    app.include_router(_login_router(intake))
    app.include_router(create_page_router(intake, LOGIN_REQUIRED))
    app.state.intake = intake
    return app


#: The app the plugin serves (through :data:`zuora_sync.webapp.asgi_app`).
app = create_app()
