"""Whether a real-time session follows a change of the sync mode, and so must be a full sync.

Zuora 360's Real-Time Sync: "Turbo Sync automatically runs Full Sync, first, when
changing from Scheduled Sync to Real-time Sync or when changing from None to Real-time Sync". Here
the sync mode is which DAG is unpaused, and tasks may not read Airflow's metadata database, so the
change is inferred from the scope's sync history in the state store. A real-time session is a full
sync when either holds:

1. **Another mode synced last.** The scope's newest session that says anything about the mode
   was not a real-time one. Real-time ones are Real-time sessions and the full syncs the real-time
   DAG itself finished (its own mode-change full sync). Sessions that happen in every mode say
   nothing and are passed over: on-demand syncs, dry runs and backfill runs. Scheduled and manual
   runs of the full and incremental DAGs do say something: Scheduled or None was the mode.
2. **Nothing waited for changes.** In Real-time mode a session starts at the latest
   ``max_minutes_between_syncs`` after the scope's last session ended (the trigger's maximum
   time; the 15-minute hold after a failed session never delays it beyond that). So a real-time
   session whose begin task first ran more than ``max_minutes_between_syncs`` +
   ``mode_change_grace_minutes`` after the last session that had ended by then means the
   real-time DAG was paused meanwhile (None) — even with no other session in between. The time
   the begin task then waits for another session's lock does not count (it is measured from its
   first attempt), nor does a maximum lowered while the sensor waited (the largest one it waited
   under counts). The grace absorbs scheduling delays; a scheduler or triggerer stopped for longer
   than it also reads as "real-time sync was off", and the catch-up is a full sync.

A session of another DAG restarts the clock of rule 2, as it restarts the trigger's maximum time:
pausing real-time sync, running (say) an on-demand sync and unpausing less than
``max_minutes_between_syncs`` + ``mode_change_grace_minutes`` after it ended gives no full sync.
Run ``zuora_full_sync`` for one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from zuora_sync.vocabulary import SessionStatus, SessionType

ON_DEMAND, FULL, REAL_TIME = SessionType.ON_DEMAND, SessionType.FULL, SessionType.REAL_TIME
GOOD_ENDINGS = (SessionStatus.FINISHED, SessionStatus.FINISHED_WITH_ERRORS)


def ended_sessions(store: Any, scope: str, page: int = 100) -> Iterator[dict[str, Any]]:
    """The scope's ended sessions, most recent first, ``page`` at a time from the state store
    (sessions of a scope never overlap, so start order is end order); what :func:`mode_change` reads."""
    offset = 0
    while True:
        rows = store.list_sessions(scope=scope, limit=page, offset=offset)
        yield from (s for s in rows if s["ended_at"] is not None)
        if len(rows) < page:
            return
        offset += page


def is_backfill(session: Mapping[str, Any]) -> bool:
    """Whether a backfill run made the session (its trigger is the run type: ``backfill`` or
    ``DagRunType.BACKFILL``, as the Task SDK's enum prints itself)."""
    return str(session.get("trigger") or "").lower().endswith("backfill")


def says_nothing_about_mode(session: Mapping[str, Any]) -> bool:
    """On-demand syncs, dry runs and backfill runs happen in every sync mode."""
    return session["session_type"] == ON_DEMAND or bool(session.get("dry_run")) or is_backfill(session)


def is_real_time(session: Mapping[str, Any], dag_id: str) -> bool:
    """A Real-time session, or a full sync the real-time DAG ``dag_id`` finished (its mode-change full sync)."""
    return session["session_type"] == REAL_TIME or (
        session["session_type"] == FULL and session.get("dag_id") == dag_id and session.get("status") in GOOD_ENDINGS)


def mode_change(history: Iterable[Mapping[str, Any]], *, dag_id: str, began_at: dt.datetime, max_minutes: float,
                grace_minutes: float) -> str | None:
    """Why a real-time session that began at ``began_at`` must be a full sync (the module's two
    rules), in words for its log; ``None`` when it follows real-time sync.

    :param history: the scope's ended sessions, most recently ended first (it may page lazily;
        it is read only as far as needed).
    :param dag_id: the real-time DAG's id.
    :param began_at: when the session's begin task first ran (before any wait for a lock).
    :param max_minutes: ``max_minutes_between_syncs`` (the largest in effect while the sensor waited).
    :param grace_minutes: ``mode_change_grace_minutes``.
    """
    limit = dt.timedelta(minutes=max_minutes + grace_minutes)
    previous = relevant = None
    for session in history:
        if previous is None and session["ended_at"] <= began_at:
            previous = session
            gap = began_at - session["ended_at"]
            if gap > limit:
                return (f"nothing synced the scope for {_minutes(gap)} before this session (the last session ended "
                        f"{session['ended_at']:%Y-%m-%d %H:%M:%S} UTC), more than max_minutes_between_syncs "
                        f"{max_minutes:g} + mode_change_grace_minutes {grace_minutes:g}: real-time sync was off")
        if relevant is None and not says_nothing_about_mode(session):
            relevant = session
            if not is_real_time(relevant, dag_id):
                return (f"the last session of the scope was not a real-time one ({relevant['session_type']} session "
                        f"{relevant['id']} of {relevant.get('dag_id')}, {_trigger(relevant)}): the sync mode changed")
        if previous is not None and relevant is not None:
            return None
    if relevant is None:
        return "no real-time session of the scope has run before: the sync mode changed"
    return None


def _minutes(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _trigger(session: Mapping[str, Any]) -> str:
    trigger = str(session.get("trigger") or "?")
    return trigger.split(".", 1)[1].lower() if trigger.startswith("DagRunType.") else trigger
