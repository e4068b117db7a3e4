"""Opening and closing a sync session: the exclusive lock, the plan, the preflight and the verdict.

``BeginSyncSessionOperator`` takes the scope's lock (waiting, deferred, while another session holds
it), decides what the session really is (the first sync of a scope is always full; so is a
real-time session after a change of the sync mode, :mod:`zuora_sync.sync_mode`), records it in
sync history and hands its plan to the other tasks, with whether each object's stored hashes
still describe Salesforce (its extract reads Salesforce's keys where not). A scheduled run whose
interval later sessions already synced records nothing and skips
(:func:`zuora_sync.planning.interval_synced`). ``MappingPreflightOperator`` checks the mapping
against Salesforce ``describe`` before anything is written: the extracts, which only read, run
beside it, and the loads wait for both. ``EndSyncSessionOperator`` runs whatever happened upstream: it records the
session's status, releases the lock and, for a real-time session that finished, consumes the
change events it was started for; a session that did not fail also removes its staged files (and
those failed sessions of its DAG left behind). From the begin task to the last delete, each task renews the
lock's lease while it works (:mod:`zuora_sync.lock_lease`), so only a crashed session's lock
expires.

Honest run states: a session that ends Finished with Errors leaves its run green, as the session
did its job, but the end task leaves a note for the run that says so, with the counts
(:mod:`zuora_sync.run_notes`); so do Stopped and Failure sessions. Every task of the session has a
"Zuora Sync session" link to it on the Zuora Sync page (:mod:`zuora_sync.links`).

Real-time event consumption (``docs/operations.md``, "events that arrive during a session count toward the
next"): the begin task reads the newest stored event id *before* it plans the window and pushes it
as the XCom ``events_up_to``; the end task marks the events up to that id consumed once the
session ended Finished or Finished with Errors. Events received later stay pending, and a session
that failed or stopped consumes nothing, so its events start the next one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.sdk import BaseOperator, ObjectStoragePath

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.links import SyncSessionLink, session_page_url
from zuora_sync.lifecycle import close_session, lock_or_defer
from zuora_sync.lock_lease import LockLease, renews_session_lock
from zuora_sync.mapping import load_mapping
from zuora_sync.planning import (
    INCREMENTAL,
    REAL_TIME,
    SessionPlan,
    decide,
    holder_name,
    interval_synced,
    parse_instant,
    run_dir_name,
    select_objects,
    session_windows,
    staging_dir,
)
from zuora_sync.notifications import notify_session_end
from zuora_sync.run_notes import NOTE_KEY, session_note
from zuora_sync.settings import load_settings
from zuora_sync.staging import remove_run_directories

SESSION_TASK = task_ids.BEGIN_SESSION
#: XCom key of the begin task when the Salesforce API budget stopped the session before writing.
STOPPED_KEY = "stopped_session"
#: XCom key of the begin task: the newest change event id when a real-time session began.
EVENTS_KEY = "events_up_to"
#: XCom key of the begin task when a scheduled run found its interval synced already (why, in words).
NOTHING_KEY = "nothing_to_sync"
#: XCom key of the begin task: per object, whether its stored hashes still describe Salesforce.
HASHES_KEY = "hashes_trusted"
#: XCom key of the begin task: the objects of which Salesforce held no owned record when it counted.
EMPTY_KEY = "salesforce_empty"


def _now() -> dt.datetime:
    # Not truncated: Zuora's UpdatedDate has whole seconds, and a window ending at 10:00:00.000
    # would miss a change stamped 10:00:00 made a moment before the session began.
    return dt.datetime.now(dt.timezone.utc)


def session_plan(context: Any, task_id: str = SESSION_TASK) -> SessionPlan:
    """The plan the begin task pushed for this run.

    Without one, the task skips if the begin task said why there is no session (it stopped before
    writing, or the interval was synced already): the sync tasks run when their upstream tasks
    skipped (trigger rule ``none_failed``), and must not fail, and retry, for a run that is fine.
    """
    ti = context["ti"]
    value = ti.xcom_pull(task_ids=task_id)
    if not value:
        if ti.xcom_pull(task_ids=task_id, key=NOTHING_KEY) or ti.xcom_pull(task_ids=task_id, key=STOPPED_KEY):
            raise AirflowSkipException(f"no session in this run (see {task_id})")
        raise AirflowException(f"no session plan from task {task_id}; did it run?")
    return SessionPlan.from_xcom(value)


class BeginSyncSessionOperator(BaseOperator):
    """Take the scope's lock, plan the session and record it in sync history; check the Salesforce
    API budget, and per object whether the stored hashes still describe Salesforce (XCom
    :data:`HASHES_KEY`, for the extracts).

    :param session_type: Full, Incremental, On-demand, Product Catalog or Real-time.
    :param scope: ``accounts`` or ``catalog``.
    :param objects: the objects to sync (default: every object of the scope); templated.
    :param window_start: a manual run's own window start (ISO); templated.
    :param window_end: a manual run's own window end (ISO); templated.
    :param accounts: account ids or numbers for an on-demand sync; templated.
    :param dry_run: extract and count, write nothing to Salesforce; templated.
    :param force: send every row whatever its stored hash (the full sync's form); templated.
    """

    template_fields: Sequence[str] = ("objects", "window_start", "window_end", "accounts", "dry_run", "force")
    ui_color = "#e8f4ea"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, session_type: str, scope: str, objects: Any = None, window_start: Any = None,
                 window_end: Any = None, accounts: Any = None, dry_run: Any = False, force: Any = False,
                 state_conn_id: str = "zuora_sync_state", salesforce_conn_id: str = "salesforce_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force = force
        self.session_type = session_type
        self.scope = scope
        self.objects = objects
        self.window_start = window_start
        self.window_end = window_end
        self.accounts = accounts
        self.dry_run = dry_run
        self.state_conn_id = state_conn_id
        self.salesforce_conn_id = salesforce_conn_id

    def execute(self, context: Any, first_attempt: str | None = None) -> dict[str, Any]:
        """:param first_attempt: when this task first ran (ISO), carried through waits for the lock:
            the mode-change rule does not count the wait."""
        from zuora_sync.state import StateStore

        began_at = parse_instant(first_attempt) or _now()
        settings = load_settings()
        store = StateStore.from_airflow(self.state_conn_id)
        dag_run = context["dag_run"]
        holder = holder_name(dag_run.dag_id, dag_run.run_id)
        lock_or_defer(self, store, [self.scope], holder, settings, method_name="execute_after_wait",
                      kwargs={"first_attempt": began_at.isoformat()}, ti=context["ti"],
                      waiting=f"Waiting: session {{other}} holds the {self.scope} lock; checking again in {{seconds}} s "
                              "(deferred, no worker slot held)")
        synced = self._interval_already_synced(context, store)
        if synced:
            store.release_lock(holder)
            context["ti"].xcom_push(key=NOTHING_KEY, value=synced)
            raise AirflowSkipException(synced)
        with LockLease(store, holder, settings.lock_lease_seconds) as lease:
            return self._begin(context, store, settings, lease, began_at)

    def _begin(self, context: Any, store: Any, settings: Any, lease: LockLease, began_at: dt.datetime) -> dict[str, Any]:
        """With the lock held: plan the session, record it and check the Salesforce API budget."""
        from zuora_sync.salesforce_loader import ApiBudgetExhausted

        # Read before planning: every event up to this id arrived before the window's end.
        events_up_to = store.last_event_id() if self.session_type == REAL_TIME and not self.dry_run else None
        plan = self._plan(context, store, settings, lease.holder, began_at)
        self.log.info("Session %d: %s sync of %s (%s), objects %s%s", plan.session_id, plan.session_type, plan.scope,
                      plan.mode, ", ".join(plan.objects), " — dry run, nothing will be written" if plan.dry_run else "")
        for obj, (start, end) in plan.windows.items():
            self.log.info("  %s: changes from %s to %s", obj, start, end)
        if plan.dry_run:
            loader = clients.salesforce(self.salesforce_conn_id, reserve=False)
        else:
            loader = clients.salesforce(self.salesforce_conn_id, settings=settings)
            try:
                remaining, maximum = loader.check_budget()
                self.log.info("Salesforce API requests left today: %d of %d (reserve %d)", remaining, maximum,
                              settings.salesforce_api_reserve)
            except ApiBudgetExhausted as exc:
                store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
                store.finish_session(plan.session_id, stopped=True, error=str(exc))
                lease.release()
                context["ti"].xcom_push(key=STOPPED_KEY, value=plan.session_id)
                raise AirflowSkipException(f"Stopped before writing: {exc}; the next session resumes") from None
        try:
            # Here, not in the preflight: the extracts, which read it, run beside the preflight.
            trusted, empty = self._hashes_trusted(plan, loader, store)
            context["ti"].xcom_push(key=HASHES_KEY, value=trusted)
            context["ti"].xcom_push(key=EMPTY_KEY, value=empty)
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        if events_up_to is not None:
            context["ti"].xcom_push(key=EVENTS_KEY, value=events_up_to)
        if plan.force:
            self.log.info("Force: every record is sent, whatever its stored hash says")
            store.add_details(plan.session_id, force=True)
        return plan.as_xcom()

    def _hashes_trusted(self, plan: SessionPlan, loader: Any, store: Any) -> tuple[dict[str, bool], list[str]]:
        """Per object, whether its stored hashes still say which owned records Salesforce holds
        (:func:`zuora_sync.hashes.fingerprint_trusted`): one composite batch for all objects. Where
        not, the object's extract reads Salesforce's keys (the reconciliation's query) instead,
        unless Salesforce holds none of them (the second value: such objects' names), as before a
        first sync or after a cleanup: then there is nothing to read."""
        from zuora_sync.hashes import fingerprint_trusted

        if plan.mode == "accounts":
            return {}, []  # an on-demand sync sends its accounts' rows whatever their hashes
        mapping = load_mapping()
        objects = [mapping.get(name) for name in plan.objects]
        try:
            now = loader.fingerprints([(obj.salesforce, obj.key) for obj in objects])
        except Exception as exc:  # noqa: BLE001 - the keys are read instead: slower, never wrong
            self.log.warning("Could not count the owned records in Salesforce (%s); each object's extract reads "
                             "Salesforce's keys instead", exc)
            return {obj.name: False for obj in objects}, []
        trusted = {}
        for obj in objects:
            recorded = store.get_fingerprint(plan.scope, obj.name)
            hashed = store.hash_count(plan.scope, obj.name)
            trusted[obj.name] = fingerprint_trusted(now.get(obj.salesforce), recorded, hashed)
            self.log.info("%s: Salesforce holds %d owned records (newest change %s), the store %d hashes: %s",
                          obj.salesforce, now[obj.salesforce]["record_count"], now[obj.salesforce]["last_modified"],
                          hashed, "unchanged since the last session, the hashes decide" if trusted[obj.name]
                          else "changed or unknown since the last session, its keys are read")
        empty = [obj.name for obj in objects if not now[obj.salesforce]["record_count"]]
        return trusted, empty

    def execute_after_wait(self, context: Any, event: Any = None,
                           first_attempt: str | None = None) -> dict[str, Any]:
        return self.execute(context, first_attempt)

    def _selected_objects(self) -> list[str]:
        """The objects this session syncs, in load order (the form's choice, or all of the scope)."""
        try:
            return select_objects(load_mapping().scopes[self.scope], self.objects)
        except ValueError as exc:
            raise AirflowException(f"{self.scope}: {exc}") from None

    def _interval_already_synced(self, context: Any, store: Any) -> str | None:
        """Why a scheduled incremental run has nothing to do, or None (:func:`~zuora_sync.planning.interval_synced`).

        Airflow starts the latest interval when ``zuora_incremental_sync`` is unpaused (catchup is off),
        e.g. for a backfill in Real-time mode; real-time sessions synced past it already. Recorded,
        it would also read as Scheduled mode and make the next real-time session a full sync.
        """
        run_type = str(getattr(context["dag_run"], "run_type", "")).lower()
        end = context.get("data_interval_end")
        if self.session_type != INCREMENTAL or not run_type.endswith("scheduled") or self.dry_run or end is None:
            return None
        if store.last_full_sync(self.scope) is None:
            return None  # the first sync is a full sync, whatever started it
        marks = store.watermarks(self.scope)
        objects = self._selected_objects()
        if not interval_synced(marks, objects, end):
            return None
        return (f"Nothing to sync: later sessions already synced this interval (it ends {end.isoformat()}; every "
                f"watermark of {', '.join(objects)} is at or past it, the oldest {min(marks[o] for o in objects)})")

    def _mode_change(self, context: Any, store: Any, settings: Any, began_at: dt.datetime) -> str | None:
        """Why this real-time session must be a full sync (:func:`zuora_sync.sync_mode.mode_change`), or None."""
        from zuora_sync.operators.realtime import WAIT_TASK
        from zuora_sync.sync_mode import ended_sessions, mode_change

        ti = context.get("ti")
        waited = ti.xcom_pull(task_ids=WAIT_TASK) if ti is not None else None  # the sensor's payload
        waited = waited if isinstance(waited, dict) else {}
        max_minutes = max(settings.max_minutes_between_syncs, int(waited.get("max_minutes_waited") or 0))
        return mode_change(ended_sessions(store, self.scope), dag_id=context["dag_run"].dag_id, began_at=began_at,
                           max_minutes=max_minutes, grace_minutes=settings.mode_change_grace_minutes)

    def _plan(self, context: Any, store: Any, settings: Any, holder: str, began_at: dt.datetime) -> SessionPlan:
        """Gather the facts :mod:`zuora_sync.planning` decides on, and record the session it plans."""
        dag_run = context["dag_run"]
        has_full_sync = store.last_full_sync(self.scope) is not None
        mode_change = self._mode_change(context, store, settings, began_at) \
            if self.session_type == REAL_TIME and has_full_sync else None
        try:
            decision = decide(self.session_type, self.scope, load_mapping().scopes[self.scope],
                              self._selected_objects(), has_full_sync=has_full_sync, mode_change=mode_change)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        if decision.why:
            self.log.info("%s", decision.why[0].upper() + decision.why[1:])
        session_type, mode, objects = decision.session_type, decision.mode, decision.objects
        accounts = [str(a).strip() for a in (self.accounts or []) if str(a).strip()]
        if mode == "accounts" and not accounts:
            raise AirflowException("an on-demand sync needs at least one account number or id")
        now = _now()
        windows = {}
        if mode == "window":
            windows = session_windows(
                objects, store.watermarks(self.scope), run_type=str(getattr(dag_run, "run_type", "")),
                session_type=session_type, interval=(context.get("data_interval_start"), context.get("data_interval_end")),
                now=now, lookback=dt.timedelta(minutes=settings.lookback_minutes),
                requested=(parse_instant(self.window_start), parse_instant(self.window_end)),
            )
        session_id = store.start_session(
            session_type=session_type, scope=self.scope, trigger=str(getattr(dag_run, "run_type", "manual")),
            dag_id=dag_run.dag_id, run_id=dag_run.run_id,
            window_start=min((parse_instant(w[0]) for w in windows.values()), default=None),
            window_end=max((parse_instant(w[1]) for w in windows.values()), default=None),
            dry_run=bool(self.dry_run),
        )
        return SessionPlan(
            session_id=session_id, session_type=session_type, scope=self.scope, mode=mode, objects=objects,
            holder=holder, staging=staging_dir(settings.staging_root(), dag_run.dag_id, dag_run.run_id),
            started=now.isoformat(), dry_run=bool(self.dry_run), windows=windows, accounts=accounts,
            force=self.force is True or str(self.force).lower() == "true",
        )


class MappingPreflightOperator(BaseOperator):
    """Check the mapping against Salesforce ``describe`` (:mod:`zuora_sync.preflight`); return what
    the other tasks need to know of the org: ``{"types": {...}, "lookups": {...}}``.
    """

    ui_color = "#fff4e0"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, salesforce_conn_id: str = "salesforce_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.salesforce_conn_id = salesforce_conn_id

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, dict[str, Any]]:
        from zuora_sync.preflight import check_mapping
        from zuora_sync.state import StateStore

        plan = session_plan(context)
        mapping = load_mapping()
        loader = clients.salesforce(self.salesforce_conn_id, reserve=False)
        store = StateStore.from_airflow()
        try:
            # The session's objects in one composite batch; a lookup's target outside them on its own.
            described = loader.describe_many([mapping.get(name).salesforce for name in plan.objects])

            def describe(sobject: str) -> dict:
                found = described.get(sobject)
                if found is None:
                    return loader.describe(sobject)
                if isinstance(found, Exception):
                    raise found
                return found

            result = check_mapping(mapping, plan.objects, describe)
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        if result.problems:
            # Kept with the session too, so its history says why it failed (not only this task's log).
            store.add_details(plan.session_id, preflight_problems=result.problems)
            raise AirflowException("The mapping does not fit this Salesforce org:\n  " + "\n  ".join(result.problems))
        self.log.info("Mapping checked against Salesforce for %s", ", ".join(plan.objects))
        return result.as_xcom()


class EndSyncSessionOperator(BaseOperator):
    """Record the session's outcome and release its lock, whatever happened upstream.

    :param sync_task_ids: the tasks whose XCom says, under ``objects``, what became of each object
        (the delete task, the last of an object's tasks).

    A selected object they say nothing of did not finish (a task failed before), so the session is
    a Failure; an object stopped by the Salesforce API budget makes it Stopped; rejected rows make
    it Finished with Errors (derived by the state store). Only a Failure fails this task (and the
    run); for the others it pushes the run's note (XCom :data:`~zuora_sync.run_notes.NOTE_KEY`),
    which the sync's listener puts on the DAG run.

    Staged files hold customer records and are only needed while the session runs: a session that
    did not fail removes its DAG's run directories (its own, and those of earlier failed sessions,
    which the next session has superseded), unless the ``keep_staged_files`` setting says to keep
    them. A Failure keeps its own, so a cleared task can run again.
    """

    ui_color = "#e8f4ea"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, sync_task_ids: list[str], state_conn_id: str = "zuora_sync_state",
                 salesforce_conn_id: str = "salesforce_default", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.sync_task_ids = sync_task_ids
        self.state_conn_id = state_conn_id
        self.salesforce_conn_id = salesforce_conn_id

    def execute(self, context: Any) -> str:
        from zuora_sync.state import StateStore

        store = StateStore.from_airflow(self.state_conn_id)
        ti = context["ti"]
        plan_value = ti.xcom_pull(task_ids=SESSION_TASK)
        if not plan_value:
            dag_run = context["dag_run"]
            store.release_lock(holder_name(dag_run.dag_id, dag_run.run_id))
            nothing = ti.xcom_pull(task_ids=SESSION_TASK, key=NOTHING_KEY)
            if nothing:
                self.log.info("No session: %s", nothing)
                ti.xcom_push(key=NOTE_KEY, value="")
                return "Nothing to sync"
            stopped_id = ti.xcom_pull(task_ids=SESSION_TASK, key=STOPPED_KEY)
            if stopped_id is not None:
                self.log.info("Session %s stopped before writing (Salesforce API budget); the next session resumes",
                              stopped_id)
                self._note_run(ti, store, int(stopped_id))
                notify_session_end(store, int(stopped_id), load_settings(), log=self.log)
                return "Stopped"
            # The begin task failed (or an upstream task before it did): the run must not look green.
            raise AirflowFailException(f"The session did not start: {SESSION_TASK} did not finish; see its log")
        plan = SessionPlan.from_xcom(plan_value)
        missing, stopped = [], []
        for task_id in self.sync_task_ids:
            done = (ti.xcom_pull(task_ids=task_id) or {}).get("objects") or {}
            for obj in plan.objects:
                result = done.get(obj)
                if not result:
                    missing.append(obj)
                elif result.get("stopped"):
                    stopped.append(result.get("reason") or f"{obj} stopped")
        # A stopped session keeps why it stopped (the first task's reason), as one stopped at its start does.
        error = f"tasks did not finish for {', '.join(missing)}" if missing else (stopped[0] if stopped else None)
        if not plan.dry_run:
            self._remember_salesforce(store, plan)
        settings = load_settings()
        if not missing:
            # Before the lock goes: no other session of this DAG stages anything meanwhile.
            self._remove_staged(store, plan, context["dag_run"].dag_id, keep=settings.keep_staged_files)
        preflight = (store.get_session(plan.session_id).get("details") or {}).get("preflight_problems")
        if missing and preflight:
            error = "The mapping does not fit this Salesforce org (nothing was written): " + "; ".join(preflight)
        status = close_session(store, plan.session_id, plan.holder, error=error,
                               stopped=bool(stopped) and not missing, log=self.log)
        self._consume_events(store, ti, plan, status)
        purged = store.purge(settings.retention_days)
        if any(purged.values()):
            self.log.info("Removed sync history older than the retention period: %s", purged)
        summary = self._note_run(ti, store, plan.session_id)
        self.log.info("Session %d (%s) ended: %s", plan.session_id, plan.session_type, status)
        for obj, counts in (summary.get("objects") or {}).items():
            self.log.info("  %s: %s", obj, ", ".join(f"{k} {v}" for k, v in counts.items()))
        if missing:
            raise AirflowException(f"Session {plan.session_id} failed: {error}")
        return status

    def _remember_salesforce(self, store: Any, plan: SessionPlan) -> None:
        """Measure what Salesforce holds of each object now (one composite batch), with the hashes the
        store has, so the next session can tell whether anything changed Salesforce in between
        (:func:`zuora_sync.hashes.fingerprint_trusted`). Measured whatever happened upstream: a hash
        always names a record Salesforce accepted, so an interrupted write only makes the counts
        differ, and the next session reads Salesforce's keys."""
        mapping = load_mapping()
        objects = [mapping.get(name) for name in plan.objects]
        loader = clients.salesforce(self.salesforce_conn_id, reserve=False)
        try:
            now = loader.fingerprints([(obj.salesforce, obj.key) for obj in objects])
        except Exception as exc:  # noqa: BLE001 - unknown is safe: the next session reads the keys
            self.log.warning("Could not count the owned records in Salesforce (%s); the next session reads "
                             "Salesforce's keys", exc)
            store.forget_fingerprints(plan.scope, [obj.name for obj in objects])
            return
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        for obj in objects:
            store.set_fingerprint(plan.scope, obj.name, record_count=now[obj.salesforce]["record_count"],
                                  last_modified=now[obj.salesforce]["last_modified"],
                                  hashed_count=store.hash_count(plan.scope, obj.name))

    def _remove_staged(self, store: Any, plan: SessionPlan, dag_id: str, *, keep: bool) -> None:
        """Remove the staged files of this run and of the DAG's runs whose sessions have ended
        (class docstring); a run whose session is still open keeps its own. A failure to remove
        is only logged: the next session that ends tries again.

        :param keep: the ``keep_staged_files`` setting: remove nothing."""
        if keep:
            self.log.info("Staged files kept in %s (keep_staged_files)", plan.staging)
            return
        own = ObjectStoragePath(plan.staging)
        open_runs = {run_dir_name(run_id) for run_id in store.running_run_ids(dag_id)} - {own.name}
        try:
            removed = remove_run_directories(own.parent, keep=open_runs)
        except Exception as exc:  # noqa: BLE001 - the session's outcome does not depend on it
            self.log.warning("Could not remove the staged files under %s (%s): the next session that ends "
                             "tries again", own.parent, f"{type(exc).__name__}: {exc}")
            return
        if removed:
            self.log.info("Removed the staged files of %d run(s) under %s: %s", len(removed), own.parent,
                          ", ".join(removed))

    def _note_run(self, ti: Any, store: Any, session_id: int) -> dict[str, Any]:
        """Push the run's note for the ended session (empty when it simply finished); returns the session."""
        session = store.get_session(session_id)
        note = session_note(session, session_page_url(session_id))
        if note:
            self.log.info("Note for this DAG run: %s", note)
        ti.xcom_push(key=NOTE_KEY, value=note)
        return session

    def _consume_events(self, store: Any, ti: Any, plan: SessionPlan, status: str) -> None:
        """A real-time session that finished consumes the events it began with (module docstring)."""
        from zuora_sync.state import FINISHED, FINISHED_WITH_ERRORS

        up_to = ti.xcom_pull(task_ids=SESSION_TASK, key=EVENTS_KEY)
        if up_to is None:
            return
        if status in (FINISHED, FINISHED_WITH_ERRORS):
            consumed = store.mark_events_consumed(int(up_to), plan.session_id)
            self.log.info("Consumed %d data change events (ids up to %d); events received since then count toward "
                          "the next session", consumed, int(up_to))
        else:
            self.log.info("The session ended %s: its data change events stay pending for the next session", status)
