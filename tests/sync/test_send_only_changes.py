"""Send only what changed, and a dry run that tells the truth (issue 14, items 2 and 3), end to end:
the real DAGs with ``dag.test()`` against both sandboxes; after each step Salesforce is compared with
Zuora record by record (``sync_harness.compare_scope``), and what a session sent is read back from
Salesforce itself (records whose ``SystemModstamp`` moved), not only from the session's counts.

Each test builds on the ones before (one tenant for the module).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest

from sync_harness import compare_scope, run_dag, running_stack, tenant, zuora_call
from zuora_sync.hashes import EMPTIED, NOT_AS_STAGED

ACCOUNTS = 30
SEED = 33
TZ = ZoneInfo("America/Los_Angeles")
SCOPE = "accounts"
FOUR = ("created", "updated", "unchanged", "removed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("hashes"), accounts=ACCOUNTS, seed=SEED) as value:
        yield value


# -- helpers ---------------------------------------------------------------------------------------------


def store():
    from zuora_sync.state import StateStore

    return StateStore.from_airflow()


def objects():
    from zuora_sync.mapping import load_mapping

    return [load_mapping().get(name) for name in load_mapping().scopes[SCOPE]]


def last_session() -> dict:
    s = store()
    return s.get_session(s.list_sessions(limit=1)[0]["id"])


def check(stack) -> None:
    s = store()
    rejected = {o.name: set(s.open_rejected_ids(o.scope, o.name)) for o in objects()}
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), SCOPE, rejected, TZ, stack["base"])
    assert not problems, "\n".join(problems[:40])


def hashed() -> dict[str, set[str]]:
    return {o.name: set(store().hashed_keys(SCOPE, o.name)) for o in objects()}


def stored_hash(obj: str, key: str) -> str | None:
    return dict(store().stored_hashes(SCOPE, obj, from_key=key, limit=1)).get(key)


def salesforce_now(stack) -> str:
    """The sandbox's clock as SOQL compares it (records written after this moment)."""
    time.sleep(1.1)  # SystemModstamp has whole... milliseconds, but be safe across the boundary
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def written_since(stack, moment: str) -> dict[str, set[str]]:
    """Per object, the keys of the owned records Salesforce changed (created or updated) after ``moment``."""
    sf = stack["salesforce"].login()
    return {o.name: {r[o.key] for r in sf.query_all(
        f"SELECT {o.key} FROM {o.salesforce} WHERE {o.key} != null AND SystemModstamp > {moment}")["records"]}
        for o in objects()}


def synced_accounts(stack) -> list[str]:
    """Accounts Salesforce holds (their hash is stored), in key order."""
    return sorted(hashed()["CustomerAccount"])


def counts(session: dict, obj: str) -> dict[str, int]:
    return {k: session["objects"].get(obj, {}).get(k, 0) for k in FOUR}


def open_rejections() -> dict[str, set[str]]:
    return {o.name: set(store().open_rejected_ids(SCOPE, o.name)) for o in objects()}


def retried_every_session(obj: str) -> int:
    """Open rejections whose reason may lie in Salesforce: neither a malformed Id nor a missing parent
    (in this tenant every missing parent is itself a refused account), so they are sent every session."""
    return sum(1 for code, message, _ in store().open_refusals(SCOPE, obj).values()
               if code != "MALFORMED_ID" and "Foreign key external ID" not in message)


# -- the scenario ------------------------------------------------------------------------------------------


def query_jobs(stack) -> int:
    """Bulk API 2.0 query jobs the Salesforce org has run so far."""
    return len(stack["salesforce"].login().restful("jobs/query")["records"])


def test_the_first_full_sync_sends_everything_and_keeps_a_hash_of_what_salesforce_took(stack):
    assert query_jobs(stack) == 0
    assert run_dag("zuora_full_sync") == "success"
    # The begin task counted no owned record of any object: no extract read Salesforce's keys, and the
    # reconciliation found nothing to remove without a query of its own.
    assert query_jobs(stack) == 0
    first = last_session()
    totals = first["totals"]
    assert totals["upserted"] > 0 and totals["unchanged"] == 0 and totals["updated"] == 0
    assert totals["created"] == totals["upserted"]          # a new org: every record written is created
    keys = hashed()
    assert sum(len(k) for k in keys.values()) == totals["created"]
    rejected = {o.name: set(store().open_rejected_ids(SCOPE, o.name)) for o in objects()}
    assert any(rejected.values()), "the tenant has invalid CRM Ids: their rows are rejected"
    for name, refused in rejected.items():
        assert not refused & keys[name], f"{name}: a refused new row gets no hash"
    check(stack)


def test_a_second_full_sync_of_an_unchanged_tenant_writes_nothing(stack):
    before = hashed()
    rejected_before = open_rejections()
    assert sum(len(k) for k in rejected_before.values()) > sum(retried_every_session(o.name) for o in objects()), \
        "some refused rows wait for their refused parent"
    first_calls = last_session()["api_calls"]["salesforce"]
    moment = salesforce_now(stack)
    assert run_dag("zuora_full_sync") == "success"
    second = last_session()
    assert second["totals"]["upserted"] == 0 and second["totals"]["deleted"] == 0
    assert second["totals"]["created"] == second["totals"]["updated"] == second["totals"]["removed"] == 0
    retried = sum(retried_every_session(o.name) for o in objects())
    waiting = sum(len(k) for k in rejected_before.values()) - retried
    # Unchanged: every record Salesforce holds, and the refused rows that wait (not sent, still rejected).
    assert second["totals"]["unchanged"] == sum(len(k) for k in before.values()) + waiting
    assert not any(written_since(stack, moment).values()), "Salesforce changed no record"
    # Rows refused for a malformed Id, or for a parent that is itself still refused, are not sent again
    # while they are unchanged; the others were retried and refused again. Nothing else was sent.
    assert second["totals"]["failed"] == retried
    assert open_rejections() == rejected_before, "they all stay rejected, with their reasons"
    assert second["api_calls"]["salesforce"] < first_calls
    check(stack)


def test_rerunning_the_same_window_sends_nothing(stack):
    window = {"window_start": "2000-01-01T00:00:00+00:00",
              "window_end": dt.datetime.now(dt.timezone.utc).isoformat()}
    moment = salesforce_now(stack)
    for _ in range(2):
        assert run_dag("zuora_incremental_sync", conf=window) == "success"
        session = last_session()
        assert session["totals"]["upserted"] == 0 and session["totals"]["unchanged"] > 0
    assert not any(written_since(stack, moment).values())
    check(stack)


def test_a_record_deleted_in_salesforce_is_restored_by_the_next_full_sync(stack):
    sf = stack["salesforce"].login()
    record = sf.query("SELECT Id, Zuora__External_Id__c FROM Zuora__ZInvoice__c ORDER BY Name LIMIT 1")["records"][0]
    sf.Zuora__ZInvoice__c.delete(record["Id"])
    assert record["Zuora__External_Id__c"] in hashed()["Invoice"], "its hash is unchanged"
    assert run_dag("zuora_full_sync") == "success"
    session = last_session()
    assert counts(session, "Invoice")["created"] == 1
    assert sf.query(f"SELECT COUNT() FROM Zuora__ZInvoice__c WHERE Zuora__External_Id__c = "
                    f"'{record['Zuora__External_Id__c']}'")["totalSize"] == 1
    check(stack)


def test_a_record_edited_in_salesforce_is_restored_when_the_extract_cannot_read_its_keys(stack):
    """The extracts run beside the preflight and read Salesforce's keys where the stored hashes may
    not describe it (here: a synced account edited in Salesforce). When that read fails, the load
    reads them once the preflight has passed, and the edited record is still restored."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    sf = stack["salesforce"].login()
    record = sf.query("SELECT Id, Name, Zuora__External_Id__c FROM Zuora__CustomerAccount__c "
                      "ORDER BY Name LIMIT 1")["records"][0]
    sf.Zuora__CustomerAccount__c.update(record["Id"], {"Name": "Edited In Salesforce"})
    injected = stack["salesforce"].admin("POST", "faults", {
        "kind": "status", "method": "POST", "path": "/jobs/query$", "status": 400, "count": 1,
        "error_code": "INVALIDJOB", "message": "injected: the extract's query of the keys fails"})
    assert run_dag("zuora_full_sync") == "success"
    assert all(f["id"] != injected["id"] for f in stack["salesforce"].admin("GET", "faults")["request_faults"]), \
        "the keys' query was refused once"
    session = last_session()
    with create_session() as db:
        pushed = {(task, key): value for task, key, value in db.query(XComModel.task_id, XComModel.key, XComModel.value)
                  .filter(XComModel.dag_id == "zuora_full_sync", XComModel.run_id == session["run_id"]).all()}
    extracted, trusted = (pushed[("extract_CustomerAccount", "return_value")], pushed[("begin_session", "hashes_trusted")])
    extracted, trusted = (json.loads(v) if isinstance(v, str) else v for v in (extracted, trusted))
    assert trusted["CustomerAccount"] is False and trusted["Invoice"] is True
    assert extracted["hashes"] == {"trusted": False, "salesforce_keys": None}  # the load read them
    assert counts(session, "CustomerAccount")["updated"] == 1
    assert sf.Zuora__CustomerAccount__c.get(record["Id"])["Name"] == record["Name"]
    check(stack)


def test_a_changed_zuora_record_is_sent_and_nothing_else(stack):
    account = synced_accounts(stack)[0]
    assert zuora_call(stack["zuora"], "POST", "/v1/action/update",
                      {"type": "Account", "objects": [{"Id": account, "Name": "Renamed For The Hash"}]})[0]["Success"]
    moment = salesforce_now(stack)
    assert run_dag("zuora_full_sync") == "success"
    session = last_session()
    assert counts(session, "CustomerAccount") == {
        "created": 0, "updated": 1, "unchanged": len(hashed()["CustomerAccount"]) - 1, "removed": 0}
    assert session["totals"]["upserted"] == 1
    assert written_since(stack, moment) == {o.name: ({account} if o.name == "CustomerAccount" else set())
                                            for o in objects()}
    check(stack)


def test_a_hierarchy_parent_removed_in_zuora_is_cleared_in_salesforce(stack):
    # New records are created without their second-pass links, and an empty one is not sent at all;
    # a record Salesforce holds gets its link written, empty or not.
    sf = stack["salesforce"].login()
    child = sf.query("SELECT Zuora__External_Id__c, Zuora__Parent__c FROM Zuora__CustomerAccount__c "
                     "WHERE Zuora__Parent__c != null ORDER BY Name LIMIT 1")["records"]
    assert child, "the first full sync set a hierarchy parent"
    key = child[0]["Zuora__External_Id__c"]
    assert zuora_call(stack["zuora"], "POST", "/v1/action/update",
                      {"type": "Account", "objects": [{"Id": key, "fieldsToNull": ["ParentId"]}]})[0]["Success"]
    assert run_dag("zuora_full_sync") == "success"
    assert counts(last_session(), "CustomerAccount")["updated"] == 1
    assert sf.query(f"SELECT Zuora__Parent__c FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c = "
                    f"'{key}'")["records"][0]["Zuora__Parent__c"] is None
    check(stack)


def test_a_dry_run_counts_what_would_change_and_the_real_run_does_just_that(stack):
    sf = stack["salesforce"].login()
    # One record to update, one to create again (deleted in Salesforce), one to remove (deleted in Zuora).
    account = synced_accounts(stack)[1]
    zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Account", "objects": [{"Id": account, "Name": "Dry Run"}]})
    payments = sorted(hashed()["Payment"])
    lost = sf.Zuora__Payment__c.get_by_custom_id("Zuora__External_Id__c", payments[0])
    sf.Zuora__Payment__c.delete(lost["Id"])
    gone = tenant(stack, f"SELECT id FROM payment WHERE id = '{payments[1]}'")[0]["id"]
    zuora_call(stack["zuora"], "POST", "/v1/action/delete", {"type": "Payment", "ids": [gone]})

    moment = salesforce_now(stack)
    assert run_dag("zuora_full_sync", conf={"dry_run": True}) == "success"
    dry = last_session()
    assert dry["dry_run"] is True
    assert not any(written_since(stack, moment).values()), "a dry run writes nothing"
    assert counts(dry, "CustomerAccount")["updated"] == 1
    # Rows rejected before for a reason that may lie in Salesforce are sent again: a dry run counts them
    # as created, it cannot know whether Salesforce will refuse them again. The others count unchanged.
    assert counts(dry, "Payment")["created"] == 1 + retried_every_session("Payment")
    assert counts(dry, "Payment")["removed"] >= 1
    # The counts are the session's, so the page and its API show them (webapp.views.session_view).
    from zuora_sync.webapp.views import session_view

    shown = session_view(store().get_session(dry["id"]), dt.datetime.now(dt.timezone.utc), details=True)
    assert {k: shown["objects"]["Payment"][k] for k in FOUR} == counts(dry, "Payment")

    assert run_dag("zuora_full_sync") == "success"
    real = last_session()
    for o in objects():
        expected = {**counts(dry, o.name), "created": counts(dry, o.name)["created"] - real["objects"][o.name]["failed"]}
        assert counts(real, o.name) == expected, o.name
    assert real["totals"]["deleted"] == dry["totals"]["removed"]
    check(stack)


def test_force_sends_every_record(stack):
    before = hashed()
    moment = salesforce_now(stack)
    assert run_dag("zuora_full_sync", conf={"force": True}) == "success"
    session = last_session()
    assert session["details"].get("force") is True
    assert session["totals"]["unchanged"] == 0
    assert session["totals"]["updated"] == sum(len(k) for k in before.values())
    written = written_since(stack, moment)
    for name, keys in before.items():
        assert keys <= written[name], name
    assert hashed() == before, "fresh hashes, the same records"
    check(stack)


def test_a_rejected_row_is_sent_again_until_salesforce_takes_it(stack):
    account = synced_accounts(stack)[2]
    stack["salesforce"].admin("POST", "faults", {
        "kind": "record_error", "object": "Zuora__CustomerAccount__c", "field": "Name", "value": "Refused By Rule",
        "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Not this name"})
    try:
        zuora_call(stack["zuora"], "POST", "/v1/action/update",
                   {"type": "Account", "objects": [{"Id": account, "Name": "Refused By Rule"}]})
        assert run_dag("zuora_incremental_sync") == "success"
        assert account in store().open_rejected_ids(SCOPE, "CustomerAccount")
        # A refused update loses its hash; Salesforce still holds the record (its old values): marked so.
        assert stored_hash("CustomerAccount", account) == NOT_AS_STAGED
    finally:
        stack["salesforce"].admin("DELETE", "faults")
    moment = salesforce_now(stack)
    assert run_dag("zuora_incremental_sync") == "success"      # nothing changed in Zuora since
    assert account in written_since(stack, moment)["CustomerAccount"]
    assert stored_hash("CustomerAccount", account) not in (None, NOT_AS_STAGED)
    check(stack)


def test_children_of_an_account_refused_for_its_crm_id_wait_and_follow_it_once_it_is_fixed(stack):
    """An account refused for its CRM Id (an Id of no Account) is retried every session; its children,
    refused for their missing parent, are not sent while it stays out; fixing the CRM Id in Zuora brings
    the account and its children in."""
    refusals = store().open_refusals(SCOPE, "CustomerAccount")
    account = sorted(refusals)[0]
    children = {o.name: {k for k, (_, message, _) in store().open_refusals(SCOPE, o.name).items()
                         if f"external ID: {account} not found" in message} for o in objects()}
    assert any(children.values()), "the account has children, refused for their missing parent"

    moment = salesforce_now(stack)
    assert run_dag("zuora_incremental_sync", conf={
        "window_start": "2000-01-01T00:00:00+00:00", "window_end": dt.datetime.now(dt.timezone.utc).isoformat()}) \
        == "success"
    session = last_session()
    assert not any(written_since(stack, moment).values()), "nothing changed: nothing sent"
    assert session["totals"]["failed"] == sum(retried_every_session(o.name) for o in objects())
    assert account in open_rejections()["CustomerAccount"]

    crm = stack["salesforce"].login().Account.create({"Name": "CRM Id Fixed"})["id"]
    zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Account", "objects": [{"Id": account, "CrmId": crm}]})
    moment = salesforce_now(stack)
    assert run_dag("zuora_incremental_sync") == "success"
    written = written_since(stack, moment)
    assert account in written["CustomerAccount"]
    still = open_rejections()
    for name, keys in children.items():
        assert keys <= written[name], f"{name}: the children follow their parent"
        assert not keys & still[name]
    check(stack)


def test_a_row_written_with_a_lookup_emptied_waits_for_the_target_and_is_linked_once_it_is_in(stack):
    """A subscription whose invoice owner is not in Salesforce is written without that lookup; it is not
    sent again while the owner stays out; the session after the owner arrives writes the lookup."""
    sf = stack["salesforce"].login()
    rows = tenant(stack, "SELECT s.id, s.name FROM subscription s WHERE s.status = 'Active' AND NOT s.deleted")
    subscription = next(r for r in rows if r["id"] in hashed()["Subscription"])
    owner = tenant(stack, "SELECT id FROM account WHERE crmid IS NULL AND status = 'Active' AND NOT deleted "
                          "ORDER BY accountnumber LIMIT 1")[0]["id"]
    assert zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Subscription", "objects": [
        {"Id": subscription["id"], "InvoiceOwnerId": owner}]})[0]["Success"]
    latest = tenant(stack, f"SELECT id FROM subscription WHERE name = '{subscription['name']}' AND NOT deleted "
                           "ORDER BY version DESC LIMIT 1")[0]["id"]
    assert run_dag("zuora_incremental_sync") == "success"
    mark = stored_hash("Subscription", latest)
    assert mark.startswith(EMPTIED), "written with the lookup emptied: marked so, not hashed as staged"

    moment = salesforce_now(stack)
    assert run_dag("zuora_incremental_sync", conf={
        "window_start": "2000-01-01T00:00:00+00:00", "window_end": dt.datetime.now(dt.timezone.utc).isoformat()}) \
        == "success"
    assert latest not in written_since(stack, moment)["Subscription"], "the owner is still out: not sent again"
    assert stored_hash("Subscription", latest) == mark

    crm = sf.Account.create({"Name": "Owner Arrives"})["id"]
    zuora_call(stack["zuora"], "POST", "/v1/action/update", {"type": "Account", "objects": [{"Id": owner, "CrmId": crm}]})
    assert run_dag("zuora_incremental_sync") == "success"
    record = sf.query(f"SELECT Zuora__InvoiceOwner__r.Zuora__External_Id__c FROM Zuora__Subscription__c "
                      f"WHERE Zuora__External_Id__c = '{latest}'")["records"][0]
    assert (record.get("Zuora__InvoiceOwner__r") or {}).get("Zuora__External_Id__c") == owner
    assert stored_hash("Subscription", latest) not in (None, NOT_AS_STAGED, mark), "written as staged now: hashed"
    assert not stored_hash("Subscription", latest).startswith(EMPTIED)
    check(stack)


def test_a_cleanup_clears_the_hashes_and_the_next_full_sync_sends_everything(stack):
    assert sum(len(k) for k in hashed().values()) > 0
    assert run_dag("zuora_cleanup", conf={"scope": "accounts_and_related_objects", "dry_run": False,
                                          "confirm": True}) == "success"
    assert sum(len(k) for k in hashed().values()) == 0
    assert run_dag("zuora_full_sync") == "success"
    session = last_session()
    assert session["totals"]["unchanged"] == 0
    assert session["totals"]["created"] == session["totals"]["upserted"] > 0
    check(stack)
