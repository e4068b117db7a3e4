"""The sync DAGs end to end with ``dag.test()`` against both sandboxes. After every step,
Salesforce is compared with Zuora record by record: every mapped field, every link, every filter
rule; whatever qualifies but is missing must be recorded as rejected, with Salesforce's reason."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sync_harness import compare_scope, run_dag, run_dag_tasks, running_stack, tenant, zuora_call

ACCOUNTS = 40
SEED = 21
TZ = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("e2e"), accounts=ACCOUNTS, seed=SEED) as value:
        yield value


def rejected_keys() -> dict[str, set[str]]:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    from zuora_sync.mapping import load_mapping

    return {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}


def check(stack, scope: str = "accounts") -> None:
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), scope, rejected_keys(), TZ,
                             stack["base"])
    assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems)} problems" if len(problems) > 40 else "")


def last_session() -> dict:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return store.get_session(store.list_sessions(limit=1)[0]["id"])


def run_of(session: dict):
    """The Airflow DAG run of a session, from Airflow's metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as db:
        run = db.query(DagRun).filter(DagRun.dag_id == session["dag_id"], DagRun.run_id == session["run_id"]).one()
        return {"state": str(run.state), "note": run.note, "id": run.id}


def assert_run_tells(session: dict) -> str | None:
    """Honest run states: the session's DAG run is green unless the session failed, and carries a
    note exactly when the session did not simply finish, saying how it ended (docs/operations.md)."""
    run = run_of(session)
    assert run["state"] == ("failed" if session["status"] == "Failure" else "success"), (run, session["status"])
    if session["status"] == "Finished":
        assert run["note"] is None, run
    else:
        assert run["note"].startswith(f"**Zuora sync: {session['status']}** — [session {session['id']}]("), run
        assert f"?session={session['id']})" in run["note"]
    return run["note"]


def asset_events(session: dict) -> dict[tuple[str, str], dict]:
    """(task id, asset URI) → the asset event's extra, for every event the session's DAG run recorded."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as db:
        rows = db.query(AssetEvent.source_task_id, AssetModel.uri, AssetEvent.extra).join(
            AssetModel, AssetModel.id == AssetEvent.asset_id).filter(
            AssetEvent.source_dag_id == session["dag_id"], AssetEvent.source_run_id == session["run_id"]).all()
    events = {(task, uri): extra for task, uri, extra in rows}
    assert len(events) == len(rows), "one event per task and asset"
    return events


def test_full_sync(stack):
    from zuora_sync.links import session_page_url
    from zuora_sync.mapping import load_mapping

    assert run_dag("zuora_full_sync") == "success"
    session = last_session()
    assert session["session_type"] == "Full"
    assert session["status"] == "Finished with Errors"  # the tenant's deliberately invalid CRM Ids
    check(stack)

    # Honest run state: green (the rejected records are retried as soon as a retry can succeed), with a note.
    note = assert_run_tells(session)
    assert f"{session['rejected']:,} records rejected by Salesforce: " in note
    for name, counts in session["objects"].items():
        assert (f"{name} {counts['failed']:,}" in note) == bool(counts["failed"]), (name, note)

    # Lineage: every extract, load and delete task's asset event, with the session's counts.
    events = asset_events(session)
    objects = load_mapping().scope_objects("accounts")
    assert len(events) == 3 * len(objects)  # each object's extract, load, and its part of the delete task
    for obj in objects:
        counts = session["objects"][obj.name]
        read = events[(f"extract_{obj.name}", f"zuora://zuora_default/{obj.table}")]
        assert read["session_id"] == session["id"] and read["mode"] == "full" and read["dry_run"] is False
        assert read["data_query_job"]
        written = f"salesforce://salesforce_default/{obj.salesforce}"
        load, delete = events[(f"load_{obj.name}", written)], events[("delete_removed", written)]
        assert (load["operation"], load["upserted"]) == ("upsert", counts["upserted"])
        assert load["extracted"] == counts["extracted"] > 0  # the load reads the rows (pipelined)
        assert (delete["operation"], delete["reconciled"], delete["removed"]) == ("delete", True, counts["deleted"])
        assert load["rejected"] + delete["rejected"] == counts["failed"]

    # Every task of the session links to it on the Zuora Sync page (the links Airflow stored).
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as db:
        links = dict(db.query(XComModel.task_id, XComModel.value).filter(
            XComModel.dag_run_id == run_of(session)["id"], XComModel.key == "_link_SyncSessionLink").all())
    assert set(links) == {"begin_session", "preflight", "end_session"} | {
        f"{step}_{o.name}" for o in objects for step in ("extract", "load")} | {"delete_removed"}
    assert set(links.values()) == {session_page_url(session["id"])}


# -- helpers for changing Zuora through its API and peeking at the stores ---------------------------


def synced_account(stack) -> dict:
    """A live account that qualifies (valid CRM Id, not canceled) and has an Active latest subscription."""
    from sandbox.crm_accounts import crm_account_id

    rows = tenant(stack, "SELECT a.id, a.crmid, s.id AS sub, s.name AS subname FROM account a JOIN subscription s "
                         "ON s.accountid = a.id WHERE a.status = 'Active' AND s.status = 'Active' AND NOT a.deleted "
                         "AND NOT s.deleted AND a.crmid IS NOT NULL ORDER BY a.accountnumber")
    valid = {crm_account_id(SEED, i) for i in range(ACCOUNTS)}
    by_account: dict[str, dict] = {}
    for row in rows:
        if row["crmid"] in valid:
            by_account.setdefault(row["id"], row)  # one row per account
    return list(by_account.values())


def rejected_codes() -> dict[str, str]:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    session = store.list_sessions(limit=1)[0]["id"]
    return {r["external_id"]: r["error_code"] for r in store.rejected_for_session(session)}


def rejected_messages() -> list[str]:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    session = store.list_sessions(limit=1)[0]["id"]
    return [f"{r['object']} {r['external_id']}: {r['error_code']} {r['message']}" for r in store.rejected_for_session(session)]


def sf_count(stack, soql: str) -> int:
    return stack["salesforce"].login().query(soql)["totalSize"]


# -- the scenario, step by step (each test builds on the ones before) -----------------------------------


def test_full_sync_rejections_are_the_invalid_crm_ids(stack):
    codes = set(rejected_codes().values())
    assert codes <= {"INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID", "INVALID_FIELD"}, codes
    assert "INVALID_CROSS_REFERENCE_KEY" in codes or "MALFORMED_ID" in codes


def test_changes_in_zuora_reach_salesforce_with_an_incremental_sync(stack):
    candidates = synced_account(stack)
    first, second = candidates[0], candidates[1]
    zuora_call(stack["zuora"], "POST", "/v1/action/update",
               {"type": "Account", "objects": [{"Id": first["id"], "Name": "Renamed In Zuora"}]})
    amended = zuora_call(stack["zuora"], "POST", "/v1/action/update",
                         {"type": "Subscription", "objects": [{"Id": first["sub"], "AutoRenew": False}]})
    assert amended[0]["Success"]
    zuora_call(stack["zuora"], "PUT", f"/v1/subscriptions/{second['subname']}/cancel",
               {"cancellationPolicy": "SpecificDate", "cancellationEffectiveDate": "2025-12-31"})
    invoice = zuora_call(stack["zuora"], "POST", "/v1/action/create", {"type": "Invoice", "objects": [{
        "AccountId": first["id"], "InvoiceNumber": "INV-E2E-1", "Status": "Posted", "InvoiceDate": "2025-11-01",
        "Amount": 120.5, "AmountWithoutTax": 100.5, "TaxAmount": 20, "Balance": 0}]})[0]["Id"]
    payment = zuora_call(stack["zuora"], "POST", "/v1/action/create", {"type": "Payment", "objects": [{
        "AccountId": first["id"], "PaymentNumber": "P-E2E-1", "Amount": 120.5, "EffectiveDate": "2025-11-02",
        "Status": "Processed", "Type": "External"}]})[0]["Id"]
    zuora_call(stack["zuora"], "POST", "/v1/action/create", {"type": "InvoicePayment", "objects": [{
        "InvoiceId": invoice, "PaymentId": payment, "Amount": 120.5}]})
    doomed = tenant(stack, f"SELECT id FROM invoicepayment WHERE invoiceid IN (SELECT id FROM invoice WHERE "
                           f"accountid = '{second['id']}' AND status = 'Posted') AND NOT deleted LIMIT 1")
    if doomed:
        assert zuora_call(stack["zuora"], "POST", "/v1/action/delete",
                          {"type": "InvoicePayment", "ids": [doomed[0]["id"]]})[0]["success"]

    assert run_dag("zuora_incremental_sync") == "success"
    session = last_session()
    assert session["session_type"] == "Incremental" and session["status"] in ("Finished", "Finished with Errors")
    check(stack)
    assert sf_count(stack, "SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed In Zuora'") == 1
    assert sf_count(stack, "SELECT COUNT() FROM Zuora__PaymentInvoice__c WHERE Zuora__Invoice__r.Name = 'INV-E2E-1'") == 1
    if doomed:
        assert sf_count(stack, f"SELECT COUNT() FROM Zuora__PaymentInvoice__c WHERE Zuora__External_Id__c = "
                               f"'{doomed[0]['id']}'") == 0


def latest_subscription(stack, name: str) -> dict:
    return tenant(stack, f"SELECT id, invoiceownerid FROM subscription WHERE name = '{name}' AND NOT deleted "
                         "ORDER BY version DESC LIMIT 1")[0]


def sf_invoice_owner(stack, subscription_id: str) -> str | None:
    record = stack["salesforce"].login().query(
        "SELECT Zuora__InvoiceOwner__r.Zuora__External_Id__c FROM Zuora__Subscription__c "
        f"WHERE Zuora__External_Id__c = '{subscription_id}'")["records"]
    assert record, f"subscription {subscription_id} is not in Salesforce"
    owner = record[0]["Zuora__InvoiceOwner__r"]
    return owner["Zuora__External_Id__c"] if owner else None


def test_an_invoice_owner_that_is_not_synced_leaves_the_lookup_empty_not_the_subscription_rejected(stack):
    """Issue 11: the subscription of a synced account is synced whoever owns its invoices; the lookup
    to the owner is written once the owner is synced (here: it gets a CRM Id)."""
    subscription = synced_account(stack)[6]
    unsynced = tenant(stack, "SELECT id FROM account WHERE crmid IS NULL AND status = 'Active' AND NOT deleted "
                             "ORDER BY accountnumber LIMIT 1")[0]["id"]
    assert zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Subscription", "objects": [
        {"Id": subscription["sub"], "InvoiceOwnerId": unsynced}]})[0]["Success"]
    latest = latest_subscription(stack, subscription["subname"])
    assert latest["invoiceownerid"] == unsynced

    assert run_dag("zuora_incremental_sync") == "success"
    assert latest["id"] not in rejected_codes()
    assert not [m for m in rejected_messages() if "InvoiceOwner" in m]
    assert sf_invoice_owner(stack, latest["id"]) is None
    check(stack)

    crm = stack["salesforce"].login().Account.create({"Name": "Owner Now In Salesforce"})["id"]
    zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Account", "objects": [{"Id": unsynced, "CrmId": crm}]})
    assert run_dag("zuora_incremental_sync") == "success"
    assert sf_invoice_owner(stack, latest["id"]) == unsynced
    check(stack)


def test_a_rejected_invoice_owner_is_linked_once_salesforce_takes_it(stack):
    """The owner becomes synced (it gets a CRM Id) but Salesforce refuses it (a validation rule): the
    subscription is synced without the lookup, while the owner's own subscriptions, invoices and
    payments (their customer account is their parent) are rejected with it. The session that
    finally syncs the owner writes the lookup and all of those, though nothing changed in Zuora since."""
    subscription = synced_account(stack)[8]
    owner = tenant(stack, "SELECT id FROM account WHERE crmid IS NULL AND status = 'Active' AND NOT deleted "
                          "ORDER BY accountnumber LIMIT 1 OFFSET 1")[0]["id"]
    assert zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Subscription", "objects": [
        {"Id": subscription["sub"], "InvoiceOwnerId": owner}]})[0]["Success"]
    latest = latest_subscription(stack, subscription["subname"])
    crm = stack["salesforce"].login().Account.create({"Name": "Refused Owner's Account"})["id"]
    stack["salesforce"].admin("POST", "faults", {
        "kind": "record_error", "object": "Zuora__CustomerAccount__c", "field": "Name", "value": "Owner Refused",
        "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Not this name"})
    try:
        zuora_call(stack["zuora"], "POST", "/v1/action/update",
                   {"type": "Account", "objects": [{"Id": owner, "Name": "Owner Refused", "CrmId": crm}]})
        assert run_dag("zuora_incremental_sync") == "success"
        codes = rejected_codes()
        assert codes[owner] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert latest["id"] not in codes
        assert sf_invoice_owner(stack, latest["id"]) is None
    finally:
        stack["salesforce"].admin("DELETE", "faults")
    assert run_dag("zuora_incremental_sync") == "success"  # nothing changed in Zuora since
    assert sf_invoice_owner(stack, latest["id"]) == owner
    assert owner not in rejected_codes()
    check(stack)


def test_rerunning_the_same_window_duplicates_nothing(stack):
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    watermark = min(store.watermarks("accounts").values())
    before = {o: sf_count(stack, f"SELECT COUNT() FROM {o}") for o in (
        "Zuora__CustomerAccount__c", "Zuora__Subscription__c", "Zuora__SubscriptionProductCharge__c", "Zuora__ZInvoice__c")}
    window = {"window_start": (watermark - dt.timedelta(days=1)).isoformat(), "window_end": watermark.isoformat()}
    for _ in range(2):
        assert run_dag("zuora_incremental_sync", conf=window) == "success"
    after = {o: sf_count(stack, f"SELECT COUNT() FROM {o}") for o in before}
    assert after == before
    check(stack)


def test_backfill_windows_restore_lost_records(stack):
    """Two past windows re-synced exactly (as a backfill's runs do) bring back what was lost in Salesforce."""
    sf = stack["salesforce"].login()
    lost = []
    for record in sf.query("SELECT Id, Zuora__External_Id__c FROM Zuora__ZInvoice__c ORDER BY Name LIMIT 2")["records"]:
        sf.Zuora__ZInvoice__c.delete(record["Id"])
        lost += tenant(stack, f"SELECT id, updateddate FROM invoice WHERE id = '{record['Zuora__External_Id__c']}'")
    assert len(lost) == 2
    for row in lost:
        moment = dt.datetime.fromisoformat(row["updateddate"]).replace(tzinfo=dt.timezone.utc)
        window = {"window_start": (moment - dt.timedelta(hours=1)).isoformat(),
                  "window_end": (moment + dt.timedelta(hours=1)).isoformat()}
        assert run_dag("zuora_incremental_sync", conf=window) == "success"
    check(stack)


def test_on_demand_sync_of_two_accounts(stack):
    sf = stack["salesforce"].login()
    chosen = synced_account(stack)[2:4]
    numbers = []
    for row in chosen:
        account = tenant(stack, f"SELECT accountnumber FROM account WHERE id = '{row['id']}'")[0]
        numbers.append(account["accountnumber"])
        record = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", row["id"])
        sf.Zuora__CustomerAccount__c.update(record["Id"], {"Zuora__Status__c": "Tampered"})
    assert run_dag("zuora_on_demand_sync", conf={"accounts": [numbers[0], chosen[1]["id"]]}) == "success"
    assert last_session()["session_type"] == "On-demand"
    assert last_session()["status"] == "Finished"  # two accounts with valid CRM Ids: nothing to tell
    assert_run_tells(last_session())
    assert sf_count(stack, "SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Zuora__Status__c = 'Tampered'") == 0
    check(stack)


def test_product_catalog_sync_flags_deleted_products(stack):
    assert run_dag("zuora_product_catalog_sync") == "success"
    check(stack, "catalog")
    unused = tenant(stack, "SELECT p.id FROM product p WHERE NOT p.deleted AND p.id NOT IN (SELECT prp.productid FROM "
                           "productrateplan prp WHERE NOT prp.deleted) LIMIT 1")
    if not unused:
        prp = tenant(stack, "SELECT id FROM productrateplan WHERE id NOT IN (SELECT productrateplanid FROM rateplan "
                            "WHERE productrateplanid IS NOT NULL) AND NOT deleted LIMIT 1")
        pytest.skip("no catalog item is free to delete in this tenant") if not prp else None
        target, kind = prp[0]["id"], "ProductRatePlan"
    else:
        target, kind = unused[0]["id"], "Product"
    assert zuora_call(stack["zuora"], "POST", "/v1/action/delete", {"type": kind, "ids": [target]})[0]["success"]
    assert run_dag("zuora_product_catalog_sync") == "success"
    check(stack, "catalog")
    sobject = "Product2" if kind == "Product" else "zqu__ProductRatePlan__c"
    assert sf_count(stack, f"SELECT COUNT() FROM {sobject} WHERE zqu__ZuoraId__c = '{target}' AND zqu__Deleted__c = true") == 1


def test_rejected_rows_are_kept_and_synced_once_fixed(stack):
    account = synced_account(stack)[4]
    stack["salesforce"].admin("POST", "faults", {
        "kind": "record_error", "object": "Zuora__CustomerAccount__c", "field": "Name", "value": "Rejected Name",
        "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Names like this are not allowed"})
    try:
        zuora_call(stack["zuora"], "POST", "/v1/action/update",
                   {"type": "Account", "objects": [{"Id": account["id"], "Name": "Rejected Name"}]})
        assert run_dag("zuora_incremental_sync") == "success"
        session = last_session()
        assert session["status"] == "Finished with Errors"
        assert rejected_codes()[account["id"]] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    finally:
        stack["salesforce"].admin("DELETE", "faults")
    assert run_dag("zuora_incremental_sync") == "success"  # retried although unchanged in Zuora
    assert sf_count(stack, "SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Rejected Name'") == 1
    from zuora_sync.state import StateStore

    assert account["id"] not in StateStore.from_airflow().open_rejected_ids("accounts", "CustomerAccount")
    check(stack)


def test_a_session_waits_deferred_while_another_holds_the_lock(stack):
    import threading
    import time

    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    assert store.try_lock(["cleanup"], "zuora_cleanup/manual__x")[0]  # a cleanup excludes every sync
    seen: dict = {}

    def release_later() -> None:
        time.sleep(5)
        seen["holders"] = store.lock_holders()
        store.release_lock("zuora_cleanup/manual__x")

    releaser = threading.Thread(target=release_later)
    started = time.monotonic()
    releaser.start()
    state = run_dag("zuora_incremental_sync")  # dag.test() runs the deferral's trigger inline
    releaser.join()
    assert state == "success"
    assert time.monotonic() - started >= 5, "the session did not wait for the lock"
    assert seen["holders"] == {"cleanup": "zuora_cleanup/manual__x"}  # nobody else took it meanwhile
    assert store.lock_holders() == {}
    check(stack)


def test_a_lock_left_by_a_dag_run_that_ended_is_taken_over_at_once(stack):
    """A run marked failed (or successful) by hand skips its end task: its session stays open and
    its lock held. The next session takes the lock over at once, not after the lease (six hours),
    and records the stranded session as a Failure."""
    import threading

    from zuora_sync.planning import holder_name
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    assert run_dag("zuora_incremental_sync") == "success"
    ended = last_session()
    # What marking that run failed in the middle of its session would have left behind.
    stranded = store.start_session(session_type=ended["session_type"], scope="accounts", trigger=ended["trigger"],
                                   dag_id=ended["dag_id"], run_id=ended["run_id"], window_start=None, window_end=None)
    holder = holder_name(ended["dag_id"], ended["run_id"])
    assert store.try_lock(["accounts"], holder)[0]
    give_up = threading.Timer(120, store.release_lock, [holder])  # no takeover: the wait ends, the asserts fail
    give_up.start()
    try:
        assert run_dag("zuora_incremental_sync") == "success"
    finally:
        give_up.cancel()
    session = store.get_session(stranded)
    assert session["status"] == "Failure", session
    assert session["error"].startswith("interrupted: its DAG run ended (success) without the session ending"), session
    assert last_session()["status"] in ("Finished", "Finished with Errors")
    assert store.lock_holders() == {}
    check(stack)


def test_a_low_salesforce_api_budget_stops_the_session_and_the_next_one_resumes(stack):
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    before = store.watermarks("accounts")
    account = synced_account(stack)[5]
    zuora_call(stack["zuora"], "POST", "/v1/action/update",
               {"type": "Account", "objects": [{"Id": account["id"], "Name": "Renamed Under Budget"}]})
    stack["salesforce"].admin("POST", "limits", {"daily_api_requests": 1000, "used": 990})  # below the 500 reserve
    try:
        state, tasks = run_dag_tasks("zuora_incremental_sync")
        assert state == "success"  # stopping is not failing
        assert last_session()["status"] == "Stopped"
        assert "Salesforce" in assert_run_tells(last_session())  # the reason it stopped
        assert not asset_events(last_session())  # nothing was written: no asset changed
        # Stopped before writing: the sync tasks skip (none of them fails, or retries, for nothing).
        assert {s for t, s in tasks.items() if t != "end_session"} == {"skipped"}, tasks
        assert store.watermarks("accounts") == before
        assert sf_count(stack, "SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed Under Budget'") == 0
    finally:
        stack["salesforce"].admin("POST", "limits", {"daily_api_requests": 100000, "used": 0})
    assert run_dag("zuora_incremental_sync") == "success"
    assert sf_count(stack, "SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed Under Budget'") == 1
    check(stack)
