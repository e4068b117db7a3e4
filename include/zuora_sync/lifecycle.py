"""What every session shares, sync or cleanup: take the scope's lock (waiting deferred), keep it
while the session works, and at the end record the outcome, release the lock and send the email.

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
                  waiting: str, method_name: str, kwargs: dict[str, Any] | None = None) -> None:
    """Take the lock of ``scopes`` for ``holder``, or defer ``task`` (no worker slot held) and
    come back to ``method_name`` after ``lock_poll_seconds``.

    :param waiting: what the log says while waiting; ``{other}`` is the holder, ``{seconds}`` the wait.
    """
    acquired, other = store.try_lock(scopes, holder, lease_seconds=settings.lock_lease_seconds)
    if acquired:
        return
    task.log.info(waiting.format(other=other, seconds=settings.lock_poll_seconds))
    task.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=settings.lock_poll_seconds)),
               method_name=method_name, kwargs=kwargs)


def close_session(store: Any, session_id: int, holder: str, *, log: Any, error: str | None = None,
                  stopped: bool = False) -> str:
    """Record how the session ended, release its lock, send its email; return its status."""
    status = store.finish_session(session_id, error=error, stopped=stopped)
    store.release_lock(holder)
    notify_session_end(store, session_id, load_settings(), log=log)
    return status
