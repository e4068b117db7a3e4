"""What the web app does beyond shaping: read and write the settings Variable, read and change the
sync mode (the two DAGs' paused flags), build the real-time status, and read the Salesforce
allowance in the background (``docs/ui.md``, ``docs/operations.md``). The routes
(:mod:`zuora_sync.webapp.app`, :mod:`zuora_sync.webapp.page`) call these.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from zuora_sync import clients
from zuora_sync import settings as sync_settings
from zuora_sync.realtime_status import next_sync
from zuora_sync.sync_mode import ended_sessions, mode_change
from zuora_sync.webapp.views import iso

log = logging.getLogger(__name__)


#: How long a read of Salesforce's daily allowance is reused (each read costs one API request).
ALLOWANCE_TTL_SECONDS = 600.0


#: After a failed read, try again no sooner than this.
ALLOWANCE_RETRY_SECONDS = 60.0


#: How long a request waits for a read of the allowance under way before answering without it.
ALLOWANCE_WAIT_SECONDS = 15.0


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
            return {"allowance": None if self._value is None else {**self._value, "checked_at": iso(self._checked_at)},
                    "allowance_error": error}


INCREMENTAL_DAG = "zuora_incremental_sync"


REALTIME_DAG = "zuora_realtime_sync"


#: Real-time sync covers Accounts & Related Objects: the state store's ``accounts`` scope.
REALTIME_SCOPE = "accounts"


#: The sync modes and the paused flags they mean: (``zuora_incremental_sync``, ``zuora_realtime_sync``).
MODES = {"None": (True, True), "Scheduled": (False, True), "Real-time": (True, False)}


#: Setting the Variable by environment variable shadows whatever is written to the database.
ENV_VARIABLE = "AIRFLOW_VAR_" + sync_settings.VARIABLE.upper()


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
    """The sync mode (None, Scheduled or Real-time): which of the two DAGs is unpaused (``docs/operations.md``)."""
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
    if unknown or not isinstance(mode, str) or mode not in MODES:  # a list or object is not hashable
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


def settings_view() -> dict[str, Any]:
    """The settings in effect, where they come from, and any problem with the stored value."""
    try:
        raw = read_settings_variable()
    except Exception:
        log.exception("Could not read the Variable %s", sync_settings.VARIABLE)
        return {"settings": None, "source": None,
                "error": f"the Variable {sync_settings.VARIABLE} could not be read"}
    source = "defaults" if raw in (None, "") else ("environment" if os.environ.get(ENV_VARIABLE) else "variable")
    try:
        current = sync_settings.parse_settings(raw)
    except sync_settings.SettingsError as exc:
        return {"settings": None, "source": source, "error": str(exc)}
    return {"settings": current.as_dict(), "source": source, "error": None}


def allowed_values() -> dict[str, Any]:
    """What each setting accepts, for forms and error messages."""
    return sync_settings.allowed()


def stored_object(raw: str | None) -> dict[str, Any]:
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


def has_address(recipients: tuple[str, ...], address: str) -> bool:
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
    if os.environ.get(ENV_VARIABLE):
        return 409, {"detail": f"{sync_settings.VARIABLE} is set by the environment variable {ENV_VARIABLE}, "
                               "which overrides the database: change it there"}
    combined = stored_object(read_settings_variable())
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
    if (add_recipient and not has_address(validated.email_recipients, add_recipient)
            and len(validated.email_recipients) < sync_settings.MAX_RECIPIENTS):
        combined["email_recipients"] = [*validated.email_recipients, add_recipient]
        validated = sync_settings.parse_settings(combined)
        added = add_recipient
    normalized = validated.as_dict()
    write_settings_variable(json.dumps({key: normalized[key] for key in sorted(combined)}, indent=2))
    view = settings_view()
    if view["settings"] != normalized:  # e.g. a secrets backend shadows the database
        return 409, {"detail": f"{sync_settings.VARIABLE} was written but another source overrides it "
                               "(a secrets backend): change it there"}
    return 200, {**view, "allowed": allowed_values(), "defaults": sync_settings.Settings().as_dict(),
                 "added_recipient": added}


def build_status(store: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """The real-time status: mode, settings, pending events, next sync, last session, locks."""
    now = now or dt.datetime.now(dt.UTC)
    view = settings_view()
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
