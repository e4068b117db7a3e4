"""Every record Salesforce rejected is retried in the next session: all of them, whatever their number
(issue 11: at most 1,000 per object were, in a fixed order, silently; permanent rejections starved
the rest)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from sync_harness import compare_scope, run_dag, running_stack

ACCOUNTS = 20
SEED = 45
TZ = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("retries"), accounts=ACCOUNTS, seed=SEED) as value:
        yield value


def test_every_rejected_record_is_retried_in_pages(stack, monkeypatch, capfd):
    import zuora_sync.queries
    from zuora_sync.mapping import load_mapping
    from zuora_sync.state import StateStore

    # A validation rule refuses every per-user charge: many records of one object.
    stack["salesforce"].admin("POST", "faults", {
        "kind": "record_error", "object": "Zuora__SubscriptionProductCharge__c", "field": "Zuora__UOM__c",
        "value": "User", "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "No per-user charges"})
    try:
        assert run_dag("zuora_full_sync") == "success"
    finally:
        stack["salesforce"].admin("DELETE", "faults")
    store = StateStore.from_airflow()
    refused = store.open_rejected_ids("accounts", "RatePlanCharge")
    page = 2
    assert len(refused) > 3 * page, "the tenant should have many per-user charges"
    # Pages as small as this make several statements of a handful of rows (1,000 ids each in real life).
    monkeypatch.setattr(zuora_sync.queries, "MAX_IN_LIST", page)
    capfd.readouterr()

    assert run_dag("zuora_incremental_sync") == "success"  # nothing changed in Zuora: only the retries

    still = store.open_rejected_ids("accounts", "RatePlanCharge")
    assert len(refused) - len(still) > 2 * page  # fixed: more than two pages' worth
    last = store.list_sessions(limit=1)[0]["id"]
    reasons = {r["external_id"]: r["error_code"] for r in store.rejected_for_session(last)
               if r["object"] == "RatePlanCharge"}
    # What is left was tried again and is refused for another reason (the tenant's invalid CRM Ids), or
    # waits, unchanged, for its parent that is still refused (not sent: refused again for sure).
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" not in reasons.values()
    assert set(reasons) <= set(still)
    waiting = store.open_refusals("accounts", "RatePlanCharge")
    assert all("Foreign key external ID" in waiting[k][1] or waiting[k][0] == "MALFORMED_ID"
               for k in set(still) - set(reasons))
    out, err = capfd.readouterr()
    assert f"Extracting again all {len(refused)} RatePlanCharge record(s) Salesforce rejected before" in out + err
    rejected = {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "accounts", rejected, TZ,
                             stack["base"])
    assert not problems, "\n".join(problems[:40])
