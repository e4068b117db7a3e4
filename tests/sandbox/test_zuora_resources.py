"""The REST resources an integrator reads, through zuora-sdk and raw HTTP, over a small generated
tenant: accounts, account summaries, subscriptions (by key and by account), invoices and the object
API. Every answer is checked strictly against the zuora-sdk model of its OpenAPI operation
(:mod:`openapi_shapes`) and its values against the tenant's database."""

from __future__ import annotations

from collections import defaultdict

import pytest
import requests
import zuora_sdk
from conftest import ZuoraSandbox, start_zuora_sandbox
from openapi_shapes import assert_model_shape
from tenant_rows import tenant_rows as stored
from zuora_sdk.exceptions import NotFoundException

ACCOUNTS = 8
SEED = 11


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> ZuoraSandbox:
    started = start_zuora_sandbox(tmp_path_factory.mktemp("resources") / "tenant", accounts=ACCOUNTS, seed=SEED)
    yield started
    started.stop()


def raw(sandbox: ZuoraSandbox, auth: dict, path: str, **params) -> requests.Response:
    return requests.get(f"{sandbox.url}{path}", headers=auth, params=params, timeout=30)


@pytest.fixture(scope="module")
def busy_account(sandbox) -> dict:
    """The account with the most subscriptions among those with payments applied to invoices."""
    rows = stored(sandbox, """
        SELECT a.*, COUNT(DISTINCT s.name) AS subscriptions FROM account a
        JOIN subscription s ON s.accountid = a.id AND s.deleted = 0
        WHERE a.deleted = 0 AND a.billtoid IS NOT NULL AND EXISTS (
            SELECT 1 FROM payment p JOIN invoicepayment ip ON ip.paymentid = p.id
            WHERE p.accountid = a.id AND p.deleted = 0 AND ip.deleted = 0)
        GROUP BY a.id ORDER BY subscriptions DESC, a.accountnumber LIMIT 1""")
    assert rows, "the generated tenant has no account with subscriptions and applied payments"
    return rows[0]


def latest_versions(sandbox, account_id: str) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for sub in stored(sandbox, "SELECT * FROM subscription WHERE accountid = ? AND deleted = 0", account_id):
        if sub["name"] not in latest or sub["version"] > latest[sub["name"]]["version"]:
            latest[sub["name"]] = sub
    return latest


def test_account_by_number_or_id(sandbox, sdk, auth, busy_account):
    by_number = raw(sandbox, auth, f"/v1/accounts/{busy_account['accountnumber']}")
    assert by_number.status_code == 200
    body = by_number.json()
    assert_model_shape(body, zuora_sdk.AccountDetailResponse)
    assert body == raw(sandbox, auth, f"/v1/accounts/{busy_account['id']}").json()
    assert body["success"] is True
    basic, billing, metrics = body["basicInfo"], body["billingAndPayment"], body["metrics"]
    assert (basic["id"], basic["name"], basic["accountNumber"], basic["status"]) == (
        busy_account["id"], busy_account["name"], busy_account["accountnumber"], busy_account["status"])
    assert (billing["billCycleDay"], billing["currency"], billing["autoPay"]) == (
        busy_account["billcycleday"], busy_account["currency"], bool(busy_account["autopay"]))
    assert metrics["balance"] == pytest.approx(busy_account["balance"] or 0)
    contact = stored(sandbox, "SELECT * FROM contact WHERE id = ?", busy_account["billtoid"])[0]
    assert (body["billToContact"]["id"], body["billToContact"]["firstName"], body["billToContact"]["lastName"]) == (
        contact["id"], contact["firstname"], contact["lastname"])

    parsed = sdk.accounts_api().get_account(busy_account["accountnumber"])
    assert parsed.basic_info.account_number == busy_account["accountnumber"]
    assert parsed.bill_to_contact.id == busy_account["billtoid"]

    missing = sdk.accounts_api().get_account("A-NOWHERE")
    assert missing.success is False and missing.reasons[0].code == 50000040
    assert missing.reasons[0].message == "Cannot find entity by key: 'A-NOWHERE'."


def test_account_summary(sandbox, sdk, auth, busy_account):
    body = raw(sandbox, auth, f"/v1/accounts/{busy_account['id']}/summary").json()
    assert_model_shape(body, zuora_sdk.AccountSummaryResponse)
    latest = latest_versions(sandbox, busy_account["id"])
    assert {s["subscriptionNumber"]: s["id"] for s in body["subscriptions"]} == {n: s["id"] for n, s in latest.items()}
    invoices = stored(sandbox, "SELECT * FROM invoice WHERE accountid = ? AND deleted = 0 "
                               "ORDER BY invoicedate DESC, rowid DESC", busy_account["id"])
    assert [i["id"] for i in body["invoices"]] == [i["id"] for i in invoices[:6]]
    applied = defaultdict(set)
    for row in stored(sandbox, "SELECT ip.paymentid, ip.invoiceid FROM invoicepayment ip JOIN payment p "
                               "ON p.id = ip.paymentid WHERE p.accountid = ? AND ip.deleted = 0", busy_account["id"]):
        applied[row["paymentid"]].add(row["invoiceid"])
    assert body["payments"] and len(body["payments"]) <= 6
    for payment in body["payments"]:
        assert {p["invoiceId"] for p in payment.get("paidInvoices", [])} == applied[payment["id"]]
    parsed = sdk.accounts_api().get_account_summary(busy_account["accountnumber"])
    assert parsed.basic_info.id == busy_account["id"] and len(parsed.subscriptions) == len(latest)


def test_subscription_by_number_and_by_an_old_version_id(sandbox, sdk, auth, busy_account):
    versions = stored(sandbox, "SELECT * FROM subscription WHERE accountid = ? AND deleted = 0 "
                               "ORDER BY name, version", busy_account["id"])
    name = max(versions, key=lambda s: s["version"])["name"]
    mine = [v for v in versions if v["name"] == name]
    newest = mine[-1]
    body = raw(sandbox, auth, f"/v1/subscriptions/{name}").json()
    assert_model_shape(body, zuora_sdk.GetSubscriptionResponse)
    assert (body["id"], body["subscriptionNumber"], body["status"], body["isLatestVersion"]) == (
        newest["id"], name, newest["status"], True)
    assert (body["accountId"], body["accountNumber"]) == (busy_account["id"], busy_account["accountnumber"])
    plans = stored(sandbox, "SELECT * FROM rateplan WHERE subscriptionid = ? AND deleted = 0", newest["id"])
    assert sorted(p["id"] for p in body["ratePlans"]) == sorted(p["id"] for p in plans)
    charges = {c["id"]: c for c in stored(
        sandbox, "SELECT c.* FROM rateplancharge c JOIN rateplan p ON p.id = c.rateplanid "
                 "WHERE p.subscriptionid = ? AND c.deleted = 0", newest["id"])}
    answered = {c["id"]: c for plan in body["ratePlans"] for c in plan["ratePlanCharges"]}
    assert set(answered) == set(charges)
    for charge_id, charge in answered.items():
        assert (charge["number"], charge["name"], charge["type"]) == (
            charges[charge_id]["chargenumber"], charges[charge_id]["name"], charges[charge_id]["chargetype"])
        assert charge.get("price") == charges[charge_id]["price"]

    parsed = sdk.subscriptions_api().get_subscription_by_key(name)
    assert parsed.id == newest["id"] and parsed.rate_plans is not None
    if len(mine) > 1:
        old = raw(sandbox, auth, f"/v1/subscriptions/{mine[0]['id']}").json()
        assert (old["id"], old["isLatestVersion"], old["status"]) == (mine[0]["id"], False, mine[0]["status"])
    missing = sdk.subscriptions_api().get_subscription_by_key("A-S-NOWHERE")
    assert missing.success is False and missing.reasons[0].code == 50000040


def test_subscriptions_of_an_account_page_by_page(sandbox, sdk, auth, busy_account):
    latest = latest_versions(sandbox, busy_account["id"])
    owned = {n for n, s in latest.items()}
    billed_elsewhere = {s["name"] for s in stored(
        sandbox, "SELECT name FROM subscription WHERE invoiceownerid = ? AND accountid != ? AND deleted = 0",
        busy_account["id"], busy_account["id"])}
    seen, page = [], 1
    while True:
        body = raw(sandbox, auth, f"/v1/subscriptions/accounts/{busy_account['accountnumber']}",
                   page=page, pageSize=1).json()
        assert_model_shape(body, zuora_sdk.GetSubscriptionsResponse)
        seen += [s["subscriptionNumber"] for s in body["subscriptions"]]
        if "nextPage" not in body:
            break
        assert body["nextPage"].endswith(f"page={page + 1}&pageSize=1")
        page += 1
    assert sorted(seen) == sorted(owned | billed_elsewhere) and len(seen) == len(set(seen))
    parsed = sdk.subscriptions_api().get_subscriptions_by_account(
        busy_account["id"], owner_type="subscriptionOwner", page_size=40)
    assert {s.subscription_number for s in parsed.subscriptions} == owned
    bad = raw(sandbox, auth, f"/v1/subscriptions/accounts/{busy_account['id']}", pageSize=41).json()
    assert bad["success"] is False and bad["reasons"][0]["code"] == 50000020


def test_invoice_by_number_or_id(sandbox, sdk, auth, busy_account):
    invoice = stored(sandbox, "SELECT * FROM invoice WHERE accountid = ? AND deleted = 0 ORDER BY rowid",
                     busy_account["id"])[0]
    body = raw(sandbox, auth, f"/v1/invoices/{invoice['invoicenumber']}").json()
    assert_model_shape(body, zuora_sdk.InvoiceResponse)
    assert body == raw(sandbox, auth, f"/v1/invoices/{invoice['id']}").json()
    assert (body["id"], body["accountId"], body["status"], body["invoiceDate"]) == (
        invoice["id"], busy_account["id"], invoice["status"], invoice["invoicedate"])
    assert body["amount"] == pytest.approx(invoice["amount"]) and body["currency"] == busy_account["currency"]
    parsed = sdk.invoices_api().get_invoice(invoice["invoicenumber"])
    assert parsed.invoice_number == invoice["invoicenumber"]
    assert sdk.invoices_api().get_invoice("INV-NOWHERE").reasons[0].code == 50000040


def test_object_api_answers_what_zoql_answers(sandbox, sdk, auth, busy_account):
    fields = ("AccountNumber, Name, CrmId, ParentId, Status, Balance, CreditBalance, TotalInvoiceBalance, Currency, "
              "BillCycleDay, AutoPay, PaymentTerm, Batch, BillToId, SoldToId, DefaultPaymentMethodId, "
              "LastInvoiceDate, SalesRepName, PurchaseOrderNumber, Notes, TaxExemptStatus, "
              "InvoiceDeliveryPrefsEmail, CreatedById, CreatedDate, UpdatedById, UpdatedDate")
    zoql = requests.post(f"{sandbox.url}/v1/action/query", headers=auth, timeout=30, json={
        "queryString": f"select {fields} from Account where Id = '{busy_account['id']}'"}).json()["records"][0]
    record = raw(sandbox, auth, f"/v1/object/account/{busy_account['id']}")
    assert record.status_code == 200 and record.json() == zoql
    picked = raw(sandbox, auth, f"/v1/object/account/{busy_account['id']}", fields="Name,Status").json()
    assert picked == {"Name": busy_account["name"], "Status": busy_account["status"]}

    charge = stored(sandbox, "SELECT id FROM productrateplancharge WHERE deleted = 0 ORDER BY rowid LIMIT 1")[0]["id"]
    body = raw(sandbox, auth, f"/v1/object/product-rate-plan-charge/{charge}").json()
    assert_model_shape(body, zuora_sdk.GetProductRatePlanChargeResponse)  # the object API keeps SOAP's values
    parsed = sdk.product_rate_plan_charges_api().get_product_rate_plan_charge(charge)
    assert parsed.id == charge

    missing = raw(sandbox, auth, "/v1/object/account/0123456789abcdef0123456789abcdef")
    assert (missing.status_code, missing.json()) == (404, {"records": [], "size": 0, "done": True})
    with pytest.raises(NotFoundException):
        sdk.product_rate_plan_charges_api().get_product_rate_plan_charge("0123456789abcdef0123456789abcdef")
    bad = raw(sandbox, auth, f"/v1/object/account/{busy_account['id']}", fields="Nope")
    assert bad.status_code == 400
    assert bad.json() == {"Success": False, "Errors": [{"Code": "INVALID_VALUE",
                                                        "Message": "invalid field for query: Account.Nope"}]}
