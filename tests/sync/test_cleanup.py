"""The 360 Sync Cleanup with ``dag.test()`` against both sandboxes: dry run, no confirmation (a
failed run with a clear message), the record limit, the lookups at risk, the Product Catalog scope
(its Zuora Quotes warning, and the next catalog sync restoring it), removing exactly the sync's
records of one scope while a sync waits, and the next sync being full and restoring everything
(compared record by record) — also after a cleanup that failed half-way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sync_harness import ROOT, compare_scope, run_dag, running_stack

ACCOUNTS = 25
SEED = 33
TZ = ZoneInfo("America/Los_Angeles")
SCOPE_OBJECTS = ("Zuora__CustomerAccount__c", "Zuora__Subscription__c", "Zuora__SubscriptionRatePlan__c",
                 "Zuora__SubscriptionProductCharge__c", "Zuora__ZInvoice__c", "Zuora__Payment__c",
                 "Zuora__PaymentInvoice__c")
CATALOG_OBJECTS = ("Product2", "zqu__ProductRatePlan__c", "zqu__ProductRatePlanCharge__c")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cleanup"), accounts=ACCOUNTS, seed=SEED) as value:
        assert run_dag("zuora_full_sync") == "success"
        assert run_dag("zuora_product_catalog_sync") == "success"
        value["salesforce"].admin("POST", "schema", {"objects": {"Contract_Note__c": {
            "label": "Contract Note", "keyPrefix": "a9N", "custom": True, "fields": {
                "Name": {"type": "string", "length": 80, "nillable": False, "label": "Name"},
                "Subscription__c": {"type": "reference", "referenceTo": ["Zuora__Subscription__c"],
                                    "relationshipName": "Subscription__r", "label": "Subscription"},
            }}}})
        sf = value["salesforce"].login()
        subscriptions = sf.query("SELECT Id FROM Zuora__Subscription__c LIMIT 2")["records"]
        for i, sub in enumerate(subscriptions):
            sf.Contract_Note__c.create({"Name": f"Note {i}", "Subscription__c": sub["Id"]})
        sf.Account.create({"Name": "Not From Zuora"})
        yield value


def counts(stack) -> dict[str, int]:
    sf = stack["salesforce"].login()
    return {o: sf.query(f"SELECT COUNT() FROM {o}")["totalSize"]
            for o in SCOPE_OBJECTS + CATALOG_OBJECTS + ("Account", "Contract_Note__c")}


def last_session() -> dict:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return store.get_session(store.list_sessions(limit=1)[0]["id"])


def cleanup_conf(**changes) -> dict:
    return {"scope": "accounts_and_related_objects", "dry_run": True, "confirm": False, "hard_delete": False,
            "accept_over_1m_records": False, **changes}


def sync_state() -> tuple[dict, object]:
    """The accounts scope's watermarks and last full sync: what decides whether the next sync is full."""
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return store.watermarks("accounts"), store.last_full_sync("accounts")


def test_dry_run_counts_and_reports_the_lookup_at_risk_and_changes_nothing(stack):
    before, state = counts(stack), sync_state()
    assert state[0] and state[1] is not None
    assert run_dag("zuora_cleanup", conf=cleanup_conf()) == "success"
    assert counts(stack) == before
    assert sync_state() == state  # a dry run resets nothing: the next sync stays incremental
    session = last_session()
    assert session["session_type"] == "Sync Clean-up" and session["dry_run"] is True
    details = session["details"]
    assert details["total"] == sum(before[o] for o in SCOPE_OBJECTS)
    assert {"object": "Contract_Note__c", "field": "Subscription__c", "references": "Zuora__Subscription__c",
            "records": 2} in details["lookups_at_risk"]


def test_dry_run_off_without_confirmation_fails_with_a_clear_message_and_deletes_nothing(stack):
    from airflow.sdk.exceptions import AirflowFailException
    from zuora_sync.operators.cleanup import NOT_CONFIRMED, BeginCleanupOperator
    from zuora_sync.state import StateStore

    before, state, sessions = counts(stack), sync_state(), StateStore.from_airflow().list_sessions(limit=1)
    assert run_dag("zuora_cleanup", conf=cleanup_conf(dry_run=False)) == "failed"  # red, not a green dry run
    assert counts(stack) == before
    assert sync_state() == state
    assert StateStore.from_airflow().list_sessions(limit=1) == sessions  # refused before it began
    assert StateStore.from_airflow().lock_holders() == {}
    # What the begin task's log and the run's failure say:
    with pytest.raises(AirflowFailException) as refused:
        BeginCleanupOperator(task_id="begin_cleanup", scope="accounts_and_related_objects", dry_run=False,
                             confirm=False).execute({})
    assert str(refused.value) == NOT_CONFIRMED
    assert "'confirm' is not ticked" in NOT_CONFIRMED and "nothing was deleted" in NOT_CONFIRMED


def test_above_the_record_limit_it_is_refused_unless_accepted(stack):
    before = counts(stack)
    os.environ["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"] = json.dumps({
        **json.loads(os.environ["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"]), "cleanup_record_limit": 10})
    assert run_dag("zuora_cleanup", conf=cleanup_conf(dry_run=False, confirm=True)) == "failed"
    session = last_session()
    assert session["status"] == "Failure" and "exceed 10" in session["error"]
    assert counts(stack) == before
    from zuora_sync.state import StateStore

    assert StateStore.from_airflow().lock_holders() == {}  # a refused cleanup releases the lock


def test_the_product_catalog_cleanup_warns_about_zuora_quotes_and_the_next_catalog_sync_restores_it(stack):
    """The catalog scope removes exactly the catalog records the sync owns (the Accounts scope and
    records of others stay), says the seed's Zuora Quotes warning in its session, and the catalog
    sync that follows (always full) brings every product, rate plan and charge back."""
    from zuora_sync.operators.cleanup import CATALOG_WARNING
    from zuora_sync.state import StateStore

    before, accounts_state = counts(stack), sync_state()
    assert all(before[o] > 0 for o in CATALOG_OBJECTS)
    conf = cleanup_conf(scope="product_catalog", dry_run=False, confirm=True, accept_over_1m_records=True)
    assert run_dag("zuora_cleanup", conf=conf) == "success"
    cleanup = last_session()
    assert (cleanup["session_type"], cleanup["scope"]) == ("Sync Clean-up", "catalog")
    assert cleanup["details"]["warning"] == CATALOG_WARNING
    assert cleanup["details"]["records_to_remove"] == {"Product": before["Product2"],
                                                       "ProductRatePlan": before["zqu__ProductRatePlan__c"],
                                                       "ProductRatePlanCharge": before["zqu__ProductRatePlanCharge__c"]}
    after = counts(stack)
    assert all(after[o] == 0 for o in CATALOG_OBJECTS), after
    assert {o: after[o] for o in SCOPE_OBJECTS + ("Account", "Contract_Note__c")} == {
        o: before[o] for o in SCOPE_OBJECTS + ("Account", "Contract_Note__c")}
    assert sync_state() == accounts_state  # the Accounts scope's watermarks are not touched
    assert StateStore.from_airflow().watermarks("catalog") == {}

    assert run_dag("zuora_product_catalog_sync") == "success"
    assert last_session()["session_type"] == "Product Catalog"
    assert {o: counts(stack)[o] for o in CATALOG_OBJECTS} == {o: before[o] for o in CATALOG_OBJECTS}
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "catalog", _rejected(), TZ,
                             stack["base"])
    assert not problems, "\n".join(problems[:30])


def test_cleanup_removes_exactly_the_sync_records_while_a_sync_waits_and_the_next_sync_is_full(stack):
    from zuora_sync.state import StateStore

    before = counts(stack)
    store = StateStore.from_airflow()
    # Slow Bulk jobs, so the cleanup is still running when the sync is triggered.
    stack["salesforce"].admin("POST", "faults", {"kind": "bulk_delay", "seconds": 2})
    conf = cleanup_conf(dry_run=False, confirm=True, accept_over_1m_records=True)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
         "from sync_harness import run_dag; print('STATE', run_dag('zuora_cleanup', conf=json.loads(sys.argv[3])))",
         str(ROOT / "tests"), str(Path(__file__).parent), json.dumps(conf)],
        env=dict(os.environ), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "cleanup" not in store.lock_holders():
        assert child.poll() is None and time.monotonic() < deadline, child.stdout.read() if child.poll() is not None else ""
        time.sleep(0.2)
    try:
        assert run_dag("zuora_incremental_sync") == "success"  # waits for the cleanup, then runs
    finally:
        output = child.communicate(timeout=300)[0]
        stack["salesforce"].admin("DELETE", "faults")
    assert "STATE success" in output, output[-3000:]
    sessions = StateStore.from_airflow().list_sessions(limit=3)
    cleanup = next(s for s in sessions if s["session_type"] == "Sync Clean-up")
    sync = sessions[0]
    assert sync["started_at"] >= cleanup["ended_at"]  # the sync waited for the cleanup
    assert sync["session_type"] == "Full"             # the first sync after a cleanup is full
    assert cleanup["status"] in ("Finished", "Finished with Errors")
    assert sum(c["deleted"] for c in cleanup["objects"].values()) > 0
    after = counts(stack)
    assert {o: after[o] for o in CATALOG_OBJECTS} == {o: before[o] for o in CATALOG_OBJECTS}
    assert after["Account"] == before["Account"] and after["Contract_Note__c"] == 2
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "accounts", _rejected(),
                             TZ, stack["base"])
    assert not problems, "\n".join(problems[:30])


def test_a_cleanup_that_fails_after_some_deletes_is_followed_by_a_full_sync_that_restores_everything(stack):
    """The first object's records are deleted, then the next object's delete job is refused and the
    cleanup fails. Its watermarks must be reset all the same: the next scheduled sync is full and
    brings back what was deleted (Zuora 360: "after ... a cancelled Cleanup: resync everything")."""
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    assert sync_state()[1] is not None  # otherwise the next sync would be full anyway
    before = counts(stack)
    sf = stack["salesforce"].login()
    known = {job["id"] for job in sf.restful("jobs/ingest")["records"]}
    refuse_next_upload = {"kind": "status", "status": 400, "error_code": "INVALIDJOBSTATE", "count": 1,
                          "message": "injected: upload refused", "method": "PUT", "path": "/jobs/ingest/[^/]+/batches$"}
    seen: list[dict] = []
    done = threading.Event()

    def refuse_the_second_delete_job() -> None:
        # The first delete job (children first: payment-invoices) waits InProgress for a second; it
        # has uploaded its ids, so the next upload is the second object's delete job.
        while not done.is_set():
            jobs = [j for j in sf.restful("jobs/ingest")["records"] if j["id"] not in known and "elete" in j["operation"]]
            if jobs:
                stack["salesforce"].admin("POST", "faults", refuse_next_upload)
                seen.extend(jobs)
                return
            time.sleep(0.05)

    stack["salesforce"].admin("POST", "faults", {"kind": "bulk_delay", "seconds": 1})
    watcher = threading.Thread(target=refuse_the_second_delete_job, daemon=True)
    watcher.start()
    try:
        state = run_dag("zuora_cleanup", conf=cleanup_conf(dry_run=False, confirm=True, accept_over_1m_records=True))
    finally:
        done.set()
        watcher.join(timeout=30)
        stack["salesforce"].admin("DELETE", "faults")
    assert state == "failed"
    assert [j["object"] for j in seen] == ["Zuora__PaymentInvoice__c"]
    cleanup = last_session()
    assert (cleanup["session_type"], cleanup["status"]) == ("Sync Clean-up", "Failure")
    assert {o: c["deleted"] for o, c in cleanup["objects"].items()} == {
        "InvoicePayment": before["Zuora__PaymentInvoice__c"]}  # one object deleted, then it failed
    after = counts(stack)
    assert after["Zuora__PaymentInvoice__c"] == 0 < before["Zuora__PaymentInvoice__c"]
    assert {o: after[o] for o in SCOPE_OBJECTS[:-1]} == {o: before[o] for o in SCOPE_OBJECTS[:-1]}
    assert store.lock_holders() == {}

    assert run_dag("zuora_incremental_sync") == "success"
    sync = last_session()
    assert sync["session_type"] == "Full", "the first sync after a failed cleanup must be full"
    assert counts(stack)["Zuora__PaymentInvoice__c"] == before["Zuora__PaymentInvoice__c"]
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "accounts", _rejected(),
                             TZ, stack["base"])
    assert not problems, "\n".join(problems[:30])


def _rejected() -> dict[str, set[str]]:
    from zuora_sync.mapping import load_mapping
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}
