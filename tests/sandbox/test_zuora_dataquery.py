"""Zuora Data Query in the sandbox, driven by Zuora's own ``zuora-sdk`` and raw HTTP.

A small tenant is written straight into the store (accounts, subscriptions, rate plans and charges,
some deleted), then a real server process runs on it. Jobs go through the SDK's ``DataQueriesApi``
and every answer parses with its models; result files are downloaded without a token from the
signed ``dataFile`` URL and compared with what was inserted.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from conftest import ZuoraSandbox, start_zuora_sandbox
from sandbox.zuora.tenant import Tenant
from sandbox.zuora.timezone import set_time_zone
from zuora_sdk.api.data_queries_api import DataQueriesApi
from zuora_sdk.exceptions import ApiException
from zuora_sdk.models import (
    CommonErrorResponse,
    DataQueryErrorResponse,
    DeleteDataQueryJobResponse,
    GetDataQueryJobResponse,
    GetDataQueryJobsResponse,
    SubmitDataQueryRequest,
    SubmitDataQueryRequestOutput,
    SubmitDataQueryResponse,
)

# zuora-sdk's generated models use pydantic APIs that pydantic deprecates; that noise is not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)
USER = "0" * 32


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def build_tenant(data_dir) -> dict[str, str]:
    """The test tenant, written through the store as the API would; returns the record ids."""
    tenant = Tenant(data_dir)
    store, schema = tenant.store, tenant.schema
    set_time_zone(store, "UTC")  # shown times equal stored ones; test_pacific_tenant covers the default
    obj = schema.get
    ids: dict[str, str] = {}
    with store.write() as conn:
        def add(name: str, key: str, when: str, **fields) -> None:
            ids[key] = store.insert(conn, obj(name), [fields], USER, when=when)[0]

        add("Account", "A1", "2024-01-05 10:00:00", AccountNumber="A-001", Name="Alpha", Currency="USD",
            BillCycleDay=1, AutoPay=1, Balance=230.0, Status="Active", LastInvoiceDate="2024-01-31")
        add("Account", "A2", "2024-01-20 23:59:59", AccountNumber="A-002", Name="Beta, \"Quoted\"", Currency="EUR",
            BillCycleDay=15, AutoPay=0, Balance=199.95, Status="Active", CrmId="001000000000001AAA")
        add("Account", "A3", "2024-02-10 08:30:00", AccountNumber="A-003", Name="Gamma", Currency="USD",
            BillCycleDay=28, AutoPay=0, Balance=0.1 + 0.2, Status="Draft")
        add("Account", "A4", "2024-01-10 00:00:00", AccountNumber="A-004", Name="Deleted recently", Currency="USD",
            BillCycleDay=1, AutoPay=1, Balance=5.0, Status="Canceled")
        add("Account", "A5", "2023-06-01 00:00:00", AccountNumber="A-005", Name="Deleted long ago", Currency="USD",
            BillCycleDay=1, AutoPay=1, Balance=5.0, Status="Canceled")
        add("Subscription", "S1", "2024-01-06 00:00:00", AccountId=ids["A1"], Name="S-001", Status="Active",
            Version=1, AutoRenew=1, ContractEffectiveDate="2024-01-06")
        add("Subscription", "S2", "2024-01-21 00:00:00", AccountId=ids["A2"], Name="S-002", Status="Cancelled",
            Version=2, AutoRenew=0, ContractEffectiveDate="2024-01-21")
        add("RatePlan", "RP1", "2024-01-06 00:00:00", SubscriptionId=ids["S1"], Name="Gold")
        add("RatePlan", "RP2", "2024-01-21 00:00:00", SubscriptionId=ids["S2"], Name="Silver")
        add("RatePlanCharge", "C1", "2024-01-06 00:00:00", RatePlanId=ids["RP1"], Name="Base", Price=10.5,
            ChargeType="Recurring")
        add("RatePlanCharge", "C2", "2024-01-06 00:00:00", RatePlanId=ids["RP1"], Name="Seats", Price=20.0,
            ChargeType="Recurring")
        add("RatePlanCharge", "C3", "2024-01-21 00:00:00", RatePlanId=ids["RP2"], Name="Base", Price=99.99,
            ChargeType="OneTime")
        store.delete(conn, obj("Account"), [ids["A4"]], USER, when=stamp(NOW - dt.timedelta(days=5)))
        store.delete(conn, obj("Account"), [ids["A5"]], USER, when=stamp(NOW - dt.timedelta(days=40)))
    store.close()
    return ids


@pytest.fixture(scope="module")
def tenant_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("zuora-dataquery") / "tenant"
    return data_dir, build_tenant(data_dir)


@pytest.fixture(scope="module")
def zuora(tenant_dir) -> ZuoraSandbox:
    sandbox = start_zuora_sandbox(tenant_dir[0])
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def ids(tenant_dir) -> dict[str, str]:
    return tenant_dir[1]


@pytest.fixture(scope="module")
def api(zuora) -> DataQueriesApi:
    return zuora.sdk_client().data_queries_api()


@pytest.fixture(autouse=True)
def _reset_faults(zuora):
    yield
    zuora.admin("DELETE", "dataquery")


def submit(api: DataQueriesApi, query: str, *, fmt: str = "JSON", compression: str = "NONE", **extra):
    request = SubmitDataQueryRequest(query=query, output_format=fmt, compression=compression,
                                     output=SubmitDataQueryRequestOutput(target="S3"), **extra)
    response = api.post_data_query_job(request)
    assert isinstance(response, SubmitDataQueryResponse)
    return response.data


def wait(api: DataQueriesApi, job_id: str, until=("completed", "failed", "cancelled"), timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        response = api.get_data_query_job(job_id)
        assert isinstance(response, GetDataQueryJobResponse)
        if response.data.query_status in until:
            return response.data
        assert time.monotonic() < deadline, f"job {job_id} stuck in {response.data.query_status}"
        time.sleep(0.05)


def download(url: str, compression: str = "NONE") -> str:
    response = requests.get(url, timeout=30)  # no Authorization header: the URL is the credential
    assert response.status_code == 200, response.text
    data = response.content
    return (gzip.decompress(data) if compression == "GZIP" else data).decode("utf-8")


def run(api, query: str, **options) -> tuple:
    """Submit, wait, download; returns (job, rows) with rows parsed for the output format."""
    job = wait(api, submit(api, query, **options).id)
    assert job.query_status == "completed", job.additional_properties.get("errorMessage")
    text = download(job.data_file, options.get("compression", "NONE"))
    fmt = options.get("fmt", "JSON")
    if fmt == "JSON":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        delimiter = {"CSV": ",", "TSV": "\t"}.get(fmt) or options["column_separator"]
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    assert job.output_rows == len(rows)
    return job, rows


def failure(api, query: str, **options) -> str:
    job = wait(api, submit(api, query, **options).id)
    assert job.query_status == "failed"
    assert "dataFile" not in job.additional_properties and job.data_file is None
    return job.additional_properties["errorMessage"]


def call(zuora: ZuoraSandbox, method: str, path: str, token: str | None = "auto", **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token == "auto":
        token = zuora.token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, f"{zuora.url}{path}", headers=headers, timeout=30, **kwargs)


def cancel_with_sdk(api: DataQueriesApi, job_id: str) -> DeleteDataQueryJobResponse:
    """``DataQueriesApi.delete_data_query_job`` through the SDK's own serializer and models.

    The SDK declares the DELETE path id as 64 characters (its GET takes 36) and refuses Zuora's
    36-character job ids before sending, so the call bypasses only that argument check.
    """
    param = api._delete_data_query_job_serialize(
        job_id=job_id, accept_encoding=None, content_encoding=None, authorization=None, zuora_entity_ids=None,
        zuora_track_id=None, zuora_version=None, zuora_org_ids=None, _request_auth=None, _content_type=None,
        _headers=None, _host_index=0)
    response = api.api_client.call_api(*param)
    response.read()
    return api.api_client.response_deserialize(
        response_data=response, response_types_map={"200": "DeleteDataQueryJobResponse"}).data


# -- submitting, polling, downloading ----------------------------------------------------------------


def test_submit_poll_download_json_lines(api, ids):
    accepted = submit(api, "SELECT Id, AccountNumber, Name, AutoPay, Balance, CrmId, LastInvoiceDate, "
                           "UpdatedDate FROM Account ORDER BY accountnumber")
    assert accepted.query_status == "accepted" and len(accepted.id) == 36
    assert accepted.source_data == "LIVE" and accepted.remaining_retries == 3 and accepted.use_index_join is False
    assert len(accepted.created_by) == 36 and accepted.updated_on.endswith("Z")
    assert accepted.additional_properties["outputFormat"] == "JSON"

    job = wait(api, accepted.id)
    assert job.query_status == "completed" and job.output_rows == 3 and job.processing_time >= 0
    assert job.data_file.startswith(f"{api.api_client.configuration.host}/files/dataquery/{job.id}_")
    assert ".jsonl?" in job.data_file and "X-Amz-Signature=" in job.data_file and "X-Amz-Expires=" in job.data_file
    text = download(job.data_file)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert json.loads(lines[0]) == {
        "id": ids["A1"], "accountnumber": "A-001", "name": "Alpha", "autopay": True, "balance": 230.0,
        "crmid": None, "lastinvoicedate": "2024-01-31", "updateddate": "2024-01-05 10:00:00"}
    # Decimals print without float noise: 230.0, 199.95, 0.3 (stored as 0.30000000000000004).
    assert '"balance":230.0' in lines[0] and '"balance":199.95' in lines[1] and '"balance":0.3,' in lines[2]
    assert json.loads(lines[1])["autopay"] is False and json.loads(lines[1])["name"] == 'Beta, "Quoted"'


def test_csv_tsv_dsv_and_gzip(api, ids):
    query = "SELECT accountnumber, name, autopay, balance, crmid FROM account ORDER BY accountnumber"
    job, rows = run(api, query, fmt="CSV", compression="GZIP")
    assert ".csv.gz?" in job.data_file
    assert rows[1] == {"accountnumber": "A-002", "name": 'Beta, "Quoted"', "autopay": "false", "balance": "199.95",
                       "crmid": "001000000000001AAA"}
    assert rows[0]["crmid"] == "" and rows[0]["autopay"] == "true" and rows[0]["balance"] == "230.0"
    _, tsv = run(api, query, fmt="TSV")
    assert [r["accountnumber"] for r in tsv] == ["A-001", "A-002", "A-003"]
    job, dsv = run(api, query, fmt="DSV", column_separator="|", compression="GZIP")
    assert dsv == rows and job.additional_properties["columnSeparator"] == "|"
    empty = wait(api, submit(api, "select id from account where name = 'nobody'", fmt="CSV").id)
    assert empty.output_rows == 0 and download(empty.data_file) == "id\n"


def test_windows_on_updateddate(api, ids):
    def window(condition: str) -> list[str]:
        _, rows = run(api, f"select accountnumber from account where {condition} order by accountnumber")
        return [r["accountnumber"] for r in rows]

    january = ["A-001", "A-002"]
    assert window("updateddate >= timestamp '2024-01-01 00:00:00' and updateddate < timestamp '2024-02-01 00:00:00'") == january
    assert window("updateddate >= date '2024-01-01' and updateddate < date '2024-02-01'") == january
    assert window("updateddate >= '2024-01-01T00:00:00Z' and updateddate < '2024-02-01T00:00:00.000+00:00'") == january
    assert window("updateddate > from_iso8601_timestamp('2024-01-20T23:59:58Z')") == ["A-002", "A-003"]
    # An offset is converted to UTC: 2024-01-20 16:59:59 -07:00 is the instant A2 was updated.
    assert window("updateddate = timestamp '2024-01-20 16:59:59 -07:00'") == ["A-002"]
    assert window("createddate between timestamp '2024-01-05 10:00:00' and timestamp '2024-01-20 23:59:59'") == january
    assert window("updateddate > date_add('day', -1, timestamp '2024-02-10 09:00:00')") == ["A-003"]
    assert window("updateddate > timestamp '2024-02-10 09:00:00' - interval '1' day") == ["A-003"]
    assert window("updateddate <= current_timestamp and lastinvoicedate >= date '2024-01-01'") == ["A-001"]


def test_pacific_tenant_shows_and_reads_times_in_its_zone(tmp_path):
    """Zuora system time (the default zone) is Pacific: results show it, naive literals mean it."""
    data_dir = tmp_path / "pacific"
    tenant = Tenant(data_dir)
    with tenant.store.write() as conn:
        for number, when in (("W-1", "2024-01-05 10:00:00"), ("S-1", "2024-07-01 06:30:00")):
            tenant.store.insert(conn, tenant.schema.get("Account"), [{
                "AccountNumber": number, "Name": number, "Currency": "USD", "BillCycleDay": 1}], USER, when=when)
    tenant.store.close()
    sandbox = start_zuora_sandbox(data_dir)
    try:
        api = DataQueriesApi(sandbox.sdk_client().api_client)
        _, rows = run(api, "select accountnumber, updateddate from account order by accountnumber")
        # 10:00 UTC in January is 02:00 PST; 06:30 UTC in July is 23:30 PDT the day before.
        assert rows == [{"accountnumber": "S-1", "updateddate": "2024-06-30 23:30:00"},
                        {"accountnumber": "W-1", "updateddate": "2024-01-05 02:00:00"}]
        _, rows = run(api, "select accountnumber from account where updateddate = timestamp '2024-01-05 02:00:00'")
        assert rows == [{"accountnumber": "W-1"}]
        _, rows = run(api, "select accountnumber from account where updateddate = '2024-01-05T10:00:00Z'")
        assert rows == [{"accountnumber": "W-1"}]
    finally:
        sandbox.stop()


def test_deleted_rows_in_all_three_modes(api, ids):
    _, live = run(api, "SELECT id FROM account")
    assert {r["id"] for r in live} == {ids["A1"], ids["A2"], ids["A3"]}

    _, both = run(api, "SELECT id, deleted FROM Account")
    assert {r["id"]: r["deleted"] for r in both} == {ids["A1"]: False, ids["A2"]: False, ids["A3"]: False,
                                                    ids["A4"]: True}  # A5 is past the 30-day retention
    _, only_deleted = run(api, "SELECT id, accountnumber, updateddate FROM account", read_deleted=True)
    assert [r["id"] for r in only_deleted] == [ids["A4"]]
    assert only_deleted[0]["updateddate"] == stamp(NOW - dt.timedelta(days=5))
    # Selecting deleted wins over readDeleted, as Zuora documents; WHERE can then filter on it.
    _, filtered = run(api, "SELECT id, deleted FROM account WHERE deleted = true", read_deleted=False)
    assert [r["id"] for r in filtered] == [ids["A4"]]
    _, csv_rows = run(api, "SELECT accountnumber, deleted FROM account ORDER BY 1", fmt="CSV")
    assert [r["deleted"] for r in csv_rows] == ["false", "false", "false", "true"]
    # SELECT * never includes deleted (nor the sandbox's deleteddate).
    _, star = run(api, "SELECT * FROM account WHERE accountnumber = 'A-001'")
    assert "deleted" not in star[0] and "deleteddate" not in star[0] and star[0]["billcycleday"] == 1


def test_count_group_by_order_by_limit(api, ids):
    _, rows = run(api, "SELECT count(*) FROM account")
    assert rows == [{"_col0": 3}]
    _, rows = run(api, "SELECT status, COUNT(*) AS n, SUM(balance) AS total FROM account GROUP BY status ORDER BY n DESC, status")
    assert rows == [{"status": "Active", "n": 2, "total": 429.95}, {"status": "Draft", "n": 1, "total": 0.3}]
    _, rows = run(api, "SELECT accountnumber FROM account ORDER BY createddate DESC LIMIT 2")
    assert [r["accountnumber"] for r in rows] == ["A-003", "A-002"]
    _, rows = run(api, "SELECT accountnumber FROM account WHERE name LIKE 'G%' OR billcycleday IN (15) "
                       "AND NOT autopay ORDER BY 1")
    assert [r["accountnumber"] for r in rows] == ["A-002", "A-003"]
    _, rows = run(api, "SELECT accountnumber FROM account WHERE name LIKE 'g%'")  # LIKE is case-sensitive
    assert rows == []
    _, rows = run(api, "SELECT count(*) AS n FROM account WHERE crmid IS NULL")
    assert rows == [{"n": 2}]
    _, rows = run(api, "SELECT accountnumber, balance * 2 AS twice FROM account "
                       "WHERE id IN (SELECT accountid FROM subscription) ORDER BY 1")
    assert rows == [{"accountnumber": "A-001", "twice": 460.0}, {"accountnumber": "A-002", "twice": 399.9}]
    _, rows = run(api, "WITH active AS (SELECT id FROM subscription WHERE status = 'Active') "
                       "SELECT count(*) AS n FROM rateplan rp JOIN active ON active.id = rp.subscriptionid")
    assert rows == [{"n": 1}]


def test_join_charges_to_subscriptions(api, ids):
    _, rows = run(api, """
        SELECT rpc.id AS chargeid, rpc.price, rp.name AS plan, s.name AS subscription, s.autorenew, a.accountnumber
        FROM rateplancharge rpc
        JOIN rateplan rp ON rp.id = rpc.rateplanid
        JOIN subscription s ON s.id = rp.subscriptionid
        JOIN account a ON a.id = s.accountid
        WHERE s.status = 'Active'
        ORDER BY rpc.price""")
    assert rows == [
        {"chargeid": ids["C1"], "price": 10.5, "plan": "Gold", "subscription": "S-001", "autorenew": True,
         "accountnumber": "A-001"},
        {"chargeid": ids["C2"], "price": 20.0, "plan": "Gold", "subscription": "S-001", "autorenew": True,
         "accountnumber": "A-001"},
    ]


def test_show_tables_and_describe(api):
    _, tables = run(api, "SHOW TABLES")
    assert {"Table": "rateplancharge"} in tables and {"Table": "account"} in tables
    _, columns = run(api, "DESCRIBE account")
    by_name = {c["Column"]: c for c in columns}
    assert by_name["balance"]["Type"] == "decimal(18,6)" and by_name["updateddate"]["Type"] == "timestamp with time zone"
    assert by_name["accountnumber"]["Comment"] == "AccountNumber"


def test_bad_queries_fail_with_trino_messages(api):
    assert failure(api, "SELECT id, nosuch FROM account") == "line 1:12: Column 'nosuch' cannot be resolved"
    assert failure(api, "SELECT a.id\nFROM account a WHERE a.nosuch = 1") == "line 2:24: Column 'a.nosuch' cannot be resolved"
    assert failure(api, "SELECT id FROM nosuch") == "line 1:16: Table 'nosuch' does not exist"
    assert failure(api, "SELECT id FROM _jobs") == "line 1:16: Table '_jobs' does not exist"
    assert failure(api, "DELETE FROM account").startswith("Access Denied: Cannot delete from table account")
    assert failure(api, "DROP TABLE account").startswith("Access Denied: Cannot drop")
    assert failure(api, "UPDATE account SET name = 'x'").startswith("Access Denied")
    assert failure(api, "SELECT 1; DELETE FROM account") == "line 1:9: mismatched input ';'. Expecting: <EOF>"
    assert failure(api, "SELEC id FROM account").startswith("line 1:")
    assert failure(api, "SELECT id FROM account a JOIN contact c ON c.accountid = a.id WHERE id = 'x'") == \
        "line 1:8: Column 'id' is ambiguous"
    assert failure(api, "SELECT id FROM account WHERE updateddate > timestamp 'yesterday'") == \
        "line 1:44: 'yesterday' is not a valid timestamp literal"


# -- list, cancel, errors ------------------------------------------------------------------------------


def test_cancel_and_list(api, zuora):
    zuora.admin("POST", "dataquery", {"delay_seconds": 30})
    job_id = submit(api, "SELECT id FROM account").id
    running = wait(api, job_id, until=("in_progress",))
    assert running.query_status == "in_progress"
    cancelled = cancel_with_sdk(api, job_id)
    assert isinstance(cancelled, DeleteDataQueryJobResponse)
    assert cancelled.data.query_status == "cancelled" and cancelled.data.id == job_id
    time.sleep(0.3)
    assert api.get_data_query_job(job_id).data.query_status == "cancelled"  # the worker left it so
    queued = submit(api, "SELECT id FROM account").id  # waits behind the delay, still accepted
    assert cancel_with_sdk(api, queued).data.query_status == "cancelled"
    again = call(zuora, "DELETE", f"/query/jobs/{job_id}")
    assert again.status_code == 400 and again.json()["code"] == 400 and "cancelled" in again.json()["message"]

    listing = api.get_data_query_jobs(query_status="cancelled", page_size=40)
    assert isinstance(listing, GetDataQueryJobsResponse)
    assert [j.id for j in listing.data][:2] == [queued, job_id]  # newest first
    assert all(j.query_status == "cancelled" for j in listing.data)
    assert len(api.get_data_query_jobs(page_size=1).data) == 1
    completed = api.get_data_query_jobs(query_status="completed").data
    assert completed and all(j.data_file for j in completed)
    assert call(zuora, "GET", "/query/jobs?queryStatus=bogus").status_code == 400


def test_http_errors_in_zuora_shapes(zuora, api):
    body = {"query": "select id from account", "outputFormat": "JSON", "compression": "NONE",
            "output": {"target": "S3"}}
    unauthenticated = call(zuora, "POST", "/query/jobs", token=None, json=body)
    assert unauthenticated.status_code == 401 and unauthenticated.json() == {"message": "Authentication error"}
    wrong_type = call(zuora, "POST", "/query/jobs", data=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert wrong_type.json() == {"code": 415, "message": "HTTP 415 Unsupported Media Type"}
    for bad, words in (({"outputFormat": "XML"}, "outputFormat"), ({"compression": "ZIP"}, "ZIP"),
                       ({"query": ""}, "query"), ({"outputFormat": "DSV"}, "columnSeparator")):
        response = call(zuora, "POST", "/query/jobs", json={**body, **bad})
        assert response.status_code == 400 and words in response.json()["message"], response.text
    missing = call(zuora, "GET", "/query/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["code"] == 404
    # The SDK raises for error statuses; the bodies parse with the models it declares for them.
    with pytest.raises(ApiException) as raised:
        submit(api, "select id from account", fmt="XML")
    assert raised.value.status == 400
    assert CommonErrorResponse.from_json(raised.value.body).message.startswith("outputFormat")
    with pytest.raises(ApiException) as raised:
        api.get_data_query_job("00000000-0000-0000-0000-000000000000")
    assert raised.value.status == 404 and DataQueryErrorResponse.from_json(raised.value.body).code == 404
    gzipped = call(zuora, "POST", "/query/jobs", data=gzip.compress(json.dumps(body).encode()),
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert gzipped.status_code == 200 and gzipped.json()["data"]["queryStatus"] == "accepted"


def test_file_url_signature_is_checked(api, zuora):
    job, _ = run(api, "SELECT id FROM account")
    parts = urlsplit(job.data_file)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}

    def fetch(**changes) -> requests.Response:
        query = urlencode({**params, **changes})
        return requests.get(urlunsplit(parts._replace(query=query)), timeout=30)

    assert fetch().status_code == 200
    tampered = fetch(**{"X-Amz-Signature": "0" * 64})
    assert tampered.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    stretched = fetch(**{"X-Amz-Expires": "999999"})
    assert stretched.status_code == 403 and "SignatureDoesNotMatch" in stretched.text
    assert requests.get(job.data_file.split("?")[0], timeout=30).status_code == 403
    other_name = requests.get(job.data_file.replace(job.id, "00000000-0000-0000-0000-000000000000"), timeout=30)
    assert other_name.status_code == 403

    zuora.admin("POST", "dataquery", {"url_ttl_seconds": 1})
    short_lived = api.get_data_query_job(job.id).data.data_file
    assert "X-Amz-Expires=1&" in short_lived
    time.sleep(2.1)
    expired = requests.get(short_lived, timeout=30)
    assert expired.status_code == 403 and expired.headers["content-type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text


# -- fault hooks and restarts ------------------------------------------------------------------------------


def test_fault_hooks(api, zuora):
    zuora.admin("POST", "dataquery", {"fail_next": "Query failed: simulated outage"})
    assert failure(api, "SELECT id FROM account") == "Query failed: simulated outage"
    assert wait(api, submit(api, "SELECT id FROM account").id).query_status == "completed"  # only the next

    zuora.admin("POST", "dataquery", {"truncate_next": True})
    job = wait(api, submit(api, "SELECT id, name FROM account", compression="GZIP").id)
    assert job.query_status == "completed" and job.output_rows == 3
    with pytest.raises(EOFError):
        gzip.decompress(requests.get(job.data_file, timeout=30).content)
    job = wait(api, submit(api, "SELECT id, name FROM account").id)
    assert len(download(job.data_file).splitlines()) == 3  # the fault was used up

    zuora.admin("POST", "dataquery", {"delay_seconds": 1})
    job_id = submit(api, "SELECT id FROM account").id
    assert wait(api, job_id, until=("in_progress",)).query_status == "in_progress"
    assert wait(api, job_id).query_status == "completed"

    zuora.admin("POST", "dataquery", {"max_output_rows": 2})
    assert failure(api, "SELECT id FROM account").startswith("Query exceeded the maximum number of output records")
    bad = requests.post(f"{zuora.url}/__admin/dataquery", json={"nonsense": 1}, timeout=30)
    assert bad.status_code == 400


def test_jobs_survive_a_restart(tmp_path):
    data_dir = tmp_path / "tenant"
    build_tenant(data_dir)
    sandbox = start_zuora_sandbox(data_dir)
    try:
        api = sandbox.sdk_client().data_queries_api()
        done = wait(api, submit(api, "SELECT id FROM account").id)
        sandbox.admin("POST", "dataquery", {"delay_seconds": 60})
        interrupted = submit(api, "SELECT count(*) AS n FROM account").id
        wait(api, interrupted, until=("in_progress",))
        queued = submit(api, "SELECT accountnumber FROM account", fmt="CSV").id
    finally:
        sandbox.stop()
    sandbox = start_zuora_sandbox(data_dir)  # faults are gone; unfinished jobs resume
    try:
        api = sandbox.sdk_client().data_queries_api()
        resumed = wait(api, interrupted)
        assert resumed.query_status == "completed" and resumed.remaining_retries == 2
        assert json.loads(download(resumed.data_file)) == {"n": 3}
        assert wait(api, queued).output_rows == 3
        before = api.get_data_query_job(done.id).data
        assert before.query_status == "completed" and f":{sandbox.port}/" in before.data_file
        assert len(download(before.data_file).splitlines()) == 3
    finally:
        sandbox.stop()
