"""Real-time sync: the trigger driven directly with asyncio on a real SQLite state store, its polling
fallback against a Zuora sandbox, the Turbo Sync mode rule, and ``zuora_realtime_sync`` end to end
with ``dag.test()`` against both sandboxes (Salesforce compared with Zuora record by record)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import free_port, start_zuora_sandbox
from zuora_sync.mapping import load_mapping
from zuora_sync.state import StateStore
from zuora_sync.triggers.realtime import CLASSPATH, RealTimeSyncTrigger

UTC = dt.UTC
T10 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
POLL = 0.05


# -- a controllable clock: the trigger imports it by name, the store is given it --------------------------


class Clock:
    now = T10


def fake_now() -> dt.datetime:
    return Clock.now


CLOCK = f"{__name__}.fake_now"


def at(minutes: float) -> dt.datetime:
    return T10 + dt.timedelta(minutes=minutes)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A real SQLite state store, named by the ``zuora_sync_state`` connection as in production."""
    path = tmp_path / "state.db"
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    Clock.now = T10
    state = StateStore(f"sqlite:///{path}", clock=fake_now)
    state.migrate()
    return state


def end_session(store: StateStore, when: dt.datetime, *, status: str = "Finished", session_type: str = "Real-time",
                dag_id: str = "zuora_realtime_sync", dry_run: bool = False, trigger: str = "scheduled") -> int:
    Clock.now = when
    sid = store.start_session(session_type=session_type, scope="accounts", trigger=trigger, dag_id=dag_id,
                              run_id=f"run-{when.isoformat()}-{time.monotonic_ns()}", window_start=None,
                              window_end=None, dry_run=dry_run)
    if status == "Stopped":
        store.finish_session(sid, stopped=True, error="the Salesforce API budget ran low")
    elif status == "Failure":
        store.finish_session(sid, error="tasks did not finish")
    else:
        store.finish_session(sid)
    return sid


def add_events(store: StateStore, count: int, prefix: str = "n") -> None:
    for i in range(count):
        assert store.add_event(f"{prefix}-{i}-{time.monotonic_ns()}", "AccountUpdated", {"baseObject": "Account"})


def trigger(**kwargs) -> RealTimeSyncTrigger:
    values = {"threshold": 10, "max_minutes": 120, "poll_seconds": POLL, "clock": CLOCK, **kwargs}
    return RealTimeSyncTrigger(**values)


class Running:
    """``trigger.run()`` as a task on the test's event loop; its first event, if any, once it comes."""

    def __init__(self, trig: RealTimeSyncTrigger) -> None:
        self.gen = trig.run()
        self.task = asyncio.ensure_future(anext(self.gen))

    async def fired_within(self, seconds: float) -> dict | None:
        done, _ = await asyncio.wait({self.task}, timeout=seconds)
        return self.task.result().payload if done else None

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        await self.gen.aclose()


# -- the trigger's rule ---------------------------------------------------------------------------------------


def test_fires_at_exactly_the_threshold(store):
    end_session(store, T10)
    Clock.now = at(5)
    add_events(store, 9)

    async def scenario():
        running = Running(trigger(threshold=10))
        try:
            assert await running.fired_within(POLL * 6) is None, "fired with 9 of 10 events"
            await asyncio.to_thread(add_events, store, 1, "tenth")
            return await running.fired_within(5)
        finally:
            await running.close()

    payload = asyncio.run(scenario())
    assert payload["reason"] == "events"
    assert payload["pending_events"] == 10 and payload["threshold"] == 10
    assert payload["last_session_end"] == T10.isoformat() and payload["minutes_since_last_session"] == 5
    assert payload["message"] == "10 data change events have accumulated: the next sync starts now"


def test_fires_at_the_maximum_time_with_fewer_events(store):
    end_session(store, T10)
    add_events(store, 3)
    Clock.now = at(20) - dt.timedelta(seconds=1)

    async def scenario():
        running = Running(trigger(threshold=10, max_minutes=20))
        try:
            assert await running.fired_within(POLL * 6) is None, "fired before the maximum time"
            Clock.now = at(20)
            return await running.fired_within(5)
        finally:
            await running.close()

    payload = asyncio.run(scenario())
    assert payload["reason"] == "max_time"
    assert payload["pending_events"] == 3 and payload["minutes_since_last_session"] == 20
    assert payload["fired_at"] == at(20).isoformat()


def test_the_seeds_example_50_events_or_30_minutes(store):
    """Threshold 50, maximum 30 minutes, 49 events since the session of 10:00 → the next starts at 10:30."""
    end_session(store, T10)
    add_events(store, 49)
    trig = trigger(threshold=50, max_minutes=30)
    Clock.now = at(15)
    assert trig.observe(store).message() == "1 more data change event, or at most 15 minutes, until the next sync"

    async def scenario():
        running = Running(trig)
        try:
            for minute in (0, 10, 20, 29, 29.99):
                Clock.now = at(minute)
                assert await running.fired_within(POLL * 4) is None, f"fired at 10:{minute:05.2f}"
            Clock.now = at(30)
            return await running.fired_within(5)
        finally:
            await running.close()

    payload = asyncio.run(scenario())
    assert payload["reason"] == "max_time" and payload["fired_at"] == "2025-06-02T10:30:00+00:00"
    assert payload["pending_events"] == 49


def test_with_no_session_yet_it_fires_at_once(store):
    async def scenario():
        running = Running(trigger())
        try:
            return await running.fired_within(5)
        finally:
            await running.close()

    payload = asyncio.run(scenario())
    assert payload["reason"] == "max_time" and payload["last_session_end"] is None


def test_consumed_events_do_not_count(store):
    sid = end_session(store, T10)
    add_events(store, 12)
    store.mark_events_consumed(store.last_event_id(), sid)
    add_events(store, 2, "later")
    Clock.now = at(1)
    seen = trigger().observe(store)
    assert seen.due is None and seen.status.pending_events == 2


@pytest.mark.parametrize("status", ["Stopped", "Failure"])
def test_after_an_unsuccessful_session_events_wait_for_the_backoff(store, status):
    """A continuous DAG must not restart a failing session in a loop: events wait ``backoff_minutes``."""
    end_session(store, T10, status=status)
    add_events(store, 12)

    async def scenario():
        running = Running(trigger(threshold=10, backoff_minutes=15))
        try:
            Clock.now = at(5)
            assert await running.fired_within(POLL * 6) is None
            Clock.now = at(15)
            return await running.fired_within(5)
        finally:
            await running.close()

    Clock.now = at(5)
    assert "the last session ended " + status in trigger(threshold=10, backoff_minutes=15).observe(store).message()
    payload = asyncio.run(scenario())
    assert payload["reason"] == "events" and payload["last_session_status"] == status


def test_switched_to_real_time_the_full_sync_starts_at_once_and_only_once(store):
    """The seed: "Turbo Sync automatically runs Full Sync, first, when changing from Scheduled Sync to
    Real-time Sync". After a scheduled session the first real-time session (a full sync, by the
    begin task's rule) does not wait for events or the maximum time; after it, they wait again; a
    failed mode-change full sync is held back 15 minutes, as any failed session's events are."""
    from zuora_sync.triggers.realtime import start_reason

    end_session(store, T10, session_type="Incremental", dag_id="zuora_incremental_sync")  # Scheduled mode
    Clock.now = at(5)
    waiting = trigger(threshold=10, max_minutes=120)
    seen = waiting.observe(store)
    assert seen.due == "mode_change" and seen.status.pending_events == 0
    payload = seen.payload()
    assert payload["reason"] == "mode_change" and "was not a real-time one" in payload["mode_change"]
    assert seen.message() == "The sync mode changed to Real-time: a full sync starts now"
    assert start_reason(payload, "accounts").startswith("Starting a real-time session at once, a full sync: ")

    end_session(store, at(6), session_type="Full", dag_id="zuora_realtime_sync")  # the mode-change full sync
    Clock.now = at(7)
    assert waiting.observe(store).due is None, "read again once another session has ended"
    assert trigger().observe(store).message().startswith("10 more data change events, or at most 119 minutes")

    end_session(store, at(8), session_type="Incremental", dag_id="zuora_incremental_sync")  # Scheduled again
    end_session(store, at(9), session_type="Full", dag_id="zuora_realtime_sync", status="Failure")
    Clock.now = at(10)
    held = trigger().observe(store)
    assert held.due is None and held.hold_until == at(24) and held.status.minutes_left == 14
    Clock.now = at(24)
    assert trigger().observe(store).due == "mode_change"


def test_a_settings_change_applies_to_a_wait_under_way(store, monkeypatch):
    end_session(store, T10)
    add_events(store, 6)
    Clock.now = at(1)
    monkeypatch.setenv("AIRFLOW_VAR_ZUORA_SYNC_SETTINGS", json.dumps({"max_events_before_sync": 10,
                                                                       "trigger_poll_seconds": 1}))

    async def scenario():
        running = Running(trigger(threshold=10, follow_settings=True))
        try:
            assert await running.fired_within(0.3) is None
            monkeypatch.setenv("AIRFLOW_VAR_ZUORA_SYNC_SETTINGS", json.dumps({"max_events_before_sync": 5,
                                                                               "trigger_poll_seconds": 1}))
            return await running.fired_within(5)
        finally:
            await running.close()

    payload = asyncio.run(scenario())
    assert payload["reason"] == "events" and payload["threshold"] == 5


def test_serialization_round_trip_holds_no_secret():
    from airflow.sdk.serde import deserialize, serialize

    original = RealTimeSyncTrigger(threshold=50, max_minutes=30, scope="accounts", state_conn_id="my_state",
                                   event_source="polling", zuora_conn_id="my_zuora", poll_seconds=60,
                                   backoff_minutes=5, follow_settings=True, clock=CLOCK, end_from_trigger=True)
    classpath, kwargs = original.serialize()
    assert classpath == CLASSPATH
    module, _, name = classpath.rpartition(".")
    # What the triggerer does: import by class path, rebuild from the (serde round-tripped) kwargs.
    rebuilt = getattr(importlib.import_module(module), name)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["state_conn_id"] == "my_state" and kwargs["zuora_conn_id"] == "my_zuora"
    assert not any(k in kwargs for k in ("url", "password", "token", "secret"))
    with pytest.raises(ValueError, match="event_source"):
        RealTimeSyncTrigger(threshold=10, max_minutes=10, event_source="carrier-pigeon")


def test_ending_from_the_triggerer_carries_the_payload_as_the_xcom(store):
    from airflow.triggers.base import TaskSuccessEvent

    end_session(store, T10)
    Clock.now = at(5)
    add_events(store, 10)

    async def first_event():
        gen = trigger(threshold=10, end_from_trigger=True).run()
        try:
            return await asyncio.wait_for(anext(gen), 10)
        finally:
            await gen.aclose()

    event = asyncio.run(first_event())
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"]["reason"] == "events"
    assert event.xcoms["return_value"]["pending_events"] == 10
    assert json.loads(json.dumps(event.xcoms)) == event.xcoms  # stored as a JSON XCom


def test_the_sensor_ends_in_the_triggerer_unless_a_listener_hooks_task_instances(store):
    """Airflow refuses a task whose ``end_from_trigger`` attribute is true while any listener is
    registered: task-instance listeners would not see the task end. The sensor decides when it waits:
    the sync's run-note listener hooks DAG runs only; a task-instance listener keeps the resumption."""
    from airflow.listeners import hookimpl
    from airflow.sdk.listener import get_listener_manager

    from zuora_sync import run_notes
    from zuora_sync.operators.realtime import RealTimeSyncSensor, task_listeners

    manager = get_listener_manager()
    manager.add_listener(run_notes)
    sensor = RealTimeSyncSensor(task_id="wait_for_changes")
    assert not hasattr(sensor, "end_from_trigger")  # nothing for Airflow's DagBag check to refuse
    assert task_listeners() == []
    end_session(store, T10)
    assert sensor._look()[1].end_from_trigger

    class Lineage:
        @hookimpl
        def on_task_instance_success(self, previous_state, task_instance):
            pass

    lineage = Lineage()
    manager.add_listener(lineage)
    try:
        assert task_listeners() == [manager.pm.get_name(lineage)]
        assert not sensor._look()[1].end_from_trigger
        assert "listeners with task-instance hooks are registered" in sensor._why_resume()
    finally:
        manager.pm.unregister(lineage)
    assert task_listeners() == []
    off = RealTimeSyncSensor(task_id="w", end_in_triggerer=False)
    assert not off._look()[1].end_from_trigger
    assert "end_in_triggerer is off" in RealTimeSyncSensor(task_id="w", end_in_triggerer=False)._why_resume()


def test_the_trigger_lives_in_the_installed_package():
    import zuora_sync.triggers.realtime as module

    assert "/dags/" not in module.__file__.replace(os.sep, "/")
    assert importlib.import_module("zuora_sync.triggers").RealTimeSyncTrigger is RealTimeSyncTrigger


# -- the polling fallback against a Zuora sandbox ---------------------------------------------------------------


@pytest.fixture(scope="module")
def zuora(tmp_path_factory):
    sandbox = start_zuora_sandbox(tmp_path_factory.mktemp("poll") / "zuora", accounts=4, seed=5)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_polling_counts_changed_records_in_zuora(store, zuora, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", zuora.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    headers = {"Authorization": f"Bearer {zuora.token()}"}

    def call(method: str, path: str, body: dict) -> list:
        response = requests.request(method, f"{zuora.url}{path}", json=body, headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()

    def jobs() -> int:
        listed = requests.get(f"{zuora.url}/query/jobs", params={"pageSize": 1000}, headers=headers, timeout=30)
        listed.raise_for_status()
        return len(listed.json()["data"])

    accounts = [r["Id"] for r in requests.post(f"{zuora.url}/v1/action/query", headers=headers, timeout=30, json={
        "queryString": "select Id from Account"}).json()["records"]]
    doomed = requests.post(f"{zuora.url}/v1/action/query", headers=headers, timeout=30, json={
        "queryString": "select Id from InvoicePayment"}).json()["records"][0]["Id"]
    assert len(accounts) >= 4
    end_session(store, T10)
    Clock.now = at(1)  # the maximum time is far away: only the count can fire
    time.sleep(1.1)    # Zuora's UpdatedDate has whole seconds: nothing generated shares the watermark's second
    mark = dt.datetime.now(UTC)
    for obj in load_mapping().scopes["accounts"]:
        store.set_watermark("accounts", obj, mark)
    time.sleep(1.1)

    def rename(ids: list[str]) -> None:
        result = call("POST", "/v1/action/update", {"type": "Account", "objects": [
            {"Id": i, "Name": f"Polled {i[-6:]} {time.monotonic_ns()}"} for i in ids]})
        assert all(r["Success"] for r in result)

    async def scenario():
        running = Running(trigger(threshold=5, event_source="polling", poll_seconds=1))
        gaps = []

        async def heartbeat():  # the loop stays free while Data Query jobs run in a thread
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.02)
                gaps.append(time.monotonic() - started)

        beating = asyncio.ensure_future(heartbeat())
        try:
            jobs_before, started = await asyncio.to_thread(jobs), time.monotonic()
            assert await running.fired_within(2.5) is None, "fired with no change in Zuora"
            await asyncio.to_thread(rename, accounts[:3])
            assert await running.fired_within(2.5) is None, "fired with 3 of 5 changes"
            await asyncio.to_thread(rename, accounts[3:4])
            deleted = await asyncio.to_thread(call, "POST", "/v1/action/delete",
                                              {"type": "InvoicePayment", "ids": [doomed]})
            assert deleted[0]["success"]
            payload = await running.fired_within(10)
            elapsed, used = time.monotonic() - started, await asyncio.to_thread(jobs) - jobs_before
            return payload, elapsed, used, max(gaps)
        finally:
            beating.cancel()
            await running.close()

    payload, elapsed, used_jobs, worst_gap = asyncio.run(scenario())
    assert payload["reason"] == "events" and payload["event_source"] == "polling"
    assert payload["changed_records"]["account"] == 4 and payload["changed_records"]["invoicepayment"] == 1
    assert payload["pending_events"] == sum(payload["changed_records"].values()) >= 5
    assert used_jobs <= elapsed / 1 + 1, f"{used_jobs} Data Query jobs in {elapsed:.1f} s: more than one a second"
    assert 0 < payload["zuora_api_requests"] <= 6 * used_jobs
    # A blocking count (submit, polls, download of a Data Query job) holds the loop for seconds; a loaded
    # machine alone delays a 0.1 s heartbeat by up to about 1.5 s.
    assert worst_gap < 3.0, f"the event loop was blocked for {worst_gap:.2f} s"


# -- the Turbo Sync mode rule (BeginSyncSessionOperator._plan) -------------------------------------------------


def plan_real_time(store: StateStore, *, run_type: str = "scheduled", began_minutes: float = 0):
    """Plan a real-time session whose begin task first ran at ``at(began_minutes)`` (the store's clock)."""
    from zuora_sync.operators.session import BeginSyncSessionOperator
    from zuora_sync.settings import Settings

    op = BeginSyncSessionOperator(task_id="begin_session", session_type="Real-time", scope="accounts")
    context = {"dag_run": SimpleNamespace(dag_id="zuora_realtime_sync", run_id=f"rt-{time.monotonic_ns()}",
                                          run_type=run_type),
               "data_interval_start": at(-60), "data_interval_end": at(-50)}
    Clock.now = at(0)
    return op._plan(context, store, Settings(), "zuora_realtime_sync/rt", at(began_minutes))


@pytest.fixture
def synced_store(store):
    """A store whose accounts scope had a full sync (zuora_full_sync) and has watermarks."""
    end_session(store, at(-120), session_type="Full", dag_id="zuora_full_sync")
    for obj in load_mapping().scopes["accounts"]:
        store.set_watermark("accounts", obj, at(-30))
    return store


def test_the_first_sync_ever_is_full(store):
    assert plan_real_time(store).session_type == "Full"


def test_a_real_time_session_after_another_mode_is_a_full_sync(synced_store):
    plan = plan_real_time(synced_store)  # last session: a full sync of another DAG
    assert (plan.session_type, plan.mode) == ("Full", "full")
    end_session(synced_store, at(-10), session_type="Incremental", dag_id="zuora_incremental_sync")
    assert plan_real_time(synced_store).session_type == "Full"  # Scheduled → Real-time


def test_after_the_mode_change_full_sync_real_time_sessions_are_incremental(synced_store):
    end_session(synced_store, at(-20), session_type="Full", dag_id="zuora_realtime_sync")  # the Turbo full sync
    plan = plan_real_time(synced_store)
    assert (plan.session_type, plan.mode) == ("Real-time", "window")
    start, end = plan.window("CustomerAccount")
    # From the watermark (with the look-back) to now, not the continuous run's data interval.
    assert start == at(-30) - dt.timedelta(minutes=5) and end > at(-50)
    end_session(synced_store, at(-5), session_type="On-demand", dag_id="zuora_on_demand_sync")
    end_session(synced_store, at(-4), session_type="Incremental", dag_id="zuora_incremental_sync", dry_run=True)
    assert plan_real_time(synced_store).session_type == "Real-time"  # on-demand and dry runs change no mode


def test_backfill_sessions_between_real_time_sessions_change_no_mode(synced_store):
    """A backfill re-syncs past windows in any mode: the next real-time session stays incremental."""
    end_session(synced_store, at(-20), session_type="Full", dag_id="zuora_realtime_sync")  # the Turbo full sync
    end_session(synced_store, at(-15))
    for minutes in (-10, -8, -6):
        end_session(synced_store, at(minutes), session_type="Incremental", dag_id="zuora_incremental_sync",
                    trigger="DagRunType.BACKFILL")
    assert plan_real_time(synced_store).session_type == "Real-time"
    end_session(synced_store, at(-4), session_type="Incremental", dag_id="zuora_incremental_sync")  # scheduled
    assert plan_real_time(synced_store).session_type == "Full"  # Scheduled → Real-time


def test_a_real_time_session_long_after_the_last_session_is_a_full_sync(synced_store):
    """Real-time → None → Real-time: paused after a session, unpaused hours later (no session between)."""
    end_session(synced_store, at(-20), session_type="Full", dag_id="zuora_realtime_sync")
    end_session(synced_store, at(-10))
    # Default settings: maximum 120 minutes + grace 60.
    assert plan_real_time(synced_store, began_minutes=-10 + 180).session_type == "Real-time"
    plan = plan_real_time(synced_store, began_minutes=-10 + 181)
    assert (plan.session_type, plan.mode) == ("Full", "full")


def test_a_failed_mode_change_full_sync_is_repeated(synced_store):
    end_session(synced_store, at(-20), session_type="Full", dag_id="zuora_realtime_sync", status="Failure")
    assert plan_real_time(synced_store).session_type == "Full"
    end_session(synced_store, at(-10), session_type="Real-time", status="Failure")
    assert plan_real_time(synced_store).session_type == "Real-time"  # a failed real-time session is still one


# -- the DAG ------------------------------------------------------------------------------------------------------


def test_the_realtime_dag_waits_first_and_only_it_does():
    from sync_harness import load_dag

    dag = load_dag("zuora_realtime_sync")
    assert type(dag.timetable).__name__ == "ContinuousTimetable" and dag.max_active_runs == 1
    wait = dag.get_task("wait_for_changes")
    assert type(wait).__name__ == "RealTimeSyncSensor" and not wait.upstream_task_ids
    assert dag.get_task("begin_session").upstream_task_ids == {"wait_for_changes"}
    assert dag.get_task("begin_session").session_type == "Real-time"
    assert "Airflow DAG" in Path(dag.fileloc).read_text().split('"""')[1]  # the DAG file's docstring
    for other in ("zuora_incremental_sync", "zuora_full_sync"):
        ids = {t.task_id for t in load_dag(other).tasks}
        assert "wait_for_changes" not in ids
        assert not load_dag(other).get_task("begin_session").upstream_task_ids


ACCOUNTS, SEED = 25, 31
TZ = ZoneInfo("America/Los_Angeles")
THRESHOLD = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Both sandboxes and the environment the DAGs read (as in test_sync_end_to_end), real-time settings."""
    from sync_harness import running_stack

    base = tmp_path_factory.mktemp("realtime")
    with running_stack(base, accounts=ACCOUNTS, seed=SEED, settings={
            "max_events_before_sync": THRESHOLD, "max_minutes_between_syncs": 120,
            "trigger_poll_seconds": 1}) as running:
        yield {**running, "state_db": base / "state.db"}


def check(stack) -> None:
    from sync_harness import compare_scope

    state = StateStore.from_airflow()
    rejected = {o.name: set(state.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "accounts", rejected, TZ,
                             stack["base"])
    assert not problems, "\n".join(problems[:40])


def synced_account(stack) -> str:
    """An active account with a valid CRM Id: it is in Salesforce, so its rename must reach it."""
    from sandbox.crm_accounts import crm_account_id
    from sync_harness import tenant_rows

    valid = {crm_account_id(SEED, i) for i in range(ACCOUNTS)}
    rows = tenant_rows(stack["zuora"].data_dir, "SELECT id, crmid FROM account WHERE status = 'Active' AND NOT deleted "
                                                "ORDER BY accountnumber")
    return next(r["id"] for r in rows if r["crmid"] in valid)


def run_realtime() -> tuple[str, dict]:
    """Run ``zuora_realtime_sync`` once with ``dag.test()``; its state and the sensor's payload."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sync_harness import load_dag

    dag = load_dag("zuora_realtime_sync")
    for task in dag.tasks:
        task.retries = 0
    # The trigger ends the waiting task itself (TaskSuccessEvent). dag.test() resumes it in process
    # instead, with the task's state as the event: the sensor reads the payload again from the state
    # store. The triggerer's own path is tested under airflow standalone (tests/stack).
    run = dag.test()
    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids="wait_for_changes",
                                                 key="return_value")).first()
        value = row.value if row is not None else None
    return str(run.state), (json.loads(value) if isinstance(value, str) else value)


def test_dag_first_real_time_run_is_a_full_sync(stack):
    state, payload = run_realtime()
    assert state == "success"
    assert payload["reason"] == "max_time" and payload["last_session_end"] is None  # no session yet: at once
    session = StateStore.from_airflow().list_sessions(limit=1)[0]
    assert (session["session_type"], session["dag_id"]) == ("Full", "zuora_realtime_sync")
    assert session["status"] in ("Finished", "Finished with Errors")
    check(stack)


@pytest.fixture
def inbox(monkeypatch):
    """A real SMTP server (aiosmtpd) as ``smtp_default``, and settings that email every session."""
    from aiosmtpd.controller import Controller
    from smtp_inbox import Inbox, smtp_connection

    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(port))
    settings = json.loads(os.environ["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"])
    monkeypatch.setenv("AIRFLOW_VAR_ZUORA_SYNC_SETTINGS", json.dumps({
        **settings, "email_notifications": "all_including_zero_records", "email_recipients": ["ops@example.test"]}))
    try:
        yield handler
    finally:
        controller.stop()


def test_dag_events_start_a_real_time_session_that_consumes_them(stack, inbox):
    state_store = StateStore.from_airflow()
    before = state_store.list_sessions(limit=1)[0]["id"]
    zuora = stack["zuora"]
    headers = {"Authorization": f"Bearer {zuora.token()}"}
    account = synced_account(stack)
    renamed = requests.post(f"{zuora.url}/v1/action/update", headers=headers, timeout=30, json={
        "type": "Account", "objects": [{"Id": account, "Name": "Renamed For Real-time"}]}).json()
    assert renamed[0]["Success"]
    for i in range(THRESHOLD - 1):
        state_store.add_event(f"rt-{i}", "AccountUpdated", {"baseObject": "Account", "id": account})
    seen: dict = {}

    def feed() -> None:
        time.sleep(2)  # the sensor has deferred by now; the trigger sees the last event arrive
        state_store.add_event("rt-last", "AccountUpdated", {"baseObject": "Account"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # an event that arrives during the session
            running = state_store.last_session("accounts")
            if running and running["id"] > before and running["status"] == "Running":
                seen["during"] = state_store.add_event("rt-during", "AccountUpdated", {"baseObject": "Account"})
                return
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    started = time.monotonic()
    feeder.start()
    state, payload = run_realtime()
    feeder.join(timeout=130)
    assert state == "success"
    assert time.monotonic() - started >= 2, "the sensor did not wait for the events"
    assert payload["reason"] == "events" and payload["pending_events"] == THRESHOLD
    session = state_store.list_sessions(limit=1)[0]
    assert session["session_type"] == "Real-time" and session["status"] in ("Finished", "Finished with Errors")
    assert seen.get("during"), "no event arrived while the session ran"
    with sqlite3.connect(stack["state_db"]) as conn:
        consumed = dict(conn.execute("SELECT notification_id, consumed_session_id FROM zuora_sync_event"))
    assert consumed == {**{f"rt-{i}": session["id"] for i in range(THRESHOLD - 1)}, "rt-last": session["id"],
                        "rt-during": None}
    assert state_store.pending_event_count() == 1  # counts toward the next session
    check(stack)
    sf = stack["salesforce"].login()
    assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed For Real-time'")["totalSize"] == 1
    # The end task emailed the session's summary (email_notifications: all_including_zero_records).
    assert len(inbox.messages) == 1
    recipients, message = inbox.messages[0]
    assert recipients == ["ops@example.test"]
    assert "Real-time" in message["Subject"] and session["status"] in message["Subject"]
    assert "CustomerAccount" in message.get_body(("html",)).get_content()


def shift_history(state_db: Path, delta: dt.timedelta) -> None:
    """Move every recorded session and watermark ``delta`` into the past: as if that much time had
    passed since, with nothing running (written as SQLAlchemy stores datetimes in SQLite)."""
    columns = {"zuora_sync_session": ("started_at", "ended_at"), "zuora_sync_watermark": ("value", "updated_at")}
    with sqlite3.connect(state_db) as conn:
        for table, names in columns.items():
            for rowid, *values in conn.execute(f"SELECT rowid, {', '.join(names)} FROM {table}").fetchall():
                moved = [None if v is None else (dt.datetime.fromisoformat(v) - delta).strftime("%Y-%m-%d %H:%M:%S.%f")
                         for v in values]
                conn.execute(f"UPDATE {table} SET {', '.join(f'{n} = ?' for n in names)} WHERE rowid = ?",
                             (*moved, rowid))


def test_dag_real_time_then_none_then_real_time_is_exactly_one_full_sync(stack):
    """The real-time DAG paused after its last session, unpaused four hours later with no session in
    between (more than max_minutes_between_syncs 120 + mode_change_grace_minutes 60): its first
    session is a full sync (the seed's "changing from None to Real-time Sync"), the next is real-time."""
    state_store = StateStore.from_airflow()
    assert state_store.list_sessions(limit=1)[0]["session_type"] == "Real-time"  # Real-time mode so far
    shift_history(stack["state_db"], dt.timedelta(hours=4))
    state, payload = run_realtime()
    assert state == "success"
    assert payload["reason"] == "max_time" and payload["minutes_since_last_session"] >= 240
    first = state_store.list_sessions(limit=1)[0]
    assert (first["session_type"], first["dag_id"], first["status"]) == (
        "Full", "zuora_realtime_sync", "Finished with Errors")  # the tenant's deliberately invalid CRM Ids
    check(stack)

    for i in range(THRESHOLD):
        state_store.add_event(f"after-pause-{i}", "AccountUpdated", {"baseObject": "Account"})
    state, payload = run_realtime()
    assert state == "success" and payload["reason"] == "events"
    second = state_store.list_sessions(limit=1)[0]
    assert second["session_type"] == "Real-time" and second["id"] > first["id"]
    check(stack)
