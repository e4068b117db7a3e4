"""Real-time sync as a user runs it, under ``airflow standalone`` (``python -m sandbox.stack up``).

The stack is the package's shared one (``standalone.py``). The Zuora sandbox sends its callouts,
signed, to ``/zuora-sync/events`` on the Airflow API server (the plugin's web app). With
``zuora_realtime_sync`` unpaused:

1. the first session runs at once and is a full sync (no real-time session before it);
2. the next run waits in its deferrable sensor; ``GET /zuora-sync/status`` says how far away the
   next sync is; N changes in Zuora arrive as N callouts and start a real-time session by itself,
   which brings Salesforce level with Zuora, record by record;
3. with fewer changes than the threshold, the session starts when the (short) maximum time has
   passed since the last one ended;
4. a backfill of ``zuora_incremental_sync`` meanwhile does not make the next real-time session a
   full sync.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "sync"))
from sync_harness import compare_scope  # noqa: E402

DAG = "zuora_realtime_sync"
INCREMENTAL = "zuora_incremental_sync"
TZ = ZoneInfo("America/Los_Angeles")


def finished_run(standalone, index: int, timeout: float) -> dict:
    """The ``index``-th run (0-based, in creation order), once it has ended; it must have succeeded."""
    def ended():
        runs = standalone.airflow.runs(DAG)
        return runs[index] if len(runs) > index and runs[index]["state"] in ("success", "failed") else None

    run = standalone.wait_for(f"run {index + 1} of {DAG} ending", ended, timeout)
    assert run["state"] == "success", standalone.log()
    return run


def waiting_run(standalone, index: int) -> dict:
    """The ``index``-th run once its sensor is deferred (waiting in the triggerer)."""
    def deferred():
        runs = standalone.airflow.runs(DAG)
        if len(runs) > index and standalone.airflow.task_state(DAG, runs[index]["dag_run_id"],
                                                               "wait_for_changes") == "deferred":
            return runs[index]
        return None

    return standalone.wait_for(f"run {index + 1} waiting for changes", deferred, 180)


@pytest.mark.slow
def test_callouts_start_real_time_sessions_under_airflow_standalone(standalone, tmp_path):
    airflow = standalone.airflow

    def status() -> dict:
        return airflow.call("GET", "/zuora-sync/status").json()

    def rename(account_id: str, name: str) -> None:
        answer = standalone.zuora("POST", "/v1/action/update",
                                  {"type": "Account", "objects": [{"Id": account_id, "Name": name}]})
        assert answer[0]["Success"], answer

    # A failed delivery is retried in seconds, not Zuora's 30 minutes.
    standalone.zuora("POST", "/__admin/callouts", {"retry_interval_seconds": 2}, token=False)

    # Settings through the web app: a wrong value is refused with the allowed ones.
    refused = airflow.call("PUT", "/zuora-sync/settings", json={"max_events_before_sync": 7})
    assert refused.status_code == 400 and 5 in refused.json()["allowed"]["max_events_before_sync"]
    saved = airflow.call("PUT", "/zuora-sync/settings", json={
        "max_events_before_sync": 5, "max_minutes_between_syncs": 600, "trigger_poll_seconds": 2})
    assert saved.status_code == 200, saved.text

    airflow.set_paused(DAG, False)
    try:
        # 1. Unpaused: the first session runs at once, as a full sync (no real-time session before it).
        first = finished_run(standalone, 0, 600)
        assert airflow.xcom(DAG, first["dag_run_id"], "begin_session")["session_type"] == "Full"

        # 2. The next run waits; five changes in Zuora start it.
        second = waiting_run(standalone, 1)
        now = status()
        assert now["mode"]["mode"] == "Real-time"
        assert now["pending_events"] == 0
        assert now["next_sync"]["message"].startswith("5 more data change events, or at most "), now
        accounts = standalone.zuora("POST", "/v1/action/query", {
            "queryString": "select Id, Name from Account where Status = 'Active'"})["records"][:5]
        for n, account in enumerate(accounts[:4]):
            rename(account["Id"], f"Real-time rename {n}")
        # Four of five: the status counts down, the session does not start.
        standalone.wait_for("four callouts stored", lambda: status()["pending_events"] == 4, 60)
        assert status()["next_sync"]["message"].startswith("1 more data change event, or at most "), \
            "the status should count down"
        assert airflow.task_state(DAG, second["dag_run_id"], "wait_for_changes") == "deferred"
        rename(accounts[4]["Id"], "Real-time rename 4")
        finished_run(standalone, 1, 600)
        fired = airflow.xcom(DAG, second["dag_run_id"], "wait_for_changes")
        assert fired["reason"] == "events" and fired["pending_events"] >= 5
        # The triggerer ended the wait and pushed the payload (no resumption on a worker): the
        # run-note listener, which hooks DAG runs only, does not stand in its way.
        waited = airflow.task_log(DAG, second["dag_run_id"], "wait_for_changes")
        assert "The triggerer ends this task when the session is due" in waited, waited[-3000:]
        assert airflow.xcom(DAG, second["dag_run_id"], "begin_session")["session_type"] == "Real-time"

        from zuora_sync.mapping import load_mapping

        store = standalone.state_store()
        assert store.pending_event_count() == 0, "the session consumes the events it started with"
        sf = standalone.salesforce()
        # Accounts without a valid CRM Id are not in Salesforce (rejected): the others carry the new names.
        renamed = sf.query("SELECT Zuora__External_Id__c FROM Zuora__CustomerAccount__c "
                           "WHERE Name LIKE 'Real-time rename %'")["records"]
        assert renamed
        rejected = {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}
        problems = compare_scope(standalone.zuora_data_dir, sf, "accounts", rejected, TZ, tmp_path)
        assert not problems, "\n".join(problems[:40])

        # 3. Fewer changes than the threshold: the maximum time (1 minute here) starts the session.
        third = waiting_run(standalone, 2)
        assert airflow.call("PUT", "/zuora-sync/settings", json={"max_minutes_between_syncs": 1}).ok
        rename(renamed[0]["Zuora__External_Id__c"], "Renamed once more")
        finished_run(standalone, 2, 400)
        fired = airflow.xcom(DAG, third["dag_run_id"], "wait_for_changes")
        assert fired["reason"] == "max_time" and fired["pending_events"] == 1, fired
        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed once more'")[
            "totalSize"] == 1
        problems = compare_scope(standalone.zuora_data_dir, sf, "accounts", rejected, TZ, tmp_path)
        assert not problems, "\n".join(problems[:40])

        # 4. A backfill while real-time sync goes on changes no mode: the next real-time session is
        #    no full sync. (Unpausing the incremental DAG also starts its latest interval, once per
        #    interval, which the real-time sessions synced already: no session; see the backfill test.)
        # Away from the incremental DAG's interval ends (every two hours): real-time sessions must
        # have synced past the latest one, and no new one may end while it is unpaused (its run
        # would be a Scheduled-mode session, docs/operations.md).
        now = dt.datetime.now(dt.UTC)
        since_boundary = dt.timedelta(hours=now.hour % 2, minutes=now.minute, seconds=now.second)
        if since_boundary < dt.timedelta(minutes=5) or since_boundary > dt.timedelta(minutes=117):
            time.sleep(((dt.timedelta(minutes=125) - since_boundary) % dt.timedelta(hours=2)).total_seconds())
        interval = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        interval -= dt.timedelta(hours=interval.hour % 2)
        standalone.create_backfill(INCREMENTAL, lambda: airflow.call("POST", "/api/v2/backfills", json={
            "dag_id": INCREMENTAL, "from_date": interval.isoformat(), "to_date": interval.isoformat(),
            "max_active_runs": 1}))
        airflow.set_paused(INCREMENTAL, False)
        try:
            (backfill,) = standalone.finish_backfill(INCREMENTAL, {interval})
            assert backfill["state"] == "success", standalone.log()
        finally:
            standalone.pause_when_idle(INCREMENTAL)
        (backfilled,) = [s for s in store.list_sessions(limit=50) if s["run_id"] == backfill["dag_run_id"]]
        assert "backfill" in backfilled["trigger"].lower()

        def real_time_after_backfill() -> dict | None:
            later = [s for s in store.list_sessions(limit=50) if s["dag_id"] == DAG
                     and s["started_at"] > backfilled["ended_at"] and s["ended_at"] is not None]
            return later[-1] if later else None  # the first one (newest first)

        after = standalone.wait_for("a real-time session after the backfill", real_time_after_backfill, 300)
        assert after["session_type"] == "Real-time", after
    finally:
        # Pause while a run waits (deferred): a session paused half-way would keep the scope's lock.
        airflow.call("PUT", "/zuora-sync/settings", json={"max_minutes_between_syncs": 600})
        standalone.wait_for("a real-time run waiting", lambda: any(
            airflow.task_state(DAG, r["dag_run_id"], "wait_for_changes") == "deferred"
            for r in airflow.runs(DAG)[-1:]), 300)
        airflow.set_paused(DAG, True)
