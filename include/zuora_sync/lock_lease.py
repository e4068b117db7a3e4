"""Keeping a session's scope lock while its tasks work: the lease heartbeat.

A session's lock (:meth:`StateStore.try_lock <zuora_sync.state.StateStore.try_lock>`) has a lease
(the ``lock_lease_seconds`` setting, six hours by default) so that the lock of a crashed session
expires and the next session can take it over. A session that is alive must therefore keep
renewing it: otherwise an extract, load, delete or cleanup that runs longer than the lease loses
the lock to another session while it is still writing, and two sessions write the same objects
(``docs/operations.md`` forbids it: one session per scope at a time).

:class:`LockLease` renews the lease when a task starts and then, from a daemon thread, every third
of the lease, so that a renewal can fail (the state store out of reach for a moment) and the next
one still comes in time. When a renewal finds the lock gone (:class:`~zuora_sync.state.LockLost`:
the lease ran out after all — the process was frozen, or the state store unreachable for most of
the lease — and another session took the lock over, or someone released it), the task must not
write one more record. The thread then raises :class:`LeaseInterrupted` in the task's thread: an
asynchronous exception, like ``KeyboardInterrupt``, that lands at the task's next Python
instruction (at the latest when a blocking call such as an HTTP request returns), so the task stops
before its next request to Salesforce. The ``with`` block turns it into :class:`LockLostError`, an
``AirflowFailException`` (a retry cannot get the lock back) whose message says why.

Between two tasks of a session nothing renews the lease: it must outlast the wait for a worker slot
and a task's retry delay, which a lease of hours does.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


class LeaseInterrupted(BaseException):
    """Raised in a task's thread when its session lost the lock.

    A ``BaseException``, so that a library's ``except Exception`` cannot swallow it and carry on
    writing. :class:`LockLease` raises a subclass whose message is the reason.
    """

    reason = "the session lost its lock"

    def __str__(self) -> str:
        return self.reason


class LockLostError(AirflowFailException):
    """The task stopped because its session no longer holds its lock; the message says why."""


def _raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in another thread at its next Python instruction (``None``: cancel a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type is not None else None)


class LockLease:
    """Renew ``holder``'s lock every ``lease_seconds / 3`` while the ``with`` block runs.

    Entering renews at once (:class:`LockLostError` when the lock is already gone, before any
    work starts). Leaving stops the heartbeat and waits for it; if the lock was lost meanwhile,
    leaving raises :class:`LockLostError`, whatever the block did.

    :param store: the state store holding the lock.
    :param holder: the session's lock holder (``dag_id/run_id``).
    :param lease_seconds: the lease each renewal grants (``lock_lease_seconds``).
    """

    def __init__(self, store: Any, holder: str, lease_seconds: int) -> None:
        self.store = store
        self.holder = holder
        self.lease_seconds = int(lease_seconds)
        self.interval = self.lease_seconds / 3
        self.lost: str | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()  # the heartbeat interrupts only while the block still runs
        self._interrupt_pending = False
        self._target: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockLease:
        from zuora_sync.state import LockLost

        try:
            self.store.renew_lock(self.holder, self.lease_seconds)
        except LockLost as exc:
            raise LockLostError(self._reason(exc)) from None
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._beat, name=f"lock lease of {self.holder}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        while True:
            try:
                self._halt()
                break
            except LeaseInterrupted as interrupt:  # delivered on the way out: the block is over anyway
                exc = exc or interrupt
        if self.lost is not None:
            raise LockLostError(self.lost) from exc
        return False

    def release(self) -> None:
        """Stop renewing and release the lock (a session that ends in this task)."""
        self._halt()
        self.store.release_lock(self.holder)

    def _halt(self) -> None:
        with self._guard:
            self._stop.set()
            if self._interrupt_pending and self._target == threading.get_ident():
                _raise_in_thread(self._target, None)  # not delivered yet: it must not land after the block
                self._interrupt_pending = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _beat(self) -> None:
        from zuora_sync.state import LockLost

        while not self._stop.wait(self.interval):
            try:
                self.store.renew_lock(self.holder, self.lease_seconds)
            except LockLost as exc:
                with self._guard:
                    if self._stop.is_set():
                        return
                    self.lost = self._reason(exc)
                    log.error("%s", self.lost)
                    interrupt = type("LeaseInterrupted", (LeaseInterrupted,), {"reason": self.lost})
                    _raise_in_thread(self._target, interrupt)
                    self._interrupt_pending = True
                return
            except Exception as exc:  # noqa: BLE001 - two thirds of the lease are left: the next beat retries
                log.warning("Could not renew the lock of %s (%s); trying again in %.0f s", self.holder,
                            type(exc).__name__, self.interval)

    def _reason(self, exc: BaseException) -> str:
        try:
            now = ", ".join(f"{scope}: {holder}" for scope, holder in self.store.lock_holders().items()) or "nobody"
        except Exception:  # noqa: BLE001 - the reason matters more than who holds it now
            now = "unknown"
        return (f"Session {self.holder} lost its lock: {exc}; the locks are held by {now} now (lease "
                f"{self.lease_seconds} s, renewed every {self.interval:.0f} s). Another session may be writing the "
                "same objects, so this task stopped without writing more; the next session syncs what this one did not.")


def renews_session_lock(plan_task: str | None = None) -> Callable:
    """Decorate an operator's ``execute``: it runs inside a :class:`LockLease` of its session.

    The session is the one whose plan the task ``plan_task`` returned (its ``holder``). Without
    a plan (the session did not start, or stopped before writing and let go of the lock) there is
    nothing to renew, and ``execute`` runs as it is (it says why it has nothing to do).

    :param plan_task: the task id of the session's begin task; default: a sync session's
        (``begin_session``).
    """
    def decorate(execute: Callable) -> Callable:
        @functools.wraps(execute)
        def wrapper(self: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            from zuora_sync.operators.session import SESSION_TASK
            from zuora_sync.settings import load_settings
            from zuora_sync.state import StateStore

            plan = context["ti"].xcom_pull(task_ids=plan_task or SESSION_TASK)
            if not plan or not plan.get("holder"):
                return execute(self, context, *args, **kwargs)
            store = StateStore.from_airflow(getattr(self, "state_conn_id", "zuora_sync_state"))
            with LockLease(store, plan["holder"], load_settings().lock_lease_seconds):
                return execute(self, context, *args, **kwargs)
        return wrapper
    return decorate
