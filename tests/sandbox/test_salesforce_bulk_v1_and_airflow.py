"""Bulk API 1.0 on the Salesforce sandbox, through simple-salesforce and Airflow's Salesforce provider.

Every test talks HTTPS to a real sandbox process with the unmodified clients the sync uses:
``sf.bulk.<Object>.*`` (simple-salesforce 1.12), ``SalesforceBulkOperator`` and ``SalesforceHook``
(apache-airflow-providers-salesforce 5.15), and plain ``requests`` for the wire shapes those clients
hide. They pin what the clients depend on: one flat result per input record, in input order, with
Salesforce's ``statusCode`` values; external-id upserts and relationships; batches split by
``batch_size``; queries with deleted records; the provider's retry of ``UNABLE_TO_LOCK_ROW``; and
the Bulk 1.0 error shapes. Batches are processed asynchronously, as in a real org, so
simple-salesforce polls them; its five-second wait between polls is shortened here (``quick_polls``)
so these tests pay for the work, not for the client's patience. XML and CSV jobs, and the batch
states themselves, are in ``test_salesforce_bulk_v1_formats.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from typing import Any

import pytest
import requests
from conftest import SalesforceSandbox
from simple_salesforce.exceptions import SalesforceGeneralError

from sandbox.sfid import make_id

API = "59.0"
CA = "Zuora__CustomerAccount__c"
SUB = "Zuora__Subscription__c"
EXT = "Zuora__External_Id__c"
RESULT_KEYS = {"success", "created", "id", "errors"}

# Well-formed Ids (right prefix and checksum) that name no record: the sandbox never makes a "Y" body.
MISSING_ACCOUNT_ID = make_id("001", "Y00000000001")
MISSING_CA_ID = make_id("a0A", "Y00000000001")


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """simple-salesforce sleeps five seconds before polling an unfinished batch again; make it 50 ms."""
    from simple_salesforce import bulk

    real_sleep = bulk.sleep
    monkeypatch.setattr(bulk, "sleep", lambda seconds: real_sleep(min(seconds, 0.05)))


@pytest.fixture(scope="module")
def account_ids(salesforce_sandbox: SalesforceSandbox) -> list[str]:
    """Ids of seeded Accounts, the masters of customer accounts."""
    records = salesforce_sandbox.login().query("SELECT Id FROM Account ORDER BY Id LIMIT 10")["records"]
    assert len(records) == 10
    return [r["Id"] for r in records]


def customer_accounts(unique: str, count: int, account_ids: list[str], start: int = 0) -> list[dict[str, Any]]:
    return [
        {"Name": f"CA {unique} {i}", EXT: f"{unique}-ca-{i}", "Zuora__Account__c": account_ids[i % len(account_ids)]}
        for i in range(start, start + count)
    ]


def assert_shape(results: list[dict[str, Any]], count: int) -> None:
    assert isinstance(results, list) and len(results) == count
    for result in results:
        assert set(result) == RESULT_KEYS, result
        assert result["success"] is (not result["errors"])
        if result["success"]:
            assert isinstance(result["id"], str) and len(result["id"]) == 18
        else:
            assert result["id"] is None and result["created"] is False
            for error in result["errors"]:
                assert set(error) >= {"statusCode", "message", "fields"}
                assert isinstance(error["fields"], list) and error["message"]


def codes(result: dict[str, Any]) -> list[str]:
    return [e["statusCode"] for e in result["errors"]]


def by_external_id(sf, obj: str, unique: str, fields: str = "Id, Name", all_rows: bool = False) -> dict[str, dict]:
    soql = f"SELECT {EXT}, {fields} FROM {obj} WHERE {EXT} LIKE '{unique}-%'"
    records = (sf.query_all(soql, include_deleted=True) if all_rows else sf.query_all(soql))["records"]
    return {r[EXT]: r for r in records}


class Raw:
    """Plain ``requests`` against ``/services/async``, for the shapes simple-salesforce hides."""

    def __init__(self, sf, sandbox: SalesforceSandbox):
        self.base = f"https://{sf.sf_instance}/services/async/{API}/"
        self.headers = {"X-SFDC-Session": sf.session_id, "Content-Type": "application/json"}
        self.verify = sandbox.ca_bundle

    def __call__(self, method: str, path: str, body: Any = None, data: str | None = None) -> requests.Response:
        return requests.request(
            method, self.base + path, headers=self.headers, json=body, data=data, verify=self.verify, timeout=30
        )

    def open_job(self, obj: str = "Account", operation: str = "insert") -> str:
        response = self("POST", "job", {"operation": operation, "object": obj, "contentType": "JSON"})
        assert response.status_code == 201, response.text
        assert response.json()["state"] == "Open"
        return response.json()["id"]


@pytest.fixture
def raw(sf, sf_sandbox: SalesforceSandbox) -> Raw:
    return Raw(sf, sf_sandbox)


@pytest.fixture
def created_jobs(sf) -> list[str]:
    """Ids of the Bulk 1.0 jobs simple-salesforce creates through ``sf`` (it never returns them)."""
    jobs: list[str] = []

    def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.request.method == "POST" and response.url.endswith("/job") and response.ok:
            jobs.append(response.json()["id"])

    sf.session.hooks["response"].append(remember)
    return jobs


# -- simple-salesforce: DML -----------------------------------------------------------------------


def test_insert_gives_one_flat_result_per_record_in_input_order(sf, unique, account_ids):
    valid = customer_accounts(unique, 3, account_ids)
    payload = [
        valid[0],
        {EXT: f"{unique}-ca-noname", "Zuora__Account__c": account_ids[0]},                       # no Name
        valid[1],
        {"Name": "x", EXT: f"{unique}-ca-bogus", "Zuora__Account__c": account_ids[0], "Bogus__c": 1},
        {"Name": "x", EXT: f"{unique}-ca-malformed", "Zuora__Account__c": "not-an-id"},
        {"Name": "x", EXT: f"{unique}-ca-wrongtype", "Zuora__Account__c": MISSING_CA_ID},       # a0A is not Account
        {"Name": "x", EXT: f"{unique}-ca-missing", "Zuora__Account__c": MISSING_ACCOUNT_ID},
        {"Name": "x", EXT: f"{unique}-ca-nomaster"},                                            # master-detail
        valid[2],
    ]
    results = sf.bulk.Zuora__CustomerAccount__c.insert(payload)

    assert_shape(results, len(payload))
    assert [r["success"] for r in results] == [True, False, True, False, False, False, False, False, True]
    assert all(r["created"] for r in results if r["success"])
    assert codes(results[1]) == ["REQUIRED_FIELD_MISSING"] and results[1]["errors"][0]["fields"] == ["Name"]
    assert codes(results[3]) == ["INVALID_FIELD"] and "Bogus__c" in results[3]["errors"][0]["message"]
    assert codes(results[4]) == ["MALFORMED_ID"] and results[4]["errors"][0]["fields"] == ["Zuora__Account__c"]
    assert codes(results[5]) == ["MALFORMED_ID"]
    assert codes(results[6]) == ["INVALID_CROSS_REFERENCE_KEY"]
    assert results[6]["errors"][0]["fields"] == ["Zuora__Account__c"]
    assert codes(results[7]) == ["REQUIRED_FIELD_MISSING"]
    assert results[7]["errors"][0]["fields"] == ["Zuora__Account__c"]

    stored = by_external_id(sf, CA, unique, "Id, Name, Zuora__Account__c")
    assert set(stored) == {f"{unique}-ca-{i}" for i in range(3)}  # failed rows wrote nothing
    for record, result in zip(valid, [results[0], results[2], results[8]]):
        row = stored[record[EXT]]
        assert row["Id"] == result["id"]
        assert (row["Name"], row["Zuora__Account__c"]) == (record["Name"], record["Zuora__Account__c"])


def test_upsert_by_external_id_creates_then_updates(sf, unique, account_ids):
    payload = customer_accounts(unique, 3, account_ids)
    first = sf.bulk.Zuora__CustomerAccount__c.upsert(payload, EXT)
    assert_shape(first, 3)
    assert [(r["success"], r["created"]) for r in first] == [(True, True)] * 3

    changed = [{EXT: r[EXT], "Name": r["Name"] + " renamed", "Zuora__Status__c": "Active"} for r in payload]
    changed.append({**customer_accounts(unique, 1, account_ids, start=3)[0]})  # a new one in the same batch
    second = sf.bulk.Zuora__CustomerAccount__c.upsert(changed, EXT)
    assert_shape(second, 4)
    assert [(r["success"], r["created"]) for r in second] == [(True, False)] * 3 + [(True, True)]
    assert [r["id"] for r in second[:3]] == [r["id"] for r in first]

    stored = by_external_id(sf, CA, unique, "Id, Name, Zuora__Status__c")
    assert len(stored) == 4
    for record, result in zip(changed[:3], first):
        assert stored[record[EXT]]["Id"] == result["id"]
        assert stored[record[EXT]]["Name"] == record["Name"]
        assert stored[record[EXT]]["Zuora__Status__c"] == "Active"


def test_upsert_with_a_relationship_by_external_id(sf, unique, account_ids):
    parents = sf.bulk.Zuora__CustomerAccount__c.upsert(customer_accounts(unique, 2, account_ids), EXT)
    assert [r["success"] for r in parents] == [True, True]
    payload = [
        {"Name": "Sub 0", EXT: f"{unique}-sub-0", "Zuora__CustomerAccount__r": {EXT: f"{unique}-ca-0"}},
        {"Name": "Sub 1", EXT: f"{unique}-sub-1", "Zuora__CustomerAccount__r": {EXT: f"{unique}-ca-nowhere"}},
        {"Name": "Sub 2", EXT: f"{unique}-sub-2", "Zuora__CustomerAccount__r": {EXT: f"{unique}-CA-1"}},  # case-blind
    ]
    results = sf.bulk.Zuora__Subscription__c.upsert(payload, EXT)
    assert_shape(results, 3)
    assert [(r["success"], r["created"]) for r in results] == [(True, True), (False, False), (True, True)]
    assert codes(results[1]) == ["INVALID_FIELD"]  # Salesforce's code for a foreign key not found
    assert results[1]["errors"][0]["fields"] == ["Zuora__CustomerAccount__c"]
    assert f"{unique}-ca-nowhere" in results[1]["errors"][0]["message"]

    fields = "Id, Zuora__CustomerAccount__c, Zuora__CustomerAccount__r.Zuora__External_Id__c"
    stored = by_external_id(sf, SUB, unique, fields)
    assert set(stored) == {f"{unique}-sub-0", f"{unique}-sub-2"}
    assert stored[f"{unique}-sub-0"]["Zuora__CustomerAccount__c"] == parents[0]["id"]
    assert stored[f"{unique}-sub-2"]["Zuora__CustomerAccount__c"] == parents[1]["id"]
    assert stored[f"{unique}-sub-0"]["Zuora__CustomerAccount__r"][EXT] == f"{unique}-ca-0"

    # Re-pointing the subscription is an update through the same relationship.
    moved = sf.bulk.Zuora__Subscription__c.upsert(
        [{EXT: f"{unique}-sub-0", "Zuora__CustomerAccount__r": {EXT: f"{unique}-ca-1"}}], EXT
    )
    assert moved == [{"success": True, "created": False, "id": results[0]["id"], "errors": []}]
    assert by_external_id(sf, SUB, unique, fields)[f"{unique}-sub-0"]["Zuora__CustomerAccount__c"] == parents[1]["id"]


def test_duplicate_values_are_per_record_errors(sf, unique, account_ids):
    existing = sf.bulk.Zuora__CustomerAccount__c.insert(customer_accounts(unique, 1, account_ids))
    assert existing[0]["success"]
    clash = {"Name": "clash", EXT: f"{unique}-ca-0", "Zuora__Account__c": account_ids[0]}
    inserted = sf.bulk.Zuora__CustomerAccount__c.insert([clash, *customer_accounts(unique, 1, account_ids, start=1)])
    assert_shape(inserted, 2)
    assert codes(inserted[0]) == ["DUPLICATE_VALUE"] and inserted[0]["errors"][0]["fields"] == [EXT]
    assert existing[0]["id"] in inserted[0]["errors"][0]["message"]
    assert inserted[1]["success"]

    twice = customer_accounts(unique, 1, account_ids, start=2) * 2
    upserted = sf.bulk.Zuora__CustomerAccount__c.upsert(twice, EXT)
    assert_shape(upserted, 2)
    assert [codes(r) for r in upserted] == [["DUPLICATE_VALUE"], ["DUPLICATE_VALUE"]]
    assert f"{unique}-ca-2" not in by_external_id(sf, CA, unique)


def test_update_delete_hard_delete_and_entity_is_deleted(sf, unique, account_ids):
    ids = [r["id"] for r in sf.bulk.Zuora__CustomerAccount__c.insert(customer_accounts(unique, 4, account_ids))]
    updated = sf.bulk.Zuora__CustomerAccount__c.update([
        {"Id": ids[0], "Name": "renamed", "Zuora__Balance__c": 12.5},
        {"Id": "not-an-id", "Name": "x"},
        {"Id": MISSING_CA_ID, "Name": "x"},
        {"Id": ids[1], "Name": None},  # a required field cannot be cleared
    ])
    assert_shape(updated, 4)
    assert updated[0] == {"success": True, "created": False, "id": ids[0], "errors": []}
    assert codes(updated[1]) == ["MALFORMED_ID"]
    assert codes(updated[2]) == ["INVALID_CROSS_REFERENCE_KEY"]
    assert codes(updated[3]) == ["REQUIRED_FIELD_MISSING"]
    assert sf.Zuora__CustomerAccount__c.get(ids[0])["Zuora__Balance__c"] == 12.5

    deleted = sf.bulk.Zuora__CustomerAccount__c.delete([{"Id": ids[0]}, {"Id": ids[1]}, {"Id": MISSING_CA_ID}])
    assert_shape(deleted, 3)
    assert deleted[:2] == [{"success": True, "created": False, "id": i, "errors": []} for i in ids[:2]]
    assert codes(deleted[2]) == ["INVALID_CROSS_REFERENCE_KEY"]

    again = sf.bulk.Zuora__CustomerAccount__c.delete([{"Id": ids[0]}])
    assert codes(again[0]) == ["ENTITY_IS_DELETED"]
    stale = sf.bulk.Zuora__CustomerAccount__c.update([{"Id": ids[1], "Name": "too late"}])
    assert codes(stale[0]) == ["ENTITY_IS_DELETED"]

    purged = sf.bulk.Zuora__CustomerAccount__c.hard_delete([{"Id": ids[2]}])
    assert purged == [{"success": True, "created": False, "id": ids[2], "errors": []}]

    live = by_external_id(sf, CA, unique)
    everything = by_external_id(sf, CA, unique, "Id, IsDeleted", all_rows=True)
    assert {r["Id"] for r in live.values()} == {ids[3]}
    assert {r["Id"]: r["IsDeleted"] for r in everything.values()} == {ids[0]: True, ids[1]: True, ids[3]: False}


def test_delete_cascades_to_details_and_clears_lookups(sf, unique, account_ids):
    parent = sf.bulk.Zuora__CustomerAccount__c.insert(customer_accounts(unique, 1, account_ids))[0]["id"]
    payment = sf.bulk.Zuora__Payment__c.insert(
        [{"Name": "P", EXT: f"{unique}-pay-0", "Zuora__BillingAccount__r": {EXT: f"{unique}-ca-0"}}]
    )[0]
    applied = sf.bulk.Zuora__PaymentInvoice__c.insert(
        [{"Name": "PI", EXT: f"{unique}-pi-0", "Zuora__Payment__c": payment["id"]}]
    )[0]
    subscription = sf.bulk.Zuora__Subscription__c.insert(
        [{"Name": "S", EXT: f"{unique}-sub-0", "Zuora__CustomerAccount__c": parent}]
    )[0]
    assert payment["success"] and applied["success"] and subscription["success"]

    assert sf.bulk.Zuora__CustomerAccount__c.delete([{"Id": parent}])[0]["success"]
    # Master-detail children go to the recycle bin with their master; lookups to it are cleared.
    payments = by_external_id(sf, "Zuora__Payment__c", unique, "Id, IsDeleted", all_rows=True)
    assert payments[f"{unique}-pay-0"]["IsDeleted"] is True
    applications = by_external_id(sf, "Zuora__PaymentInvoice__c", unique, "Id, IsDeleted", all_rows=True)
    assert applications[f"{unique}-pi-0"]["IsDeleted"] is True
    subscriptions = by_external_id(sf, SUB, unique, "Id, IsDeleted, Zuora__CustomerAccount__c")
    assert subscriptions[f"{unique}-sub-0"]["Zuora__CustomerAccount__c"] is None

    # A reference to a record in the recycle bin is ENTITY_IS_DELETED.
    orphan = sf.bulk.Zuora__Subscription__c.insert(
        [{"Name": "S2", EXT: f"{unique}-sub-1", "Zuora__CustomerAccount__c": parent}]
    )[0]
    assert codes(orphan) == ["ENTITY_IS_DELETED"] and orphan["errors"][0]["fields"] == ["Zuora__CustomerAccount__c"]


def test_reference_given_both_as_id_and_relationship_is_invalid_field(sf, unique, account_ids):
    name = sf.Account.get(account_ids[0])["Name"]
    record = {"Name": "both", EXT: f"{unique}-ca-both", "Zuora__Account__c": account_ids[1], "Zuora__Account__r": {"Name": name}}
    result = sf.bulk.Zuora__CustomerAccount__c.insert([record])[0]
    assert codes(result) == ["INVALID_FIELD"]
    assert "Cannot specify both" in result["errors"][0]["message"]


def test_batch_size_splits_a_job_into_batches(sf, raw, created_jobs, unique, account_ids):
    payload = customer_accounts(unique, 25, account_ids)
    results = sf.bulk.Zuora__CustomerAccount__c.insert(payload, batch_size=10)
    assert_shape(results, 25)
    assert all(r["success"] and r["created"] for r in results)
    stored = by_external_id(sf, CA, unique)
    assert [r["id"] for r in results] == [stored[p[EXT]]["Id"] for p in payload]  # input order across batches

    assert len(created_jobs) == 1
    job_id = created_jobs[0]
    batches = raw("GET", f"job/{job_id}/batch")
    assert batches.status_code == 200
    infos = batches.json()["batchInfo"]
    assert [b["state"] for b in infos] == ["Completed"] * 3
    assert [b["numberRecordsProcessed"] for b in infos] == [10, 10, 5]
    assert all(b["jobId"] == job_id and b["id"].startswith("751") for b in infos)
    # Each batch's request holds its slice of the payload, in order.
    requested = [raw("GET", f"job/{job_id}/batch/{b['id']}/request").json() for b in infos]
    assert [r[EXT] for chunk in requested for r in chunk] == [p[EXT] for p in payload]

    job = raw("GET", f"job/{job_id}").json()
    assert job["state"] == "Closed"  # simple-salesforce closes the job last
    assert (job["operation"], job["object"], job["contentType"]) == ("insert", CA, "JSON")
    assert (job["numberBatchesTotal"], job["numberBatchesCompleted"], job["numberBatchesFailed"]) == (3, 3, 0)
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (25, 0)


def test_failed_records_are_counted_on_batch_and_job(sf, raw, created_jobs, unique, account_ids):
    payload = customer_accounts(unique, 3, account_ids) + [{"Name": "orphan", EXT: f"{unique}-ca-orphan"}]
    results = sf.bulk.Zuora__CustomerAccount__c.insert(payload, batch_size=2, use_serial=True)
    assert [r["success"] for r in results] == [True, True, True, False]
    job = raw("GET", f"job/{created_jobs[0]}").json()
    assert job["concurrencyMode"] == "Serial"  # simple-salesforce sends concurrencyMode 1
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (4, 1)
    infos = raw("GET", f"job/{created_jobs[0]}/batch").json()["batchInfo"]
    assert [(b["numberRecordsProcessed"], b["numberRecordsFailed"]) for b in infos] == [(2, 0), (2, 1)]


# -- simple-salesforce: queries -----------------------------------------------------------------


def epoch_millis(rest_datetime: str) -> int:
    return round(dt.datetime.strptime(rest_datetime, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def test_bulk_query_and_query_all(sf, unique, account_ids):
    ids = [r["id"] for r in sf.bulk.Zuora__CustomerAccount__c.insert(customer_accounts(unique, 3, account_ids))]
    sf.bulk.Zuora__CustomerAccount__c.update([{"Id": ids[0], "Zuora__LastInvoiceDate__c": "2024-02-29"}])
    sf.bulk.Zuora__CustomerAccount__c.delete([{"Id": ids[2]}])
    soql = (
        f"SELECT Id, Name, IsDeleted, CreatedDate, Zuora__LastInvoiceDate__c, Zuora__Account__r.Name "
        f"FROM {CA} WHERE {EXT} LIKE '{unique}-%' ORDER BY {EXT}"
    )
    live = sf.bulk.Zuora__CustomerAccount__c.query(soql)
    everything = sf.bulk.Zuora__CustomerAccount__c.query_all(soql)

    assert [r["Id"] for r in live] == ids[:2]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [(ids[0], False), (ids[1], False), (ids[2], True)]
    first = live[0]
    assert first["attributes"] == {"type": CA, "url": f"/services/data/v{API}/sobjects/{CA}/{ids[0]}"}
    assert first["Name"] == f"CA {unique} 0"
    account = sf.Account.get(account_ids[0])
    assert first["Zuora__Account__r"]["Name"] == account["Name"]
    assert first["Zuora__Account__r"]["attributes"]["type"] == "Account"

    # Bulk 1.0 JSON gives dates and datetimes as epoch milliseconds, unlike REST (simple-salesforce#290).
    rest = sf.Zuora__CustomerAccount__c.get(ids[0])
    assert first["CreatedDate"] == epoch_millis(rest["CreatedDate"])
    assert first["Zuora__LastInvoiceDate__c"] == round(dt.datetime(2024, 2, 29, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert live[1]["Zuora__LastInvoiceDate__c"] is None


@pytest.mark.parametrize(
    ("obj", "soql", "expected"),
    [
        ("Account", "SELECT Idd FROM Account", "No such column 'Idd'"),
        ("Account", "SELECT COUNT() FROM Account", "FUNCTIONALITY_NOT_ENABLED"),
        ("Account", "SELECT Id FROM Account LIMIT 5 OFFSET 5", "FUNCTIONALITY_NOT_ENABLED"),
        ("Account", f"SELECT Id FROM {CA}", "INVALID_TYPE"),
    ],
    ids=["unknown-column", "count", "offset", "other-object"],
)
def test_bulk_query_that_bulk_cannot_run_fails_its_batch(sf, obj, soql, expected):
    with pytest.raises(SalesforceGeneralError) as caught:
        getattr(sf.bulk, obj).query(soql)
    # simple-salesforce raises with the batch's stateMessage as the content.
    assert caught.value.status == "Failed"
    assert caught.value.content.startswith("InvalidBatch : Failed to process query: ")
    assert expected in caught.value.content


# -- Airflow SalesforceBulkOperator ---------------------------------------------------------------


@pytest.fixture
def airflow_conn(sf_sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sf_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])


def run_operator(operation: str, payload: list[dict], object_name: str = CA, **kwargs: Any) -> list[dict]:
    from airflow.providers.salesforce.operators.bulk import SalesforceBulkOperator

    op = SalesforceBulkOperator(
        task_id=f"bulk_{operation}", operation=operation, object_name=object_name, payload=payload, **kwargs
    )
    return op.execute(context={})


def test_operator_insert_upsert_update_delete_hard_delete(airflow_conn, sf, unique, account_ids):
    inserted = run_operator("insert", customer_accounts(unique, 2, account_ids))
    assert_shape(inserted, 2)
    assert [(r["success"], r["created"]) for r in inserted] == [(True, True)] * 2
    ids = [r["id"] for r in inserted]
    assert [r["Id"] for r in by_external_id(sf, CA, unique).values()] == ids

    upserted = run_operator(
        "upsert",
        [{EXT: f"{unique}-ca-0", "Name": "upserted"}, *customer_accounts(unique, 1, account_ids, start=2)],
        external_id_field=EXT,
    )
    assert_shape(upserted, 2)
    assert [(r["success"], r["created"]) for r in upserted] == [(True, False), (True, True)]
    assert upserted[0]["id"] == ids[0]
    ids.append(upserted[1]["id"])

    updated = run_operator("update", [{"Id": ids[1], "Name": "updated"}, {"Id": MISSING_CA_ID, "Name": "x"}])
    assert_shape(updated, 2)
    assert updated[0] == {"success": True, "created": False, "id": ids[1], "errors": []}
    assert codes(updated[1]) == ["INVALID_CROSS_REFERENCE_KEY"]
    stored = by_external_id(sf, CA, unique)
    assert {r["Id"]: r["Name"] for r in stored.values()} == {
        ids[0]: "upserted", ids[1]: "updated", ids[2]: f"CA {unique} 2"
    }

    deleted = run_operator("delete", [{"Id": ids[0]}])
    assert deleted == [{"success": True, "created": False, "id": ids[0], "errors": []}]
    purged = run_operator("hard_delete", [{"Id": ids[1]}])
    assert purged == [{"success": True, "created": False, "id": ids[1], "errors": []}]
    everything = by_external_id(sf, CA, unique, "Id, IsDeleted", all_rows=True)
    assert {r["Id"]: r["IsDeleted"] for r in everything.values()} == {ids[0]: True, ids[2]: False}


def test_operator_upsert_with_relationship(airflow_conn, sf, unique, account_ids):
    parent = run_operator("upsert", customer_accounts(unique, 1, account_ids), external_id_field=EXT)[0]
    results = run_operator(
        "upsert",
        [{"Name": "Sub", EXT: f"{unique}-sub-0", "Zuora__CustomerAccount__r": {EXT: f"{unique}-ca-0"}}],
        object_name=SUB, external_id_field=EXT,
    )
    assert [(r["success"], r["created"]) for r in results] == [(True, True)]
    stored = by_external_id(sf, SUB, unique, "Id, Zuora__CustomerAccount__c")
    assert stored[f"{unique}-sub-0"]["Zuora__CustomerAccount__c"] == parent["id"]


def lock_row(sandbox: SalesforceSandbox, field: str, value: str) -> None:
    sandbox.admin("POST", "faults", {"kind": "lock_row", "object": CA, "field": field, "value": value, "times": 1})


def record_rules(sandbox: SalesforceSandbox) -> list[dict]:
    return sandbox.admin("GET", "faults")["record_rules"]


def test_operator_retries_a_locked_row(airflow_conn, sf, sf_sandbox, unique, account_ids):
    lock_row(sf_sandbox, EXT, f"{unique}-ca-1")
    results = run_operator(
        "upsert", customer_accounts(unique, 3, account_ids), external_id_field=EXT, max_retries=1, bulk_retry_delay=0
    )
    assert record_rules(sf_sandbox) == []  # the lock was hit once, on the first attempt
    assert_shape(results, 3)
    assert [(r["success"], r["created"]) for r in results] == [(True, True)] * 3
    stored = by_external_id(sf, CA, unique)
    assert [stored[f"{unique}-ca-{i}"]["Id"] for i in range(3)] == [r["id"] for r in results]

    # An update by Id locked the same way is retried too.
    lock_row(sf_sandbox, "Id", results[2]["id"])
    updated = run_operator(
        "update", [{"Id": r["id"], "Name": "after lock"} for r in results], max_retries=2, bulk_retry_delay=0
    )
    assert record_rules(sf_sandbox) == []
    assert [r["success"] for r in updated] == [True] * 3
    assert {r["Name"] for r in by_external_id(sf, CA, unique).values()} == {"after lock"}


def test_operator_without_retries_reports_the_locked_row(airflow_conn, sf, sf_sandbox, unique, account_ids):
    lock_row(sf_sandbox, EXT, f"{unique}-ca-1")
    results = run_operator("upsert", customer_accounts(unique, 3, account_ids), external_id_field=EXT, max_retries=0)
    assert_shape(results, 3)
    assert [r["success"] for r in results] == [True, False, True]
    assert codes(results[1]) == ["UNABLE_TO_LOCK_ROW"]
    assert set(by_external_id(sf, CA, unique)) == {f"{unique}-ca-0", f"{unique}-ca-2"}


def test_operator_does_not_retry_permanent_errors(airflow_conn, sf_sandbox, unique, account_ids):
    payload = [{"Name": "orphan", EXT: f"{unique}-ca-orphan"}]  # no master: REQUIRED_FIELD_MISSING
    results = run_operator("insert", payload, max_retries=3, bulk_retry_delay=0)
    assert [codes(r) for r in results] == [["REQUIRED_FIELD_MISSING"]]


# -- Airflow SalesforceHook -----------------------------------------------------------------------


def test_hook_make_query_include_deleted_and_write_object_to_file(airflow_conn, sf, unique, account_ids, tmp_path):
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    ids = [r["id"] for r in sf.bulk.Zuora__CustomerAccount__c.insert(customer_accounts(unique, 3, account_ids))]
    sf.bulk.Zuora__CustomerAccount__c.delete([{"Id": ids[1]}])
    hook = SalesforceHook()
    soql = f"SELECT Id, Name, IsDeleted, CreatedDate FROM {CA} WHERE {EXT} LIKE '{unique}-%' ORDER BY {EXT}"

    live = hook.make_query(soql)
    assert (live["totalSize"], live["done"]) == (2, True)
    assert [r["Id"] for r in live["records"]] == [ids[0], ids[2]]
    everything = hook.make_query(soql, include_deleted=True)
    assert everything["totalSize"] == 3
    assert [(r["Id"], r["IsDeleted"]) for r in everything["records"]] == [
        (ids[0], False), (ids[1], True), (ids[2], False)
    ]

    target = tmp_path / "customer_accounts.csv"
    frame = hook.write_object_to_file(everything["records"], str(target))
    assert len(frame) == 3
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "name", "isdeleted", "createddate"]  # the hook lower-cases columns
    assert [(r["id"], r["name"], r["isdeleted"]) for r in rows] == [
        (ids[0], f"CA {unique} 0", "False"), (ids[1], f"CA {unique} 1", "True"), (ids[2], f"CA {unique} 2", "False")
    ]
    assert rows[0]["createddate"] == everything["records"][0]["CreatedDate"]

    stamped = hook.write_object_to_file(everything["records"], str(tmp_path / "stamped.csv"), coerce_to_timestamp=True)
    assert stamped["createddate"].tolist()[0] == pytest.approx(epoch_millis(everything["records"][0]["CreatedDate"]) / 1000)


# -- Bulk API 1.0 error shapes ----------------------------------------------------------------------


def assert_bulk_error(response: requests.Response, code: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"exceptionCode", "exceptionMessage"}
    assert body["exceptionCode"] == code and body["exceptionMessage"]
    return body


def test_unknown_object_is_invalid_job(raw):
    body = assert_bulk_error(raw("POST", "job", {"operation": "insert", "object": "Nope__c", "contentType": "JSON"}), "InvalidJob")
    assert "Nope__c" in body["exceptionMessage"]
    assert_bulk_error(raw("POST", "job", {"operation": "merge", "object": "Account", "contentType": "JSON"}), "InvalidJob")
    assert_bulk_error(raw("POST", "job", data="{not json"), "InvalidJob")
    upsert_on_plain_field = {"operation": "upsert", "object": CA, "contentType": "JSON", "externalIdFieldName": "Name"}
    assert_bulk_error(raw("POST", "job", upsert_on_plain_field), "InvalidJob")
    assert_bulk_error(raw("GET", f"job/{make_id('750', 'Y00000000001')}"), "InvalidJob")


def test_batch_on_a_closed_job_is_invalid_job_state(raw):
    job_id = raw.open_job()
    closed = raw("POST", f"job/{job_id}", {"state": "Closed"})
    assert closed.status_code == 200 and closed.json()["state"] == "Closed"
    body = assert_bulk_error(raw("POST", f"job/{job_id}/batch", [{"Name": "late"}]), "InvalidJobState")
    assert "Closed" in body["exceptionMessage"]
    assert_bulk_error(raw("POST", f"job/{job_id}", {"state": "Closed"}), "InvalidJobState")
    assert raw("GET", f"job/{job_id}").json()["numberBatchesTotal"] == 0


def finished(raw: Raw, job_id: str, batch_id: str) -> dict:
    """The batch's info once it is no longer queued or in progress."""
    deadline = time.monotonic() + 60
    while True:
        info = raw("GET", f"job/{job_id}/batch/{batch_id}").json()
        if info["state"] not in ("Queued", "InProgress") or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def test_invalid_json_batch_fails_with_a_state_message(raw):
    job_id = raw.open_job()
    posted = raw("POST", f"job/{job_id}/batch", data='[{"Name": "broken"')
    assert posted.status_code == 201 and posted.json()["state"] == "Queued"  # read later, by the worker
    batch_id = posted.json()["id"]
    info = finished(raw, job_id, batch_id)
    assert info["state"] == "Failed"
    assert info["stateMessage"].startswith("InvalidBatch : ")
    assert assert_bulk_error(raw("GET", f"job/{job_id}/batch/{batch_id}/result"), "InvalidBatch")

    not_a_list = raw("POST", f"job/{job_id}/batch", {"Name": "one record, not an array"}).json()
    not_a_list = finished(raw, job_id, not_a_list["id"])
    assert not_a_list["state"] == "Failed" and not_a_list["stateMessage"]

    job = raw("GET", f"job/{job_id}").json()
    assert (job["numberBatchesTotal"], job["numberBatchesFailed"], job["numberBatchesCompleted"]) == (2, 2, 0)
    assert_bulk_error(raw("GET", f"job/{job_id}/batch/{make_id('751', 'Y00000000001')}"), "InvalidBatch")
