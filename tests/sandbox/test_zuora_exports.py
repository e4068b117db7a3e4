"""Bulk exports from the Zuora sandbox: the export object (``/v1/object/export``, files by
``/v1/files/{id}``) and AQuA (``/v1/batch-query/``, files by ``/v1/file/{id}``), stateless and
stateful with deleted records, through zuora-sdk and raw HTTP, checked against the tenant's
database and, strictly, against zuora-sdk's models (:mod:`openapi_shapes`)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import time
import zipfile
from zoneinfo import ZoneInfo

import pytest
import requests
import zuora_sdk
from conftest import ZuoraSandbox, start_zuora_sandbox
from openapi_shapes import assert_model_shape
from tenant_rows import tenant_rows as stored
from zuora_sdk.models import (
    CreateBatchQueryJobRequest,
    CreateBatchQueryRequest,
    DeletedRecord,
    ProxyActiondeleteRequest,
    ProxyActionupdateRequest,
    ZObjectUpdate,
)

ACCOUNTS = 6
SEED = 13
PACIFIC = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> ZuoraSandbox:
    started = start_zuora_sandbox(tmp_path_factory.mktemp("exports") / "tenant", accounts=ACCOUNTS, seed=SEED)
    yield started
    started.stop()


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def pacific(stored_text: str) -> str:
    moment = dt.datetime.fromisoformat(stored_text).replace(tzinfo=dt.UTC).astimezone(PACIFIC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- the export object ------------------------------------------------------------------------------------


def export(sandbox: ZuoraSandbox, auth: dict, **body) -> dict:
    """Create an export, wait for it to finish, and return its final record."""
    created = requests.post(f"{sandbox.url}/v1/object/export", headers=auth, json=body, timeout=30)
    assert created.status_code == 200, created.text
    assert set(created.json()) == {"Success", "Id"} and created.json()["Success"] is True
    deadline = time.monotonic() + 60
    while True:
        info = requests.get(f"{sandbox.url}/v1/object/export/{created.json()['Id']}", headers=auth, timeout=30).json()
        if info["Status"] not in ("Pending", "Processing") or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def test_export_object_with_a_join_order_and_zip(sandbox, sdk, auth):
    query = ("select Subscription.Name, Subscription.Status, Account.Name, Account.AccountNumber, UpdatedDate "
             "from Subscription where Status = 'Active' order by Name desc")
    info = export(sandbox, auth, Format="csv", Query=query, Name="active subscriptions")
    assert info["Status"] == "Completed" and info["Query"] == query and info["Format"] == "csv"
    rows = table(bytes(sdk.files_api().get_files(info["FileId"])).decode())
    expected = stored(sandbox, "SELECT s.name, s.status, s.updateddate, a.name AS account, a.accountnumber "
                               "FROM subscription s JOIN account a ON a.id = s.accountid "
                               "WHERE s.deleted = 0 AND s.status = 'Active' ORDER BY s.name DESC, s.rowid")
    assert info["Size"] == len(rows) == len(expected) > 0
    assert list(rows[0]) == ["Subscription.Name", "Subscription.Status", "Account.Name", "Account.AccountNumber",
                             "Subscription.UpdatedDate"]
    assert [(r["Subscription.Name"], r["Account.Name"], r["Account.AccountNumber"], r["Subscription.UpdatedDate"])
            for r in rows] == [(e["name"], e["account"], e["accountnumber"], pacific(e["updateddate"])) for e in expected]

    zipped = export(sandbox, auth, Format="csv", Query="select * from Product", Zip=True)
    archive = zipfile.ZipFile(io.BytesIO(requests.get(f"{sandbox.url}/v1/files/{zipped['FileId']}",
                                                      headers=auth, timeout=30).content))
    products = table(archive.read(archive.namelist()[0]).decode())
    assert len(products) == zipped["Size"] == len(stored(sandbox, "SELECT id FROM product WHERE deleted = 0"))
    assert {"Product.Id", "Product.Name", "Product.SKU", "Product.UpdatedDate"} <= set(products[0])


def test_export_object_refusals(sandbox, auth):
    def refused(body: dict) -> dict:
        response = requests.post(f"{sandbox.url}/v1/object/export", headers=auth, json=body, timeout=30)
        assert response.status_code == 400
        assert_model_shape(response.json(), zuora_sdk.ProxyBadRequestResponse)
        return response.json()["Errors"][0]

    assert refused({"Format": "csv", "Query": "select Id from Nope"})["Code"] == "INVALID_VALUE"
    assert refused({"Format": "csv", "Query": "select Nope from Account"})["Message"] == "invalid field for query: Account.Nope"
    assert refused({"Format": "csv", "Query": "select Id, BillToContact.Nope from Account"})["Code"] == "INVALID_VALUE"
    assert refused({"Format": "csv"})["Code"] == "MISSING_REQUIRED_VALUE"
    missing = requests.get(f"{sandbox.url}/v1/object/export/0123456789abcdef0123456789abcdef", headers=auth, timeout=30)
    assert (missing.status_code, missing.json()) == (404, {"records": [], "size": 0, "done": True})
    assert requests.get(f"{sandbox.url}/v1/files/0123456789abcdef0123456789abcdef", headers=auth, timeout=30).status_code == 404


# -- AQuA ------------------------------------------------------------------------------------------------


def aqua_job(sdk, **request) -> tuple[zuora_sdk.CreateBatchQueryJobResponse, zuora_sdk.GetBatchQueryJobResponse]:
    api = sdk.aggregate_queries_api()
    submitted = api.create_batch_query(CreateBatchQueryJobRequest(**request))
    deadline = time.monotonic() + 60
    while True:
        job = api.get_batch_query_job(submitted.id)
        if job.status in ("completed", "aborted") or time.monotonic() > deadline:
            return submitted, job
        time.sleep(0.05)


def aqua_file(sandbox: ZuoraSandbox, auth: dict, file_id: str) -> bytes:
    response = requests.get(f"{sandbox.url}/v1/file/{file_id}", headers=auth, timeout=30)
    assert response.status_code == 200
    return response.content


def test_stateless_aqua_with_labels_api_names_and_gzip(sandbox, sdk, auth):
    accounts = "select Id, Name, Balance, AutoPay from Account where Status = 'Active'"
    submitted, job = aqua_job(sdk, format="csv", version="1.0", name="stateless", queries=[
        CreateBatchQueryRequest(name="Account", query=accounts, type="zoql"),
        CreateBatchQueryRequest(name="Plans", query="select ProductRatePlan.Name, Product.Name from ProductRatePlan",
                                type="zoqlexport"),
    ])
    assert (submitted.status, [b.status for b in submitted.batches]) == ("submitted", ["pending", "pending"])
    assert job.status == "completed" and all(b.status == "completed" and b.full for b in job.batches)
    raw_job = requests.get(f"{sandbox.url}/v1/batch-query/jobs/{job.id}", headers=auth, timeout=30).json()
    assert_model_shape(raw_job, zuora_sdk.GetBatchQueryJobResponse)
    assert dt.datetime.strptime(raw_job["startTime"], "%Y-%m-%d %H:%M:%S")

    rows = table(aqua_file(sandbox, auth, job.batches[0].file_id).decode())
    expected = stored(sandbox, "SELECT id, name, autopay FROM account WHERE deleted = 0 AND status = 'Active' ORDER BY rowid")
    assert job.batches[0].record_count == len(rows) == len(expected)
    assert list(rows[0]) == ["Account: Id", "Account: Name", "Account: Balance", "Account: Auto Pay"]  # labels
    assert [(r["Account: Id"], r["Account: Name"], r["Account: Auto Pay"]) for r in rows] == [
        (e["id"], e["name"], "true" if e["autopay"] else "false") for e in expected]
    plans = table(aqua_file(sandbox, auth, job.batches[1].file_id).decode())
    assert list(plans[0]) == ["Product Rate Plan: Name", "Product: Name"]

    _submitted, zipped = aqua_job(sdk, format="GZIP", version="1.0", use_query_labels=True, queries=[
        CreateBatchQueryRequest(name="Account", query=accounts, type="zoqlexport")])
    unzipped = table(gzip.decompress(aqua_file(sandbox, auth, zipped.batches[0].file_id)).decode())
    assert list(unzipped[0]) == ["Account.Id", "Account.Name", "Account.Balance", "Account.AutoPay"]  # API names
    assert [r["Account.Id"] for r in unzipped] == [e["id"] for e in expected]


def test_stateful_aqua_goes_full_then_incremental_with_deleted_records(sandbox, sdk, auth):
    query = "select Id, InvoiceNumber, Status, Amount from Invoice"
    request = dict(format="csv", version="1.1", name="stateful", partner="salesforce", project="00D000000000001",
                   use_query_labels=True, queries=[CreateBatchQueryRequest(
                       name="Invoice", query=query, type="zoqlexport",
                       deleted=DeletedRecord(column="Deleted", format="Boolean"))])
    _submitted, first = aqua_job(sdk, **request)
    full = table(aqua_file(sandbox, auth, first.batches[0].file_id).decode())
    live = stored(sandbox, "SELECT id FROM invoice WHERE deleted = 0")
    assert first.batches[0].full is True and len(full) == len(live)
    assert list(full[0])[0] == "Invoice.Deleted" and {r["Invoice.Deleted"] for r in full} == {"false"}

    # Changes stamped two minutes on, so they lie after the first job's start whatever the clock's second.
    assert requests.post(f"{sandbox.url}/__admin/clock", json={"offset_seconds": 120}, timeout=30).ok
    try:
        posted = stored(sandbox, "SELECT id FROM invoice WHERE deleted = 0 AND status = 'Posted' ORDER BY rowid")
        drafts = posted[1:2]  # cancelled, then deleted (Zuora deletes only draft, cancelled or error invoices)
        changed = sdk.actions_api().action_postupdate(ProxyActionupdateRequest(type="Invoice", objects=[
            ZObjectUpdate.from_dict({"Id": posted[0]["id"], "Amount": 123.45}),
            ZObjectUpdate.from_dict({"Id": drafts[0]["id"], "Status": "Canceled"})]))
        assert [c.success for c in changed] == [True, True]
        removed = sdk.actions_api().action_post_delete(ProxyActiondeleteRequest(type="Invoice", ids=[drafts[0]["id"]]))
        assert removed[0].success

        _submitted, second = aqua_job(sdk, **request)
        assert second.status == "completed" and second.batches[0].full is False
        rows = {r["Invoice.Id"]: r for r in table(aqua_file(sandbox, auth, second.batches[0].file_id).decode())}
        assert set(rows) == {posted[0]["id"], drafts[0]["id"]}
        assert (rows[posted[0]["id"]]["Invoice.Deleted"], rows[posted[0]["id"]]["Invoice.Amount"]) == ("false", "123.45")
        assert rows[drafts[0]["id"]]["Invoice.Deleted"] == "true"
    finally:
        assert requests.post(f"{sandbox.url}/__admin/clock", json={"offset_seconds": 0}, timeout=30).ok

    # Another project, or a changed query, starts with a full load.
    _submitted, other = aqua_job(sdk, **{**request, "project": "00D000000000002"})
    assert other.batches[0].full is True
    request["queries"][0].query = query + " where Status = 'Posted'"
    _submitted, changed_query = aqua_job(sdk, **request)
    assert changed_query.batches[0].full is True
    # incrementalTime reads the window's start in tenant time: from the far future, nothing.
    empty = aqua_raw_incremental(sandbox, auth, request, "2099-01-01 00:00:00")
    assert empty.batches[0].full is False and empty.batches[0].record_count == 0


def aqua_raw_incremental(sandbox, auth, request: dict, since: str) -> zuora_sdk.GetBatchQueryJobResponse:
    """zuora-sdk's request model has no ``incrementalTime``; send it raw and read the job back."""
    body = CreateBatchQueryJobRequest(**request).to_dict()
    body["incrementalTime"] = since
    submitted = requests.post(f"{sandbox.url}/v1/batch-query/", headers=auth, json=body, timeout=30).json()
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(f"{sandbox.url}/v1/batch-query/jobs/{submitted['id']}", headers=auth, timeout=30).json()
        if job["status"] in ("completed", "aborted") or time.monotonic() > deadline:
            return zuora_sdk.GetBatchQueryJobResponse.from_dict(job)
        time.sleep(0.05)


def test_aqua_errors(sandbox, sdk, auth):
    def post(body: dict) -> dict:
        response = requests.post(f"{sandbox.url}/v1/batch-query/", headers=auth, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    stateless_deleted = post({"format": "csv", "version": "1.0", "queries": [
        {"name": "A", "query": "select Id from Account", "type": "zoqlexport", "deleted": {"column": "D", "format": "Boolean"}}]})
    assert stateless_deleted == {"errorCode": "90012", "message": "Stateless AQuA does not support deleted columns."}
    assert post({"format": "csv", "queries": []})["errorCode"] == "90016"
    assert post({"format": "csv", "queries": [{"name": str(i), "query": "select Id from Account"} for i in range(51)]})["errorCode"] == "90004"
    bad_time = post({"format": "csv", "version": "1.1", "partner": "p", "project": "q", "incrementalTime": "yesterday",
                     "queries": [{"name": "A", "query": "select Id from Account"}]})
    assert bad_time["errorCode"] == "90015"

    syntax = post({"format": "csv", "version": "1.0", "queries": [
        {"name": "ok", "query": "select Id from Account", "type": "zoql"},
        {"name": "bad", "query": "select Id from Nope", "type": "zoql"}]})
    assert (syntax["errorCode"], syntax["message"]) == ("90005", "There is a syntax error in one of the queries in the AQuA input")
    assert_model_shape(syntax, zuora_sdk.CreateBatchQueryJobResponse)
    aborted = sdk.aggregate_queries_api().get_batch_query_job(syntax["id"])
    assert aborted.status == "aborted" and aborted.batches[1].message == "invalid type specified: Nope"
    joined = post({"format": "csv", "queries": [{"name": "j", "query": "select Account.Name from Subscription", "type": "zoql"}]})
    assert joined["errorCode"] == "90005"  # plain ZOQL has no joins

    assert requests.get(f"{sandbox.url}/v1/batch-query/jobs/0123456789abcdef0123456789abcdef", headers=auth,
                        timeout=30).json() == {"errorCode": "90002", "message": "Invalid Job Id."}
    done = requests.delete(f"{sandbox.url}/v1/batch-query/jobs/{syntax['id']}", headers=auth, timeout=30).json()
    assert done["errorCode"] == "90003"
    malformed = requests.post(f"{sandbox.url}/v1/batch-query/", headers=auth, data="{nope", timeout=30)
    assert malformed.status_code == 400 and set(malformed.json()) == {"code", "message"}
