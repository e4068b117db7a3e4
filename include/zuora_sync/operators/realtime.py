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
    :param end_from_trigger: the trigger ends this task itself when the session is due (its payload
        becomes the XCom), saving the task's resumption on a worker. Off by default: Airflow 3.3
        refuses to load a DAG with such a task while any plugin registers a listener (the sync's
        own run-note listener, :mod:`zuora_sync.run_notes`, or OpenLineage's), and ``dag.test()``
        does not run task-ending events; the task then resumes in :meth:`execute_complete` for a
        moment on a worker. The wait itself holds no worker slot either way.
    """

    ui_color = "#e0ecf8"

    def __init__(self, *, scope: str = "accounts", state_conn_id: str = "zuora_sync_state",
                 zuora_conn_id: str = "zuora_default", follow_settings: bool = True, clock: str | None = None,
                 end_from_trigger: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scope = scope
        self.state_conn_id = state_conn_id
        self.zuora_conn_id = zuora_conn_id
        self.follow_settings = follow_settings
        self.clock = clock
        self.end_from_trigger = end_from_trigger

    def execute(self, context: Any) -> dict[str, Any] | None:
        from zuora_sync.settings import load_settings
        from zuora_sync.state import StateStore

        settings = load_settings()
        trigger = RealTimeSyncTrigger(
            threshold=settings.max_events_before_sync, max_minutes=settings.max_minutes_between_syncs,
            scope=self.scope, state_conn_id=self.state_conn_id, event_source=settings.event_source,
            zuora_conn_id=self.zuora_conn_id, poll_seconds=settings.trigger_poll_seconds,
            follow_settings=self.follow_settings, clock=self.clock, end_from_trigger=self.end_from_trigger,
            dag_id=self.dag_id,
        )
        zuora = None
        if settings.event_source == "polling":

            zuora = clients.zuora(self.zuora_conn_id)
        try:
            seen = trigger.observe(StateStore.from_airflow(self.state_conn_id), zuora)
        finally:
            if zuora is not None:
                zuora.close()
        self.log.info("%s (event source: %s, threshold %d events, maximum %d minutes)", seen.message(),
                      settings.event_source, settings.max_events_before_sync, settings.max_minutes_between_syncs)
        if seen.due:
            return self.execute_complete(context, seen.payload())
        self.log.info("Waiting in the triggerer (deferred, no worker slot held); checking every %.0f s",
                      trigger.poll_seconds)
        self.defer(trigger=trigger, method_name="execute_complete")
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Log which condition started the session; the payload becomes this task's XCom."""
        event = dict(event or {})
        self.log.info(start_reason(event, self.scope))
        return event
