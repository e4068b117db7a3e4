"""The sync DAGs checked against an independent oracle (issue 11, item 2).

``tests/zuora_oracle.py`` computes what Salesforce must hold straight from SPEC §3's rules over
Zuora's data, read through ``zuora-sdk`` — never through the sync's ``mapping.yaml``. For each
tenant (5 seeds × 2 sizes) this test starts both sandboxes, runs the real DAGs with ``dag.test()``
and compares Salesforce with the oracle record by record and field by field:

1. ``zuora_full_sync`` → Accounts & Related Objects; ``zuora_product_catalog_sync`` → the catalog;
2. a deterministic batch of changes through Zuora's REST API (:class:`ChangeBatch`), chosen to hit
   every rule: CRM Ids cleared, given, fixed and made invalid, a canceled hierarchy parent and
   invoice owner, invoice owners and parents moved to synced and unsynced accounts, an amendment,
   a cancellation, a posted draft invoice, a new payment, deletes;
3. ``zuora_incremental_sync`` → Accounts & Related Objects again; ``zuora_product_catalog_sync``
   → the catalog, deleted items kept and flagged.

Every stage's differences are collected, and the test fails at the end with all of them grouped
by object, kind and field. It is expected to fail while the sync has the bugs it exposes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sync_harness import run_dag, running_stack
from zuora_oracle import SCOPES, Difference, Expectation, ZuoraOracle, summarize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # zuora-sdk's pydantic usage

TZ = ZoneInfo("America/Los_Angeles")  # running_stack's zuora_time_zone, the sandbox's default
SEEDS = (1, 2, 3, 4, 5)
CASES = [pytest.param(seed, 50, id=f"seed{seed}-50") for seed in SEEDS] + [
    pytest.param(seed, 400, id=f"seed{seed}-400", marks=pytest.mark.slow) for seed in SEEDS]
#: Upsert chunks of a few rows (the loads' default starts at 10,000): every object of the small
#: tenants then spans many Bulk jobs, uploaded while the extract goes on (the pipelined path).
SMALL_CHUNKS = (7, 40)


# -- Zuora and Salesforce calls ----------------------------------------------------------------------


def _saved(results: list, what: str) -> list[str]:
    """The Ids of a create/update answer; fails the test, with Zuora's errors, if any object failed."""
    failures = [(r.errors and [(e.code, e.message) for e in r.errors]) for r in results if not r.success]
    assert not failures, f"{what}: Zuora refused it: {failures}"
    return [r.id for r in results]


class Zuora:
    """The few zuora-sdk calls the change batch makes (the SDK's own request models)."""

    def __init__(self, sdk: Any):
        self.sdk = sdk

    def create(self, type_name: str, *objects: dict) -> list[str]:
        from zuora_sdk.models import ProxyActioncreateRequest

        return _saved(self.sdk.actions_api().action_post_create(
            ProxyActioncreateRequest(type=type_name, objects=list(objects))), f"create {type_name}")

    def update(self, type_name: str, *objects: dict) -> list[str]:
        from zuora_sdk.models import ProxyActionupdateRequest, ZObjectUpdate

        return _saved(self.sdk.actions_api().action_postupdate(ProxyActionupdateRequest(
            type=type_name, objects=[ZObjectUpdate.from_dict(o) for o in objects])), f"update {type_name}")

    def delete(self, type_name: str, *ids: str) -> None:
        from zuora_sdk.models import ProxyActiondeleteRequest

        results = self.sdk.actions_api().action_post_delete(ProxyActiondeleteRequest(type=type_name, ids=list(ids)))
        assert all(r.success for r in results), f"delete {type_name} {ids}: {results}"

    def cancel_subscription(self, key: str) -> str:
        """Cancel at the end of the last invoiced period; returns the new (Cancelled) version's Id."""
        from zuora_sdk.models import CancelSubscriptionRequest

        response = self.sdk.subscriptions_api().cancel_subscription(
            key, CancelSubscriptionRequest(cancellation_policy="EndOfLastInvoicePeriod"))
        assert response.success, f"cancel {key}: {response.reasons}"
        return response.subscription_id

    def create_account(self, name: str, crm_id: str) -> str:
        from zuora_sdk.models import CreateAccountContact, CreateAccountRequest

        response = self.sdk.accounts_api().create_account(CreateAccountRequest(
            name=name, currency="USD", bill_cycle_day=1, crm_id=crm_id, auto_pay=False, payment_term="Net 30",
            bill_to_contact=CreateAccountContact(first_name="Olga", last_name="Racle", address1="1 Oracle Way",
                                                 city="Portland", state="OR", country="United States",
                                                 zip_code="97201", work_email="olga@oracle.example.com")))
        assert response.success, f"create account {name}: {response.reasons}"
        return response.account_id

    def rename_account_rest(self, key: str, name: str, bill_to: dict, city: str) -> None:
        """``PUT /v1/accounts/{key}``: a new name and a new bill-to city, in one call."""
        from zuora_sdk.models import UpdateAccountContact, UpdateAccountRequest

        contact = UpdateAccountContact(first_name=bill_to["FirstName"], last_name=bill_to["LastName"], city=city)
        response = self.sdk.accounts_api().update_account(key, UpdateAccountRequest(name=name, bill_to_contact=contact))
        assert response.success, f"update account {key}: {response.reasons}"


def new_salesforce_account(sf: Any, name: str) -> str:
    """A new standard Account in the org (simple-salesforce REST); returns its 18-character Id."""
    created = sf.Account.create({"Name": name})
    assert created["success"], created
    return created["id"]


# -- the change batch --------------------------------------------------------------------------------


@dataclasses.dataclass
class ChangeBatch:
    """What the batch changed, for checks that the expectation after it reflects each change."""

    done: list[str] = dataclasses.field(default_factory=list)
    #: (object, key, field, expected value) that the oracle's expectation must show afterwards
    expect_values: list[tuple[str, str, str, Any]] = dataclasses.field(default_factory=list)
    expect_synced: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    expect_absent: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    expect_rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: catalog records deleted after the first catalog sync: must stay in Salesforce, flagged
    deleted_catalog: dict[str, set[str]] = dataclasses.field(default_factory=dict)


def catalog_setup(zuora: Zuora, seed: int) -> dict[str, str]:
    """Two products of our own, made before the first catalog sync, for the batch to delete from.

    Catalog items a subscription uses cannot be deleted in Zuora, and which generated ones are
    free depends on the tenant; these always are.
    """
    ids = {}
    for tag in ("X", "Y"):
        (ids[tag],) = zuora.create("Product", {
            "Name": f"Oracle Product {tag}", "SKU": f"SKU-ORACLE-{seed}-{tag}", "Category": "Add On Services",
            "Description": f"Oracle product {tag}.", "EffectiveStartDate": "2024-01-01",
            "EffectiveEndDate": "2030-12-31"})
        (ids[f"{tag}plan"],) = zuora.create("ProductRatePlan", {
            "ProductId": ids[tag], "Name": f"Oracle Plan {tag}", "Description": f"Plan of {tag}.",
            "EffectiveStartDate": "2024-01-01", "EffectiveEndDate": "2030-12-31"})
        ids[f"{tag}charges"] = zuora.create("ProductRatePlanCharge", *({
            "ProductRatePlanId": ids[f"{tag}plan"], "Name": f"Oracle Charge {tag}{n}", "ChargeType": "Recurring",
            "ChargeModel": "Per Unit Pricing", "BillingPeriod": "Month", "DefaultQuantity": 2.5, "UOM": "User",
            "TriggerEvent": "ContractEffective", "Taxable": n == 1} for n in (1, 2)))
    return ids


def apply_changes(zuora: Zuora, sf: Any, before: Expectation, tenant: Any, catalog: dict[str, str],
                  seed: int) -> ChangeBatch:
    """One deterministic batch of changes, chosen from the tenant as the oracle saw it before.

    Candidates are taken in account-number order, each account used by one change only, so every
    tenant gets the same kinds of change; a tenant without a candidate fails the test (the batch
    would not exercise its rule).
    """
    batch = ChangeBatch()
    rows = tenant.rows
    accounts = sorted(rows["Account"].values(), key=lambda a: a["AccountNumber"])
    synced = before.records["CustomerAccount"]
    used: set[str] = set()

    def subs_of(account_id: str) -> list[dict]:
        return [s for s in rows["Subscription"].values() if s.get("AccountId") == account_id]

    def synced_subs_of(account_id: str) -> list[dict]:
        return sorted((s for s in subs_of(account_id) if s["Id"] in before.records["Subscription"]),
                      key=lambda s: s["Name"])

    def children_of(account_id: str) -> list[str]:
        return [a["Id"] for a in accounts if a.get("ParentId") == account_id]

    def billed_for_others(account_id: str) -> list[dict]:
        return [s for s in rows["Subscription"].values()
                if s.get("InvoiceOwnerId") == account_id and s.get("AccountId") != account_id
                and s["Id"] in before.records["Subscription"]]

    def pick(what: str, ok) -> dict:
        for account in accounts:
            if account["Id"] not in used and ok(account):
                used.add(account["Id"])
                return account
        raise AssertionError(f"seed {seed}: no account for '{what}' in this tenant")

    def lone(a: dict) -> bool:
        return a.get("ParentId") is None and not children_of(a["Id"])

    # 1. Cancel a synced account that is a hierarchy parent of synced accounts and/or the invoice
    # owner of others' synced subscriptions. Zuora cancels an account only once its subscriptions
    # are all cancelled: cancel its Active ones first (only Active ones can be), so take an account
    # whose open subscriptions are all Active.
    def cancellable_parent(a: dict) -> bool:
        open_subs = [s for s in subs_of(a["Id"]) if s.get("Status") in
                     ("Draft", "Pending Activation", "Pending Acceptance", "Active", "Suspended")]
        related = [c for c in children_of(a["Id"]) if c in synced] or billed_for_others(a["Id"])
        return a["Id"] in synced and bool(related) and all(s.get("Status") == "Active" for s in open_subs)
    canceled = pick("cancel a hierarchy parent / invoice owner", cancellable_parent)
    for sub in synced_subs_of(canceled["Id"]):  # latest versions only: an older one is not cancelled
        if sub.get("Status") == "Active":
            zuora.cancel_subscription(sub["Id"])
    zuora.update("Account", {"Id": canceled["Id"], "Status": "Canceled"})
    batch.done.append(f"canceled account {canceled['AccountNumber']} (parent of {children_of(canceled['Id'])}, "
                      f"invoice owner of {[s['Id'] for s in billed_for_others(canceled['Id'])]})")
    batch.expect_absent.append(("CustomerAccount", canceled["Id"]))
    for child in children_of(canceled["Id"]):
        if child in synced:
            used.add(child)
            batch.expect_values.append(("CustomerAccount", child, "Zuora__Parent__c", None))
    for sub in billed_for_others(canceled["Id"]):
        used.add(sub["AccountId"])
        batch.expect_values.append(("Subscription", sub["Id"], "Zuora__InvoiceOwner__c", None))

    # 2. Clear a synced account's CRM Id: it and everything under it leave Salesforce.
    cleared = pick("clear a CRM Id", lambda a: a["Id"] in synced and lone(a) and bool(synced_subs_of(a["Id"]))
                   and not billed_for_others(a["Id"]))
    zuora.update("Account", {"Id": cleared["Id"], "fieldsToNull": ["CrmId"]})
    batch.done.append(f"cleared the CRM Id of {cleared['AccountNumber']}")
    batch.expect_absent += [("CustomerAccount", cleared["Id"])] + [
        ("Subscription", s["Id"]) for s in synced_subs_of(cleared["Id"])]

    # 3. Give an account without a CRM Id a valid one (a new Salesforce Account). Prefer one that
    # bills others' subscriptions or heads a hierarchy: their lookups to it become settable.
    def without_crm(a: dict) -> bool:
        return not a.get("CrmId") and a.get("Status") != "Canceled"
    given = next((a for a in accounts if a["Id"] not in used and without_crm(a) and (
        children_of(a["Id"]) or any(s.get("InvoiceOwnerId") == a["Id"] != s.get("AccountId")
                                    for s in rows["Subscription"].values()))), None)
    given = given or pick("give a CRM Id", without_crm)
    used.add(given["Id"])
    crm = new_salesforce_account(sf, f"Oracle Given {given['AccountNumber']}")
    zuora.update("Account", {"Id": given["Id"], "CrmId": crm})
    batch.done.append(f"gave {given['AccountNumber']} the CRM Id {crm}")
    batch.expect_synced.append(("CustomerAccount", given["Id"]))
    batch.expect_values.append(("CustomerAccount", given["Id"], "Zuora__Account__c", crm))

    # 4. Fix an invalid CRM Id (the generator's accounts 17, 217, ... carry one).
    rejected_accounts = sorted(before.must_be_rejected["CustomerAccount"])
    assert rejected_accounts, f"seed {seed}: the tenant has no account with an invalid CRM Id"
    fixed = rows["Account"][rejected_accounts[0]]
    used.add(fixed["Id"])
    crm = new_salesforce_account(sf, f"Oracle Fixed {fixed['AccountNumber']}")
    zuora.update("Account", {"Id": fixed["Id"], "CrmId": crm})
    batch.done.append(f"fixed the CRM Id of {fixed['AccountNumber']} ({fixed.get('CrmId')!r} → {crm})")
    batch.expect_synced.append(("CustomerAccount", fixed["Id"]))

    # 5. A new account whose CRM Id names a Salesforce Account that was deleted: a per-record
    # rejection, with a subscription (plan, charge), a posted invoice, a payment and its link.
    gone = new_salesforce_account(sf, "Oracle Deleted Account")
    sf.Account.delete(gone)
    invalid = zuora.create_account(f"Oracle Invalid {seed}", gone)
    (sub,) = zuora.create("Subscription", {"AccountId": invalid, "ContractEffectiveDate": "2025-01-01",
                                           "AutoRenew": True})
    plan_id = catalog["Xplan"]
    (plan,) = zuora.create("RatePlan", {"SubscriptionId": sub, "ProductRatePlanId": plan_id})
    (charge,) = zuora.create("RatePlanCharge", {"RatePlanId": plan, "Name": "Oracle Seats", "Price": 12.5,
                                                "Quantity": 4, "ProductRatePlanChargeId": catalog["Xcharges"][0]})
    (invoice,) = zuora.create("Invoice", {"AccountId": invalid, "Status": "Posted", "InvoiceDate": "2025-02-01",
                                          "PostedDate": "2025-02-01T09:00:00-08:00", "Amount": 50})
    (payment,) = zuora.create("Payment", {"AccountId": invalid, "Amount": 50, "EffectiveDate": "2025-02-03"})
    (link,) = zuora.create("InvoicePayment", {"InvoiceId": invoice, "PaymentId": payment, "Amount": 50})
    batch.done.append(f"created account {invalid} with the deleted Account's Id {gone} as CRM Id, and children")
    batch.expect_rejected += [("CustomerAccount", invalid), ("Subscription", sub), ("RatePlan", plan),
                              ("RatePlanCharge", charge), ("Invoice", invoice), ("Payment", payment),
                              ("InvoicePayment", link)]

    # 6. Parents: a lone synced account moves under the rejected account (the lookup must stay
    # empty), another under a lone synced account (set).
    orphan = pick("parent → a rejected account", lambda a: a["Id"] in synced and lone(a))
    zuora.update("Account", {"Id": orphan["Id"], "ParentId": invalid})
    adopted = pick("parent → a synced account", lambda a: a["Id"] in synced and lone(a))
    new_parent = pick("a synced lone parent", lambda a: a["Id"] in synced and lone(a))
    zuora.update("Account", {"Id": adopted["Id"], "ParentId": new_parent["Id"]})
    batch.done.append(f"moved {orphan['AccountNumber']} under the rejected account, {adopted['AccountNumber']} "
                      f"under {new_parent['AccountNumber']}")
    batch.expect_values += [("CustomerAccount", orphan["Id"], "Zuora__Parent__c", None),
                            ("CustomerAccount", adopted["Id"], "Zuora__Parent__c", new_parent["Id"])]

    # 7. Invoice owners (an amendment: a new version): one to an account without a CRM Id, one to
    # a synced account.
    no_crm = pick("an unsynced invoice owner", without_crm)
    owner_out = pick("invoice owner → unsynced", lambda a: a["Id"] in synced and any(
        s.get("Status") == "Active" for s in synced_subs_of(a["Id"])))
    sub_out = next(s for s in synced_subs_of(owner_out["Id"]) if s.get("Status") == "Active")
    (version_out,) = zuora.update("Subscription", {"Id": sub_out["Id"], "InvoiceOwnerId": no_crm["Id"]})
    owner_in = pick("invoice owner → synced", lambda a: a["Id"] in synced and any(
        s.get("Status") == "Active" for s in synced_subs_of(a["Id"])))
    sub_in = next(s for s in synced_subs_of(owner_in["Id"]) if s.get("Status") == "Active")
    (version_in,) = zuora.update("Subscription", {"Id": sub_in["Id"], "InvoiceOwnerId": new_parent["Id"]})
    batch.done.append(f"invoice owner of {sub_out['Name']} → {no_crm['AccountNumber']} (no CRM Id), "
                      f"of {sub_in['Name']} → {new_parent['AccountNumber']}")
    batch.expect_absent += [("Subscription", sub_out["Id"]), ("Subscription", sub_in["Id"])]
    batch.expect_values += [("Subscription", version_out, "Zuora__InvoiceOwner__c", None),
                            ("Subscription", version_in, "Zuora__InvoiceOwner__c", new_parent["Id"])]

    # 8. An amendment, a cancellation, a deleted charge (each on another synced account's latest
    # Active subscription).
    def with_active_sub(a: dict) -> bool:
        return a["Id"] in synced and any(s.get("Status") == "Active" for s in synced_subs_of(a["Id"]))
    amended_account = pick("amend a subscription", with_active_sub)
    amended = next(s for s in synced_subs_of(amended_account["Id"]) if s.get("Status") == "Active")
    (amended_version,) = zuora.update("Subscription", {
        "Id": amended["Id"], "AutoRenew": not amended.get("AutoRenew", False), "Notes": "amended by the oracle test"})
    cancelled_account = pick("cancel a subscription", with_active_sub)
    cancelled = next(s for s in synced_subs_of(cancelled_account["Id"]) if s.get("Status") == "Active")
    cancelled_version = zuora.cancel_subscription(cancelled["Name"])
    batch.done.append(f"amended {amended['Name']}, cancelled {cancelled['Name']}")
    batch.expect_absent += [("Subscription", amended["Id"]), ("Subscription", cancelled["Id"])]
    batch.expect_synced += [("Subscription", amended_version), ("Subscription", cancelled_version)]
    batch.expect_values.append(("Subscription", cancelled_version, "Zuora__Status__c", "Cancelled"))
    charge_account = pick("delete a rate plan charge", with_active_sub)
    charge_sub = next(s for s in synced_subs_of(charge_account["Id"]) if s.get("Status") == "Active")
    doomed_charge = sorted(c["Id"] for c in rows["RatePlanCharge"].values()
                           if rows["RatePlan"].get(c["RatePlanId"], {}).get("SubscriptionId") == charge_sub["Id"])[0]
    zuora.delete("RatePlanCharge", doomed_charge)
    batch.done.append(f"deleted charge {doomed_charge} of {charge_sub['Name']}")
    batch.expect_absent.append(("RatePlanCharge", doomed_charge))

    # 9. Renames: one through PUT /v1/accounts (with a new bill-to city), one through action/update.
    renamed_rest = pick("rename (REST)", lambda a: a["Id"] in synced and a.get("BillToId") is not None)
    zuora.rename_account_rest(renamed_rest["AccountNumber"], f"Renamed {renamed_rest['AccountNumber']}",
                              rows["Contact"][renamed_rest["BillToId"]], "Eugene")
    renamed = pick("rename (action)", lambda a: a["Id"] in synced)
    zuora.update("Account", {"Id": renamed["Id"], "Name": f"Renamed {renamed['AccountNumber']}"})
    batch.done.append(f"renamed {renamed_rest['AccountNumber']} and {renamed['AccountNumber']}")
    batch.expect_values += [
        ("CustomerAccount", renamed_rest["Id"], "Name", f"Renamed {renamed_rest['AccountNumber']}"),
        ("CustomerAccount", renamed_rest["Id"], "Zuora__BillToCity__c", "Eugene"),
        ("CustomerAccount", renamed["Id"], "Name", f"Renamed {renamed['AccountNumber']}")]

    # 10. Post a draft invoice, at 20:30 Pacific: the next day in UTC, so the posted day shows
    # whether the sync reads Zuora's datetime in the tenant's time zone.
    draft = next((i for i in sorted(rows["Invoice"].values(), key=lambda i: i["InvoiceNumber"])
                  if i.get("Status") == "Draft" and i["AccountId"] in synced and i["AccountId"] not in used), None)
    assert draft is not None, f"seed {seed}: no draft invoice of a synced account"
    used.add(draft["AccountId"])
    zuora.update("Invoice", {"Id": draft["Id"], "Status": "Posted", "PostedDate": "2025-11-30T20:30:00-08:00"})
    batch.done.append(f"posted draft invoice {draft['InvoiceNumber']}")
    batch.expect_values.append(("Invoice", draft["Id"], "Zuora__PostedDate__c", dt.date(2025, 11, 30)))

    # 11. A payment with an invoice payment on one of the account's posted invoices, and a deleted
    # invoice payment.
    posted = sorted((i for i in rows["Invoice"].values() if i["Id"] in before.records["Invoice"]
                     and i["AccountId"] not in used), key=lambda i: i["InvoiceNumber"])
    assert posted, f"seed {seed}: no posted invoice of a free synced account"
    target = posted[0]
    used.add(target["AccountId"])
    (new_payment,) = zuora.create("Payment", {"AccountId": target["AccountId"], "Amount": 10.25,
                                              "EffectiveDate": "2025-12-01", "Type": "External",
                                              "Status": "Processed", "AppliedInvoiceAmount": 10.25})
    (new_link,) = zuora.create("InvoicePayment", {"InvoiceId": target["Id"], "PaymentId": new_payment,
                                                  "Amount": 10.25})
    doomed_link = sorted(k for k, link in rows["InvoicePayment"].items()
                         if k in before.records["InvoicePayment"]
                         and rows["Payment"][link["PaymentId"]]["AccountId"] not in used)[0]
    zuora.delete("InvoicePayment", doomed_link)
    batch.done.append(f"created payment {new_payment} with link {new_link}; deleted link {doomed_link}")
    batch.expect_synced += [("Payment", new_payment), ("InvoicePayment", new_link)]
    batch.expect_values.append(("InvoicePayment", new_link, "Zuora__Invoice__c", target["Id"]))
    batch.expect_absent.append(("InvoicePayment", doomed_link))

    # 12. Catalog: rename product X, delete one of its charges, delete product Y (with its plan
    # and charges), add product Z.
    zuora.update("Product", {"Id": catalog["X"], "Name": "Oracle Product X (renamed)"})
    zuora.delete("ProductRatePlanCharge", catalog["Xcharges"][1])
    zuora.delete("Product", catalog["Y"])
    zuora.create("Product", {"Name": "Oracle Product Z", "SKU": f"SKU-ORACLE-{seed}-Z",
                             "EffectiveStartDate": "2025-06-01", "EffectiveEndDate": "2035-05-31"})
    batch.done.append("catalog: renamed X, deleted a charge of X, deleted Y, added Z")
    batch.deleted_catalog = {"Product": {catalog["Y"]}, "ProductRatePlan": {catalog["Yplan"]},
                             "ProductRatePlanCharge": {catalog["Xcharges"][1], *catalog["Ycharges"]}}
    return batch


def check_batch_in_expectation(batch: ChangeBatch, after: Expectation) -> list[str]:
    """Whether the oracle's expectation after the batch shows each intended effect.

    Guards both the batch (a change Zuora took differently) and the oracle's rules.
    """
    problems = []
    for obj, key in batch.expect_synced:
        if key not in after.records[obj]:
            problems.append(f"{obj} {key} should be synced: {after.excluded[obj].get(key, 'not in Zuora')}")
    for obj, key in batch.expect_absent:
        if key in after.records[obj]:
            problems.append(f"{obj} {key} should not be synced")
    for obj, key in batch.expect_rejected:
        if key not in after.must_be_rejected[obj]:
            problems.append(f"{obj} {key} should be a rejection: {after.excluded[obj].get(key, 'synced')}")
    for obj, key, field, value in batch.expect_values:
        record = after.records[obj].get(key)
        have = record.values[field] if record else "<not synced>"
        if have != value:
            problems.append(f"{obj} {key}: {field} expected {value!r} after the batch, the oracle says {have!r}")
    return problems


# -- checking ---------------------------------------------------------------------------------------


def open_rejections(scope: str) -> dict[str, set[str]]:
    """object → keys with an open rejected record in the sync's state store."""
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return {obj: set(store.open_rejected_ids(scope, obj)) for obj in SCOPES[scope]}


def check(oracle: ZuoraOracle, scope: str, require_deleted: dict[str, set[str]] | None = None
          ) -> tuple[Expectation, list[Difference]]:
    expectation = oracle.expect(scope)
    rejected = open_rejections(scope)
    differences = oracle.compare(expectation, require_deleted=require_deleted, open_rejected=rejected)
    differences += oracle.unrecorded_rejections(expectation, rejected)
    return expectation, differences


def tamper(sf: Any, expectation: Expectation, absent: set[str]) -> set[tuple[str, str, str, str]]:
    """Change Salesforce behind the sync's back: a value, a deleted record, an extra record.

    Only records that are in Salesforce (not in ``absent``) are touched. Returns the
    (object, key, kind, field) the oracle must now report, proving it can fail.
    """
    sub = sorted(set(expectation.records["Subscription"]) - absent)[0]
    record = sf.Zuora__Subscription__c.get_by_custom_id("Zuora__External_Id__c", sub)
    sf.Zuora__Subscription__c.update(record["Id"], {"Zuora__Status__c": "Tampered"})
    charge = sorted(set(expectation.records["RatePlanCharge"]) - absent)[0]
    sf.Zuora__SubscriptionProductCharge__c.delete(
        sf.Zuora__SubscriptionProductCharge__c.get_by_custom_id("Zuora__External_Id__c", charge)["Id"])
    sf.Zuora__SubscriptionRatePlan__c.create({"Name": "Not in Zuora", "Zuora__External_Id__c": "oracle-extra-plan"})
    return {("Subscription", sub, "value", "Zuora__Status__c"), ("RatePlanCharge", charge, "missing", ""),
            ("RatePlan", "oracle-extra-plan", "extra", "")}


@pytest.mark.parametrize("seed, accounts", CASES)
def test_salesforce_matches_the_oracle(seed: int, accounts: int, tmp_path: Path) -> None:
    compare_with_the_oracle(seed, accounts, tmp_path)


@pytest.mark.parametrize("seed", [2])
def test_salesforce_matches_the_oracle_in_small_chunks(seed: int, tmp_path: Path, monkeypatch) -> None:
    """The same stages with every object uploaded in many small chunks."""
    from zuora_sync.operators import salesforce_load

    monkeypatch.setattr(salesforce_load, "CHUNK_ROWS", SMALL_CHUNKS)
    compare_with_the_oracle(seed, 50, tmp_path)


def compare_with_the_oracle(seed: int, accounts: int, tmp_path: Path) -> None:
    stages: dict[str, list[Difference]] = {}
    with running_stack(tmp_path, accounts=accounts, seed=seed) as stack:
        sf = stack["salesforce"].login()
        sdk = stack["zuora"].sdk_client()
        oracle = ZuoraOracle(sdk, sf, tenant_tz=TZ)
        zuora = Zuora(sdk)

        assert run_dag("zuora_full_sync") == "success"
        before, stages["after the full sync"] = check(oracle, "accounts")
        assert before.records["Subscription"] and before.must_be_rejected["CustomerAccount"]
        catalog = catalog_setup(zuora, seed)
        assert run_dag("zuora_product_catalog_sync") == "success"
        _, stages["after the first catalog sync"] = check(oracle, "catalog")

        batch = apply_changes(zuora, sf, before, oracle.read_tenant("accounts"), catalog, seed)
        assert run_dag("zuora_incremental_sync") == "success"
        after, stages["after the changes and an incremental sync"] = check(oracle, "accounts")
        assert not (problems := check_batch_in_expectation(batch, after)), \
            "the change batch did not do what it meant to:\n" + "\n".join(problems)
        assert run_dag("zuora_product_catalog_sync") == "success"
        _, stages["after the second catalog sync"] = check(oracle, "catalog", batch.deleted_catalog)

        if accounts == 50:  # the oracle must see a change made behind the sync's back
            seen = {(d.obj, d.key, d.kind, d.field or "") for d in stages["after the changes and an incremental sync"]}
            planted = tamper(sf, after, {key for _, key, kind, _ in seen if kind == "missing"})
            found = {(d.obj, d.key, d.kind, d.field or "") for d in oracle.compare(after)} - seen
            assert planted <= found, f"the oracle missed tampering: {planted - found}"

    # Every difference, one a line, next to the sandboxes' data: the message shows only examples.
    listing = tmp_path / "differences.txt"
    listing.write_text("".join(f"== {stage}\n" + "".join(f"{d}\n" for d in found) for stage, found in stages.items()))
    report = [f"== {stage}: {summarize(found, examples=2)}" for stage, found in stages.items() if found]
    assert not report, f"seed {seed}, {accounts} accounts (every difference: {listing}); changes: " + \
        "; ".join(batch.done) + "\n" + "\n".join(report)
