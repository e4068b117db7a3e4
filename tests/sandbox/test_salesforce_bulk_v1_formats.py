"""Bulk API 1.0 as Salesforce documents it, over raw HTTP: XML job descriptions, XML and CSV batches,
results and query results in the job's content type, errors in the request's or job's format, and
batches processed asynchronously (``Queued`` → ``InProgress`` → ``Completed`` / ``Failed`` /
``NotProcessed``) by the org's Bulk worker.

Shapes follow the Bulk API 1.0 guide's examples ("Create a Job", "Add a Batch to a Job", "Get Batch
Results", "Interpret Batch State", "Errors"; see ``docs/salesforce-sandbox.md``).
"""

from __future__ import annotations

import csv
import io
import time
from xml.etree import ElementTree as ET

import pytest
import requests
from conftest import SalesforceSandbox

API = "59.0"
NS = "http://www.force.com/2009/06/asyncapi/dataload"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CA = "Zuora__CustomerAccount__c"
SUB = "Zuora__Subscription__c"
EXT = "Zuora__External_Id__c"


class Async:
    """Plain ``requests`` against ``/services/async/{API}``, sending and reading XML unless told."""

    def __init__(self, sf, sandbox: SalesforceSandbox):
        self.base = f"https://{sf.sf_instance}/services/async/{API}/"
        self.session = sf.session_id
        self.verify = sandbox.ca_bundle

    def __call__(self, method: str, path: str, body: str | bytes | None = None,
                 content_type: str = "application/xml; charset=UTF-8", session: str | None = None) -> requests.Response:
        headers = {"X-SFDC-Session": session or self.session}
        if body is not None:
            headers["Content-Type"] = content_type
        return requests.request(method, self.base + path, headers=headers, data=body, verify=self.verify, timeout=30)

    def open_job(self, operation: str, obj: str, content_type: str, ext: str | None = None) -> dict[str, str]:
        extra = f"<externalIdFieldName>{ext}</externalIdFieldName>" if ext else ""
        response = self("POST", "job", f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NS}">'
                                       f"<operation>{operation}</operation><object>{obj}</object>{extra}"
                                       f"<contentType>{content_type}</contentType></jobInfo>")
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/xml")
        return fields(response, "jobInfo")

    def add_batch(self, job_id: str, body: str, content_type: str) -> dict[str, str]:
        response = self("POST", f"job/{job_id}/batch", body, content_type)
        assert response.status_code == 201, response.text
        return fields(response, "batchInfo")

    def finished(self, job_id: str, batch_id: str) -> dict[str, str]:
        """The batch's info once it has left Queued and InProgress."""
        deadline = time.monotonic() + 60
        while True:
            info = fields(self("GET", f"job/{job_id}/batch/{batch_id}"), "batchInfo")
            if info["state"] not in ("Queued", "InProgress") or time.monotonic() > deadline:
                return info
            time.sleep(0.02)


def root_of(response: requests.Response, tag: str) -> ET.Element:
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{NS}}}{tag}", response.text
    return root


def fields(response: requests.Response, tag: str) -> dict[str, str]:
    """A flat XML document (jobInfo, batchInfo, error) as ``{local name: text}``."""
    return {child.tag.split("}")[1]: child.text or "" for child in root_of(response, tag)}


def assert_error(response: requests.Response, code: str, fmt: str = "XML") -> str:
    assert response.status_code == 400, response.text
    if fmt == "JSON":
        assert response.headers["content-type"].startswith("application/json")
        return response.json()["exceptionMessage"]
    error = fields(response, "error")
    assert error["exceptionCode"] == code and error["exceptionMessage"], error
    return error["exceptionMessage"]


@pytest.fixture
def bulk(sf, sf_sandbox: SalesforceSandbox) -> Async:
    return Async(sf, sf_sandbox)


@pytest.fixture(scope="module")
def account_ids(salesforce_sandbox: SalesforceSandbox) -> list[str]:
    records = salesforce_sandbox.login().query("SELECT Id, Name FROM Account ORDER BY Id LIMIT 3")["records"]
    return [r["Id"] for r in records]


def sobjects(*records: str) -> str:
    items = "".join(f"<sObject>{r}</sObject>" for r in records)
    return f'<?xml version="1.0" encoding="UTF-8"?><sObjects xmlns="{NS}" xmlns:xsi="{XSI}">{items}</sObjects>'


# -- XML ---------------------------------------------------------------------------------------------


def test_xml_job_insert_results_request_and_counters(sf, bulk, unique, account_ids):
    job = bulk.open_job("insert", CA, "XML")
    assert (job["state"], job["operation"], job["object"], job["contentType"]) == ("Open", "insert", CA, "XML")
    assert job["id"].startswith("750") and job["concurrencyMode"] == "Parallel" and job["apiVersion"] == API
    body = sobjects(
        f"<Name>XML {unique} 0</Name><{EXT}>{unique}-x0</{EXT}><Zuora__Account__c>{account_ids[0]}</Zuora__Account__c>"
        "<Zuora__Status__c>Active</Zuora__Status__c>",
        f"<{EXT}>{unique}-x1</{EXT}><Zuora__Account__c>{account_ids[0]}</Zuora__Account__c>",  # no Name
        f"<Name>XML {unique} 2</Name><{EXT}>{unique}-x2</{EXT}><Zuora__Account__c>{account_ids[1]}</Zuora__Account__c>"
        '<Zuora__Status__c xsi:nil="true"/><Zuora__AutoPay__c>true</Zuora__AutoPay__c>',
    )
    batch = bulk.add_batch(job["id"], body, "application/xml; charset=UTF-8")
    assert batch["state"] == "Queued" and batch["jobId"] == job["id"] and batch["id"].startswith("751")

    info = bulk.finished(job["id"], batch["id"])
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("Completed", "3", "1")
    results = root_of(bulk("GET", f"job/{job['id']}/batch/{batch['id']}/result"), "results")
    parsed = [{c.tag.split("}")[1]: c for c in result} for result in results]
    assert [r["success"].text for r in parsed] == ["true", "false", "true"]
    assert [r["created"].text for r in parsed] == ["true", "false", "true"]
    assert "id" not in parsed[1]
    error = {c.tag.split("}")[1]: c.text for c in parsed[1]["errors"]}
    assert error == {"fields": "Name", "message": error["message"], "statusCode": "REQUIRED_FIELD_MISSING"}

    stored = {r[EXT]: r for r in sf.query_all(
        f"SELECT Id, {EXT}, Name, Zuora__Status__c, Zuora__AutoPay__c FROM {CA} WHERE {EXT} LIKE '{unique}-x%'"
    )["records"]}
    assert set(stored) == {f"{unique}-x0", f"{unique}-x2"}
    assert stored[f"{unique}-x0"]["Id"] == parsed[0]["id"].text
    assert (stored[f"{unique}-x2"]["Zuora__Status__c"], stored[f"{unique}-x2"]["Zuora__AutoPay__c"]) == (None, True)

    echoed = bulk("GET", f"job/{job['id']}/batch/{batch['id']}/request")
    assert echoed.headers["content-type"].startswith("application/xml") and echoed.text == body

    closed = fields(bulk("POST", f"job/{job['id']}", f'<jobInfo xmlns="{NS}"><state>Closed</state></jobInfo>'), "jobInfo")
    assert closed["state"] == "Closed"
    assert (closed["numberBatchesTotal"], closed["numberBatchesCompleted"], closed["numberRecordsProcessed"],
            closed["numberRecordsFailed"]) == ("1", "1", "3", "1")


def test_xml_upsert_through_a_relationship_and_a_malformed_batch(sf, bulk, unique, account_ids):
    parents = bulk.open_job("insert", CA, "XML")
    bulk.finished(parents["id"], bulk.add_batch(parents["id"], sobjects(
        f"<Name>P</Name><{EXT}>{unique}-p</{EXT}><Zuora__Account__c>{account_ids[0]}</Zuora__Account__c>"), "application/xml")["id"])
    job = bulk.open_job("upsert", SUB, "XML", ext=EXT)
    assert job["externalIdFieldName"] == EXT
    link = f"<Zuora__CustomerAccount__r><sObject><{EXT}>{unique}-p</{EXT}></sObject></Zuora__CustomerAccount__r>"
    batch = bulk.add_batch(job["id"], sobjects(f"<Name>S</Name><{EXT}>{unique}-s</{EXT}>{link}"), "application/xml")
    assert bulk.finished(job["id"], batch["id"])["state"] == "Completed"
    stored = sf.query(f"SELECT Zuora__CustomerAccount__r.{EXT} FROM {SUB} WHERE {EXT} = '{unique}-s'")["records"]
    assert stored[0]["Zuora__CustomerAccount__r"][EXT] == f"{unique}-p"

    broken = bulk.add_batch(job["id"], "<sObjects><sObject><Name>unclosed</sObject>", "application/xml")
    info = bulk.finished(job["id"], broken["id"])
    assert info["state"] == "Failed" and info["stateMessage"].startswith("InvalidBatch : Unable to parse the batch")
    assert "Unable to parse" in assert_error(bulk("GET", f"job/{job['id']}/batch/{broken['id']}/result"), "InvalidBatch")


# -- CSV ---------------------------------------------------------------------------------------------


def test_csv_job_results_nulls_and_a_bad_header(sf, bulk, unique, account_ids):
    job = bulk.open_job("upsert", CA, "CSV", ext=EXT)
    rows = [
        ["Name", EXT, "Zuora__Account__c", "Zuora__Status__c"],
        [f"CSV {unique} 0", f"{unique}-c0", account_ids[0], "Active"],
        [f"CSV {unique} 1", f"{unique}-c1", "not-an-id", "Active"],
        [f"CSV {unique} 2", f"{unique}-c2", account_ids[2], "#N/A"],
    ]
    body = "".join(",".join(row) + "\r\n" for row in rows)
    batch = bulk.add_batch(job["id"], body, "text/csv; charset=UTF-8")
    assert batch["state"] == "Queued"
    info = bulk.finished(job["id"], batch["id"])
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("Completed", "3", "1")

    result = bulk("GET", f"job/{job['id']}/batch/{batch['id']}/result")
    assert result.headers["content-type"].startswith("text/csv")
    assert result.text.splitlines()[0] == '"Id","Success","Created","Error"'
    table = list(csv.DictReader(io.StringIO(result.text)))
    assert [(r["Success"], r["Created"]) for r in table] == [("true", "true"), ("false", "false"), ("true", "true")]
    assert table[1]["Id"] == "" and table[1]["Error"].startswith("MALFORMED_ID:")
    assert table[1]["Error"].endswith(":Zuora__Account__c --")
    stored = {r[EXT]: r for r in sf.query_all(
        f"SELECT Id, {EXT}, Zuora__Status__c FROM {CA} WHERE {EXT} LIKE '{unique}-c%'")["records"]}
    assert stored[f"{unique}-c0"]["Id"] == table[0]["Id"]
    assert stored[f"{unique}-c2"]["Zuora__Status__c"] is None
    assert bulk("GET", f"job/{job['id']}/batch/{batch['id']}/request").text == body

    bad = bulk.add_batch(job["id"], f"Name,{EXT},Bogus__c\nx,{unique}-c9,1\n", "text/csv")
    info = bulk.finished(job["id"], bad["id"])
    assert (info["state"], info["stateMessage"]) == ("Failed", "InvalidBatch : Field name not found : Bogus__c")
    assert f"{unique}-c9" not in {r[EXT] for r in sf.query_all(f"SELECT {EXT} FROM {CA} WHERE {EXT} LIKE '{unique}-c%'")["records"]}


@pytest.mark.parametrize("content_type", ["CSV", "XML"])
def test_query_batches_in_csv_and_xml(sf, bulk, unique, account_ids, content_type):
    sf.bulk2.Zuora__CustomerAccount__c.insert(records=[
        {"Name": f"Q {unique} {i}", EXT: f"{unique}-q{i}", "Zuora__Account__c": account_ids[i],
         "Zuora__AutoPay__c": "true" if i else "false"} for i in range(2)
    ], wait=0)
    job = bulk.open_job("query", CA, content_type)
    soql = (f"SELECT Id, Name, Zuora__AutoPay__c, Zuora__LastInvoiceDate__c, Zuora__Account__r.Name FROM {CA} "
            f"WHERE {EXT} LIKE '{unique}-q%' ORDER BY {EXT}")
    batch = bulk.add_batch(job["id"], soql, "text/csv" if content_type == "CSV" else "application/xml")
    assert bulk.finished(job["id"], batch["id"])["state"] == "Completed"
    listed = root_of(bulk("GET", f"job/{job['id']}/batch/{batch['id']}/result"), "result-list")
    result_ids = [r.text for r in listed]
    assert len(result_ids) == 1 and result_ids[0].startswith("752")
    data = bulk("GET", f"job/{job['id']}/batch/{batch['id']}/result/{result_ids[0]}")
    names = {r["Id"]: r["Name"] for r in sf.query(f"SELECT Id, Name FROM Account WHERE Id IN "
                                                   f"('{account_ids[0]}', '{account_ids[1]}')")["records"]}
    if content_type == "CSV":
        assert data.text.splitlines()[0] == '"Id","Name","Zuora__AutoPay__c","Zuora__LastInvoiceDate__c","Zuora__Account__r.Name"'
        table = list(csv.DictReader(io.StringIO(data.text)))
        assert [(r["Name"], r["Zuora__AutoPay__c"], r["Zuora__LastInvoiceDate__c"]) for r in table] == [
            (f"Q {unique} 0", "false", ""), (f"Q {unique} 1", "true", "")]
        assert [r["Zuora__Account__r.Name"] for r in table] == [names[account_ids[0]], names[account_ids[1]]]
        return
    root = root_of(data, "queryResult")
    records = list(root)
    assert [r.get(f"{{{XSI}}}type") for r in records] == ["sObject", "sObject"]
    first = {c.tag.split("}")[1]: c for c in records[0]}
    assert first["type"].text == CA and first["Name"].text == f"Q {unique} 0" and first["Zuora__AutoPay__c"].text == "false"
    assert first["Zuora__LastInvoiceDate__c"].get(f"{{{XSI}}}nil") == "true"
    parent = {c.tag.split("}")[1]: c.text for c in first["Zuora__Account__r"]}
    assert parent == {"type": "Account", "Name": names[account_ids[0]]}


# -- asynchronous processing ---------------------------------------------------------------------


def test_batches_are_queued_then_processed_and_an_abort_leaves_queued_ones_not_processed(sf, sf_sandbox, bulk, unique, account_ids):
    # Each batch stays InProgress 6 s: long enough that the first is still running, and the others queued,
    # when the job is read and aborted below, even on a loaded machine.
    sf_sandbox.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 6})
    job = bulk.open_job("insert", CA, "XML")
    posted = [
        bulk.add_batch(job["id"], sobjects(f"<Name>A{i}</Name><{EXT}>{unique}-a{i}</{EXT}>"
                                           f"<Zuora__Account__c>{account_ids[0]}</Zuora__Account__c>"), "application/xml")
        for i in range(3)
    ]
    assert [b["state"] for b in posted] == ["Queued"] * 3  # the answer never waits for the work
    states = [fields(bulk("GET", f"job/{job['id']}/batch/{b['id']}"), "batchInfo")["state"] for b in posted]
    assert states[0] in ("Queued", "InProgress") and states[1:] == ["Queued", "Queued"]
    assert "not completed" in assert_error(bulk("GET", f"job/{job['id']}/batch/{posted[2]['id']}/result"), "InvalidBatch")
    counters = fields(bulk("GET", f"job/{job['id']}"), "jobInfo")
    assert counters["numberBatchesTotal"] == "3" and int(counters["numberBatchesQueued"]) >= 2

    aborted = fields(bulk("POST", f"job/{job['id']}", f'<jobInfo xmlns="{NS}"><state>Aborted</state></jobInfo>'), "jobInfo")
    assert aborted["state"] == "Aborted"
    final = [bulk.finished(job["id"], b["id"])["state"] for b in posted]
    assert final == ["Completed", "NotProcessed", "NotProcessed"]  # the running batch finishes; queued ones never run
    stored = {r[EXT] for r in sf.query_all(f"SELECT {EXT} FROM {CA} WHERE {EXT} LIKE '{unique}-a%'")["records"]}
    assert stored == {f"{unique}-a0"}
    assert_error(bulk("POST", f"job/{job['id']}/batch", sobjects(""), "application/xml"), "InvalidJobState")


# -- errors in the request's or the job's format -------------------------------------------------


def test_errors_follow_the_request_or_the_job_format(bulk, unique):
    message = assert_error(bulk("POST", "job", f'<jobInfo xmlns="{NS}"><operation>insert</operation>'
                                               "<object>Nope__c</object><contentType>CSV</contentType></jobInfo>"),
                           "InvalidJob")
    assert "Nope__c" in message
    assert_error(bulk("POST", "job", "<jobInfo><operation>insert"), "InvalidJob")
    assert_error(bulk("POST", "job", f'<jobInfo xmlns="{NS}"><operation>insert</operation><object>Account</object>'
                                     "<contentType>ZIP_CSV</contentType></jobInfo>"), "InvalidJob")
    assert_error(bulk("POST", "job", '{"operation": "merge", "object": "Account"}', "application/json"),
                 "InvalidJob", "JSON")
    # An XML (or CSV) job answers in XML when the request says nothing; a JSON job in JSON.
    csv_job = bulk.open_job("insert", "Account", "CSV")
    assert_error(bulk("GET", f"job/{csv_job['id']}/batch/751000000000000AAA"), "InvalidBatch")
    json_job = bulk("POST", "job", '{"operation": "insert", "object": "Account", "contentType": "JSON"}',
                    "application/json").json()
    gone = bulk("GET", f"job/{json_job['id']}/batch/751000000000000AAA")
    assert gone.status_code == 400 and gone.json()["exceptionCode"] == "InvalidBatch"
    stale = bulk("GET", f"job/{csv_job['id']}", session="00Dbogus!session")
    assert fields(stale, "error")["exceptionCode"] == "InvalidSessionId" and stale.status_code == 400
