"""The real-time sync's first task: wait until the next real-time session is due.

``RealTimeSyncSensor`` reads the settings, logs the status line Zuora 360 shows ("7 more data
change events, or at most 100 minutes, until the next sync") and, unless a session is due already,
defers to :class:`~zuora_sync.triggers.realtime.RealTimeSyncTrigger`: the wait holds no worker
slot and no pool slot, only a coroutine in the triggerer.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.triggers.realtime import RealTimeSyncTrigger, start_reason

WAIT_TASK = task_ids.WAIT_FOR_CHANGES


class RealTimeSyncSensor(BaseOperator):
    """Wait (deferred) for ``max_events_before_sync`` pending events or ``max_minutes_between_syncs``
    since the scope's last session ended; return the trigger's payload (reason, counts, message).

    :param scope: whose sessions count; real-time sync covers ``accounts`` only.
    :param state_conn_id: the state store's connection id.
    :param zuora_conn_id: the Zuora connection id (``event_source: polling``).
    :param follow_settings: let the waiting trigger re-read the settings on every look, so a change
        made in the UI applies without restarting the wait.
    :param clock: dotted path of a callable returning "now", passed to the trigger; for tests.
    :param end_in_triggerer: let the trigger end this task itself when the session is due (its
        payload becomes the XCom), so the session begins without this task being resumed on a worker
        (a task start-up, about 2.5 s of real-time latency, ``docs/benchmarks.md``). Decided when the
        wait begins: only when no registered listener implements task-instance hooks, since a task
        the triggerer ends never reaches them on a worker. That is Airflow's reason for refusing a
        DAG whose task has a true ``end_from_trigger`` attribute while any plugin has a listener;
        the sync's run-note listener (:mod:`zuora_sync.run_notes`) only hooks DAG runs, which end in
        the scheduler either way. (The standard provider's ``WaitSensor`` likewise hands
        ``end_from_trigger=True`` to its trigger.) The wait itself holds no worker slot either way.
    """

    ui_color = "#e0ecf8"

    def __init__(self, *, scope: str = "accounts", state_conn_id: str = "zuora_sync_state",
                 zuora_conn_id: str = "zuora_default", follow_settings: bool = True, clock: str | None = None,
                 end_in_triggerer: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scope = scope
        self.state_conn_id = state_conn_id
        self.zuora_conn_id = zuora_conn_id
        self.follow_settings = follow_settings
        self.clock = clock
        self.end_in_triggerer = end_in_triggerer

    def execute(self, context: Any) -> dict[str, Any] | None:
        settings, trigger, seen = self._look()
        self.log.info("%s (event source: %s, threshold %d events, maximum %d minutes)", seen.message(),
                      settings.event_source, settings.max_events_before_sync, settings.max_minutes_between_syncs)
        if seen.due:
            return self.execute_complete(context, seen.payload())
        if trigger.end_from_trigger:
            self.log.info("Waiting in the triggerer (deferred, no worker slot held); checking every %.0f s. "
                          "The triggerer ends this task when the session is due.", trigger.poll_seconds)
        else:
            self.log.info("Waiting in the triggerer (deferred, no worker slot held); checking every %.0f s. "
                          "This task resumes on a worker when the session is due: %s.", trigger.poll_seconds,
                          self._why_resume())
        self.defer(trigger=trigger, method_name="execute_complete")
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | str | None = None) -> dict[str, Any]:
        """Log which condition started the session; the payload becomes this task's XCom."""
        if not isinstance(event, dict):
            # A task-ending event resumed on a worker (dag.test() runs triggers so): it carries the
            # task's state, not the payload. The state store, read once more, says what was due.
            event = self._look()[2].payload()
        event = dict(event)
        self.log.info(start_reason(event, self.scope))
        return event

    def _look(self) -> tuple[Any, RealTimeSyncTrigger, Any]:
        """The settings, the trigger to wait in, and what it sees now."""
        from zuora_sync.settings import load_settings
        from zuora_sync.state import StateStore

        settings = load_settings()
        trigger = RealTimeSyncTrigger(
            threshold=settings.max_events_before_sync, max_minutes=settings.max_minutes_between_syncs,
            scope=self.scope, state_conn_id=self.state_conn_id, event_source=settings.event_source,
            zuora_conn_id=self.zuora_conn_id, poll_seconds=settings.trigger_poll_seconds,
            follow_settings=self.follow_settings, clock=self.clock,
            end_from_trigger=self.end_in_triggerer and not task_listeners(), dag_id=self.dag_id,
        )
        zuora = None
        if settings.event_source == "polling":

            zuora = clients.zuora(self.zuora_conn_id)
        try:
            seen = trigger.observe(StateStore.from_airflow(self.state_conn_id), zuora)
        finally:
            if zuora is not None:
                zuora.close()
        return settings, trigger, seen

    def _why_resume(self) -> str:
        if not self.end_in_triggerer:
            return "end_in_triggerer is off"
        return "listeners with task-instance hooks are registered (" + ", ".join(task_listeners()) + ")"


def task_listeners() -> list[str]:
    """The registered listeners (plugin names) that implement task-instance hooks: they expect to
    see every task end on a worker, so none may be ended by the triggerer."""
    from airflow.sdk.listener import get_listener_manager

    hooks = get_listener_manager().hook
    names = set()
    for hook in ("on_task_instance_running", "on_task_instance_success", "on_task_instance_failed",
                 "on_task_instance_skipped"):
        caller = getattr(hooks, hook, None)
        names.update(impl.plugin_name for impl in (caller.get_hookimpls() if caller is not None else []))
    return sorted(names)
