"""Data Query over a generated tenant, compared with what the generator wrote, through zuora-sdk:
every subscription version, windows on ``updateddate`` (shown in the tenant's Pacific time),
deleted rows, an amendment's new version, and CRM Ids that match the Salesforce sandbox."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import ZuoraSandbox, start_zuora_sandbox
from sandbox.crm_accounts import crm_account_id
from sandbox.zuora.generator import crm_id, crm_id_kind
from zuora_sdk.models import (
    ProxyActiondeleteRequest,
    ProxyActionupdateRequest,
    SubmitDataQueryRequest,
    ZObjectUpdate,
)

ACCOUNTS = 300
SEED = 5
PACIFIC = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def zuora(tmp_path_factory) -> ZuoraSandbox:
    sandbox = start_zuora_sandbox(tmp_path_factory.mktemp("generated") / "tenant", accounts=ACCOUNTS, seed=SEED)
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def sdk(zuora):
    return zuora.sdk_client()


def stored(zuora: ZuoraSandbox, sql: str, *params) -> list[dict]:
    """Rows read straight from the tenant's database file (read-only), for comparison."""
    with sqlite3.connect(f"file:{zuora.data_dir / 'tenant.sqlite3'}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]


def data_query(sdk, text: str, **options) -> list[dict]:
    api = sdk.data_queries_api()
    job = api.post_data_query_job(SubmitDataQueryRequest(
        query=text, output_format="JSON", compression="NONE", output={"target": "S3"}, **options)).data
    deadline = time.monotonic() + 60
    while job.query_status not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = api.get_data_query_job(job.id).data
    assert job.query_status == "completed", job.additional_properties.get("errorMessage")
    return [json.loads(line) for line in requests.get(job.data_file, timeout=60).text.splitlines()]


def pacific(stored_text: str) -> str:
    moment = dt.datetime.fromisoformat(stored_text).replace(tzinfo=dt.UTC).astimezone(PACIFIC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def test_every_subscription_version_comes_back_as_generated(zuora, sdk):
    rows = data_query(sdk, "select id, name, version, status, accountid, originalid, updateddate from subscription")
    expected = stored(zuora, "SELECT id, name, version, status, accountid, originalid, updateddate "
                             "FROM subscription WHERE deleted = 0")
    assert len(rows) == len(expected) > ACCOUNTS  # several versions per subscription
    by_id = {row["id"]: row for row in rows}
    for record in expected:
        row = by_id[record["id"]]
        assert (row["name"], row["version"], row["status"], row["accountid"], row["originalid"]) == (
            record["name"], record["version"], record["status"], record["accountid"], record["originalid"])
        assert row["updateddate"] == pacific(record["updateddate"])
    statuses = {row["status"] for row in rows}
    assert {"Active", "Cancelled", "Expired", "Draft"} <= statuses


def test_windows_on_updateddate_split_the_tenant_exactly(zuora, sdk):
    dates = sorted(r["updateddate"] for r in stored(zuora, "SELECT updateddate FROM invoice WHERE deleted = 0"))
    cut_utc = dates[len(dates) // 2]
    cut_local = pacific(cut_utc)
    before = data_query(sdk, f"select id from invoice where updateddate < timestamp '{cut_local}'")
    after = data_query(sdk, f"select id from invoice where updateddate >= timestamp '{cut_local}'")
    utc_literal = data_query(sdk, f"select id from invoice where updateddate >= '{cut_utc.replace(' ', 'T')}Z'")
    assert len(before) + len(after) == len(dates)
    assert len(before) == sum(1 for d in dates if d < cut_utc)
    assert {r["id"] for r in after} == {r["id"] for r in utc_literal}


def test_deleted_rows_and_an_amendment_reach_data_query(zuora, sdk):
    started = dt.datetime.now(PACIFIC).strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1)  # UpdatedDate has one-second precision
    payment = stored(zuora, "SELECT id FROM invoicepayment WHERE deleted = 0 LIMIT 1")[0]["id"]
    result = sdk.actions_api().action_post_delete(ProxyActiondeleteRequest(type="InvoicePayment", ids=[payment]))
    assert result[0].success
    live = stored(zuora, "SELECT id, name, version FROM subscription WHERE deleted = 0 AND status = 'Active' "
                         "ORDER BY id LIMIT 1")[0]
    amended = sdk.actions_api().action_postupdate(ProxyActionupdateRequest(
        type="Subscription", objects=[ZObjectUpdate.from_dict({"Id": live["id"], "AutoRenew": True})]))
    new_id = amended[0].id
    assert amended[0].success and new_id != live["id"]

    changed = data_query(sdk, f"select id, deleted from invoicepayment where updateddate >= timestamp '{started}'")
    assert changed == [{"id": payment, "deleted": True}]
    assert data_query(sdk, f"select id from invoicepayment where id = '{payment}'") == []
    assert data_query(sdk, f"select id from invoicepayment where id = '{payment}'", read_deleted=True) == [{"id": payment}]
    versions = data_query(sdk, f"select id, version, status, originalid from subscription where name = '{live['name']}' "
                               f"and updateddate >= timestamp '{started}' order by version")
    assert [(v["id"], v["status"]) for v in versions] == [(live["id"], "Expired"), (new_id, versions[1]["status"])]
    assert versions[1]["version"] == live["version"] + 1 and versions[1]["status"] != "Expired"


def test_crm_ids_match_the_salesforce_sandbox_accounts(zuora, sdk):
    rows = {row["accountnumber"]: row for row in data_query(sdk, "select accountnumber, crmid from account")}
    kinds = {}
    for index in range(ACCOUNTS):
        kind = crm_id_kind(SEED, index)
        kinds[kind] = kinds.get(kind, 0) + 1
        number = stored(zuora, "SELECT accountnumber FROM account WHERE crmid IS ? AND deleted = 0 LIMIT 1",
                        crm_id(SEED, index))
        if kind == "valid":
            assert crm_id(SEED, index) == crm_account_id(SEED, index)
            assert rows[number[0]["accountnumber"]]["crmid"] == crm_account_id(SEED, index)
    assert kinds["valid"] > ACCOUNTS * 0.8 and kinds.get("unknown", 0) >= 1 and kinds.get("malformed", 0) >= 1
