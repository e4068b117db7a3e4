"""Changing the Zuora sandbox's data through Zuora's own shapes, driven by the official ``zuora-sdk``:
the generic create/update/delete actions with per-object errors, ``POST /v1/accounts``, ``PUT
/v1/accounts/{key}``, subscription amendments that create versions, cancellation, and deletes that
keep rows for Data Query. Effects are checked in the tenant's SQLite file (read-only) and in the
change events that feed callouts (this sandbox has no callout URL, so they stay pending)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import zuora_sdk
from conftest import ZuoraSandbox, start_zuora_sandbox
from sandbox.zuora.tenant import Tenant
from zuora_sdk.exceptions import ApiException
from zuora_sdk.models import (
    CancelSubscriptionRequest,
    CreateAccountContact,
    CreateAccountRequest,
    ProxyActioncreateRequest,
    ProxyActiondeleteRequest,
    ProxyActionupdateRequest,
    TaxExemptStatus,
    TaxInfo,
    UpdateAccountContact,
    UpdateAccountRequest,
    ZObjectUpdate,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's pydantic usage

SEEDED = "2024-01-01 00:00:00"
USER = "seed-user"


def _id() -> str:
    return uuid.uuid4().hex


def _seed(data_dir: Path) -> dict[str, str]:
    """A small tenant: a catalog, two active accounts with a subscription each, a draft account."""
    tenant = Tenant(data_dir)
    o = tenant.schema.objects
    ids = {name: _id() for name in (
        "product", "prp", "prpc", "acc1", "con1", "sub1", "rp1", "ch1", "inv1", "pay1", "ip1", "acc2",
        "acc3", "con3", "sub3", "rp3", "ch3", "inv3", "pay3", "ip3")}
    store = tenant.store
    with store.write() as conn:
        def put(obj: str, **values: Any) -> None:
            store.insert(conn, o[obj], [values], USER, when=SEEDED)

        put("Product", Id=ids["product"], Name="Gold", SKU="SKU-T1", EffectiveStartDate="2020-01-01",
            EffectiveEndDate="2030-01-01")
        put("ProductRatePlan", Id=ids["prp"], ProductId=ids["product"], Name="Gold Monthly")
        put("ProductRatePlanCharge", Id=ids["prpc"], ProductRatePlanId=ids["prp"], Name="Seat",
            ChargeType="Recurring", ChargeModel="Per Unit Pricing", BillingPeriod="Month")
        for n in ("1", "3"):
            acc, con, sub, rp, ch = (ids[f"{k}{n}"] for k in ("acc", "con", "sub", "rp", "ch"))
            put("Account", Id=acc, AccountNumber=f"T-{n}", Name=f"Tenant {n}", Status="Active", Currency="USD",
                BillCycleDay=1, BillToId=con, SoldToId=con, AutoPay=0, Balance=0.0)
            put("Contact", Id=con, AccountId=acc, FirstName="Ada", LastName=f"Owner{n}", City="Paris")
            put("Subscription", Id=sub, AccountId=acc, InvoiceOwnerId=acc, Name=f"A-S9000000{n}", Status="Active",
                Version=1, OriginalId=sub, TermType="TERMED", InitialTerm=12, RenewalTerm=12, AutoRenew=0,
                ContractEffectiveDate="2024-01-01", TermStartDate="2024-01-01", TermEndDate="2025-01-01",
                SubscriptionStartDate="2024-01-01", SubscriptionEndDate="2025-01-01", OriginalCreatedDate=SEEDED)
            put("RatePlan", Id=rp, SubscriptionId=sub, ProductRatePlanId=ids["prp"], Name="Gold Monthly")
            put("RatePlanCharge", Id=ch, RatePlanId=rp, ProductRatePlanChargeId=ids["prpc"], Name="Seat",
                ChargeNumber=f"C-9000000{n}", ChargeType="Recurring", Price=10.0, Quantity=10.0, MRR=100.0,
                Version=1, OriginalId=ch, EffectiveStartDate="2024-01-01", ChargedThroughDate="2024-06-01")
            put("Invoice", Id=ids[f"inv{n}"], AccountId=acc, InvoiceNumber=f"INV-T{n}",
                Status="Posted" if n == "1" else "Draft", InvoiceDate="2024-05-01", Amount=100.0)
            put("Payment", Id=ids[f"pay{n}"], AccountId=acc, PaymentNumber=f"P-T{n}", Amount=100.0,
                EffectiveDate="2024-05-02", Status="Processed", Type="External")
            put("InvoicePayment", Id=ids[f"ip{n}"], InvoiceId=ids[f"inv{n}"], PaymentId=ids[f"pay{n}"], Amount=100.0)
        put("Account", Id=ids["acc2"], AccountNumber="T-2", Name="Tenant 2", Status="Draft", Currency="EUR",
            BillCycleDay=15)
        # The seed is the starting state, not changes: forget its events.
        conn.execute("DELETE FROM _events")
    store.close()
    return ids


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ZuoraSandbox, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("zuora-actions") / "tenant"
    ids = _seed(data_dir)
    sandbox = start_zuora_sandbox(data_dir)
    try:
        yield sandbox, ids
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def sandbox(seeded) -> ZuoraSandbox:
    return seeded[0]


@pytest.fixture(scope="module")
def ids(seeded) -> dict[str, str]:
    return seeded[1]


def rows(sandbox: ZuoraSandbox, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Read the tenant's database directly (read-only, while the server runs)."""
    conn = sqlite3.connect(f"file:{sandbox.data_dir / 'tenant.sqlite3'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def one(sandbox: ZuoraSandbox, sql: str, *params: Any) -> dict[str, Any]:
    (row,) = rows(sandbox, sql, *params)
    return row


def last_seq(sandbox: ZuoraSandbox) -> int:
    events = sandbox.admin("GET", "events")
    return events[-1]["seq"] if events else 0


def events_since(sandbox: ZuoraSandbox, seq: int) -> list[tuple[str, str, str]]:
    return [(e["event_type"], e["record_id"], e["change_type"])
            for e in sandbox.admin("GET", f"events?after={seq}")]


def create(sdk, type_name: str, *objects: dict[str, Any]):
    return sdk.actions_api().action_post_create(ProxyActioncreateRequest(type=type_name, objects=list(objects)))


def update(sdk, type_name: str, *objects: dict[str, Any]):
    return sdk.actions_api().action_postupdate(
        ProxyActionupdateRequest(type=type_name, objects=[ZObjectUpdate.from_dict(o) for o in objects]))


def delete(sdk, type_name: str, *record_ids: str):
    return sdk.actions_api().action_post_delete(ProxyActiondeleteRequest(type=type_name, ids=list(record_ids)))


def codes(result) -> list[str]:
    return [e.code for e in result.errors or []]


# -- action/create ----------------------------------------------------------------------------------

def test_create_answers_save_results_and_records_one_event_each(sandbox, sdk):
    seq = last_seq(sandbox)
    results = create(sdk, "Account",
                     {"Name": "Created One", "Currency": "USD", "BillCycleDay": 5, "CrmId": "001X"},
                     {"Name": "Created Two", "Currency": "EUR", "BillCycleDay": "7", "AutoPay": "false"})
    assert [type(r).__name__ for r in results] == ["SaveResult", "SaveResult"]
    assert all(r.success and len(r.id) == 32 for r in results)
    first = one(sandbox, "SELECT * FROM account WHERE id = ?", results[0].id)
    assert first["name"] == "Created One" and first["status"] == "Draft" and first["crmid"] == "001X"
    assert first["accountnumber"].startswith("A") and len(first["accountnumber"]) == 9
    assert first["createdbyid"] == first["updatedbyid"] and first["createddate"] == first["updateddate"]
    second = one(sandbox, "SELECT * FROM account WHERE id = ?", results[1].id)
    assert second["billcycleday"] == 7 and second["autopay"] == 0 and second["balance"] == 0.0
    assert int(second["accountnumber"][1:]) == int(first["accountnumber"][1:]) + 1
    events = sandbox.admin("GET", f"events?after={seq}")
    assert [(e["event_type"], e["object"], e["record_id"], e["change_type"]) for e in events] == [
        ("AccountCreated", "Account", results[0].id, "INSERT"), ("AccountCreated", "Account", results[1].id, "INSERT")]
    # No callout URL: the events wait, visible to the admin API.
    assert all(e["delivery"] == "pending" and e["attempts"] == 0 for e in events)
    assert len({e["notification_id"] for e in events}) == 2


def test_create_refuses_bad_objects_one_by_one(sandbox, sdk, ids):
    seq = last_seq(sandbox)
    results = create(
        sdk, "Account",
        {"Currency": "USD", "BillCycleDay": 1},                                     # no Name
        {"Name": "Bad status", "Currency": "USD", "BillCycleDay": 1, "Status": "Gone"},
        {"Name": "Bad day", "Currency": "USD", "BillCycleDay": "soon"},
        {"Name": "Orphan", "Currency": "USD", "BillCycleDay": 1, "ParentId": "f" * 32},
        {"Name": "Twin", "Currency": "USD", "BillCycleDay": 1, "AccountNumber": "T-1"},
        {"Name": "Backdated", "Currency": "USD", "BillCycleDay": 1, "CreatedDate": "2020-01-01T00:00:00Z"},
        {"Name": "Odd", "Currency": "USD", "BillCycleDay": 1, "Colour": "blue"},
        {"Name": "x" * 256, "Currency": "USD", "BillCycleDay": 1},
        {"Name": "Active alone", "Currency": "USD", "BillCycleDay": 1, "Status": "Active"},
        {"Name": "Fine child", "Currency": "USD", "BillCycleDay": 1, "ParentId": ids["acc1"]},
    )
    assert [codes(r) for r in results] == [
        ["MISSING_REQUIRED_VALUE"], ["INVALID_VALUE"], ["INVALID_VALUE"], ["INVALID_ID"], ["DUPLICATE_VALUE"],
        ["INVALID_FIELD"], ["INVALID_FIELD"], ["INVALID_VALUE"], ["MISSING_REQUIRED_VALUE"], [],
    ]
    assert all(r.success is False and r.id is None for r in results[:-1])
    assert "Name" in results[0].errors[0].message and "Gone" in results[1].errors[0].message
    assert results[-1].success
    # Only the good object was written, and only it has an event.
    assert events_since(sandbox, seq) == [("AccountCreated", results[-1].id, "INSERT")]
    assert one(sandbox, "SELECT parentid FROM account WHERE id = ?", results[-1].id)["parentid"] == ids["acc1"]


def test_create_refuses_a_duplicate_inside_one_call(sandbox, sdk):
    results = create(sdk, "Product",
                     {"Name": "Twin A", "SKU": "SKU-TWIN", "EffectiveStartDate": "2024-01-01",
                      "EffectiveEndDate": "2030-01-01"},
                     {"Name": "Twin B", "SKU": "SKU-TWIN", "EffectiveStartDate": "2024-01-01",
                      "EffectiveEndDate": "2030-01-01"},
                     {"Name": "No SKU", "EffectiveStartDate": "2024-01-01T10:00:00Z", "EffectiveEndDate": "2030-01-01"})
    assert [r.success for r in results] == [True, False, True]
    assert codes(results[1]) == ["DUPLICATE_VALUE"]
    generated = one(sandbox, "SELECT sku, effectivestartdate FROM product WHERE id = ?", results[2].id)
    assert generated["sku"].startswith("SKU-") and generated["effectivestartdate"] == "2024-01-01"


def test_request_level_faults_use_zuoras_fault_shape(sandbox, sdk, auth):
    with pytest.raises(ApiException) as too_many:
        create(sdk, "Contact", *({"FirstName": "A", "LastName": str(i)} for i in range(51)))
    assert too_many.value.status == 400 and too_many.value.data.fault_code == "MAX_RECORDS_EXCEEDED"
    with pytest.raises(ApiException) as unknown:
        create(sdk, "Spaceship", {"Name": "x"})
    assert unknown.value.data.fault_code == "INVALID_TYPE" and "Spaceship" in unknown.value.data.fault_message
    response = requests.post(f"{sandbox.url}/v1/action/delete", headers=auth, timeout=30,
                             json={"type": "Nope", "ids": ["1"]})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_TYPE"
    response = requests.post(f"{sandbox.url}/v1/action/create?rejectUnknownFields=true", headers=auth, timeout=30,
                             json={"type": "Account", "objects": [], "extra": 1})
    assert response.status_code == 400 and response.json() == {"message": "Error - unrecognised fields"}
    assert requests.post(f"{sandbox.url}/v1/action/create", timeout=30,
                         json={"type": "Account", "objects": []}).status_code == 401


# -- action/update ---------------------------------------------------------------------------------------

def test_update_changes_fields_moves_updated_date_and_records_an_event(sandbox, sdk, ids):
    seq = last_seq(sandbox)
    (result,) = update(sdk, "Contact", {"Id": ids["con1"], "City": "Lyon", "WorkEmail": "ada@example.com",
                                        "fieldsToNull": ["Address1"]})
    assert result.success and result.id == ids["con1"]
    contact = one(sandbox, "SELECT * FROM contact WHERE id = ?", ids["con1"])
    assert contact["city"] == "Lyon" and contact["workemail"] == "ada@example.com" and contact["address1"] is None
    assert contact["updateddate"] > SEEDED and contact["createddate"] == SEEDED
    assert events_since(sandbox, seq) == [("ContactUpdated", ids["con1"], "UPDATE")]


def test_the_admin_clock_dates_changes_in_the_past(sandbox, sdk, ids):
    """``POST /__admin/clock`` stamps the next changes (and their events) earlier: a backfill's dated changes."""
    refused = requests.post(f"{sandbox.url}/__admin/clock", json={"offset_seconds": "yesterday"}, timeout=30)
    assert refused.status_code == 400 and "offset_seconds" in refused.json()["error"]
    moved = requests.post(f"{sandbox.url}/__admin/clock", json={"offset_seconds": -3 * 86400}, timeout=30)
    assert moved.ok and moved.json()["offset_seconds"] == -3 * 86400
    try:
        seq = last_seq(sandbox)
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3, seconds=2)
        (result,) = update(sdk, "Contact", {"Id": ids["con1"], "City": "Dated"})
        assert result.success
        stamped = dt.datetime.fromisoformat(one(sandbox, "SELECT updateddate FROM contact WHERE id = ?",
                                                ids["con1"])["updateddate"]).replace(tzinfo=dt.timezone.utc)
        assert before <= stamped <= before + dt.timedelta(seconds=30)
        (created,) = rows(sandbox, "SELECT created FROM _events WHERE seq > ?", seq)
        assert created["created"] == stamped.strftime("%Y-%m-%d %H:%M:%S")
    finally:
        assert requests.post(f"{sandbox.url}/__admin/clock", json={"offset_seconds": 0}, timeout=30).ok
    assert requests.get(f"{sandbox.url}/__admin/clock", timeout=30).json()["offset_seconds"] == 0
    update(sdk, "Contact", {"Id": ids["con1"], "City": "Now"})
    assert one(sandbox, "SELECT updateddate FROM contact WHERE id = ?", ids["con1"])["updateddate"] > \
        (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")


def test_update_refuses_what_zuora_refuses(sandbox, sdk, ids):
    results = update(
        sdk, "Account",
        {"Id": "0" * 32, "Name": "Ghost"},
        {"Id": ids["acc1"], "Balance": 1},
        {"Id": ids["acc1"], "fieldsToNull": ["Name"]},
        {"Id": ids["acc2"], "Status": "Active"},                     # no bill-to / sold-to contacts
        {"Id": ids["acc2"], "BillToId": ids["con1"]},                # another account's contact
        {"Id": ids["acc1"], "Status": "Canceled"},                   # its subscription is still active
        {"Id": ids["acc1"], "ParentId": ids["acc1"]},
    )
    assert [codes(r) for r in results] == [["INVALID_ID"], ["INVALID_FIELD"], ["MISSING_REQUIRED_VALUE"],
                                          ["MISSING_REQUIRED_VALUE"], ["INVALID_VALUE"], ["INVALID_VALUE"],
                                          ["INVALID_VALUE"]]
    assert one(sandbox, "SELECT status, updateddate FROM account WHERE id = ?", ids["acc2"]) == {
        "status": "Draft", "updateddate": SEEDED}


def test_activating_an_account_with_its_own_contacts(sandbox, sdk, ids):
    (contact,) = create(sdk, "Contact", {"AccountId": ids["acc2"], "FirstName": "Bo", "LastName": "Draft"})
    (result,) = update(sdk, "Account", {"Id": ids["acc2"], "BillToId": contact.id, "SoldToId": contact.id,
                                        "Status": "Active"})
    assert result.success
    assert one(sandbox, "SELECT status, billtoid FROM account WHERE id = ?", ids["acc2"]) == {
        "status": "Active", "billtoid": contact.id}


# -- amendments: subscription versions -------------------------------------------------------------------------

def _versions(sandbox: ZuoraSandbox, name: str) -> list[dict[str, Any]]:
    return rows(sandbox, "SELECT * FROM subscription WHERE name = ? AND deleted = 0 ORDER BY version", name)


def _charges_of(sandbox: ZuoraSandbox, subscription_id: str) -> list[dict[str, Any]]:
    return rows(sandbox, "SELECT c.* FROM rateplancharge c JOIN rateplan p ON p.id = c.rateplanid "
                         "WHERE p.subscriptionid = ? AND c.deleted = 0 AND p.deleted = 0", subscription_id)


def test_updating_a_subscription_creates_a_new_version(sandbox, sdk, ids):
    seq = last_seq(sandbox)
    (result,) = update(sdk, "Subscription", {"Id": ids["sub1"], "AutoRenew": True, "RenewalTerm": 6})
    assert result.success and result.id != ids["sub1"]
    old, new = _versions(sandbox, "A-S90000001")
    assert old["id"] == ids["sub1"] and old["status"] == "Expired" and old["updateddate"] > SEEDED
    assert new["id"] == result.id and new["version"] == 2 and new["status"] == "Active"
    assert new["originalid"] == ids["sub1"] and new["previoussubscriptionid"] == ids["sub1"]
    assert new["autorenew"] == 1 and new["renewalterm"] == 6 and old["autorenew"] == 0
    assert new["accountid"] == ids["acc1"] and new["contracteffectivedate"] == "2024-01-01"
    assert new["originalcreateddate"] == SEEDED and new["createddate"] > SEEDED
    (plan,) = rows(sandbox, "SELECT * FROM rateplan WHERE subscriptionid = ?", new["id"])
    assert plan["id"] != ids["rp1"] and plan["productrateplanid"] == ids["prp"]
    (charge,) = _charges_of(sandbox, new["id"])
    assert charge["id"] != ids["ch1"] and charge["chargenumber"] == "C-90000001"
    assert charge["version"] == 2 and charge["originalid"] == ids["ch1"] and charge["mrr"] == 100.0
    # The old version keeps its own plan and charge.
    assert [c["id"] for c in _charges_of(sandbox, ids["sub1"])] == [ids["ch1"]]
    assert events_since(sandbox, seq) == [
        ("SubscriptionCreated", new["id"], "INSERT"), ("SubscriptionUpdated", ids["sub1"], "UPDATE"),
        ("RatePlanCreated", plan["id"], "INSERT"), ("RatePlanChargeCreated", charge["id"], "INSERT")]

    # A second amendment keeps the lineage: OriginalId is still the first version's.
    (again,) = update(sdk, "Subscription", {"Id": new["id"], "InitialTerm": 24})
    third = _versions(sandbox, "A-S90000001")[-1]
    assert third["id"] == again.id and third["version"] == 3
    assert third["originalid"] == ids["sub1"] and third["previoussubscriptionid"] == new["id"]
    assert _charges_of(sandbox, third["id"])[0]["originalid"] == ids["ch1"]
    assert _charges_of(sandbox, third["id"])[0]["version"] == 3

    # Only the latest version can be amended; Notes change in place.
    (stale,) = update(sdk, "Subscription", {"Id": ids["sub1"], "InitialTerm": 36})
    assert codes(stale) == ["INVALID_VALUE"] and "latest" in stale.errors[0].message
    (renamed,) = update(sdk, "Subscription", {"Id": third["id"], "Name": "A-S-OTHER"})
    assert codes(renamed) == ["INVALID_VALUE"]
    (noted,) = update(sdk, "Subscription", {"Id": third["id"], "Notes": "called the customer"})
    assert noted.id == third["id"] and len(_versions(sandbox, "A-S90000001")) == 3


def test_creating_a_subscription_fills_zuoras_defaults(sandbox, sdk, ids):
    (sub,) = create(sdk, "Subscription", {"AccountId": ids["acc1"], "ContractEffectiveDate": "2024-02-29"})
    assert sub.success
    row = one(sandbox, "SELECT * FROM subscription WHERE id = ?", sub.id)
    assert row["name"].startswith("A-S") and row["version"] == 1 and row["originalid"] == sub.id
    assert row["status"] == "Active" and row["termtype"] == "TERMED" and row["invoiceownerid"] == ids["acc1"]
    assert row["termstartdate"] == "2024-02-29" and row["termenddate"] == "2025-02-28"
    (plan,) = create(sdk, "RatePlan", {"SubscriptionId": sub.id, "ProductRatePlanId": ids["prp"]})
    (charge,) = create(sdk, "RatePlanCharge", {"RatePlanId": plan.id, "Name": "Seat", "Price": "12.5"})
    charge_row = one(sandbox, "SELECT * FROM rateplancharge WHERE id = ?", charge.id)
    assert charge_row["chargenumber"].startswith("C-") and charge_row["originalid"] == charge.id
    assert charge_row["price"] == 12.5 and charge_row["version"] == 1
    assert one(sandbox, "SELECT name FROM rateplan WHERE id = ?", plan.id)["name"] == "Gold Monthly"
    (dup,) = create(sdk, "Subscription", {"AccountId": ids["acc1"], "ContractEffectiveDate": "2024-01-01",
                                          "Name": "A-S90000001"})
    assert codes(dup) == ["DUPLICATE_VALUE"]


# -- cancel -----------------------------------------------------------------------------------------------------------

def test_cancel_subscription_creates_a_cancelled_version(sandbox, sdk, ids):
    subscriptions = sdk.subscriptions_api()
    seq = last_seq(sandbox)
    response = subscriptions.cancel_subscription(
        "A-S90000003", CancelSubscriptionRequest(cancellation_policy="SpecificDate",
                                                 cancellation_effective_date=dt.date(2024, 7, 1)))
    assert type(response).__name__ == "CancelSubscriptionResponse"
    assert response.success is True and str(response.cancelled_date) == "2024-07-01"
    assert response.total_delta_mrr == -100.0 and response.total_delta_tcv < 0
    old, new = _versions(sandbox, "A-S90000003")
    assert response.subscription_id == new["id"] != ids["sub3"]
    assert new["status"] == "Cancelled" and new["cancelleddate"] == "2024-07-01" and new["version"] == 2
    assert new["subscriptionenddate"] == "2024-07-01" and new["originalid"] == ids["sub3"]
    assert old["status"] == "Expired"
    (charge,) = _charges_of(sandbox, new["id"])
    assert charge["effectiveenddate"] == "2024-07-01" and charge["chargenumber"] == "C-90000003"
    assert ("SubscriptionCreated", new["id"], "INSERT") in events_since(sandbox, seq)

    # Only an Active subscription can be cancelled; failures are success=false with Zuora's codes.
    again = subscriptions.cancel_subscription("A-S90000003", CancelSubscriptionRequest(
        cancellation_policy="EndOfCurrentTerm"))
    assert again.success is False and again.reasons[0].code == 50000030 and again.process_id
    missing = subscriptions.cancel_subscription("A-S-NOPE", CancelSubscriptionRequest(
        cancellation_policy="EndOfCurrentTerm"))
    assert missing.success is False and missing.reasons[0].code == 50000040
    assert missing.reasons[0].message == "Cannot find entity by key: 'A-S-NOPE'."


def test_cancel_policies_and_argument_errors(sandbox, sdk, auth, ids):
    (sub,) = create(sdk, "Subscription", {"AccountId": ids["acc1"], "ContractEffectiveDate": "2024-03-01"})
    url = f"{sandbox.url}/v1/subscriptions/{sub.id}/cancel"
    assert requests.put(url, headers=auth, json={}, timeout=30).json()["reasons"][0]["code"] == 50000022
    bad = requests.put(url, headers=auth, json={"cancellationPolicy": "Whenever"}, timeout=30).json()
    assert bad["success"] is False and bad["reasons"][0]["code"] == 50000020 and bad["requestId"]
    early = requests.put(url, headers=auth, timeout=30,
                         json={"cancellationPolicy": "SpecificDate", "cancellationEffectiveDate": "2023-01-01"})
    assert early.status_code == 200 and early.json()["reasons"][0]["code"] == 50000020
    assert requests.put(url, headers=auth, data="{not json", timeout=30).status_code == 400
    done = sdk.subscriptions_api().cancel_subscription(sub.id, CancelSubscriptionRequest(
        cancellation_policy="EndOfCurrentTerm"))
    assert done.success and str(done.cancelled_date) == "2025-03-01"


# -- REST accounts --------------------------------------------------------------------------------------------------

def test_create_account_with_contacts(sandbox, sdk):
    seq = last_seq(sandbox)
    response = sdk.accounts_api().create_account(CreateAccountRequest(
        name="Rest Co", currency="USD", bill_cycle_day=1, crm_id="001REST", auto_pay=False,
        payment_term="Net 30", notes="from the SDK", tax_info=TaxInfo(exempt_status=TaxExemptStatus.YES),
        bill_to_contact=CreateAccountContact(first_name="Amy", last_name="Lawrence", address1="1 Main St",
                                             city="Austin", state="TX", country="United States",
                                             zip_code="73301", work_email="amy@example.com"),
    ))
    assert type(response).__name__ == "CreateAccountResponse" and response.success is True
    assert response.bill_to_contact_id != response.sold_to_contact_id
    account = one(sandbox, "SELECT * FROM account WHERE id = ?", response.account_id)
    assert account["accountnumber"] == response.account_number and account["status"] == "Active"
    assert account["billtoid"] == response.bill_to_contact_id and account["soldtoid"] == response.sold_to_contact_id
    assert account["crmid"] == "001REST" and account["paymentterm"] == "Net 30"
    assert account["taxexemptstatus"] == "Yes" and account["billcycleday"] == 1
    bill_to = one(sandbox, "SELECT * FROM contact WHERE id = ?", response.bill_to_contact_id)
    sold_to = one(sandbox, "SELECT * FROM contact WHERE id = ?", response.sold_to_contact_id)
    assert bill_to["accountid"] == sold_to["accountid"] == response.account_id
    assert bill_to["postalcode"] == sold_to["postalcode"] == "73301" and sold_to["lastname"] == "Lawrence"
    assert sorted(events_since(sandbox, seq)) == sorted([
        ("AccountCreated", response.account_id, "INSERT"),
        ("ContactCreated", response.bill_to_contact_id, "INSERT"),
        ("ContactCreated", response.sold_to_contact_id, "INSERT")])


def test_create_account_errors(sandbox, sdk, auth):
    url = f"{sandbox.url}/v1/accounts"
    no_contact = requests.post(url, headers=auth, timeout=30, json={"name": "X", "currency": "USD", "billCycleDay": 1})
    assert no_contact.status_code == 200
    assert no_contact.json()["success"] is False and no_contact.json()["reasons"][0]["code"] == 50000022
    duplicate = sdk.accounts_api().create_account(CreateAccountRequest(
        name="Dup", currency="USD", bill_cycle_day=1, account_number="T-1",
        bill_to_contact=CreateAccountContact(first_name="A", last_name="B")))
    assert duplicate.success is False and duplicate.reasons[0].code == 50000020
    autopay = requests.post(url, headers=auth, timeout=30, json={
        "name": "X", "currency": "USD", "billCycleDay": 1, "autoPay": True,
        "billToContact": {"firstName": "A", "lastName": "B"}}).json()
    assert autopay["reasons"][0]["code"] == 50000020 and "payment method" in autopay["reasons"][0]["message"]
    orphan = requests.post(url, headers=auth, timeout=30, json={
        "name": "X", "currency": "USD", "billCycleDay": 1, "parentId": "e" * 32,
        "billToContact": {"firstName": "A", "lastName": "B"}}).json()
    assert orphan["success"] is False and orphan["reasons"][0]["code"] == 50000040
    assert one(sandbox, "SELECT COUNT(*) AS n FROM account WHERE name IN ('X', 'Dup')")["n"] == 0


def test_update_account_by_number_and_its_bill_to_contact(sandbox, sdk, ids):
    seq = last_seq(sandbox)
    response = sdk.accounts_api().update_account("T-3", UpdateAccountRequest(
        name="Tenant Three", crm_id="001NEW", auto_pay=False,
        bill_to_contact=UpdateAccountContact(city="Berlin", zip_code="10115")))
    assert type(response).__name__ == "CommonResponse" and response.success is True
    account = one(sandbox, "SELECT * FROM account WHERE id = ?", ids["acc3"])
    assert account["name"] == "Tenant Three" and account["crmid"] == "001NEW" and account["updateddate"] > SEEDED
    contact = one(sandbox, "SELECT city, postalcode FROM contact WHERE id = ?", ids["con3"])
    assert contact == {"city": "Berlin", "postalcode": "10115"}
    assert events_since(sandbox, seq) == [("AccountUpdated", ids["acc3"], "UPDATE"),
                                          ("ContactUpdated", ids["con3"], "UPDATE")]
    missing = sdk.accounts_api().update_account("NO-SUCH", UpdateAccountRequest(name="x"))
    assert missing.success is False and missing.reasons[0].code == 50000040


# -- deletes ----------------------------------------------------------------------------------------------------------

def test_deletes_keep_rows_and_follow_zuoras_rules(sandbox, sdk, ids):
    results = delete(sdk, "Invoice", ids["inv1"], "9" * 32)
    assert [type(r).__name__ for r in results] == ["DeleteResult", "DeleteResult"]
    assert [r.success for r in results] == [False, False]
    assert codes(results[0]) == ["CANNOT_DELETE"] and codes(results[1]) == ["INVALID_ID"]
    (contact,) = delete(sdk, "Contact", ids["con1"])
    assert codes(contact) == ["CANNOT_DELETE"]
    (in_use,) = delete(sdk, "ProductRatePlan", ids["prp"])
    assert codes(in_use) == ["CANNOT_DELETE"]

    seq = last_seq(sandbox)
    (gone,) = delete(sdk, "Account", ids["acc3"])
    assert gone.success is True and gone.id == ids["acc3"]
    account = one(sandbox, "SELECT deleted, deleteddate, updateddate FROM account WHERE id = ?", ids["acc3"])
    assert account["deleted"] == 1 and account["deleteddate"] == account["updateddate"] > SEEDED
    # Everything under the account went with it, every version of its subscription included.
    for table, where in (("contact", "accountid"), ("subscription", "accountid"), ("invoice", "accountid"),
                         ("payment", "accountid")):
        assert {r["deleted"] for r in rows(sandbox, f"SELECT deleted FROM {table} WHERE {where} = ?", ids["acc3"])} == {1}
    assert one(sandbox, "SELECT deleted FROM invoicepayment WHERE id = ?", ids["ip3"])["deleted"] == 1
    assert {r["deleted"] for r in rows(sandbox, "SELECT c.deleted FROM rateplancharge c JOIN rateplan p ON "
                                                "p.id = c.rateplanid JOIN subscription s ON s.id = p.subscriptionid "
                                                "WHERE s.accountid = ?", ids["acc3"])} == {1}
    deleted = events_since(sandbox, seq)
    assert all(change == "DELETE" for _, _, change in deleted)
    assert ("AccountDeleted", ids["acc3"], "DELETE") in deleted and ("ContactDeleted", ids["con3"], "DELETE") in deleted
    assert len([e for e in deleted if e[0] == "SubscriptionDeleted"]) == 2  # versions 1 and 2
    (twice,) = delete(sdk, "Account", ids["acc3"])
    assert codes(twice) == ["INVALID_ID"]
    (stale,) = update(sdk, "Account", {"Id": ids["acc3"], "Name": "Back"})
    assert codes(stale) == ["INVALID_ID"]


def test_an_unknown_key_and_method_answer_zuoras_way(sandbox, auth):
    response = requests.put(f"{sandbox.url}/v1/accounts/NOPE", headers=auth, json={"name": "x"}, timeout=30)
    assert response.status_code == 200 and response.json()["reasons"][0]["code"] == 50000040
    assert requests.get(f"{sandbox.url}/v1/action/create", headers=auth, timeout=30).status_code == 405
    assert zuora_sdk  # the SDK is the client under test throughout this module
