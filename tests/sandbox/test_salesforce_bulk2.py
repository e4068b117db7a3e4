"""Bulk API 2.0 on the sandbox through simple-salesforce's ``sf.bulk2``: ingest jobs with
successful, failed and unprocessed results, every row error code, job-level failures, the job
lifecycle, deletes with the recycle bin and master-detail cascades, and query jobs with paging."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests
from simple_salesforce.exceptions import SalesforceOperationError

from sandbox.crm_accounts import crm_account_id

SEED = 7
WAIT = 0.05  # simple-salesforce sleeps this long before its first poll


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def bulk_url(sf, path: str) -> str:
    return f"https://{sf.sf_instance}/services/data/v59.0/jobs/{path}"


def headers(sf) -> dict[str, str]:
    return {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}


def customer_rows(unique: str, count: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {
            "Zuora__External_Id__c": f"{unique}-{i}",
            "Name": f"Customer {i}",
            "Zuora__Account__c": crm_account_id(SEED, i % 50),
            "Zuora__Balance__c": f"{i}.25",
        }
        for i in range(start, start + count)
    ]


def test_upsert_creates_updates_and_reports_successful_records(sf, unique):
    result = sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 30), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    assert result[0]["numberRecordsProcessed"] == 30 and result[0]["numberRecordsFailed"] == 0
    successful = parse(sf.bulk2.Zuora__CustomerAccount__c.get_successful_records(result[0]["job_id"]))
    assert len(successful) == 30 and {r["sf__Created"] for r in successful} == {"true"}
    assert all(r["sf__Id"].startswith("a0A") for r in successful)
    assert successful[0]["Zuora__External_Id__c"] == f"{unique}-0"  # original columns are echoed
    again = sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 30), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    second = parse(sf.bulk2.Zuora__CustomerAccount__c.get_successful_records(again[0]["job_id"]))
    assert {r["sf__Created"] for r in second} == {"false"}
    assert {r["sf__Id"] for r in second} == {r["sf__Id"] for r in successful}
    count = sf.query(f"SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-%'")
    assert count["totalSize"] == 30


def test_relationship_columns_resolve_external_ids_and_na_clears_a_field(sf, unique):
    sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 2), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    subscriptions = [
        {"Zuora__External_Id__c": f"{unique}-s{i}", "Name": f"S-{i}", "Zuora__Status__c": "Active",
         "Zuora__CustomerAccount__r.Zuora__External_Id__c": f"{unique}-{i}",
         "Zuora__Account__c": crm_account_id(SEED, i)}
        for i in range(2)
    ]
    result = sf.bulk2.Zuora__Subscription__c.upsert(
        records=subscriptions, external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    assert result[0]["numberRecordsFailed"] == 0
    record = sf.query(
        "SELECT Zuora__Status__c, Zuora__CustomerAccount__r.Zuora__External_Id__c FROM Zuora__Subscription__c "
        f"WHERE Zuora__External_Id__c = '{unique}-s1'"
    )["records"][0]
    assert record["Zuora__CustomerAccount__r"]["Zuora__External_Id__c"] == f"{unique}-1"
    # An empty cell leaves a field alone on update; #N/A sets it to null.
    csv_text = (
        "Zuora__External_Id__c,Name,Zuora__Status__c,Zuora__CustomerAccount__r.Zuora__External_Id__c\n"
        f"{unique}-s0,S-0,,{unique}-0\n"
        f"{unique}-s1,S-1,#N/A,{unique}-1\n"
    )
    sf.bulk2.Zuora__Subscription__c._upload_data("upsert", csv_text, external_id_field="Zuora__External_Id__c", wait=WAIT)
    statuses = {
        r["Name"]: r["Zuora__Status__c"]
        for r in sf.query(f"SELECT Name, Zuora__Status__c FROM Zuora__Subscription__c "
                          f"WHERE Zuora__External_Id__c LIKE '{unique}-s%'")["records"]
    }
    assert statuses == {"S-0": "Active", "S-1": None}


def test_row_errors_carry_salesforce_codes(sf, sf_sandbox, unique):
    # A deleted record and an existing key for the DUPLICATE_VALUE and ENTITY_IS_DELETED cases.
    sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 2), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    deleted_id = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", f"{unique}-1")["Id"]
    sf.Zuora__CustomerAccount__c.delete(deleted_id)
    missing_account = crm_account_id(SEED, 999_999)  # well-formed, but no such Account
    rows = [
        {"Zuora__External_Id__c": f"{unique}-ok", "Name": "fine", "Zuora__Account__c": crm_account_id(SEED, 1)},
        {"Zuora__External_Id__c": f"{unique}-noname", "Name": "", "Zuora__Account__c": crm_account_id(SEED, 1)},
        {"Zuora__External_Id__c": f"{unique}-badref", "Name": "x", "Zuora__Account__c": missing_account},
        {"Zuora__External_Id__c": f"{unique}-malformed", "Name": "x", "Zuora__Account__c": "001XYZ"},
        {"Zuora__External_Id__c": f"{unique}-dup", "Name": "x", "Zuora__Account__c": crm_account_id(SEED, 1)},
        {"Zuora__External_Id__c": f"{unique}-dup", "Name": "y", "Zuora__Account__c": crm_account_id(SEED, 1)},
        {"Zuora__External_Id__c": f"{unique}-wrongtype", "Name": "x", "Zuora__Account__c": deleted_id},
    ]
    result = sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=rows, external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    assert result[0]["numberRecordsProcessed"] == 7 and result[0]["numberRecordsFailed"] == 6
    failed = {r["Zuora__External_Id__c"] + "/" + r["Name"]: r["sf__Error"]
              for r in parse(sf.bulk2.Zuora__CustomerAccount__c.get_failed_records(result[0]["job_id"]))}
    assert failed[f"{unique}-noname/"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --")
    assert failed[f"{unique}-badref/x"].startswith("INVALID_CROSS_REFERENCE_KEY:")
    assert failed[f"{unique}-malformed/x"].startswith("MALFORMED_ID:")
    assert failed[f"{unique}-dup/x"].startswith(f"DUPLICATE_VALUE:Duplicate external id specified: {unique}-dup")
    assert failed[f"{unique}-dup/y"].startswith("DUPLICATE_VALUE:")
    assert failed[f"{unique}-wrongtype/x"].startswith("MALFORMED_ID:")  # a customer-account Id is not an Account Id
    # Updating a record in the recycle bin by Id is ENTITY_IS_DELETED.
    update = sf.bulk2.Zuora__CustomerAccount__c.update(records=[{"Id": deleted_id, "Name": "z"}], wait=WAIT)
    errors = parse(sf.bulk2.Zuora__CustomerAccount__c.get_failed_records(update[0]["job_id"]))
    assert errors[0]["sf__Error"] == "ENTITY_IS_DELETED:entity is deleted: --"
    assert errors[0]["sf__Id"] == deleted_id
    # A relationship to a parent that does not exist is INVALID_FIELD with Salesforce's message.
    orphan = sf.bulk2.Zuora__Subscription__c.upsert(
        records=[{"Zuora__External_Id__c": f"{unique}-orphan", "Name": "o",
                  "Zuora__CustomerAccount__r.Zuora__External_Id__c": f"{unique}-nobody"}],
        external_id_field="Zuora__External_Id__c", wait=WAIT,
    )
    error = parse(sf.bulk2.Zuora__Subscription__c.get_failed_records(orphan[0]["job_id"]))[0]["sf__Error"]
    assert error.startswith(
        f"INVALID_FIELD:Foreign key external ID: {unique}-nobody not found for field Zuora__External_Id__c "
        "in entity Zuora__CustomerAccount__c"
    )


def test_unknown_column_fails_the_job_and_leaves_rows_unprocessed(sf, unique):
    with pytest.raises(SalesforceOperationError) as caught:
        sf.bulk2.Account.insert(records=[{"Name": "x", "Bogus__c": "1"}], wait=WAIT)
    assert "InvalidBatch : Field name not found : Bogus__c" in str(caught.value)
    jobs = requests.get(bulk_url(sf, "ingest"), headers=headers(sf), timeout=30).json()["records"]
    failed_job = [j for j in jobs if j["state"] == "Failed"][-1]
    info = requests.get(bulk_url(sf, f"ingest/{failed_job['id']}"), headers=headers(sf), timeout=30).json()
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Bogus__c"
    unprocessed = sf.bulk2.Account.get_unprocessed_records(failed_job["id"])
    assert parse(unprocessed)[0]["Bogus__c"] == "1"


def test_a_byte_order_mark_fails_the_job(sf):
    csv_text = "\ufeffName\nWith BOM\n"
    with pytest.raises(SalesforceOperationError) as caught:
        sf.bulk2.Account._upload_data("insert", csv_text, wait=WAIT)
    assert "InvalidBatch : Field name not found : \ufeffName" in str(caught.value)


def test_line_ending_must_match_the_job(sf):
    with pytest.raises(SalesforceOperationError) as caught:
        sf.bulk2.Account._upload_data("insert", "Name\r\nCRLF Inc\r\n", wait=WAIT)
    assert "LineEnding is invalid on user data" in str(caught.value)


def test_job_lifecycle_in_progress_abort_and_delete(sf, sf_sandbox, unique):
    sf_sandbox.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 1.5})
    job = requests.post(bulk_url(sf, "ingest"), headers=headers(sf), timeout=30,
                        json={"object": "Account", "operation": "insert", "lineEnding": "LF"}).json()
    assert job["state"] == "Open" and job["object"] == "Account" and job["contentType"] == "CSV"
    upload = requests.put(bulk_url(sf, f"ingest/{job['id']}/batches"), timeout=30,
                          headers={**headers(sf), "Content-Type": "text/csv"},
                          data=f"Name,AccountNumber\nA,{unique}\nB,{unique}\n")
    assert upload.status_code == 201 and upload.content == b""
    again = requests.put(bulk_url(sf, f"ingest/{job['id']}/batches"), timeout=30,
                         headers={**headers(sf), "Content-Type": "text/csv"}, data="Name\nC\n")
    assert again.status_code == 409
    closed = requests.patch(bulk_url(sf, f"ingest/{job['id']}"), headers=headers(sf), timeout=30,
                            json={"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"
    states = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = requests.get(bulk_url(sf, f"ingest/{job['id']}"), headers=headers(sf), timeout=30).json()
        states.add(info["state"])
        if info["state"] == "JobComplete":
            break
        time.sleep(0.1)
    assert {"InProgress", "JobComplete"} <= states
    assert info["numberRecordsProcessed"] == 2 and info["numberRecordsFailed"] == 0
    for key in ("retries", "totalProcessingTime", "apiActiveProcessingTime", "apexProcessingTime", "jobType"):
        assert key in info
    # A job aborted while it waits to be processed writes nothing; its rows are unprocessed.
    aborted = requests.post(bulk_url(sf, "ingest"), headers=headers(sf), timeout=30,
                            json={"object": "Account", "operation": "insert"}).json()
    requests.put(bulk_url(sf, f"ingest/{aborted['id']}/batches"), timeout=30,
                 headers={**headers(sf), "Content-Type": "text/csv"}, data=f"Name,AccountNumber\nZ,{unique}-abort\n")
    requests.patch(bulk_url(sf, f"ingest/{aborted['id']}"), headers=headers(sf), json={"state": "UploadComplete"}, timeout=30)
    result = requests.patch(bulk_url(sf, f"ingest/{aborted['id']}"), headers=headers(sf), json={"state": "Aborted"}, timeout=30)
    assert result.json()["state"] == "Aborted"
    time.sleep(2)
    assert sf.query(f"SELECT COUNT() FROM Account WHERE AccountNumber = '{unique}-abort'")["totalSize"] == 0
    assert "Z" in sf.bulk2.Account.get_unprocessed_records(aborted["id"])
    bad_change = requests.patch(bulk_url(sf, f"ingest/{aborted['id']}"), headers=headers(sf),
                                json={"state": "UploadComplete"}, timeout=30)
    assert bad_change.status_code == 400 and bad_change.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    # Listing and deleting jobs.
    listed = requests.get(bulk_url(sf, "ingest"), headers=headers(sf), timeout=30).json()
    assert listed["done"] is True and job["id"] in {j["id"] for j in listed["records"]}
    assert requests.delete(bulk_url(sf, f"ingest/{job['id']}"), headers=headers(sf), timeout=30).status_code == 204
    gone = requests.get(bulk_url(sf, f"ingest/{job['id']}"), headers=headers(sf), timeout=30)
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "NOT_FOUND"


def test_job_creation_is_validated(sf):
    def create(body):
        return requests.post(bulk_url(sf, "ingest"), headers=headers(sf), json=body, timeout=30)

    assert create({"object": "Nope__c", "operation": "insert"}).status_code == 400
    missing_key = create({"object": "Account", "operation": "upsert"})
    assert missing_key.status_code == 400 and "External ID was blank" in missing_key.json()[0]["message"]
    not_a_key = create({"object": "Account", "operation": "upsert", "externalIdFieldName": "Industry"})
    assert "does not match an External ID" in not_a_key.json()[0]["message"]
    assert create({"object": "Account", "operation": "merge"}).json()[0]["errorCode"] == "INVALIDJOB"


def test_delete_goes_to_the_recycle_bin_and_cascades_to_master_detail_children(sf, unique):
    sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 1), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    payments = [{"Zuora__External_Id__c": f"{unique}-p{i}", "Name": f"P{i}",
                 "Zuora__BillingAccount__r.Zuora__External_Id__c": f"{unique}-0"} for i in range(3)]
    subscription = [{"Zuora__External_Id__c": f"{unique}-sub", "Name": "S",
                     "Zuora__CustomerAccount__r.Zuora__External_Id__c": f"{unique}-0",
                     "Zuora__Account__c": crm_account_id(SEED, 0)}]
    assert sf.bulk2.Zuora__Payment__c.upsert(records=payments, external_id_field="Zuora__External_Id__c",
                                              wait=WAIT)[0]["numberRecordsFailed"] == 0
    assert sf.bulk2.Zuora__Subscription__c.upsert(records=subscription, external_id_field="Zuora__External_Id__c",
                                                   wait=WAIT)[0]["numberRecordsFailed"] == 0
    parent = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", f"{unique}-0")["Id"]
    result = sf.bulk2.Zuora__CustomerAccount__c.delete(records=[{"Id": parent}], wait=WAIT)
    assert result[0]["numberRecordsFailed"] == 0
    payment_soql = f"SELECT Id, IsDeleted FROM Zuora__Payment__c WHERE Zuora__External_Id__c LIKE '{unique}-p%'"
    assert sf.query(payment_soql)["totalSize"] == 0
    assert [r["IsDeleted"] for r in sf.query_all(payment_soql, include_deleted=True)["records"]] == [True] * 3
    # The subscription's lookup to the deleted customer account is cleared, the subscription stays.
    sub = sf.query(f"SELECT Zuora__CustomerAccount__c FROM Zuora__Subscription__c "
                   f"WHERE Zuora__External_Id__c = '{unique}-sub'")["records"]
    assert sub == [{"attributes": sub[0]["attributes"], "Zuora__CustomerAccount__c": None}]
    # Hard delete: gone from queryAll too, children with it.
    hard = sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 1, start=5), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    assert hard[0]["numberRecordsFailed"] == 0
    doomed = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", f"{unique}-5")["Id"]
    sf.bulk2.Zuora__Payment__c.upsert(
        records=[{"Zuora__External_Id__c": f"{unique}-hp", "Name": "hp",
                  "Zuora__BillingAccount__r.Zuora__External_Id__c": f"{unique}-5"}],
        external_id_field="Zuora__External_Id__c", wait=WAIT,
    )
    sf.bulk2.Zuora__CustomerAccount__c.hard_delete(records=[{"Id": doomed}], wait=WAIT)
    everything = sf.query_all(
        f"SELECT Id FROM Zuora__Payment__c WHERE Zuora__External_Id__c = '{unique}-hp'", include_deleted=True
    )
    assert everything["totalSize"] == 0
    assert sf.query_all(f"SELECT Id FROM Zuora__CustomerAccount__c WHERE Id = '{doomed}'",
                        include_deleted=True)["totalSize"] == 0
    again = sf.bulk2.Zuora__CustomerAccount__c.delete(records=[{"Id": parent}], wait=WAIT)
    error = parse(sf.bulk2.Zuora__CustomerAccount__c.get_failed_records(again[0]["job_id"]))[0]["sf__Error"]
    assert error.startswith("ENTITY_IS_DELETED")


def test_query_job_pages_with_sforce_locator(sf, unique):
    sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 25), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    soql = ("SELECT Zuora__External_Id__c, Name, Zuora__Account__r.Name, Zuora__Balance__c "
            f"FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-%' ORDER BY Name")
    pages = list(sf.bulk2.Zuora__CustomerAccount__c.query(soql, max_records=10, wait=WAIT))
    assert len(pages) == 3
    rows = [row for page in pages for row in parse(page)]
    assert len(rows) == 25 and len({r["Zuora__External_Id__c"] for r in rows}) == 25
    assert list(rows[0]) == ["Zuora__External_Id__c", "Name", "Zuora__Account__r.Name", "Zuora__Balance__c"]
    assert pages[0].startswith('"Zuora__External_Id__c","Name"')
    # The raw protocol: Sforce-NumberOfRecords and Sforce-Locator, "null" on the last page.
    job = requests.post(bulk_url(sf, "query"), headers=headers(sf), timeout=30,
                        json={"operation": "query", "query": soql}).json()
    deadline = time.monotonic() + 20
    while requests.get(bulk_url(sf, f"query/{job['id']}"), headers=headers(sf), timeout=30).json()["state"] != "JobComplete":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first = requests.get(bulk_url(sf, f"query/{job['id']}/results"), params={"maxRecords": 20},
                         headers=headers(sf), timeout=30)
    assert first.headers["Sforce-NumberOfRecords"] == "20" and first.headers["Sforce-Locator"] != "null"
    last = requests.get(bulk_url(sf, f"query/{job['id']}/results"),
                        params={"maxRecords": 20, "locator": first.headers["Sforce-Locator"]},
                        headers=headers(sf), timeout=30)
    assert last.headers["Sforce-NumberOfRecords"] == "5" and last.headers["Sforce-Locator"] == "null"
    info = requests.get(bulk_url(sf, f"query/{job['id']}"), headers=headers(sf), timeout=30).json()
    assert info["jobType"] == "V2Query" and info["numberRecordsProcessed"] == 25


def test_query_all_job_includes_deleted_rows_and_bad_soql_is_refused(sf, unique):
    sf.bulk2.Zuora__CustomerAccount__c.upsert(
        records=customer_rows(unique, 2), external_id_field="Zuora__External_Id__c", wait=WAIT
    )
    gone = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", f"{unique}-0")["Id"]
    sf.Zuora__CustomerAccount__c.delete(gone)
    soql = f"SELECT Id, IsDeleted FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-%'"
    live = [r for page in sf.bulk2.Zuora__CustomerAccount__c.query(soql, wait=WAIT) for r in parse(page)]
    everything = [r for page in sf.bulk2.Zuora__CustomerAccount__c.query_all(soql, wait=WAIT) for r in parse(page)]
    assert len(live) == 1 and len(everything) == 2
    assert {r["IsDeleted"] for r in everything} == {"true", "false"}
    bad = requests.post(bulk_url(sf, "query"), headers=headers(sf), timeout=30,
                        json={"operation": "query", "query": "SELECT Nope FROM Account"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"
