"""Backfill as an operator runs it, under ``airflow standalone`` (the package's shared stack).

After a full sync, changes are made in Zuora dated three days back, one in each of three two-hour
intervals of ``zuora_incremental_sync`` (the Zuora sandbox's admin clock), so no later session
picks them up: only a backfill of those intervals brings them to Salesforce. Then:

1. ``airflow backfill create --dag-id zuora_incremental_sync --from-date … --to-date …`` (the CLI,
   what the form's Backfill button does) runs one session per interval, each reading exactly its
   interval (plus the look-back); Salesforce then equals Zuora record by record;
2. the same backfill again, through Airflow's REST API (``POST /api/v2/backfills``, reprocessing
   the completed runs), changes nothing: same record counts, no duplicate, still equal;
3. the objects' watermarks never move backwards (backfill windows lie behind them).
"""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "sync"))
from sync_harness import compare_scope, duplicate_external_ids, tenant_rows  # noqa: E402

DAG = "zuora_incremental_sync"
TZ = ZoneInfo("America/Los_Angeles")
INTERVAL = dt.timedelta(hours=2)        # the DAG's schedule: 0 */2 * * * (CronDataIntervalTimetable)
LOOKBACK = dt.timedelta(minutes=5)      # the default lookback_minutes
#: A session's good endings (the tenant's deliberately invalid CRM Ids are rejected, and retried, every time).
OK = ("Finished", "Finished with Errors")


def _backfill_sessions(store, run_ids: set[str]) -> list[dict]:
    return [s for s in store.list_sessions(scope="accounts", limit=500) if s["run_id"] in run_ids]


def _counts(sf) -> dict[str, int]:
    from zuora_sync.mapping import load_mapping

    return {o.salesforce: sf.query(f"SELECT COUNT() FROM {o.salesforce}")["totalSize"]
            for o in load_mapping().scope_objects("accounts")}


def _rejected(store) -> dict[str, set[str]]:
    from zuora_sync.mapping import load_mapping

    return {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}


def _watermarks_not_behind(before: dict, after: dict) -> list[str]:
    return [f"{obj}: {before[obj]} → {after.get(obj)}" for obj in before
            if after.get(obj) is None or after[obj] < before[obj]]


@pytest.mark.slow
def test_backfill_resyncs_exactly_its_intervals_and_a_rerun_changes_nothing(standalone, tmp_path):
    from sandbox.crm_accounts import crm_account_id

    from .standalone import ACCOUNTS, SEED

    airflow, store = standalone.airflow, standalone.state_store()

    # 0. A full sync has run (the first sync of a scope is always full, whatever started it).
    if store.last_full_sync("accounts") is None:
        airflow.set_paused("zuora_full_sync", False)
        full = airflow.trigger("zuora_full_sync")
        assert standalone.wait_for_run("zuora_full_sync", full) == "success", standalone.log()

    # 1. Dated changes, 30 minutes into each of three intervals three days back.
    base = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    base -= dt.timedelta(hours=base.hour % 2)
    valid = {crm_account_id(SEED, i) for i in range(ACCOUNTS)}
    accounts = [r["id"] for r in tenant_rows(standalone.zuora_data_dir, (
        "SELECT a.id, a.crmid FROM account a WHERE a.status = 'Active' AND NOT a.deleted AND EXISTS (SELECT 1 FROM "
        "subscription s WHERE s.accountid = a.id AND s.status = 'Active' AND NOT s.deleted) AND EXISTS (SELECT 1 "
        "FROM invoicepayment ip JOIN invoice i ON i.id = ip.invoiceid WHERE i.accountid = a.id AND NOT ip.deleted) "
        "ORDER BY a.accountnumber DESC")) if r["crmid"] in valid][:3]
    assert len(accounts) == 3, "the tenant has too few synced accounts with subscriptions and payments"
    subscription = tenant_rows(standalone.zuora_data_dir, (
        f"SELECT id, name FROM subscription WHERE accountid = '{accounts[1]}' AND status = 'Active' AND NOT deleted "
        "ORDER BY name LIMIT 1"))[0]
    payment = tenant_rows(standalone.zuora_data_dir, (
        "SELECT ip.id FROM invoicepayment ip JOIN invoice i ON i.id = ip.invoiceid "
        f"WHERE i.accountid = '{accounts[2]}' AND NOT ip.deleted ORDER BY ip.id LIMIT 1"))[0]["id"]
    changes = [
        ("POST", "/v1/action/update", {"type": "Account",
                                       "objects": [{"Id": accounts[0], "Name": "Backfilled rename"}]}),
        ("POST", "/v1/action/update", {"type": "Subscription", "objects": [{"Id": subscription["id"], "AutoRenew": True,
                                                                             "RenewalTerm": 7}]}),
        ("POST", "/v1/action/delete", {"type": "InvoicePayment", "ids": [payment]}),
    ]
    try:
        for n, (method, path, body) in enumerate(changes):
            target = base + n * INTERVAL + dt.timedelta(minutes=30)
            offset = (target - dt.datetime.now(dt.UTC)).total_seconds()
            standalone.zuora("POST", "/__admin/clock", {"offset_seconds": offset}, token=False)
            answer = standalone.zuora(method, path, body)
            assert answer[0].get("Success", answer[0].get("success")), answer
    finally:
        standalone.zuora("POST", "/__admin/clock", {"offset_seconds": 0}, token=False)
    new_version = tenant_rows(standalone.zuora_data_dir, (
        f"SELECT id FROM subscription WHERE name = '{subscription['name']}' AND NOT deleted ORDER BY version DESC "
        "LIMIT 1"))[0]["id"]
    sf = standalone.salesforce()
    assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Backfilled rename'")["totalSize"] == 0
    marks = store.watermarks("accounts")
    assert marks and min(marks.values()) > base + 3 * INTERVAL, "the dated changes lie behind every watermark"

    # 2. The backfill, from the CLI: three intervals (the dates are logical dates, inclusive). Created
    #    while the DAG is paused, then unpaused: Airflow runs a backfill's runs only then.
    #    One run at a time: its sessions would wait for each other's lock anyway.
    standalone.create_backfill(DAG, lambda: standalone.airflow_cli(
        "backfill", "create", "--dag-id", DAG, "--from-date", base.isoformat(),
        "--to-date", (base + 2 * INTERVAL).isoformat(), "--max-active-runs", "1"))
    airflow.set_paused(DAG, False)
    try:
        logical_dates = {base, base + INTERVAL, base + 2 * INTERVAL}
        first = standalone.finish_backfill(DAG, logical_dates)
        assert len(first) == 3 and all(run["state"] == "success" for run in first), first
        sessions = _backfill_sessions(store, {run["dag_run_id"] for run in first})
        assert len(sessions) == 3, sessions  # one session per interval
        for run in first:
            (session,) = [s for s in sessions if s["run_id"] == run["dag_run_id"]]
            start, end = (dt.datetime.fromisoformat(run[k]) for k in ("data_interval_start", "data_interval_end"))
            assert session["session_type"] == "Incremental" and session["status"] in OK, session
            assert "backfill" in session["trigger"].lower()
            assert (session["window_start"], session["window_end"]) == (start - LOOKBACK, end), session
        after_first = store.watermarks("accounts")
        assert not _watermarks_not_behind(marks, after_first)
        # Unpausing also made Airflow start the DAG's latest interval (catchup is off); the full sync
        # synced past it already, so that run records no session (which would read as Scheduled mode).
        standalone.wait_idle(DAG)
        for run in airflow.runs(DAG, run_type="scheduled"):
            if dt.datetime.fromisoformat(run["data_interval_end"]) <= min(marks.values()):
                assert run["state"] == "success", run
                assert airflow.task_state(DAG, run["dag_run_id"], "begin_session") == "skipped"
                assert not [s for s in store.list_sessions(limit=500) if s["run_id"] == run["dag_run_id"]]

        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Backfilled rename'")[
            "totalSize"] == 1
        assert sf.query(f"SELECT COUNT() FROM Zuora__Subscription__c WHERE Zuora__External_Id__c = '{new_version}'")[
            "totalSize"] == 1
        assert sf.query(f"SELECT COUNT() FROM Zuora__Subscription__c WHERE Zuora__External_Id__c = "
                        f"'{subscription['id']}'")["totalSize"] == 0  # the old version is Expired now
        assert sf.query(f"SELECT COUNT() FROM Zuora__PaymentInvoice__c WHERE Zuora__External_Id__c = '{payment}'")[
            "totalSize"] == 0
        problems = compare_scope(standalone.zuora_data_dir, sf, "accounts", _rejected(store), TZ, tmp_path)
        assert not problems, "\n".join(problems[:40])
        assert not duplicate_external_ids(sf, "accounts")
        counts = _counts(sf)

        # 3. The same backfill again, through the REST API: it changes nothing.
        standalone.pause_when_idle(DAG)  # as before the first: no scheduler work on the DAG while creating
        standalone.create_backfill(DAG, lambda: airflow.call("POST", "/api/v2/backfills", json={
            "dag_id": DAG, "from_date": base.isoformat(), "to_date": (base + 2 * INTERVAL).isoformat(),
            "reprocess_behavior": "completed", "max_active_runs": 1}))
        airflow.set_paused(DAG, False)
        second = standalone.finish_backfill(DAG, logical_dates)
        assert len(second) == 3 and all(run["state"] == "success" for run in second), second
        first_ids = {s["id"] for s in sessions}
        rerun = [s for s in _backfill_sessions(store, {run["dag_run_id"] for run in second})
                 if s["id"] not in first_ids]
        assert len(rerun) == 3 and all(s["status"] in OK for s in rerun), rerun
        assert _counts(sf) == counts
        assert not duplicate_external_ids(sf, "accounts")
        problems = compare_scope(standalone.zuora_data_dir, sf, "accounts", _rejected(store), TZ, tmp_path)
        assert not problems, "\n".join(problems[:40])
        assert not _watermarks_not_behind(after_first, store.watermarks("accounts"))
    finally:
        standalone.pause_when_idle(DAG)

