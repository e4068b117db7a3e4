"""A first full sync into an org that already holds Zuora records (issue 11, item 5), and a mapping
that does not fit the org.

Reconciliation: records the sync owns (they carry the external id) whose Zuora source is gone or
no longer qualifies are removed (catalog records flagged deleted), stale ones are overwritten, and
records the sync does not own are left alone. Preflight: a mapping naming a field the org lacks,
a field it cannot write and a relationship to a field that is not an external id fails before
anything is written, with every problem named by object and field.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from sandbox.crm_accounts import crm_account_id
from sync_harness import compare_scope, run_dag, running_stack, tenant_rows

ACCOUNTS = 20
SEED = 44
TZ = ZoneInfo("America/Los_Angeles")
GONE = "2c92c0f9000000000000000000000001"  # a Zuora Id this tenant never had


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("reconcile"), accounts=ACCOUNTS, seed=SEED) as value:
        yield value


def rejected() -> dict[str, set[str]]:
    from zuora_sync.mapping import load_mapping
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}


def ids(sf, sobject: str, where: str) -> list[str]:
    return [r["Id"] for r in sf.query_all(f"SELECT Id FROM {sobject} WHERE {where}")["records"]]


def test_a_first_full_sync_reconciles_an_org_that_already_holds_records(stack):
    sf = stack["salesforce"].login()
    zuora_dir = stack["zuora"].data_dir
    crm = crm_account_id(SEED, 0)
    # Owned, source gone: a customer account with a payment (master-detail child) and a subscription.
    gone = sf.Zuora__CustomerAccount__c.create({"Name": "Gone From Zuora", "Zuora__External_Id__c": GONE,
                                                "Zuora__Account__c": crm})["id"]
    sf.Zuora__Payment__c.create({"Name": "P-GONE", "Zuora__External_Id__c": GONE[:-1] + "2",
                                 "Zuora__BillingAccount__c": gone})
    sf.Zuora__Subscription__c.create({"Name": "S-GONE", "Zuora__External_Id__c": GONE[:-1] + "3",
                                      "Zuora__CustomerAccount__c": gone})
    # Owned, source no longer qualifying: an old version of an amended subscription, a draft invoice.
    expired = tenant_rows(zuora_dir, "SELECT id FROM subscription WHERE status = 'Expired' AND NOT deleted "
                                     "ORDER BY id LIMIT 1")
    draft = tenant_rows(zuora_dir, "SELECT id FROM invoice WHERE status <> 'Posted' AND NOT deleted ORDER BY id LIMIT 1")
    assert expired and draft, "the tenant should have an old subscription version and an unposted invoice"
    sf.Zuora__Subscription__c.create({"Name": "Old Version", "Zuora__External_Id__c": expired[0]["id"]})
    sf.Zuora__ZInvoice__c.create({"Name": "Draft", "Zuora__External_Id__c": draft[0]["id"]})
    # Owned, stale: a qualifying account with wrong values.
    live = tenant_rows(zuora_dir, f"SELECT id, name FROM account WHERE crmid = '{crm}'")[0]
    sf.Zuora__CustomerAccount__c.create({"Name": "Stale Name", "Zuora__External_Id__c": live["id"],
                                         "Zuora__Account__c": crm, "Zuora__Balance__c": 999999})
    # Not owned (no external id): left alone.
    mine = sf.Zuora__CustomerAccount__c.create({"Name": "Made In Salesforce", "Zuora__Account__c": crm})["id"]
    # The catalog: an owned product gone from Zuora is flagged; a product of the org's own is left alone.
    sf.Product2.create({"Name": "Retired Product", "zqu__ZuoraId__c": GONE})
    own_product = sf.Product2.create({"Name": "Sold Outside Zuora"})["id"]

    assert run_dag("zuora_full_sync") == "success"
    assert run_dag("zuora_product_catalog_sync") == "success"

    assert ids(sf, "Zuora__CustomerAccount__c", f"Zuora__External_Id__c = '{GONE}'") == []
    assert ids(sf, "Zuora__Payment__c", "Name = 'P-GONE'") == []
    assert ids(sf, "Zuora__Subscription__c", "Name IN ('S-GONE', 'Old Version')") == []
    assert ids(sf, "Zuora__ZInvoice__c", "Name = 'Draft'") == []
    record = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", live["id"])
    assert record["Name"] == live["name"] and record["Zuora__Balance__c"] != 999999
    assert ids(sf, "Zuora__CustomerAccount__c", "Name = 'Made In Salesforce'") == [mine]
    assert ids(sf, "Product2", f"zqu__ZuoraId__c = '{GONE}' AND zqu__Deleted__c = true") != []
    assert sf.Product2.get(own_product)["zqu__Deleted__c"] is False
    problems = []
    for scope in ("accounts", "catalog"):
        problems += compare_scope(zuora_dir, sf, scope, rejected(), TZ, stack["base"])
    assert not problems, "\n".join(problems[:40])


def test_a_mapping_that_does_not_fit_the_org_fails_before_anything_is_written(stack, tmp_path, monkeypatch, capfd):
    user_mapping = tmp_path / "mapping.yaml"
    user_mapping.write_text(
        "objects:\n"
        "  CustomerAccount:\n"
        "    fields:\n"
        "      Zuora__Segment__c: account.name\n"                     # no such field in the org
        "      CreatedDate: account.createddate\n"                    # a field nobody can write
        "  Subscription:\n"
        "    links:\n"
        "      Zuora__CustomerAccount__r.Zuora__External_Id__c: null\n"
        "      Zuora__CustomerAccount__r.Zuora__AccountNumber__c: account.accountnumber\n"  # not an external id
    )
    monkeypatch.setenv("ZUORA_SYNC_MAPPING", str(user_mapping))
    zuora_change = tenant_rows(stack["zuora"].data_dir, "SELECT id FROM account WHERE crmid IS NOT NULL "
                                                       "AND status = 'Active' ORDER BY id LIMIT 1")[0]["id"]
    sf_before = stack["salesforce"].admin("GET", "counts")
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    marks = store.watermarks("accounts")
    capfd.readouterr()
    assert run_dag("zuora_full_sync") == "failed"
    assert stack["salesforce"].admin("GET", "counts") == sf_before  # nothing written
    assert store.watermarks("accounts") == marks
    session = store.get_session(store.list_sessions(limit=1)[0]["id"])
    assert session["status"] == "Failure"
    assert session["error"].startswith("The mapping does not fit this Salesforce org (nothing was written): ")
    out, err = capfd.readouterr()
    text = out + err
    for expected in (
        "object CustomerAccount → Zuora__CustomerAccount__c, field Zuora__Segment__c: no such field in Salesforce",
        "object CustomerAccount → Zuora__CustomerAccount__c, field CreatedDate: not writable",
        "object Subscription → Zuora__Subscription__c, field Zuora__CustomerAccount__r.Zuora__AccountNumber__c: "
        "Zuora__AccountNumber__c is not an external id of Zuora__CustomerAccount__c",
    ):
        assert expected in text, f"missing from the preflight's error: {expected}\n{text[-3000:]}"
        assert expected in session["error"]
    assert str(user_mapping) in text  # the file is named
    assert zuora_change  # the tenant has qualifying accounts: the run had something it could have written
