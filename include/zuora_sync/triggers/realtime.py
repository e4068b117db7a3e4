"""The real-time sync's trigger: wait, in the triggerer, until the next real-time session is due.

Zuora 360's rule (``docs/operations.md``, "Real-time sync"): a session starts when ``threshold`` data
change events have accumulated, or when ``max_minutes`` have passed since the last session ended,
whichever comes first. :func:`zuora_sync.realtime_status.next_sync` decides; this module only
gathers its inputs — the pending events and when the scope's last session ended — and waits.

**Event sources.**

* ``callouts`` (default): the web app stores Zuora's callout notifications in the state store;
  pending events are the stored events no session has consumed yet. One cheap ``COUNT`` per poll.
* ``polling``: for deployments that Zuora's callouts cannot reach. Pending "events" are the
  records of the monitored tables (the scope's objects and the tables their links read) whose
  ``UpdatedDate`` is at or after the scope's oldest watermark, counted by one Data Query job —
  so a record changed twice counts once, and deleted records count too.

**Zuora API cost of polling.** Each count is one Data Query job: one ``POST /query/jobs``, one or
more ``GET /query/jobs/{id}`` while it runs (the hook's poll interval starts at 0.5 s and
doubles), one download of the small result file (from S3 in a real tenant) and, about hourly, an
OAuth token. That is 3–5 requests per count, made at most every ``trigger_poll_seconds``: at the
default 5 s about 17,000 jobs (≈ 50,000–85,000 requests) a day; at 60 s about 1,440 jobs
(≈ 4,000–7,000 requests). Use ``trigger_poll_seconds`` of 60 or more with polling. No query is
made when the maximum time has already passed (the session starts anyway). The requests used are
in the trigger's payload (``zuora_api_requests``).

**A change of the sync mode** (Scheduled or None → Real-time) makes the session due at once: it is
a full sync (:mod:`zuora_sync.sync_mode`), and Zuora 360 runs it first when the mode changes. The
trigger reads the scope's history for that once per newly ended session, not on every look.

**No restart loop.** The DAG is continuous: after a session that ended *Failure* or *Stopped*
(e.g. the Salesforce API budget ran low) the events it left pending would start the next session
at once, and again. So after such a session, events alone start a session only
``backoff_minutes`` after it ended; the maximum-time rule is unchanged. That hold is part of
:func:`zuora_sync.realtime_status.next_sync`, which the status endpoint uses too, so the status
says when held events will start the next session instead of "now".

The trigger holds no secret: it is given connection ids and resolves them in :meth:`run`. The
state store and Zuora are synchronous clients, called through :func:`asyncio.to_thread` so the
triggerer's event loop never blocks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from zuora_sync import clients
from zuora_sync.queries import changed_records_query, monitored_tables
from zuora_sync.realtime_status import BACKOFF_MINUTES, NextSync, next_sync
from zuora_sync.vocabulary import EventSource

CLASSPATH = "zuora_sync.triggers.realtime.RealTimeSyncTrigger"
EVENT_SOURCES = tuple(source.value for source in EventSource)
#: The mode rule's second case (a long pause) is not looked at by the trigger (see ``mode_changed``):
#: a gap this long (about 19 years) never happens.
_NO_GAP_RULE_MINUTES = 10**7


# -- the polling event source ---------------------------------------------------------------------


def count_changed_records(zuora: Any, tables: list[str], since: dt.datetime) -> dict[str, int]:
    """Table → rows changed since ``since``, by one Data Query job through ``zuora`` (a ZuoraHook)."""
    counts = {table: 0 for table in tables}
    for row in zuora.data_query(changed_records_query(tables, since), compression="NONE"):
        counts[str(row["zs_table"])] = int(row["changed"])
    return counts


# -- one look at the state -----------------------------------------------------------------------


@dataclass
class Observation:
    """What the trigger saw at one moment, and whether a session is due (the verdict is ``status``'s:
    :func:`zuora_sync.realtime_status.next_sync`, hold included)."""

    status: NextSync
    now: dt.datetime
    max_minutes: int
    event_source: str
    last_session_end: dt.datetime | None
    last_session_status: str | None
    #: Polling mode: table → changed records counted in Zuora.
    changed_records: dict[str, int] | None = None
    #: The largest ``max_minutes`` this wait was under (settings may change while it waits).
    max_minutes_waited: int | None = None

    @property
    def hold_until(self) -> dt.datetime | None:
        """Pending events do not start a session before this (after a Failure or Stopped session)."""
        return self.status.hold_until

    @property
    def due(self) -> str | None:
        """``events`` or ``max_time`` when a session should start now, else None."""
        return self.status.due

    @property
    def minutes_since_last_session(self) -> float | None:
        if self.last_session_end is None:
            return None
        return round((self.now - self.last_session_end).total_seconds() / 60, 3)

    def message(self) -> str:
        """The status line (Zuora 360's words), saying so when events are held back."""
        return self.status.message()

    def seconds_until_due(self) -> float | None:
        """Seconds (on the trigger's clock) until time alone may change the verdict."""
        moment = self.status.next_change_at
        return None if moment is None else (moment - self.now).total_seconds()

    def payload(self) -> dict[str, Any]:
        """The TriggerEvent payload (plain JSON)."""
        return {
            "reason": self.due,
            "pending_events": self.status.pending_events,
            "threshold": self.status.threshold,
            "max_minutes": self.max_minutes,
            "max_minutes_waited": max(self.max_minutes, self.max_minutes_waited or 0),
            "minutes_since_last_session": self.minutes_since_last_session,
            "last_session_end": self.last_session_end.isoformat() if self.last_session_end else None,
            "last_session_status": self.last_session_status,
            "event_source": self.event_source,
            "changed_records": self.changed_records,
            "mode_change": self.status.mode_change,
            "fired_at": self.now.isoformat(),
            "message": self.message(),
        }


def start_reason(event: dict[str, Any], scope: str) -> str:
    """Which condition started the session, in words (the waiting task's last log line)."""
    if event.get("reason") == "mode_change":
        return f"Starting a real-time session at once, a full sync: {event.get('mode_change')}"
    if event.get("reason") == "events":
        return (f"Starting a real-time session: {event.get('pending_events')} pending data change events reached "
                f"the threshold of {event.get('threshold')}")
    if event.get("last_session_end") is None:
        return f"Starting a real-time session: no session of {scope} has ended yet"
    return (f"Starting a real-time session: {event.get('minutes_since_last_session')} minutes since the last "
            f"session ended ({event.get('last_session_end')}) reached the maximum of {event.get('max_minutes')}, "
            f"with {event.get('pending_events')} data change events pending")


def _import_callable(path: str) -> Callable[[], dt.datetime]:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"clock must be a dotted path such as 'package.module.function', not {path!r}")
    return getattr(importlib.import_module(module), name)


def _not_found_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for module in ("airflow.sdk.exceptions", "airflow.exceptions"):
        try:
            errors.append(importlib.import_module(module).AirflowNotFoundException)
        except (ImportError, AttributeError):  # pragma: no cover - other Airflow versions
            pass
    return tuple(errors)


class RealTimeSyncTrigger(BaseTrigger):
    """Fire when the next real-time session is due: ``threshold`` pending events, or ``max_minutes``
    since the scope's last session ended, whichever comes first.

    Yields one ``TriggerEvent`` whose payload is :meth:`Observation.payload`: ``reason``
    (``"events"`` or ``"max_time"``), ``pending_events``, ``threshold``, ``max_minutes`` (and
    ``max_minutes_waited``, the largest maximum in effect during the wait),
    ``minutes_since_last_session``, ``last_session_end``, ``last_session_status``,
    ``event_source``, ``changed_records`` (polling), ``mode_change``, ``zuora_api_requests``,
    ``fired_at`` and the status ``message``. With no ended session yet it fires at once (the first
    sync should not wait); so it does (``reason`` ``mode_change``) when the sync mode has just
    become Real-time (:func:`zuora_sync.sync_mode.mode_change`).

    :param threshold: ``max_events_before_sync``.
    :param max_minutes: ``max_minutes_between_syncs``.
    :param scope: the sync scope whose sessions count (real-time sync: ``accounts``).
    :param state_conn_id: the state store's connection id, resolved in :meth:`run`.
    :param event_source: ``callouts`` (stored events) or ``polling`` (count changes in Zuora).
    :param zuora_conn_id: the Zuora connection id (polling only).
    :param poll_seconds: seconds between looks at the state store, and the least time between two
        Zuora counts when polling.
    :param backoff_minutes: after a Failure or Stopped session, events start a session only this
        long after it ended (the maximum-time rule still applies).
    :param follow_settings: re-read the ``zuora_sync_settings`` Variable on every look, so a change
        made in the UI applies to a session already waiting.
    :param clock: dotted path of a callable returning "now" (aware); for tests. Default: wall time.
    :param end_from_trigger: end the waiting task from the triggerer (``TaskSuccessEvent`` with the
        payload as its XCom) instead of resuming it on a worker: the session begins one task
        start-up sooner (real-time latency, ``docs/benchmarks.md``).
    :param dag_id: the real-time DAG, whose own full syncs are real-time sessions for the mode rule.
    """

    def __init__(self, *, threshold: int, max_minutes: int, scope: str = "accounts",
                 state_conn_id: str = "zuora_sync_state", event_source: str = "callouts",
                 zuora_conn_id: str = "zuora_default", poll_seconds: float = 5.0,
                 backoff_minutes: float = BACKOFF_MINUTES, follow_settings: bool = False, clock: str | None = None,
                 end_from_trigger: bool = False, dag_id: str = "zuora_realtime_sync") -> None:
        super().__init__()
        if event_source not in EVENT_SOURCES:
            raise ValueError(f"event_source must be one of {EVENT_SOURCES}, not {event_source!r}")
        if int(threshold) < 1 or int(max_minutes) < 1 or float(poll_seconds) <= 0:
            raise ValueError("threshold and max_minutes must be at least 1 and poll_seconds positive")
        self.threshold = int(threshold)
        self.max_minutes = int(max_minutes)
        self.scope = scope
        self.state_conn_id = state_conn_id
        self.event_source = event_source
        self.zuora_conn_id = zuora_conn_id
        self.poll_seconds = float(poll_seconds)
        self.backoff_minutes = float(backoff_minutes)
        self.follow_settings = bool(follow_settings)
        self.clock = clock
        self.end_from_trigger = bool(end_from_trigger)
        self.dag_id = dag_id
        #: (the last ended session's id, why the sync mode changed or None): read once per session.
        self._mode_seen: tuple[int | None, str | None] | None = None
        self._clock_fn: Callable[[], dt.datetime] | None = None
        # The largest maximum of this wait: the begin task's mode-change rule must not take a
        # maximum lowered while it waited for a pause of real-time sync (zuora_sync.sync_mode).
        self.max_minutes_waited = self.max_minutes

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "threshold": self.threshold, "max_minutes": self.max_minutes, "scope": self.scope,
            "state_conn_id": self.state_conn_id, "event_source": self.event_source,
            "zuora_conn_id": self.zuora_conn_id, "poll_seconds": self.poll_seconds,
            "backoff_minutes": self.backoff_minutes, "follow_settings": self.follow_settings, "clock": self.clock,
            "end_from_trigger": self.end_from_trigger, "dag_id": self.dag_id,
        }

    # -- synchronous parts (run in a thread by run(); called directly by the sensor) ---------------

    def now(self) -> dt.datetime:
        """The trigger's clock: wall time, or the ``clock`` callable's answer, in UTC."""
        if self.clock is None:
            return dt.datetime.now(dt.UTC)
        if self._clock_fn is None:
            self._clock_fn = _import_callable(self.clock)
        value = self._clock_fn()
        if value.tzinfo is None:
            raise ValueError(f"the clock {self.clock} returned a naive datetime; it must be timezone-aware")
        return value.astimezone(dt.UTC)

    def observe(self, store: Any, zuora: Any = None, *, known_changes: dict[str, int] | None = None) -> Observation:
        """Look once: the scope's last ended session, the pending events, the verdict.

        :param store: the :class:`~zuora_sync.state.StateStore`.
        :param zuora: polling mode: a ZuoraHook to count changes with now; ``None`` reuses
            ``known_changes`` (the last count), so Zuora is asked at most every ``poll_seconds``.
        """
        last = store.last_session(self.scope, ended=True)
        end, last_status = (last["ended_at"], last["status"]) if last else (None, None)
        now = self.now()
        changes = known_changes
        if self.event_source == "callouts":
            pending = store.pending_event_count()
        else:
            timed = next_sync(0, self.threshold, end, self.max_minutes, now)
            if zuora is not None and timed.due is None:  # no Zuora request when the time rule fires anyway
                marks = store.watermarks(self.scope)
                # No watermark yet: no full sync finished; the maximum-time rule starts it.
                changes = count_changed_records(zuora, monitored_tables(self.scope), min(marks.values())) \
                    if marks else {}
            pending = sum((changes or {}).values())
        status = next_sync(pending, self.threshold, end, self.max_minutes, now, last_session_status=last_status,
                           backoff_minutes=self.backoff_minutes,
                           mode_change=self.mode_changed(store, last, now) if end is not None else None)
        return Observation(status, now, self.max_minutes, self.event_source, end, last_status, changes,
                           self.max_minutes_waited)

    def mode_changed(self, store: Any, last: dict[str, Any] | None, now: dt.datetime) -> str | None:
        """Why the next session is a full sync after a change of the sync mode, or None
        (:func:`zuora_sync.sync_mode.mode_change` over the scope's history); read again only when
        another session has ended. The rule's second case (a long pause) needs no look here: the
        maximum time has passed then, and the session is due anyway."""
        from zuora_sync.sync_mode import ended_sessions, mode_change

        key = last["id"] if last else None
        if self._mode_seen is None or self._mode_seen[0] != key:
            why = mode_change(ended_sessions(store, self.scope), dag_id=self.dag_id, began_at=now,
                              max_minutes=_NO_GAP_RULE_MINUTES, grace_minutes=0)
            self._mode_seen = (key, why)
        return self._mode_seen[1]

    def refresh_settings(self) -> None:
        """Apply the current ``zuora_sync_settings`` (invalid settings are logged and ignored)."""
        from zuora_sync.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            self.log.warning("Keeping the settings this wait started with: %s", exc)
            return
        new = (settings.max_events_before_sync, settings.max_minutes_between_syncs, settings.event_source,
               float(settings.trigger_poll_seconds))
        old = (self.threshold, self.max_minutes, self.event_source, self.poll_seconds)
        if new != old:
            self.log.info("Settings changed: threshold %d, maximum %d minutes, event source %s, poll every %.0f s",
                          *new)
            self.threshold, self.max_minutes, self.event_source, self.poll_seconds = new
            self.max_minutes_waited = max(self.max_minutes_waited, self.max_minutes)

    def _tick(self, store: Any, zuora: Any, known_changes: dict[str, int] | None) -> Observation:
        if self.follow_settings:
            self.refresh_settings()
        return self.observe(store, zuora, known_changes=known_changes)

    # -- the triggerer's side --------------------------------------------------------------------

    async def _state_store(self) -> Any:
        from airflow.sdk import BaseHook

        from zuora_sync.state import StateStore, default_url, url_from_connection

        try:
            conn = await BaseHook.aget_connection(self.state_conn_id)
        except _not_found_errors():
            return StateStore(default_url())  # as StateStore.from_airflow does without the connection
        return StateStore(url_from_connection(conn))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = await self._state_store()
        zuora = None
        changes: dict[str, int] | None = None
        next_count = 0.0          # time.monotonic() of the next allowed Zuora count (polling)
        said = None
        try:
            while True:
                ask = self.event_source == "polling" and time.monotonic() >= next_count
                if ask and zuora is None:

                    zuora = clients.zuora(self.zuora_conn_id)  # lazy: no request until the first count
                seen = await asyncio.to_thread(self._tick, store, zuora if ask else None, changes)
                if ask:
                    changes = seen.changed_records
                    next_count = time.monotonic() + self.poll_seconds
                if seen.due:
                    payload = seen.payload()
                    payload["zuora_api_requests"] = zuora.api_requests if zuora is not None else 0
                    self.log.info("Real-time sync due (%s): %s", seen.due, seen.message())
                    self.log.info(start_reason(payload, self.scope))
                    if self.end_from_trigger:
                        yield TaskSuccessEvent(xcoms={"return_value": payload})
                    else:
                        yield TriggerEvent(payload)
                    return
                message = seen.message()
                if message != said:  # log changes only: the trigger may wait for hours
                    self.log.info(message)
                    said = message
                left = seen.seconds_until_due()
                pause = self.poll_seconds if left is None else min(self.poll_seconds, max(left, 0.05))
                await asyncio.sleep(pause)
        finally:
            if zuora is not None:
                await asyncio.to_thread(zuora.close)
