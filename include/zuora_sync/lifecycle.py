"""What every session shares, sync or cleanup: take the scope's lock (waiting deferred, or taking
over one whose DAG run has ended), keep it while the session works, and at the end record the
outcome, release the lock and send the email.

The begin and end tasks of both kinds call these, so a session is locked, recorded and closed the
same way whatever it does in between (``docs/operations.md``, "The task graph").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

from zuora_sync.notifications import notify_session_end
from zuora_sync.settings import Settings, load_settings

__all__ = ["close_session", "lock_or_defer"]


def lock_or_defer(task: Any, store: Any, scopes: list[str], holder: str, settings: Settings, *,
                  waiting: str, method_name: str, kwargs: dict[str, Any] | None = None, ti: Any = None) -> None:
    """Take the lock of ``scopes`` for ``holder``, or defer ``task`` (no worker slot held) and
    come back to ``method_name`` after ``lock_poll_seconds``.

    A lock whose holder's DAG run has ended is taken over at once: that session will never end
    (its run was marked failed or successful by hand, which skips its end task), and waiting for
    its lease would hold every sync of the scope back for ``lock_lease_seconds``.

    :param waiting: what the log says while waiting; ``{other}`` is the holder, ``{seconds}`` the wait.
    :param ti: the waiting task's task instance, through which the holder's run state is read.
    """
    acquired, other = store.try_lock(scopes, holder, lease_seconds=settings.lock_lease_seconds)
    if not acquired and other and ti is not None:
        ended = _ended_run_state(ti, other, task.log)
        if ended is not None:
            task.log.warning("Session %s holds the lock, but its DAG run has ended (%s) without ending the "
                             "session: it is recorded as a Failure and the lock taken over", other, ended)
            store.abandon_lock(other, f"its DAG run ended ({ended}) without the session ending (marked "
                                      "failed or successful by hand, which skips its end task)")
            acquired, other = store.try_lock(scopes, holder, lease_seconds=settings.lock_lease_seconds)
    if acquired:
        return
    task.log.info(waiting.format(other=other, seconds=settings.lock_poll_seconds))
    task.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=settings.lock_poll_seconds)),
               method_name=method_name, kwargs=kwargs)


def _ended_run_state(ti: Any, holder: str, log: Any) -> str | None:
    """``success`` or ``failed`` when the DAG run ``holder`` names has ended; None while it runs,
    or when it cannot be told (not a DAG run's name, no such run, Airflow out of reach)."""
    dag_id, sep, run_id = holder.partition("/")
    if not sep:
        return None
    for state in ("failed", "success"):
        try:
            if ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=[state]):
                return state
        except Exception as exc:  # noqa: BLE001 - unknown: wait for the lease, as before
            log.warning("Could not read the state of DAG run %s (%s)", holder, type(exc).__name__)
            return None
    return None


def close_session(store: Any, session_id: int, holder: str, *, log: Any, error: str | None = None,
                  stopped: bool = False) -> str:
    """Record how the session ended, release its lock, send its email; return its status."""
    status = store.finish_session(session_id, error=error, stopped=stopped)
    store.release_lock(holder)
    notify_session_end(store, session_id, load_settings(), log=log)
    return status
