"""The oracle's rules and value comparisons on small hand-made tenants (no sandboxes).

``tests/sync/test_oracle.py`` runs the oracle against the real DAGs; these tests pin down what it
decides on cases a generated tenant may not contain, and that each rule can say no.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from zuora_oracle import (
    ABSENT,
    DATE,
    DATETIME,
    DAY,
    NUMBER,
    REJECTED,
    SYNCED,
    TEXT,
    BOOLEAN,
    OracleError,
    Tenant,
    ZuoraOracle,
    actual_value,
    expected_value,
    same,
)

TZ = ZoneInfo("America/Los_Angeles")
ACCOUNT_IDS = {"001000000000001AAA", "001000000000002AAA"}


def tenant(**objects: list[dict]) -> Tenant:
    names = ["Account", "Contact", "Subscription", "RatePlan", "RatePlanCharge", "Invoice", "Payment",
             "InvoicePayment", "Product", "ProductRatePlan", "ProductRatePlanCharge"]
    rows = {name: {r["Id"]: r for r in objects.get(name, [])} for name in names}
    deleted = {name: {} for name in ("Product", "ProductRatePlan", "ProductRatePlanCharge")}
    return Tenant(rows, deleted, set(ACCOUNT_IDS))


class OracleOver(ZuoraOracle):
    """The oracle with a tenant given, instead of read from Zuora (no Salesforce either)."""

    def __init__(self, given: Tenant):
        super().__init__(None, None, tenant_tz=TZ)
        self.given = given

    def read_tenant(self, scope: str) -> Tenant:
        return self.given


def account(key: str, crm: str | None = "001000000000001AAA", status: str = "Active", **more) -> dict:
    return {"Id": key, "AccountNumber": f"N-{key}", "Name": key, "CrmId": crm, "Status": status, **more}


def subscription(key: str, owner: str, *, version: int = 1, original: str | None = None, status: str = "Active",
                 invoice_owner: str | None = None, name: str | None = None) -> dict:
    return {"Id": key, "AccountId": owner, "InvoiceOwnerId": invoice_owner or owner, "Name": name or f"S-{original or key}",
            "Version": version, "OriginalId": original or key, "Status": status}


def states(given: Tenant) -> dict:
    return OracleOver(given)._account_states(given)


def test_accounts_need_an_existing_salesforce_account_and_not_canceled():
    found = states(tenant(Account=[
        account("a"), account("none", None), account("gone", status="Canceled"), account("draft", status="Draft"),
        account("short", "001000000000002"), account("unknown", "001000000000009AAA"), account("bad", "001Z0"),
        account("case", "001000000000002aaa")]))["CustomerAccount"]
    assert {k: v[0] for k, v in found.items()} == {
        "a": SYNCED, "none": ABSENT, "gone": ABSENT, "draft": SYNCED, "short": SYNCED, "unknown": REJECTED,
        "bad": REJECTED, "case": SYNCED}


def test_only_the_latest_version_of_a_synced_status_under_a_synced_account():
    found = states(tenant(
        Account=[account("a"), account("r", "001000000000009AAA"), account("n", None)],
        Subscription=[
            subscription("v1", "a", status="Active"),  # not Expired, yet older: still not the latest
            subscription("v2", "a", version=2, original="v1", status="Active"),
            subscription("draft", "a", status="Draft"), subscription("susp", "a", status="Suspended"),
            subscription("pend", "a", status="Pending Activation"), subscription("canc", "a", status="Cancelled"),
            subscription("rej", "r"), subscription("none", "n")]))["Subscription"]
    assert {k: v[0] for k, v in found.items()} == {
        "v1": ABSENT, "v2": SYNCED, "draft": ABSENT, "susp": ABSENT, "pend": SYNCED, "canc": SYNCED,
        "rej": REJECTED, "none": ABSENT}
    assert "not the latest (v2 is)" in found["v1"][1]


def test_a_lineage_without_one_latest_version_is_an_oracle_error():
    with pytest.raises(OracleError, match="cannot tell its latest version"):
        states(tenant(Account=[account("a")], Subscription=[
            subscription("v1", "a"), subscription("v2", "a", original="v1")]))  # both version 1


def test_children_follow_their_owner_and_rejection_cascades():
    found = states(tenant(
        Account=[account("a"), account("r", "001000000000009AAA")],
        Subscription=[subscription("s", "r")],
        RatePlan=[{"Id": "p", "SubscriptionId": "s"}],
        RatePlanCharge=[{"Id": "c", "RatePlanId": "p"}],
        Invoice=[{"Id": "i", "AccountId": "r", "Status": "Posted"}, {"Id": "d", "AccountId": "a", "Status": "Draft"},
                 {"Id": "ok", "AccountId": "a", "Status": "Posted"}],
        Payment=[{"Id": "pay", "AccountId": "r"}, {"Id": "pay2", "AccountId": "a"}],
        InvoicePayment=[{"Id": "ip", "PaymentId": "pay", "InvoiceId": "i"},
                        {"Id": "ip2", "PaymentId": "pay2", "InvoiceId": "d"}]))
    verdicts = {(obj, k): v[0] for obj, found_ in found.items() for k, v in found_.items()}
    assert verdicts[("RatePlan", "p")] == verdicts[("RatePlanCharge", "c")] == REJECTED
    assert verdicts[("Invoice", "i")] == verdicts[("Payment", "pay")] == verdicts[("InvoicePayment", "ip")] == REJECTED
    assert verdicts[("Invoice", "d")] == ABSENT and verdicts[("Invoice", "ok")] == SYNCED
    # The invoice payment follows its payment even when its invoice is not synced.
    assert verdicts[("InvoicePayment", "ip2")] == SYNCED


def test_optional_lookups_only_to_synced_records():
    given = tenant(
        Account=[account("a"), account("child", ParentId="gone-parent"), account("gone-parent", status="Canceled"),
                 account("owner", None), account("kid", ParentId="a")],
        Subscription=[subscription("s", "a", invoice_owner="owner"), subscription("t", "a", invoice_owner="kid")])
    expectation = OracleOver(given).expect("accounts")
    subs = expectation.records["Subscription"]
    assert subs["s"].values["Zuora__InvoiceOwner__c"] is None and subs["t"].values["Zuora__InvoiceOwner__c"] == "kid"
    accounts = expectation.records["CustomerAccount"]
    assert accounts["child"].values["Zuora__Parent__c"] is None and accounts["kid"].values["Zuora__Parent__c"] == "a"
    assert accounts["a"].values["Zuora__Account__c"] == "001000000000001AAA"


def test_values_as_salesforce_must_show_them():
    assert expected_value(DATETIME, "2024-01-01T02:00:00.000-08:00", TZ) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    assert same(DATETIME, expected_value(DATETIME, "2024-07-01T02:00:00.000-07:00", TZ),
                actual_value(DATETIME, "2024-07-01T09:00:00.000Z", TZ), TZ)
    # A datetime in a date field: the tenant's calendar day (20:30 Pacific is the next day in UTC).
    assert expected_value(DATE, "2025-11-30T20:30:00.000-08:00", TZ) == dt.date(2025, 11, 30)
    # A date in a datetime field: any moment of that day in the tenant's zone, not midnight UTC.
    day = expected_value(DAY, "2024-03-18", TZ)
    assert same(DAY, day, actual_value(DAY, "2024-03-18T07:00:00.000Z", TZ), TZ)
    assert not same(DAY, day, actual_value(DAY, "2024-03-18T00:00:00.000Z", TZ), TZ)
    assert same(NUMBER, expected_value(NUMBER, 120.5, TZ), actual_value(NUMBER, "120.50", TZ), TZ)
    assert not same(NUMBER, Decimal("0.1"), actual_value(NUMBER, "0.10000001", TZ), TZ)
    assert same(BOOLEAN, expected_value(BOOLEAN, None, TZ), actual_value(BOOLEAN, "false", TZ), TZ)
    assert expected_value(TEXT, 12, TZ) == "12" and expected_value(TEXT, None, TZ) is None
    assert not same(TEXT, "x", actual_value(TEXT, "", TZ), TZ)
