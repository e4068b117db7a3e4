"""The sync's FastAPI app: callout intake, real-time status and settings (SPEC §5, §8, §11).

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
  ``zuora_incremental_sync`` and ``zuora_realtime_sync`` (:func:`change_mode`);
- ``GET /ui/``: the Zuora Sync page, and its data endpoints (:mod:`zuora_sync.webapp.page`).

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

import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from zuora_sync import settings as sync_settings
from zuora_sync.realtime_status import next_sync
from zuora_sync.sync_mode import ended_sessions, mode_change
from zuora_sync.webapp.access import EDIT_MODE, READ_SYNC, EditSettings, can_change_mode, can_edit_settings
from zuora_sync.webapp.bodies import Refused, parse_json_object, read_body
from zuora_sync.webapp.callouts import Intake, create_router
from zuora_sync.webapp.page import create_page_router

log = logging.getLogger(__name__)

INCREMENTAL_DAG = "zuora_incremental_sync"
REALTIME_DAG = "zuora_realtime_sync"
#: Real-time sync covers Accounts & Related Objects: the state store's ``accounts`` scope.
REALTIME_SCOPE = "accounts"
#: Route dependencies that require an Airflow login; use them for every new router.
LOGIN_REQUIRED = [Depends(get_user)]
#: A settings change is a few hundred bytes; recipients lists included, far less than this.
MAX_SETTINGS_BYTES = 64 * 1024
#: ``PUT /mode``'s body is ``{"mode": "Real-time"}``.
MAX_MODE_BYTES = 1024
#: The sync modes and the paused flags they mean: (``zuora_incremental_sync``, ``zuora_realtime_sync``).
MODES = {"None": (True, True), "Scheduled": (False, True), "Real-time": (True, False)}
#: Setting the Variable by environment variable shadows whatever is written to the database.
_ENV_VARIABLE = "AIRFLOW_VAR_" + sync_settings.VARIABLE.upper()


# --------------------------------------------------------------------------------------------
# What the API server reads: the Variable and the DAGs' paused flags


def read_settings_variable() -> str | None:
    """The raw ``zuora_sync_settings`` value (``None`` when unset).

    ``airflow.models.Variable`` is the server-side model: in the API server it reads environment
    variables, secrets backends and the metadata database, in that order. (The Task SDK's
    ``Variable`` would too, but its secrets cache could serve a value older than a write just made.)
    """
    from airflow.models import Variable

    return Variable.get(sync_settings.VARIABLE, default_var=None)


def write_settings_variable(text: str) -> None:
    """Store the Variable in the metadata database (where the UI's Variables page shows it too)."""
    from airflow.models import Variable

    Variable.set(sync_settings.VARIABLE, text,
                 description="Zuora sync settings (validated; edit through /zuora-sync/settings or the sync page)")


def read_dag_states(dag_ids: tuple[str, ...] = (INCREMENTAL_DAG, REALTIME_DAG)) -> dict[str, dict[str, Any]]:
    """Whether each DAG exists (parsed, not stale) and is paused, from Airflow's ``DagModel``."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(DagModel.dag_id, DagModel.is_paused, DagModel.is_stale)
                               .where(DagModel.dag_id.in_(dag_ids))).all()
    found = {row.dag_id: row for row in rows}
    return {dag_id: {"present": dag_id in found and not found[dag_id].is_stale,
                     "paused": bool(found[dag_id].is_paused) if dag_id in found else None}
            for dag_id in dag_ids}


def sync_mode(dags: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sync mode (None, Scheduled or Real-time): which of the two DAGs is unpaused (SPEC §5)."""
    def active(dag_id: str) -> bool:
        state = dags.get(dag_id) or {}
        return bool(state.get("present")) and state.get("paused") is False

    realtime, scheduled = active(REALTIME_DAG), active(INCREMENTAL_DAG)
    warning = None
    if realtime and scheduled:
        warning = (f"both {INCREMENTAL_DAG} and {REALTIME_DAG} are unpaused: pause one (their sessions wait "
                   "for each other's lock)")
    mode = "Real-time" if realtime else "Scheduled" if scheduled else "None"
    return {"mode": mode, "dags": dags, "warning": warning}


def write_paused(changes: dict[str, bool], user_name: str, mode: str) -> None:
    """Set the DAGs' paused flags in Airflow's ``DagModel`` (what ``PATCH /api/v2/dags/{dag_id}``
    does), pauses first, in one transaction, and record each change in Airflow's audit log
    (Browse → Audit Log) with who made it."""
    from airflow.models.dag import DagModel
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        for dag_id, paused in sorted(changes.items(), key=lambda item: not item[1]):
            session.get(DagModel, dag_id).is_paused = paused
            session.add(Log(event="paused" if paused else "unpaused", dag_id=dag_id, owner=user_name,
                            extra=json.dumps({"by": "zuora-sync page", "sync_mode": mode})))


def change_mode(body: dict[str, Any], store: Any, user_name: str,
                now: dt.datetime | None = None) -> tuple[int, dict[str, Any]]:
    """Switch the sync mode; ``(status, answer)``.

    None pauses both DAGs, Scheduled unpauses ``zuora_incremental_sync`` only, Real-time
    ``zuora_realtime_sync`` only (the paused one first, so both are never unpaused at once). Refused
    (409) while a DAG to be paused is running a session: Airflow schedules no further task of a
    paused DAG, so the session would stop half-way, holding the scope's lock, until the DAG is
    unpaused again. Switching to Real-time after another mode makes its first session a full sync
    that starts at once (:mod:`zuora_sync.sync_mode`, the real-time trigger); the answer says so.

    :param body: ``{"mode": "None" | "Scheduled" | "Real-time"}``.
    :param store: the state store (the locks, the history).
    :param user_name: who asks, for Airflow's audit log.
    """
    now = now or dt.datetime.now(dt.UTC)
    unknown = sorted(set(body) - {"mode"})
    mode = body.get("mode")
    if unknown or mode not in MODES:
        detail = (f"unknown keys {unknown}; the body is {{\"mode\": ...}}" if unknown
                  else f"mode: {mode!r} is not a sync mode; choose one of {list(MODES)}")
        return 400, {"detail": detail, "allowed": list(MODES)}
    states = read_dag_states()
    missing = [dag_id for dag_id, state in states.items() if not state["present"]]
    if missing:
        return 409, {"detail": f"{', '.join(missing)} is not loaded in Airflow (not parsed yet, removed, or failing "
                               "to import: see the DAG import errors); the sync mode cannot be changed until it is"}
    wanted = dict(zip((INCREMENTAL_DAG, REALTIME_DAG), MODES[mode]))
    changes = {dag_id: paused for dag_id, paused in wanted.items() if states[dag_id]["paused"] != paused}
    holders = store.lock_holders()
    for dag_id, paused in changes.items():
        running = [holder for holder in holders.values() if paused and holder.startswith(f"{dag_id}/")]
        if running:
            return 409, {"detail": f"{dag_id} is running a session ({running[0]}): change the sync mode when it has "
                                   "ended. Paused now, the session would stop half-way and keep the lock of its "
                                   "objects until the DAG is unpaused"}
    if changes:
        write_paused(changes, user_name, mode)
        log.info("Sync mode set to %s by %s: %s", mode, user_name,
                 ", ".join(f"{d} {'paused' if p else 'unpaused'}" for d, p in changes.items()))
    message = f"The sync mode is {mode}" + ("" if changes else " already") + "."
    if mode == "Real-time" and changes:
        settings = sync_settings.parse_settings(read_settings_variable())
        why = mode_change(ended_sessions(store, REALTIME_SCOPE), dag_id=REALTIME_DAG, began_at=now,
                          max_minutes=settings.max_minutes_between_syncs,
                          grace_minutes=settings.mode_change_grace_minutes)
        if why or store.last_full_sync(REALTIME_SCOPE) is None:
            message += " Its first session is a full sync, and it starts now."
    elif mode == "Scheduled" and changes:
        settings = sync_settings.parse_settings(read_settings_variable())
        message += f" zuora_incremental_sync runs {settings.scheduled_sync_frequency.replace('_', ' ')}."
    return 200, {"mode": sync_mode(read_dag_states()), "changed": changes, "message": message}


# --------------------------------------------------------------------------------------------
# Settings


def _settings_view() -> dict[str, Any]:
    """The settings in effect, where they come from, and any problem with the stored value."""
    try:
        raw = read_settings_variable()
    except Exception:
        log.exception("Could not read the Variable %s", sync_settings.VARIABLE)
        return {"settings": None, "source": None,
                "error": f"the Variable {sync_settings.VARIABLE} could not be read"}
    source = "defaults" if raw in (None, "") else ("environment" if os.environ.get(_ENV_VARIABLE) else "variable")
    try:
        current = sync_settings.parse_settings(raw)
    except sync_settings.SettingsError as exc:
        return {"settings": None, "source": source, "error": str(exc)}
    return {"settings": current.as_dict(), "source": source, "error": None}


def allowed_values() -> dict[str, Any]:
    """What each setting accepts, for forms and error messages."""
    return sync_settings.allowed()


def _stored_object(raw: str | None) -> dict[str, Any]:
    """The stored Variable as a dict; an unreadable one is replaced (the PUT is validated whole)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def user_email(user: Any) -> str | None:
    """The user's email address, if the auth manager knows one: its user's ``email`` (FAB's users
    have one), else the user name when that is an address (the SimpleAuthManager's users have no
    email field). ``None`` otherwise."""
    candidates = [getattr(user, "email", None)]
    try:
        candidates.append(user.get_name())
    except Exception:
        pass
    for value in candidates:
        if isinstance(value, str) and "@" in value:
            try:
                return sync_settings.check_recipient(value)
            except sync_settings.SettingsError:
                continue
    return None


def _has_address(recipients: tuple[str, ...], address: str) -> bool:
    """Whether ``address`` is among ``recipients`` (``Ops <ops@x>`` counts as ``ops@x``; case-blind)."""
    from email.utils import parseaddr

    wanted = parseaddr(address)[1].lower()
    return any(parseaddr(r)[1].lower() == wanted for r in recipients)


def update_settings(changes: dict[str, Any], add_recipient: str | None = None) -> tuple[int, dict[str, Any]]:
    """Validate ``changes`` on top of the stored settings and write them; ``(status, answer)``.

    :param add_recipient: an address to add to ``email_recipients`` (the user who saves them) when
        it is not among them yet and there is room; the answer's ``added_recipient`` says whether it was.

    Only the keys a user has set are stored (a ``null`` removes one, back to its default), so a
    default changed in a later release still applies to the rest; a setting stored under an old
    name (:data:`zuora_sync.settings.RENAMED`) is rewritten under its new one. The whole result is validated
    by :func:`zuora_sync.settings.parse_settings` (what :func:`~zuora_sync.settings.merged` does)
    before anything is written.
    """
    if os.environ.get(_ENV_VARIABLE):
        return 409, {"detail": f"{sync_settings.VARIABLE} is set by the environment variable {_ENV_VARIABLE}, "
                               "which overrides the database: change it there"}
    combined = _stored_object(read_settings_variable())
    for key, value in changes.items():
        for name in sync_settings.names_of(key):  # a change replaces the setting under its old name too
            combined.pop(name, None)
        if value is not None:
            combined[key] = value
    try:
        combined = sync_settings.upgrade_keys(combined)  # an old key is stored under its new name from now on
        validated = sync_settings.parse_settings(combined)
    except sync_settings.SettingsError as exc:
        return 400, {"detail": str(exc), "allowed": allowed_values()}
    added = None
    if (add_recipient and not _has_address(validated.email_recipients, add_recipient)
            and len(validated.email_recipients) < sync_settings.MAX_RECIPIENTS):
        combined["email_recipients"] = [*validated.email_recipients, add_recipient]
        validated = sync_settings.parse_settings(combined)
        added = add_recipient
    normalized = validated.as_dict()
    write_settings_variable(json.dumps({key: normalized[key] for key in sorted(combined)}, indent=2))
    view = _settings_view()
    if view["settings"] != normalized:  # e.g. a secrets backend shadows the database
        return 409, {"detail": f"{sync_settings.VARIABLE} was written but another source overrides it "
                               "(a secrets backend): change it there"}
    return 200, {**view, "allowed": allowed_values(), "defaults": sync_settings.Settings().as_dict(),
                 "added_recipient": added}


# --------------------------------------------------------------------------------------------
# Status


def build_status(store: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """The real-time status: mode, settings, pending events, next sync, last session, locks."""
    now = now or dt.datetime.now(dt.UTC)
    view = _settings_view()
    try:
        mode = sync_mode(read_dag_states())
    except Exception:
        log.exception("Could not read the DAGs' paused state")
        mode = {"mode": None, "dags": None, "warning": "the DAGs' state could not be read from Airflow"}
    pending = store.pending_event_count()
    last = store.last_session(REALTIME_SCOPE)
    last_ended = last if last is not None and last.get("ended_at") else store.last_session(REALTIME_SCOPE, ended=True)
    upcoming = None
    if view["settings"] is not None:
        settings = view["settings"]
        # The trigger's own rule, hold after a Failure or Stopped session included: the status says
        # when the next session really starts.
        why = mode_change(ended_sessions(store, REALTIME_SCOPE), dag_id=REALTIME_DAG, began_at=now,
                          max_minutes=settings["max_minutes_between_syncs"],
                          grace_minutes=settings["mode_change_grace_minutes"]) if last_ended else None
        upcoming = next_sync(pending, settings["max_events_before_sync"],
                             last_ended["ended_at"] if last_ended else None,
                             settings["max_minutes_between_syncs"], now,
                             last_session_status=last_ended["status"] if last_ended else None,
                             mode_change=why).as_dict()
    return {
        "now": now,
        "mode": mode,
        "settings": view["settings"],
        "settings_source": view["source"],
        "settings_error": view["error"],
        "pending_events": pending,
        "next_sync": upcoming,
        "last_session": last,
        "locks": store.lock_holders(),
    }


# --------------------------------------------------------------------------------------------
# The app


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
        view = _settings_view()
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
    """400 (not FastAPI's 422) with a readable reason: SPEC §5 asks 400 for malformed input."""
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
