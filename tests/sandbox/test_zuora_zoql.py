"""ZOQL query/queryMore and describe on the Zuora sandbox, over real HTTP.

The tenant is built here, before the server starts: rows go in through ``TenantStore.insert`` with
chosen ``UpdatedDate`` values, so filters, time zones and paging have known answers. Calls go
through Zuora's own ``zuora-sdk`` where it has a method, and through plain HTTP where the raw
wire shape (status, body keys, content type) is the point.
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest
import requests
import zuora_sdk
from zuora_sdk.exceptions import BadRequestException, NotFoundException

from sandbox.zuora.schema import load_schema
from sandbox.zuora.tenant import Tenant
from conftest import ZuoraSandbox, start_zuora_sandbox

USER = "2c92c0f95f1cd5b1015f2a9f70c57cf4"
BULK = 4500  # more than two pages of 2,000
SNAP = 250

# Accounts the filter tests pick from (all in Batch "Filters"); None means the field stays null.
FILTER_ACCOUNTS = [
    # AccountNumber, Name, Status, Balance, BillCycleDay, AutoPay, CrmId, LastInvoiceDate, UpdatedDate (UTC)
    ("F-1", "Acme Corp", "Active", 100.5, 1, 1, "001A", "2024-01-15", "2024-01-01 10:00:00"),
    ("F-2", "acme lower", "Draft", 0.0, 15, 0, None, "2023-12-31", "2024-07-01 10:00:00"),
    ("F-3", "Beta_Works 100%", "Canceled", -5.0, 31, None, "001C", None, "2024-03-10 12:30:00"),
    ("F-4", "Gamma O'Hara", "Active", 20.0, 28, 1, None, "2024-02-01", "2024-03-10 07:59:59"),
]
DELETED_NUMBER = "F-DEL"


def _account(number, name, status, balance, bcd, autopay, crm_id, last_invoice):
    return {"AccountNumber": number, "Name": name, "Status": status, "Balance": balance, "BillCycleDay": bcd,
            "AutoPay": autopay, "CrmId": crm_id, "LastInvoiceDate": last_invoice, "Currency": "USD",
            "Batch": "Filters"}


def _build_tenant(data_dir: Path) -> dict[str, str]:
    """The test tenant; returns AccountNumber → Id for the filter accounts and the deleted one."""
    tenant = Tenant(data_dir)
    account = tenant.schema.get("Account")
    ids: dict[str, str] = {}
    with tenant.store.write() as conn:
        for number, *rest, updated in FILTER_ACCOUNTS:
            (ids[number],) = tenant.store.insert(conn, account, [_account(number, *rest)], USER, when=updated)
        (ids[DELETED_NUMBER],) = tenant.store.insert(
            conn, account, [_account(DELETED_NUMBER, "Acme Deleted", "Active", 1.0, 1, 1, "001D", None)], USER,
            when="2024-01-01 10:00:00")
        tenant.store.delete(conn, account, [ids[DELETED_NUMBER]], USER, when="2024-01-02 10:00:00")
        tenant.store.insert(conn, account, [
            {"Name": f"Bulk {i:05d}", "AccountNumber": f"B-{i:05d}", "Currency": "EUR", "BillCycleDay": 1,
             "Batch": "Bulk"} for i in range(BULK)], USER, when="2024-05-01 00:00:00")
        tenant.store.insert(conn, account, [
            {"Name": f"Snap {i:03d}", "Currency": "EUR", "BillCycleDay": 1, "Batch": "Snap"} for i in range(SNAP)],
            USER, when="2024-05-01 00:00:00")
    tenant.store.close()
    return ids


@pytest.fixture(scope="module")
def tenant_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ZuoraSandbox, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("zoql") / "tenant"
    ids = _build_tenant(data_dir)
    sandbox = start_zuora_sandbox(data_dir)
    try:
        yield sandbox, ids
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def sandbox(tenant_ids) -> ZuoraSandbox:
    return tenant_ids[0]


@pytest.fixture(scope="module")
def ids(tenant_ids) -> dict[str, str]:
    return tenant_ids[1]


def query(sdk, text: str, batch: int | None = None) -> zuora_sdk.ProxyActionqueryResponse:
    conf = zuora_sdk.ProxyActionqueryMoreRequestConf(batch_size=batch) if batch else None
    return sdk.actions_api().action_post_query(zuora_sdk.ProxyActionqueryRequest(query_string=text, conf=conf))


def query_more(sdk, locator: str, batch: int | None = None) -> zuora_sdk.ProxyActionqueryMoreResponse:
    conf = zuora_sdk.ProxyActionqueryMoreRequestConf(batch_size=batch) if batch else None
    return sdk.actions_api().action_postquery_more(
        zuora_sdk.ProxyActionqueryMoreRequest(query_locator=locator, conf=conf))


def numbers(response) -> set[str]:
    return {record["AccountNumber"] for record in response.records}


def fault_of(sdk, text: str) -> tuple[str, str]:
    with pytest.raises(BadRequestException) as caught:
        query(sdk, text)
    assert caught.value.status == 400
    fault = caught.value.data
    assert isinstance(fault, zuora_sdk.FaultResponse)
    return fault.fault_code, fault.fault_message


# -- the response shape -------------------------------------------------------------------------------


def test_records_carry_zuora_spelling_types_and_omit_nulls(sdk, ids):
    # Names typed in any case come back as Zuora spells them; Id comes back although not selected.
    response = query(sdk, "select accountnumber, NAME, CrmId, Balance, BillCycleDay, AutoPay, LastInvoiceDate, "
                          "status from account where AccountNumber = 'F-2'")
    assert isinstance(response, zuora_sdk.ProxyActionqueryResponse)
    assert (response.size, response.done, response.query_locator) == (1, True, None)
    assert response.records == [{
        "Id": ids["F-2"], "AccountNumber": "F-2", "Name": "acme lower", "Balance": 0.0, "BillCycleDay": 15,
        "AutoPay": False, "LastInvoiceDate": "2023-12-31", "Status": "Draft",
    }]  # CrmId is null and therefore absent


def test_wire_shape_of_a_single_page(sandbox, auth):
    response = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30, json={
        "queryString": "select Id, Balance, AutoPay from Account where AccountNumber = 'F-1'"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"records", "size", "done"}  # no queryLocator when done
    assert body["records"][0]["Balance"] == 100.5 and body["records"][0]["AutoPay"] is True


def test_deleted_records_are_never_returned(sdk, ids):
    assert query(sdk, f"select Id from Account where Id = '{ids[DELETED_NUMBER]}'").records == []
    assert DELETED_NUMBER not in numbers(query(sdk, "select AccountNumber from Account where Batch = 'Filters'"))
    assert query(sdk, "select Id from Account where Name like 'Acme%'").size == 1


# -- filters --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ("Status = 'Active'", {"F-1", "F-4"}),
    ("Status != 'Active'", {"F-2", "F-3"}),
    ("Name = 'acme corp'", set()),  # string values are case-sensitive
    ("Name = 'Gamma O\\'Hara'", {"F-4"}),
    ("BillCycleDay < 15", {"F-1"}),
    ("BillCycleDay <= 15", {"F-1", "F-2"}),
    ("BillCycleDay > 28", {"F-3"}),
    ("BillCycleDay >= 28", {"F-3", "F-4"}),
    ("BillCycleDay = '15'", {"F-2"}),  # quotes around numbers are optional
    ("Balance > 0", {"F-1", "F-4"}),
    ("Balance < -1.5", {"F-3"}),
    ("AutoPay = true", {"F-1", "F-4"}),
    ("AutoPay = 'false'", {"F-2"}),
    ("AutoPay != true", {"F-2"}),  # != never matches null, as in Zuora's SQL
    ("Name like 'Acme%'", {"F-1"}),  # like is case-sensitive too
    ("Name like '%a'", {"F-4"}),
    ("Name like '_cme%'", {"F-1", "F-2"}),
    ("Name like '%100\\%'", {"F-3"}),
    ("Name like 'Beta\\_W%'", {"F-3"}),
    ("CrmId is null", {"F-2", "F-4"}),
    ("CrmId is not null", {"F-1", "F-3"}),
    ("CrmId = null", {"F-2", "F-4"}),
    ("CrmId != null", {"F-1", "F-3"}),
    ("LastInvoiceDate >= '2024-01-15'", {"F-1", "F-4"}),
    ("LastInvoiceDate < '2024-01-01'", {"F-2"}),
    ("Status = 'Active' and Balance < 50", {"F-4"}),
    ("Status = 'Active' AND Balance < 50", {"F-4"}),  # keywords in any case
])
def test_filter(sdk, condition, expected):
    response = query(sdk, f"select AccountNumber from Account where Batch = 'Filters' and {condition}")
    assert numbers(response) == expected


def test_and_binds_tighter_than_or(sdk):
    # Read as (Draft) or (Canceled and Balance > 0): the Canceled account has a negative balance.
    text = ("SELECT AccountNumber FROM Account WHERE Batch = 'Filters' and Status = 'Draft' "
            "or Batch = 'Filters' and Status = 'Canceled' and Balance > 0")
    assert numbers(query(sdk, text)) == {"F-2"}
    text = ("select AccountNumber from Account where Batch = 'Filters' and Status = 'Draft' "
            "or Batch = 'Filters' and Status = 'Canceled'")
    assert numbers(query(sdk, text)) == {"F-2", "F-3"}


# -- time zone -------------------------------------------------------------------------------------------


def test_datetimes_render_in_pacific_time_with_offset(sdk):
    records = {r["AccountNumber"]: r for r in query(
        sdk, "select AccountNumber, CreatedDate, UpdatedDate from Account where Batch = 'Filters'").records}
    assert records["F-1"]["UpdatedDate"] == "2024-01-01T02:00:00.000-08:00"  # PST
    assert records["F-2"]["UpdatedDate"] == "2024-07-01T03:00:00.000-07:00"  # PDT
    assert records["F-3"]["CreatedDate"] == "2024-03-10T05:30:00.000-07:00"  # after the spring change
    assert records["F-4"]["CreatedDate"] == "2024-03-09T23:59:59.000-08:00"  # before it, previous day


@pytest.mark.parametrize(("condition", "expected"), [
    ("UpdatedDate = '2024-01-01T02:00:00'", {"F-1"}),  # no offset: tenant time (Pacific)
    ("UpdatedDate = '2024-01-01T10:00:00'", set()),  # ... so this is 18:00 UTC
    ("UpdatedDate = '2024-01-01T10:00:00Z'", {"F-1"}),
    ("UpdatedDate = '2024-01-01T11:00:00+01:00'", {"F-1"}),
    ("UpdatedDate = '2024-01-01T02:00:00.000-08:00'", {"F-1"}),
    ("UpdatedDate > '2024-01-01T02:00:00'", {"F-2", "F-3", "F-4"}),
    ("UpdatedDate >= '2024-01-01T02:00:00.001'", {"F-2", "F-3", "F-4"}),
    ("UpdatedDate <= '2024-01-01T02:00:00.001'", {"F-1"}),
    ("UpdatedDate > '2024-03-10T00:00:00'", {"F-2", "F-3"}),  # F-4 is 23:59:59 on the 9th, Pacific
    ("UpdatedDate > '2024-03-10T00:00:00Z'", {"F-2", "F-3", "F-4"}),
    ("UpdatedDate < '2024-03-10'", {"F-1", "F-4"}),  # a date is midnight, tenant time
    ("LastInvoiceDate = '2024-01-15T23:00:00'", {"F-1"}),  # a datetime against a date: its day
])
def test_datetime_literals_are_read_in_tenant_time(sdk, condition, expected):
    response = query(sdk, f"select AccountNumber from Account where Batch = 'Filters' and {condition}")
    assert numbers(response) == expected


def test_another_tenant_time_zone(tmp_path: Path):
    data_dir = tmp_path / "paris"
    tenant = Tenant(data_dir)
    tenant.store.set_setting("time_zone", "Europe/Paris")
    with tenant.store.write() as conn:
        tenant.store.insert(conn, tenant.schema.get("Account"), [_account("P-1", "Paris", "Active", 1, 1, 1, None, None)],
                            USER, when="2024-01-01 10:00:00")
    tenant.store.close()
    paris = start_zuora_sandbox(data_dir)
    try:
        sdk = paris.sdk_client()
        record = query(sdk, "select UpdatedDate from Account where UpdatedDate = '2024-01-01T11:00:00'").records[0]
        assert record["UpdatedDate"] == "2024-01-01T11:00:00.000+01:00"
        assert query(sdk, "select Id from Account where UpdatedDate = '2024-01-01T02:00:00-08:00'").size == 1
    finally:
        paris.stop()


# -- paging ------------------------------------------------------------------------------------------------


def test_query_more_pages_through_4500_records(sdk):
    first = query(sdk, "select Name, AccountNumber from Account where Batch = 'Bulk'")
    assert (first.size, first.done, len(first.records)) == (BULK, False, 2000)
    assert first.query_locator.endswith("-2000")
    second = query_more(sdk, first.query_locator)
    assert isinstance(second, zuora_sdk.ProxyActionqueryMoreResponse)
    assert (second.size, second.done, len(second.records)) == (BULK, False, 2000)
    third = query_more(sdk, second.query_locator)
    assert (third.size, third.done, len(third.records), third.query_locator) == (BULK, True, 500, None)
    seen = [r["AccountNumber"] for r in first.records + second.records + third.records]
    assert seen == [f"B-{i:05d}" for i in range(BULK)]  # every record once, in a stable order
    # A retried locator returns the same page again.
    assert query_more(sdk, first.query_locator).records == second.records


def test_batch_size_in_conf(sdk):
    first = query(sdk, "select Id from Account where Batch = 'Snap'", batch=100)
    assert (len(first.records), first.done, first.query_locator.split("-")[1]) == (100, False, "100")
    second = query_more(sdk, first.query_locator, batch=120)
    assert (len(second.records), second.query_locator.split("-")[1]) == (120, "220")
    assert len(query_more(sdk, second.query_locator).records) == 30  # the query's batch size again
    assert len(query(sdk, "select Id from Account where Batch = 'Bulk'", batch=5000).records) == 2000


def test_pages_come_from_the_snapshot_of_the_first_call(sdk, sandbox):
    first = query(sdk, "select Id, Name from Account where Batch = 'Snap'", batch=100)
    page_one = {r["Id"] for r in first.records}
    with sqlite3.connect(sandbox.data_dir / "tenant.sqlite3") as conn:
        # A new match after the first call is not in the snapshot; one deleted since is skipped;
        # one renamed since shows its current values.
        conn.execute("INSERT INTO account (id, name, currency, billcycleday, batch, deleted) "
                     "VALUES ('ffffffffffffffffffffffffffffffff', 'Snap new', 'EUR', 1, 'Snap', 0)")
        later = conn.execute("SELECT id FROM account WHERE batch = 'Snap' ORDER BY rowid LIMIT 2 OFFSET 150"
                             ).fetchall()
        conn.execute("UPDATE account SET deleted = 1 WHERE id = ?", later[0])
        conn.execute("UPDATE account SET name = 'Snap renamed' WHERE id = ?", later[1])
    try:
        rest = query_more(sdk, first.query_locator, batch=200)
        assert rest.done and rest.size == SNAP
        rest_ids = [r["Id"] for r in rest.records]
        assert len(rest_ids) == SNAP - 100 - 1 and later[0][0] not in rest_ids and not page_one & set(rest_ids)
        assert "ffffffffffffffffffffffffffffffff" not in rest_ids
        assert {"Id": later[1][0], "Name": "Snap renamed"} in rest.records
    finally:
        with sqlite3.connect(sandbox.data_dir / "tenant.sqlite3") as conn:
            conn.execute("DELETE FROM account WHERE id = 'ffffffffffffffffffffffffffffffff'")
            conn.execute("UPDATE account SET deleted = 0 WHERE id = ?", later[0])
            conn.execute("UPDATE account SET name = 'Snap 151' WHERE id = ?", later[1])


def test_cursors_persist_and_expire_after_15_idle_minutes(sdk, sandbox):
    first = query(sdk, "select Id from Account where Batch = 'Snap'", batch=100)
    cursor_id = first.query_locator.split("-")[0]
    db = sandbox.data_dir / "tenant.sqlite3"
    with sqlite3.connect(db) as conn:
        (spec,) = conn.execute("SELECT spec FROM _cursors WHERE id = ?", (f"zoql:{cursor_id}",)).fetchone()
        header = json.loads(spec)
        assert header["total"] == SNAP
        header["last_used"] -= 14 * 60  # still live: 14 minutes idle
        conn.execute("UPDATE _cursors SET spec = ? WHERE id = ?", (json.dumps(header), f"zoql:{cursor_id}"))
    second = query_more(sdk, first.query_locator)  # using it restarts the clock
    with sqlite3.connect(db) as conn:
        header = json.loads(conn.execute("SELECT spec FROM _cursors WHERE id = ?", (f"zoql:{cursor_id}",)).fetchone()[0])
        header["last_used"] -= 15 * 60 + 1
        conn.execute("UPDATE _cursors SET spec = ? WHERE id = ?", (json.dumps(header), f"zoql:{cursor_id}"))
    with pytest.raises(BadRequestException) as caught:
        query_more(sdk, second.query_locator)
    assert caught.value.data.fault_code == "INVALID_VALUE"
    assert "expired" in caught.value.data.fault_message


@pytest.mark.parametrize("locator", ["nonsense", "0123456789abcdef0123456789abcdef-2000", ""])
def test_unknown_query_locator(sdk, locator):
    with pytest.raises(BadRequestException) as caught:
        query_more(sdk, locator)
    assert caught.value.data.fault_code == "INVALID_VALUE"
    assert caught.value.data.fault_message.startswith("invalid query locator")


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "code", "message"), [
    ("select Id from Nope", "INVALID_TYPE", "invalid type specified: Nope"),
    ("select Id, Foo from Account", "INVALID_FIELD", "invalid field for query: Account.Foo"),
    ("select Id from Account where Bar = 'x'", "INVALID_FIELD", "invalid field for query: Account.Bar"),
    ("select * from Account", "MALFORMED_QUERY", "'*' is not supported"),
    ("select Id from Account, Contact", "MALFORMED_QUERY", "joins are not supported"),
    ("select Account.Name from Contact", "MALFORMED_QUERY", "joins are not supported"),
    ("select Id from Account order by Name", "MALFORMED_QUERY", "order by is not supported"),
    ("select Id from Account where Status in ('Active')", "MALFORMED_QUERY", "the in operator is not supported"),
    ("select Id from Account where (Status = 'Active')", "MALFORMED_QUERY", "parentheses are not supported"),
    ("select Id from Account limit 10", "MALFORMED_QUERY", "limit is not supported"),
    ("select Id from Account where Name = CrmId", "MALFORMED_QUERY", "comparison between two fields"),
    ("select Id from Account where Name = Active", "MALFORMED_QUERY", "quote string values"),
    ("select Id from Account where", "MALFORMED_QUERY", "unexpected end of query"),
    ("select Id from Account where Name = 'open", "MALFORMED_QUERY", "unterminated string"),
    ("select Id from Account where " + " or ".join(["Name = 'x'"] * 201), "MALFORMED_QUERY",
     "at most 200 conditions"),
    ("select Id from Account where BillCycleDay = 'abc'", "INVALID_VALUE", "invalid value for Account.BillCycleDay"),
    ("select Id from Account where UpdatedDate > 'yesterday'", "INVALID_VALUE", "invalid value for Account.UpdatedDate"),
    ("select Id from Account where AutoPay > true", "INVALID_VALUE", "only = and != apply"),
    ("select Id from Account where Balance like '1%'", "INVALID_VALUE", "like is only supported on text fields"),
    ("select Id from Account where Name < null", "INVALID_VALUE", "null can only be compared"),
])
def test_query_errors_are_zuora_faults(sdk, text, code, message):
    fault_code, fault_message = fault_of(sdk, text)
    assert fault_code == code
    assert message in fault_message


def test_200_conditions_are_allowed(sdk):
    text = "select Id from Account where " + " or ".join(["AccountNumber = 'F-1'"] * 200)
    assert query(sdk, text).size == 1


def test_fault_wire_shape(sandbox, auth):
    response = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30,
                             json={"queryString": "select Id, Foo from Account"})
    assert response.status_code == 400
    assert response.json() == {"FaultCode": "INVALID_FIELD", "FaultMessage": "invalid field for query: Account.Foo"}
    response = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30, json={})
    assert (response.status_code, response.json()["FaultCode"]) == (400, "MALFORMED_QUERY")
    response = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30, data=b"not json")
    assert (response.status_code, response.json()["FaultCode"]) == (400, "INVALID_VALUE")
    response = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30,
                             json={"queryString": "select Id from Account", "conf": {"batchSize": 0}})
    assert (response.status_code, response.json()["FaultCode"]) == (400, "INVALID_VALUE")


def test_reject_unknown_fields(sandbox, auth):
    body = {"queryString": "select Id from Account where AccountNumber = 'F-1'", "extra": 1}
    assert requests.post(f"{sandbox.url}/v1/action/query", headers=auth, json=body, timeout=30).status_code == 200
    response = requests.post(f"{sandbox.url}/v1/action/query?rejectUnknownFields=true", headers=auth, json=body,
                             timeout=30)
    assert (response.status_code, response.json()) == (400, {"message": "Error - unrecognised fields"})


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/action/query"), ("POST", "/v1/action/queryMore"), ("GET", "/v1/describe/Account"),
])
def test_401_without_a_token(sandbox, method, path):
    response = requests.request(method, f"{sandbox.url}{path}", json={"queryString": "select Id from Account"},
                                timeout=30)
    assert (response.status_code, response.json()) == (401, {"message": "Authentication error"})
    response = requests.request(method, f"{sandbox.url}{path}", headers={"Authorization": "Bearer nope"},
                                json={"queryString": "select Id from Account"}, timeout=30)
    assert response.status_code == 401


# -- describe -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(load_schema().objects))
def test_describe_lists_the_schema_fields(sdk, name):
    document = sdk.describe_api().get_describe(name)
    assert isinstance(document, str)
    root = ET.fromstring(document)
    obj = load_schema().get(name)
    assert root.tag == "object" and root.findtext("name") == name and root.findtext("label") == obj.label
    assert root.get("href").endswith(f"/v1/describe/{name}")
    fields = {f.findtext("name"): f for f in root.find("fields")}
    assert list(fields) == list(obj.fields)
    for zfield in obj.fields.values():
        element = fields[zfield.name]
        assert [c.text for c in element.find("contexts")] == ["soap", "export"]
        assert element.findtext("selectable") == "true"
        assert element.findtext("required") == str(zfield.required).lower()
        assert element.findtext("createable") == str(zfield.createable).lower()
        assert element.findtext("updateable") == str(zfield.updateable).lower()
        assert element.findtext("type") == {"id": "text", "string": "text"}.get(zfield.type, zfield.type)
        if zfield.type == "picklist":
            assert [o.text for o in element.find("options")] == zfield.values


def test_describe_details(sandbox, auth):
    response = requests.get(f"{sandbox.url}/v1/describe/account", headers={**auth, "Accept": "text/xml"}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.findtext("name") == "Account"  # canonical spelling whatever the path's case
    fields = {f.findtext("name"): f for f in root.find("fields")}
    assert fields["AccountNumber"].findtext("label") == "Account Number"
    assert fields["AccountNumber"].findtext("maxlength") == "70"
    assert fields["Balance"].findtext("createable") == "true" and fields["Balance"].findtext("updateable") == "false"
    assert fields["UpdatedDate"].findtext("type") == "datetime"
    related = {o.findtext("name"): o.get("href").rsplit("/", 1)[1] for o in root.find("related-objects")}
    assert related == {"ParentAccount": "Account", "BillToContact": "Contact", "SoldToContact": "Contact"}
    listing = ET.fromstring(requests.get(f"{sandbox.url}/v1/describe", headers=auth, timeout=30).content)
    assert [o.findtext("name") for o in listing.findall("./object")] == list(load_schema().objects)


def test_describe_unknown_object(sdk):
    with pytest.raises(NotFoundException) as caught:
        sdk.describe_api().get_describe("Nope")
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["reasons"][0]["message"] == "Object Nope is not found"
