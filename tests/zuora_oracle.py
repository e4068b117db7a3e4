"""An independent oracle: what Salesforce must hold, computed from Zuora and SPEC §3 alone.

The end-to-end tests in ``tests/sync`` derive their expectations from the sync's own
``mapping.yaml`` (its ``keep`` rules and expressions), so a wrong rule there can never fail them.
This module does not import the sync (``include/zuora_sync``), its mapping or the harness's
expectation functions. It reads Zuora through Zuora's official ``zuora-sdk`` (ZOQL
``action_post_query`` + ``action_postquery_more`` for live rows, Data Query for the deleted catalog
rows ZOQL cannot show), reads the org's Account Ids and the synced objects through
``simple-salesforce`` (Bulk API 2.0 queries, relationship columns for lookups), applies the rules of
SPEC §3 written out below as plain Python, and returns every difference in words.

Its field table (:data:`TABLE`) is its own: written from the Salesforce sandbox's schema (whose
comments cite Zuora's 360 mapping pages), the Zuora sandbox's schema and
``shared/reference/zuora.md`` §1.4, with Zuora's mapping pages as the sources named in each row:

- ``MAP-A``: "Sync field mappings of account and related objects" (Zuora 360);
- ``MAP-S``: "Sync field mapping of subscription and related objects for 360";
- ``MAP-P``: "Sync field mapping of product catalog related objects for Zuora 360";
- ``CONN``: the Zuora Connector for Salesforce CRM pages for ``Zuora__ZInvoice__c`` and
  ``Zuora__Payment__c`` (same Salesforce objects; the Salesforce schema cites them);
- ``WSDL``: a field the Salesforce schema has from the 360 package's WSDL, whose Zuora source is the
  field of the same name (no mapping row names it).

Usage::

    oracle = ZuoraOracle(zuora_client, sf, tenant_tz=ZoneInfo("America/Los_Angeles"))
    expectation = oracle.expect(scope="accounts")     # read Zuora and the org's Account Ids
    differences = oracle.compare(expectation)          # read Salesforce, compare
    expectation.must_be_rejected                       # per object: keys Salesforce must refuse
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import requests

# -- value kinds: how a Salesforce field is compared ------------------------------------------------

TEXT = "text"          # string, textarea, email, phone, picklist: exact text, empty = null
NUMBER = "number"      # double, currency, int, percent: compared as decimal numbers
BOOLEAN = "boolean"    # "true" / "false"; Salesforce has no null boolean, so null counts as false
DATE = "date"          # YYYY-MM-DD
DATETIME = "datetime"  # an instant, compared in UTC
DAY = "day"            # a Zuora *date* in a Salesforce *datetime* field: the instant must fall on that
                       # calendar day in the tenant's time zone (a date carries no time of day)
ACCOUNT = "account"    # lookup to the standard Account, holding its 18-character Id
LOOKUP = "lookup"      # lookup/master-detail to a synced object, read as <rel>__r.<key> (external id)

#: Salesforce ``describe`` types each kind accepts: the table is checked against the live org.
_DESCRIBE_TYPES = {
    TEXT: {"string", "textarea", "email", "phone", "picklist", "url"},
    NUMBER: {"double", "currency", "int", "percent"},
    BOOLEAN: {"boolean"},
    DATE: {"date"},
    DATETIME: {"datetime"},
    DAY: {"datetime"},
    ACCOUNT: {"reference"},
    LOOKUP: {"reference"},
}


class OracleError(AssertionError):
    """The oracle could not decide (inconsistent Zuora data, a table that does not fit the org)."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One row of the field table: a Salesforce field, where its value comes from, how to compare.

    ``source`` is a Zuora field of the object's row, or a function of ``(row, tenant)`` for values
    that come from a related record (a contact, the catalog). ``target`` names the oracle object a
    :data:`LOOKUP` points at (its key field is read through the relationship column).
    """

    salesforce: str
    source: str | Callable[[dict, "Tenant"], Any]
    kind: str
    doc: str
    target: str | None = None

    def column(self, objects: Mapping[str, "ObjectSpec"]) -> str:
        """The Bulk API query column that reads this field."""
        if self.kind == LOOKUP:
            return f"{self.salesforce[:-3]}__r.{objects[self.target].key}"
        return self.salesforce


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """A synced object: its Zuora object, Salesforce object, upsert key and field table."""

    name: str
    zuora: str
    salesforce: str
    key: str
    fields: tuple[Field, ...]
    scope: str
    flag: str | None = None  # the "deleted" flag of catalog objects (SPEC §3.2)


def _contact(role: str, field: str) -> Callable[[dict, "Tenant"], Any]:
    """A bill-to / sold-to contact's field, flattened onto the customer account (MAP-A "Contact")."""
    def value(row: dict, tenant: "Tenant") -> Any:
        contact = tenant.rows["Contact"].get(row.get(f"{role}Id"))
        return None if contact is None else contact.get(field)
    return value


def _contact_name(role: str) -> Callable[[dict, "Tenant"], Any]:
    # MAP-A maps both FirstName and LastName to Zuora__BillToName__c / Zuora__SoldToName__c.
    def value(row: dict, tenant: "Tenant") -> Any:
        contact = tenant.rows["Contact"].get(row.get(f"{role}Id"))
        if contact is None:
            return None
        return " ".join(p for p in (contact.get("FirstName"), contact.get("LastName")) if p) or None
    return value


def _crm_account(account_field: str) -> Callable[[dict, "Tenant"], Any]:
    """The Salesforce Account of the customer account named by ``account_field`` (its CRM Id)."""
    def value(row: dict, tenant: "Tenant") -> Any:
        account = tenant.rows["Account"].get(row.get(account_field))
        return None if account is None else tenant.salesforce_account(account.get("CrmId"))
    return value


def _charge_catalog(level: str, field: str) -> Callable[[dict, "Tenant"], Any]:
    """A catalog value denormalized onto a subscription charge (MAP-S "Product/ProductRatePlan :
    Zuora__SubscriptionProductCharge__c", through ProductRatePlanChargeId.ProductRatePlanId[.ProductId])."""
    def value(row: dict, tenant: "Tenant") -> Any:
        prpc = tenant.catalog("ProductRatePlanCharge", row.get("ProductRatePlanChargeId"))
        prp = tenant.catalog("ProductRatePlan", prpc and prpc.get("ProductRatePlanId"))
        if level == "ProductRatePlan":
            return prp and prp.get(field)
        product = tenant.catalog("Product", prp and prp.get("ProductId"))
        return product and product.get(field)
    return value


def _charge_subscription(row: dict, tenant: "Tenant") -> Any:
    plan = tenant.rows["RatePlan"].get(row.get("RatePlanId"))
    return None if plan is None else plan.get("SubscriptionId")


def _charge_crm_account(row: dict, tenant: "Tenant") -> Any:
    # MAP-A "Account : Zuora__SubscriptionProductCharge__c": the subscription's customer account's CrmId.
    subscription = tenant.rows["Subscription"].get(_charge_subscription(row, tenant))
    return None if subscription is None else _crm_account("AccountId")(subscription, tenant)


def _payment_of_link(row: dict, tenant: "Tenant") -> Any:
    return row.get("PaymentId")


F = Field
#: The oracle's field table, one entry per synced object (SPEC §3.1 and §3.2).
TABLE: dict[str, ObjectSpec] = {spec.name: spec for spec in (
    ObjectSpec("CustomerAccount", "Account", "Zuora__CustomerAccount__c", "Zuora__External_Id__c", scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-A: Id → External Id, the upsert key"),
        F("Zuora__Zuora_Id__c", "Id", TEXT, "MAP-A"),
        F("Name", "Name", TEXT, "WSDL: Name, label 'Billing Account Name'"),
        F("Zuora__Account__c", _crm_account("Id"), ACCOUNT, "SPEC §3.1, MAP-A: CrmId → Account (master-detail)"),
        F("Zuora__Parent__c", "ParentId", LOOKUP, "SPEC §3.1: ParentId → Parent (customer hierarchy)",
          target="CustomerAccount"),
        F("Zuora__AccountNumber__c", "AccountNumber", TEXT, "MAP-A"),
        F("Zuora__Status__c", "Status", TEXT, "MAP-A"),
        F("Zuora__Currency__c", "Currency", TEXT, "MAP-A"),
        F("Zuora__Balance__c", "Balance", NUMBER, "MAP-A"),
        F("Zuora__Credit_Balance__c", "CreditBalance", NUMBER, "MAP-A"),
        F("Zuora__TotalInvoiceBalance__c", "TotalInvoiceBalance", NUMBER, "MAP-A"),
        F("Zuora__PaymentTerm__c", "PaymentTerm", TEXT, "MAP-A"),
        F("Zuora__BillCycleDay__c", "BillCycleDay", TEXT, "MAP-A (a text field in Salesforce)"),
        F("Zuora__Batch__c", "Batch", TEXT, "MAP-A"),
        F("Zuora__AutoPay__c", "AutoPay", BOOLEAN, "MAP-A"),
        F("Zuora__LastInvoiceDate__c", "LastInvoiceDate", DATE, "MAP-A"),
        F("Zuora__PurchaseOrderNumber__c", "PurchaseOrderNumber", TEXT, "MAP-A"),
        F("Zuora__SalesRepName__c", "SalesRepName", TEXT, "MAP-A"),
        F("Zuora__Notes__c", "Notes", TEXT, "MAP-A"),
        F("Zuora__TaxExemptStatus__c", "TaxExemptStatus", TEXT, "MAP-A"),
        F("Zuora__BillToId__c", "BillToId", TEXT, "MAP-A"),
        F("Zuora__SoldToId__c", "SoldToId", TEXT, "MAP-A"),
        F("Zuora__BillToName__c", _contact_name("BillTo"), TEXT, "MAP-A Contact: FirstName, LastName"),
        F("Zuora__BillToAddress1__c", _contact("BillTo", "Address1"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToCity__c", _contact("BillTo", "City"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToState__c", _contact("BillTo", "State"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToPostalCode__c", _contact("BillTo", "PostalCode"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToCountry__c", _contact("BillTo", "Country"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToWorkEmail__c", _contact("BillTo", "WorkEmail"), TEXT, "MAP-A Contact"),
        F("Zuora__BillToWorkPhone__c", _contact("BillTo", "WorkPhone"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToName__c", _contact_name("SoldTo"), TEXT, "MAP-A Contact: FirstName, LastName"),
        F("Zuora__SoldToAddress1__c", _contact("SoldTo", "Address1"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToCity__c", _contact("SoldTo", "City"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToState__c", _contact("SoldTo", "State"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToPostalCode__c", _contact("SoldTo", "PostalCode"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToCountry__c", _contact("SoldTo", "Country"), TEXT, "MAP-A Contact"),
        F("Zuora__SoldToWorkEmail__c", _contact("SoldTo", "WorkEmail"), TEXT, "MAP-A Contact"),
    )),
    ObjectSpec("Subscription", "Subscription", "Zuora__Subscription__c", "Zuora__External_Id__c", scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-S"),
        F("Zuora__Zuora_Id__c", "Id", TEXT, "MAP-S"),
        F("Name", "Name", TEXT, "MAP-S"),
        F("Zuora__SubscriptionNumber__c", "Name", TEXT, "MAP-S: SubscriptionNumber (the Name in SOAP/ZOQL)"),
        F("Zuora__Account__c", _crm_account("AccountId"), ACCOUNT, "MAP-S: Account (through AccountId).CrmId"),
        F("Zuora__CustomerAccount__c", "AccountId", LOOKUP, "SPEC §3.1, MAP-S: BillingAccount",
          target="CustomerAccount"),
        F("Zuora__InvoiceOwner__c", "InvoiceOwnerId", LOOKUP, "SPEC §3.1: invoice owner", target="CustomerAccount"),
        F("Zuora__Status__c", "Status", TEXT, "MAP-S: SubscriptionStatus"),
        F("Zuora__Version__c", "Version", NUMBER, "MAP-S"),
        F("Zuora__OriginalId__c", "OriginalId", TEXT, "MAP-S"),
        F("Zuora__PreviousSubscriptionId__c", "PreviousSubscriptionId", TEXT, "MAP-S"),
        F("Zuora__AutoRenew__c", "AutoRenew", BOOLEAN, "MAP-S"),
        F("Zuora__TermSettingType__c", "TermType", TEXT, "MAP-S"),
        F("Zuora__InitialTerm__c", "InitialTerm", TEXT, "MAP-S (a text field in Salesforce)"),
        F("Zuora__RenewalTerm__c", "RenewalTerm", TEXT, "MAP-S (a text field in Salesforce)"),
        F("Zuora__TermStartDate__c", "TermStartDate", DATE, "MAP-S"),
        F("Zuora__TermEndDate__c", "TermEndDate", DATE, "MAP-S"),
        F("Zuora__NextRenewalDate__c", "TermEndDate", DATE, "MAP-S: TermEndDate → NextRenewalDate"),
        F("Zuora__SubscriptionStartDate__c", "SubscriptionStartDate", DATE, "MAP-S"),
        F("Zuora__SubscriptionEndDate__c", "SubscriptionEndDate", DATE, "MAP-S"),
        F("Zuora__ContractEffectiveDate__c", "ContractEffectiveDate", DATE, "MAP-S"),
        F("Zuora__ServiceActivationDate__c", "ServiceActivationDate", DATE, "MAP-S"),
        F("Zuora__ContractAcceptanceDate__c", "ContractAcceptanceDate", DATE, "MAP-S"),
        F("Zuora__CancelledDate__c", "CancelledDate", DATE, "MAP-S"),
        F("Zuora__OriginalCreated_Date__c", "OriginalCreatedDate", DATETIME, "MAP-S"),
        F("Zuora__Notes__c", "Notes", TEXT, "MAP-S"),
    )),
    ObjectSpec("RatePlan", "RatePlan", "Zuora__SubscriptionRatePlan__c", "Zuora__External_Id__c", scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-S"),
        F("Name", "Name", TEXT, "MAP-S"),
        F("Zuora__SubscriptionRatePlanName__c", "Name", TEXT,
          "Salesforce schema's 360-but-not-360+ page and label 'Subscription Rate Plan Name (Long Name)'"),
        F("Zuora__Subscription__c", "SubscriptionId", LOOKUP, "SPEC §3.1, MAP-S", target="Subscription"),
        F("Zuora__ProductRatePlanId__c", "ProductRatePlanId", TEXT, "MAP-S"),
        F("Zuora__AmendmentId__c", "AmendmentId", TEXT, "MAP-S"),
        F("Zuora__AmendmentType__c", "AmendmentType", TEXT, "MAP-S"),
    )),
    ObjectSpec("RatePlanCharge", "RatePlanCharge", "Zuora__SubscriptionProductCharge__c", "Zuora__External_Id__c",
               scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-S"),
        F("Zuora__Zuora_Id__c", "Id", TEXT, "MAP-S"),
        F("Name", "Name", TEXT, "MAP-S"),
        F("Zuora__Account__c", _charge_crm_account, ACCOUNT, "SPEC §3.1, MAP-A: Account (subscription's customer "
                                                                "account).CrmId"),
        F("Zuora__Subscription__c", _charge_subscription, LOOKUP, "SPEC §3.1", target="Subscription"),
        F("Zuora__SubscriptionRatePlan__c", "RatePlanId", LOOKUP, "SPEC §3.1", target="RatePlan"),
        F("Zuora__ChargeNumber__c", "ChargeNumber", TEXT, "MAP-S"),
        F("Zuora__Type__c", "ChargeType", TEXT, "MAP-S"),
        F("Zuora__Model__c", "ChargeModel", TEXT, "MAP-S"),
        F("Zuora__Price__c", "Price", NUMBER, "MAP-S"),
        F("Zuora__Quantity__c", "Quantity", NUMBER, "MAP-S"),
        F("Zuora__UOM__c", "UOM", TEXT, "MAP-S"),
        F("Zuora__BillingPeriod__c", "BillingPeriod", TEXT, "MAP-S"),
        F("Zuora__TriggerEvent__c", "TriggerEvent", TEXT, "MAP-S"),
        F("Zuora__EffectiveStartDate__c", "EffectiveStartDate", DATE, "MAP-S"),
        F("Zuora__EffectiveEndDate__c", "EffectiveEndDate", DATE, "MAP-S"),
        F("Zuora__ChargedThroughDate__c", "ChargedThroughDate", DATE, "MAP-S"),
        F("Zuora__Segment__c", "Segment", NUMBER, "MAP-S"),
        F("Zuora__IsLastSegment__c", "IsLastSegment", BOOLEAN, "MAP-S"),
        F("Zuora__Version__c", "Version", NUMBER, "MAP-S"),
        F("Zuora__OriginalId__c", "OriginalId", TEXT, "MAP-S"),
        F("Zuora__RatePlanId__c", "RatePlanId", TEXT, "MAP-S"),
        F("Zuora__ProductRatePlanChargeId__c", "ProductRatePlanChargeId", TEXT, "MAP-S"),
        F("Zuora__MonthlyRecurringRevenue__c", "MRR", NUMBER, "MAP-S"),
        F("Zuora__TotalContractValue__c", "TCV", NUMBER, "MAP-S"),
        # Denormalized catalog values (reference §1.4 "Product and rate-plan names/SKU denormalized").
        # MAP-S tells customers to use the fields *without* "(Deprecated)" in their labels.
        F("Zuora__ProductName_Product__c", _charge_catalog("Product", "Name"), TEXT, "MAP-S: Product.Name"),
        F("Zuora__ProductSKU_Product__c", _charge_catalog("Product", "SKU"), TEXT, "MAP-S: Product.SKU"),
        F("Zuora__RatePlanName__c", _charge_catalog("ProductRatePlan", "Name"), TEXT, "MAP-S: ProductRatePlan.Name"),
        F("Zuora__RatePlanEffectiveEndDate__c", _charge_catalog("ProductRatePlan", "EffectiveEndDate"), DATE,
          "MAP-S: ProductRatePlan.EffectiveEndDate"),
    )),
    ObjectSpec("Invoice", "Invoice", "Zuora__ZInvoice__c", "Zuora__External_Id__c", scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-A"),
        F("Zuora__Zuora_Id__c", "Id", TEXT, "MAP-A"),
        F("Name", "InvoiceNumber", TEXT, "MAP-A"),
        F("Zuora__Account__c", _crm_account("AccountId"), ACCOUNT, "SPEC §3.1, CONN: Account"),
        F("Zuora__BillingAccount__c", "AccountId", LOOKUP, "SPEC §3.1, CONN: Billing Account",
          target="CustomerAccount"),
        F("Zuora__Status__c", "Status", TEXT, "MAP-A"),
        F("Zuora__InvoiceDate__c", "InvoiceDate", DATE, "MAP-A"),
        F("Zuora__DueDate__c", "DueDate", DATE, "MAP-A"),
        # PostedDate is a Zuora datetime; Salesforce keeps the day, as the tenant's calendar shows it.
        F("Zuora__PostedDate__c", "PostedDate", DATE, "MAP-A"),
        F("Zuora__TotalAmount__c", "Amount", NUMBER, "MAP-A"),
        F("Zuora__AmountWithoutTax__c", "AmountWithoutTax", NUMBER, "CONN"),
        F("Zuora__TaxAmount__c", "TaxAmount", NUMBER, "CONN"),
        F("Zuora__Balance2__c", "Balance", NUMBER, "MAP-A"),
        F("Zuora__PaymentAmount__c", "PaymentAmount", NUMBER, "CONN"),
        F("Zuora__RefundedAmount__c", "RefundAmount", NUMBER, "CONN"),
        F("Zuora__CreatedDate__c", "CreatedDate", DATETIME, "CONN: Zuora Created Date"),
        F("Zuora__UpdatedDate__c", "UpdatedDate", DATETIME, "CONN: Zuora Updated Date"),
    )),
    ObjectSpec("Payment", "Payment", "Zuora__Payment__c", "Zuora__External_Id__c", scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-A"),
        F("Zuora__BillingAccount__c", "AccountId", LOOKUP, "SPEC §3.1, MAP-A: master-detail",
          target="CustomerAccount"),
        F("Zuora__Account__c", _crm_account("AccountId"), ACCOUNT, "CONN: Account"),
        F("Zuora__PaymentNumber__c", "PaymentNumber", TEXT, "CONN"),
        F("Zuora__Amount__c", "Amount", NUMBER, "MAP-A"),
        F("Zuora__AppliedInvoiceAmount__c", "AppliedInvoiceAmount", NUMBER, "MAP-A"),
        F("Zuora__RefundedAmount__c", "RefundAmount", NUMBER, "MAP-A"),
        F("Zuora__EffectiveDate__c", "EffectiveDate", DAY, "MAP-A (a Zuora date in a Salesforce datetime)"),
        F("Zuora__Status__c", "Status", TEXT, "MAP-A"),
        F("Zuora__Type__c", "Type", TEXT, "MAP-A"),
        F("Zuora__PaymentMethodId__c", "PaymentMethodId", TEXT, "CONN: Payment Method Id"),
        F("Zuora__GatewayStatus__c", "GatewayState", TEXT, "MAP-A"),
        F("Zuora__ReferenceId__c", "ReferenceId", TEXT, "MAP-A"),
        F("Zuora__CreatedDate__c", "CreatedDate", DATETIME, "MAP-A (spelled Zuora__CreateDate__c there), CONN"),
        F("Zuora__UpdatedDate__c", "UpdatedDate", DATETIME, "MAP-A, CONN"),
    )),
    ObjectSpec("InvoicePayment", "InvoicePayment", "Zuora__PaymentInvoice__c", "Zuora__External_Id__c",
               scope="accounts", fields=(
        F("Zuora__External_Id__c", "Id", TEXT, "MAP-A"),
        F("Zuora__Payment__c", _payment_of_link, LOOKUP, "SPEC §3.1, MAP-A: master-detail", target="Payment"),
        F("Zuora__Invoice__c", "InvoiceId", LOOKUP, "SPEC §3.1, MAP-A: lookup", target="Invoice"),
        F("Zuora__ApplyAmount__c", "Amount", NUMBER, "MAP-A"),
        F("Zuora__RefundAmount__c", "RefundAmount", NUMBER, "MAP-A"),
    )),
    ObjectSpec("Product", "Product", "Product2", "zqu__ZuoraId__c", scope="catalog", flag="zqu__Deleted__c", fields=(
        F("zqu__ZuoraId__c", "Id", TEXT, "MAP-P"),
        F("Name", "Name", TEXT, "MAP-P"),
        F("zqu__SKU2__c", "SKU", TEXT, "MAP-P: SKU → zqu__SKU2__c from 360 3.2 (zqu__SKU__c in 3.0-3.1)"),
        F("zqu__Description__c", "Description", TEXT, "MAP-P"),
        F("zqu__EffectiveStartDate__c", "EffectiveStartDate", DATE, "MAP-P"),
        F("zqu__EffectiveEndDate__c", "EffectiveEndDate", DATE, "MAP-P"),
    )),
    ObjectSpec("ProductRatePlan", "ProductRatePlan", "zqu__ProductRatePlan__c", "zqu__ZuoraId__c", scope="catalog",
               flag="zqu__Deleted__c", fields=(
        F("zqu__ZuoraId__c", "Id", TEXT, "MAP-P"),
        F("Name", "Name", TEXT, "MAP-P"),
        F("zqu__ProductRatePlanFullName__c", "Name", TEXT, "MAP-P: Name, from 360 3.2"),
        F("zqu__Product__c", "ProductId", LOOKUP, "the plan's product", target="Product"),
        F("zqu__Description__c", "Description", TEXT, "MAP-P"),
        F("zqu__EffectiveStartDate__c", "EffectiveStartDate", DATE, "MAP-P"),
        F("zqu__EffectiveEndDate__c", "EffectiveEndDate", DATE, "MAP-P"),
    )),
    ObjectSpec("ProductRatePlanCharge", "ProductRatePlanCharge", "zqu__ProductRatePlanCharge__c", "zqu__ZuoraId__c",
               scope="catalog", flag="zqu__Deleted__c", fields=(
        F("zqu__ZuoraId__c", "Id", TEXT, "MAP-P"),
        F("Name", "Name", TEXT, "MAP-P"),
        F("zqu__ProductRatePlan__c", "ProductRatePlanId", LOOKUP, "the charge's plan", target="ProductRatePlan"),
        F("zqu__Type__c", "ChargeType", TEXT, "MAP-P"),
        F("zqu__Model__c", "ChargeModel", TEXT, "MAP-P: Model"),
        F("zqu__RecurringPeriod__c", "BillingPeriod", TEXT, "MAP-P"),
        F("zqu__DefaultQuantity__c", "DefaultQuantity", NUMBER, "MAP-P"),
        F("zqu__UOM__c", "UOM", TEXT, "MAP-P"),
        F("zqu__TriggerEvent__c", "TriggerEvent", TEXT, "MAP-P"),
        F("zqu__Taxable__c", "Taxable", BOOLEAN, "MAP-P"),
    )),
)}

SCOPES = {
    "accounts": ["CustomerAccount", "Subscription", "RatePlan", "RatePlanCharge", "Invoice", "Payment",
                 "InvoicePayment"],
    "catalog": ["Product", "ProductRatePlan", "ProductRatePlanCharge"],
}

#: The Zuora fields read per object (ZOQL has no ``*``). Contacts are read for the flattened
#: bill-to / sold-to fields; everything else is what the table and the rules use.
ZOQL_FIELDS = {
    "Account": ["AccountNumber", "Name", "CrmId", "ParentId", "Status", "Balance", "CreditBalance",
                "TotalInvoiceBalance", "Currency", "BillCycleDay", "AutoPay", "PaymentTerm", "Batch", "BillToId",
                "SoldToId", "LastInvoiceDate", "SalesRepName", "PurchaseOrderNumber", "Notes", "TaxExemptStatus"],
    "Contact": ["AccountId", "FirstName", "LastName", "Address1", "City", "State", "PostalCode", "Country",
                "WorkEmail", "WorkPhone"],
    "Subscription": ["AccountId", "InvoiceOwnerId", "Name", "Status", "Version", "OriginalId", "PreviousSubscriptionId",
                     "OriginalCreatedDate", "AutoRenew", "InitialTerm", "RenewalTerm", "TermType", "TermStartDate",
                     "TermEndDate", "SubscriptionStartDate", "SubscriptionEndDate", "ContractEffectiveDate",
                     "ServiceActivationDate", "ContractAcceptanceDate", "CancelledDate", "Notes"],
    "RatePlan": ["SubscriptionId", "ProductRatePlanId", "Name", "AmendmentId", "AmendmentType"],
    "RatePlanCharge": ["RatePlanId", "ProductRatePlanChargeId", "ChargeNumber", "Name", "ChargeType", "ChargeModel",
                       "Price", "Quantity", "UOM", "MRR", "TCV", "BillingPeriod", "EffectiveStartDate",
                       "EffectiveEndDate", "ChargedThroughDate", "TriggerEvent", "Segment", "IsLastSegment", "Version",
                       "OriginalId"],
    "Invoice": ["AccountId", "InvoiceNumber", "Status", "InvoiceDate", "DueDate", "PostedDate", "Amount",
                "AmountWithoutTax", "TaxAmount", "Balance", "PaymentAmount", "RefundAmount", "CreatedDate",
                "UpdatedDate"],
    "Payment": ["AccountId", "PaymentNumber", "Amount", "AppliedInvoiceAmount", "RefundAmount", "Status", "Type",
                "EffectiveDate", "PaymentMethodId", "GatewayState", "ReferenceId", "CreatedDate", "UpdatedDate"],
    "InvoicePayment": ["InvoiceId", "PaymentId", "Amount", "RefundAmount"],
    "Product": ["Name", "SKU", "Category", "Description", "EffectiveStartDate", "EffectiveEndDate"],
    "ProductRatePlan": ["ProductId", "Name", "Description", "EffectiveStartDate", "EffectiveEndDate"],
    "ProductRatePlanCharge": ["ProductRatePlanId", "Name", "ChargeType", "ChargeModel", "BillingPeriod",
                              "DefaultQuantity", "UOM", "TriggerEvent", "Taxable"],
}

# -- the rules of SPEC §3, as constants ----------------------------------------------------------------

#: SPEC §3.1 / reference §1.3: "only Active, Pending, Cancelled" (Zuora's two Pending statuses);
#: Draft, Suspended and Expired are not synced.
SYNCED_SUBSCRIPTION_STATUSES = frozenset({"Active", "Pending Activation", "Pending Acceptance", "Cancelled"})
#: SPEC §3.1: "posted invoices only".
SYNCED_INVOICE_STATUS = "Posted"
#: SPEC §3.1 / reference §1.4 [ACCT]: Zuora account statuses are Draft, Active, Canceled; a Canceled
#: account is removed from Salesforce.
CANCELED_ACCOUNT = "Canceled"

SYNCED, REJECTED, ABSENT = "synced", "rejected", "absent"

_SF_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


# -- reading Zuora --------------------------------------------------------------------------------------


def zoql_rows(client: Any, zuora_object: str, fields: Iterable[str]) -> Iterator[dict]:
    """Every live record of ``zuora_object``: ZOQL ``action/query``, then ``queryMore`` until done.

    ZOQL omits null fields, so a missing key means null; it never shows deleted records.
    """
    from zuora_sdk.models import ProxyActionqueryMoreRequest, ProxyActionqueryRequest

    actions = client.actions_api()
    query = f"select Id, {', '.join(fields)} from {zuora_object}"
    page = actions.action_post_query(ProxyActionqueryRequest(query_string=query))
    seen = 0
    while True:
        records = page.records or []
        seen += len(records)
        yield from records
        if page.done or not page.query_locator:
            break
        page = actions.action_postquery_more(ProxyActionqueryMoreRequest(query_locator=page.query_locator))
    if page.size is not None and seen != page.size:
        raise OracleError(f"ZOQL on {zuora_object}: {seen} records read, the query said {page.size}")


def deleted_rows(client: Any, table: str, columns: Iterable[str], timeout: float = 120) -> list[dict]:
    """The deleted rows of a Data Query table (``readDeleted``: deleted rows only; kept 30 days).

    ZOQL cannot show deleted records, and SPEC §3.2 keeps deleted catalog records, flagged.
    Column names are Data Query's (lower case); rows are keyed the same way.
    """
    from zuora_sdk.models import SubmitDataQueryRequest

    api = client.data_queries_api()
    job = api.post_data_query_job(SubmitDataQueryRequest.from_dict({
        "query": f"SELECT {', '.join(columns)} FROM {table}", "outputFormat": "JSON", "compression": "NONE",
        "output": {"target": "S3"}, "readDeleted": True})).data
    deadline = time.monotonic() + timeout
    while True:
        job = api.get_data_query_job(job.id).data
        status = str(getattr(job.query_status, "value", job.query_status))
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise OracleError(f"Data Query job on {table} {status}: "
                              f"{(job.additional_properties or {}).get('errorMessage')}")
        if time.monotonic() > deadline:
            raise OracleError(f"Data Query job on {table} still {status} after {timeout:.0f} s")
        time.sleep(0.2)
    response = requests.get(job.data_file, timeout=60)  # a presigned URL: no token
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


# -- values ------------------------------------------------------------------------------------------


def _zuora_moment(text: str) -> dt.datetime:
    """A ZOQL datetime (``2024-01-01T02:00:00.000-08:00``, in the tenant's zone) as an aware instant."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise OracleError(f"a ZOQL datetime without its offset: {text!r}")
    return moment


def expected_value(kind: str, raw: Any, tz: ZoneInfo) -> Any:
    """A Zuora value (as ZOQL shows it) in the form :func:`same` compares for a field of ``kind``."""
    if raw is None or raw == "":
        return False if kind == BOOLEAN else None
    if kind == TEXT:
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, float) and raw.is_integer():
            return str(int(raw))  # an integer Zuora field ZOQL rendered as a number
        return str(raw)
    if kind == NUMBER:
        return Decimal(str(raw))
    if kind == BOOLEAN:
        if isinstance(raw, str):
            return raw.strip().lower() == "true"
        return bool(raw)
    if kind in (DATE, DAY):
        text = str(raw)
        if "T" in text:  # a Zuora datetime in a date field: its day in the tenant's calendar
            return _zuora_moment(text).astimezone(tz).date()
        return dt.date.fromisoformat(text[:10])
    if kind == DATETIME:
        text = str(raw)
        if "T" not in text:
            raise OracleError(f"a datetime field with a date value {text!r}")
        return _zuora_moment(text).astimezone(dt.UTC)
    return str(raw)  # ACCOUNT and LOOKUP hold ids / external ids


def actual_value(kind: str, cell: str, tz: ZoneInfo) -> Any:
    """A Bulk API 2.0 query cell in the same form as :func:`expected_value`."""
    if cell == "":
        return False if kind == BOOLEAN else None
    if kind == NUMBER:
        return Decimal(cell)
    if kind == BOOLEAN:
        return cell == "true"
    if kind == DATE:
        return dt.date.fromisoformat(cell[:10])
    if kind in (DATETIME, DAY):
        return dt.datetime.fromisoformat(cell.replace("Z", "+00:00")).astimezone(dt.UTC)
    return cell


def same(kind: str, expected: Any, actual: Any, tz: ZoneInfo) -> bool:
    if kind == DAY:
        # The instant must lie on the Zuora date in the tenant's zone (midnight UTC does not, in
        # America/Los_Angeles: it shows the day before).
        return expected is None and actual is None or (
            expected is not None and actual is not None and actual.astimezone(tz).date() == expected)
    if kind == DATETIME and expected is not None and actual is not None:
        return abs(expected - actual) < dt.timedelta(milliseconds=1)  # Salesforce keeps milliseconds
    return expected == actual


def _show(kind: str, value: Any) -> str:
    if value is None:
        return "empty"
    if kind == DAY and not isinstance(value, dt.datetime):
        return f"a moment of {value.isoformat()} in the tenant's time zone"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return repr(value)


# -- results -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way Salesforce differs from what Zuora and SPEC §3 say, in words."""

    obj: str
    key: str
    kind: str  # "value", "missing", "extra", "duplicate", "flag", "not rejected"
    field: str | None = None
    expected: str | None = None
    actual: str | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.kind == "value":
            return (f"{self.obj} {self.key}: {self.field} is {self.actual} in Salesforce, {self.expected} expected"
                    + (f" ({self.reason})" if self.reason else ""))
        if self.kind == "missing":
            return f"{self.obj} {self.key}: missing in Salesforce ({self.reason})"
        if self.kind == "extra":
            return f"{self.obj} {self.key}: in Salesforce but must not be ({self.reason})"
        if self.kind == "duplicate":
            return f"{self.obj} {self.key}: {self.actual} records in Salesforce with this key"
        if self.kind == "flag":
            return f"{self.obj} {self.key}: {self.field} is {self.actual} in Salesforce, {self.expected} expected " \
                   f"({self.reason})"
        return f"{self.obj} {self.key}: {self.reason}"

    @property
    def group(self) -> tuple[str, str, str]:
        """What differences of one root cause share: object, kind and field."""
        return self.obj, self.kind, self.field or ""


def summarize(differences: list[Difference], examples: int = 1) -> str:
    """Differences grouped by (object, kind, field), with counts and an example each."""
    groups: dict[tuple, list[Difference]] = defaultdict(list)
    for d in differences:
        groups[d.group].append(d)
    lines = [f"{len(differences)} differences in {len(groups)} groups:"]
    for (obj, kind, field), items in sorted(groups.items()):
        lines.append(f"- {obj} {kind}{' ' + field if field else ''}: {len(items)}, e.g.")
        lines += [f"    {d}" for d in items[:examples]]
    return "\n".join(lines)


@dataclasses.dataclass
class Expected:
    """A record Salesforce must hold: its field values, and why it is synced."""

    values: dict[str, Any]
    why: str


@dataclasses.dataclass
class Expectation:
    """What Salesforce must hold for a scope, decided from one read of Zuora and the org."""

    scope: str
    #: object → key → the record Salesforce must hold
    records: dict[str, dict[str, Expected]]
    #: object → key → why a live Zuora record must *not* be in Salesforce
    excluded: dict[str, dict[str, str]]
    #: object → keys that qualify but Salesforce must refuse (an invalid CRM Id up the chain)
    must_be_rejected: dict[str, set[str]]
    #: object → key → a deleted catalog record: if in Salesforce, it must be flagged (SPEC §3.2)
    deleted: dict[str, dict[str, Expected]]


class Tenant:
    """One read of the Zuora tenant (through zuora-sdk) and of the org's Account Ids."""

    def __init__(self, rows: dict[str, dict[str, dict]], deleted_catalog: dict[str, dict[str, dict]],
                 account_ids: set[str]):
        self.rows = rows
        self.deleted_catalog = deleted_catalog
        self._ids18 = account_ids
        self._ids15 = {i[:15]: i for i in account_ids}

    def salesforce_account(self, crm_id: str | None) -> str | None:
        """The 18-character Id of the existing Salesforce Account ``crm_id`` names, or ``None``.

        Salesforce takes an Id in its 15-character (case-sensitive) or 18-character form.
        """
        if not crm_id or not _SF_ID.match(crm_id):
            return None
        if len(crm_id) == 18:
            found = self._ids15.get(crm_id[:15])
            return found if found is not None and found.lower() == crm_id.lower() else None
        return self._ids15.get(crm_id)

    def catalog(self, obj: str, record_id: str | None) -> dict | None:
        if record_id is None:
            return None
        return self.rows[obj].get(record_id) or self.deleted_catalog.get(obj, {}).get(record_id)


_DELETED_COLUMNS = {
    "Product": ["id", "name", "sku", "category", "description", "effectivestartdate", "effectiveenddate"],
    "ProductRatePlan": ["id", "productid", "name", "description", "effectivestartdate", "effectiveenddate"],
    "ProductRatePlanCharge": ["id", "productrateplanid", "name", "chargetype", "chargemodel", "billingperiod",
                              "defaultquantity", "uom", "triggerevent", "taxable"],
}


def _from_data_query(obj: str, row: dict) -> dict:
    """A Data Query row (lower-case names) with the ZOQL names the table uses."""
    names = {name.lower(): name for name in ["Id", *ZOQL_FIELDS[obj]]}
    return {names[k]: v for k, v in row.items() if k in names and v is not None}


class ZuoraOracle:
    """Computes what Salesforce must hold (SPEC §3) from Zuora, and compares Salesforce with it.

    :param zuora: an initialized ``zuora_sdk.zuora_client.ZuoraClient``
    :param sf: a logged-in ``simple_salesforce.Salesforce``
    :param tenant_tz: the Zuora tenant's time zone (Zuora dates are days of this zone)
    """

    def __init__(self, zuora: Any, sf: Any, *, tenant_tz: ZoneInfo):
        self.zuora = zuora
        self.sf = sf
        self.tz = tenant_tz

    # -- reading ------------------------------------------------------------------------------------

    def read_tenant(self, scope: str) -> Tenant:
        """Read what ``scope`` needs from Zuora (ZOQL; deleted catalog rows through Data Query)."""
        objects = ["Product", "ProductRatePlan", "ProductRatePlanCharge"]
        if scope == "accounts":
            objects = ["Account", "Contact", "Subscription", "RatePlan", "RatePlanCharge", "Invoice", "Payment",
                       "InvoicePayment", *objects]
        rows = {obj: {r["Id"]: r for r in zoql_rows(self.zuora, obj, ZOQL_FIELDS[obj])} for obj in objects}
        deleted = {obj: {r["id"]: _from_data_query(obj, r) for r in deleted_rows(self.zuora, obj.lower(), cols)}
                   for obj, cols in _DELETED_COLUMNS.items()}
        account_ids = set()
        if scope == "accounts":
            account_ids = {row["Id"] for row in self._bulk_query("Account", "SELECT Id FROM Account")}
        return Tenant(rows, deleted, account_ids)

    def _bulk_query(self, sobject: str, soql: str) -> Iterator[dict[str, str]]:
        for page in getattr(self.sf.bulk2, sobject).query(soql, max_records=200_000, wait=0.1):
            yield from csv.DictReader(io.StringIO(page))

    # -- the rules ---------------------------------------------------------------------------------

    def expect(self, scope: str) -> Expectation:
        """Read Zuora and the org, and decide what Salesforce must hold for ``scope``."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        tenant = self.read_tenant(scope)
        state: dict[str, dict[str, tuple[str, str]]] = {}  # object → key → (SYNCED|REJECTED|ABSENT, why)
        if scope == "accounts":
            state = self._account_states(tenant)
        else:
            for obj in SCOPES["catalog"]:
                # SPEC §3.2: every product, product rate plan and charge ("catalog syncs are always full").
                state[obj] = {key: (SYNCED, "in the catalog") for key in tenant.rows[obj]}

        records: dict[str, dict[str, Expected]] = {}
        excluded: dict[str, dict[str, str]] = {}
        rejected: dict[str, set[str]] = {}
        synced_keys = {obj: {k for k, (s, _) in states.items() if s == SYNCED} for obj, states in state.items()}
        for obj in SCOPES[scope]:
            spec = TABLE[obj]
            records[obj], excluded[obj], rejected[obj] = {}, {}, set()
            for key, (verdict, why) in state[obj].items():
                if verdict == SYNCED:
                    row = tenant.rows[spec.zuora][key]
                    records[obj][key] = Expected(self._values(spec, row, tenant, synced_keys), why)
                else:
                    excluded[obj][key] = why
                    if verdict == REJECTED:
                        rejected[obj].add(key)
        deleted: dict[str, dict[str, Expected]] = {}
        if scope == "catalog":
            every = {obj: set(tenant.rows[obj]) | set(tenant.deleted_catalog[obj]) for obj in SCOPES["catalog"]}
            for obj in SCOPES["catalog"]:
                deleted[obj] = {key: Expected(self._values(TABLE[obj], row, tenant, every), "deleted in Zuora")
                                for key, row in tenant.deleted_catalog[obj].items() if key not in tenant.rows[obj]}
        return Expectation(scope, records, excluded, rejected, deleted)

    def _values(self, spec: ObjectSpec, row: dict, tenant: Tenant, synced: Mapping[str, set[str]]) -> dict[str, Any]:
        values = {}
        for f in spec.fields:
            raw = row.get(f.source) if isinstance(f.source, str) else f.source(row, tenant)
            value = expected_value(f.kind, raw, self.tz)
            if f.kind == LOOKUP and value is not None and value not in synced.get(f.target, set()):
                # SPEC §3.1 (issue 11): an optional lookup is set only when its target is synced.
                # Required parents are checked by the rules, so a child never gets here without one.
                value = None
            values[f.salesforce] = value
        return values

    def _account_states(self, tenant: Tenant) -> dict[str, dict[str, tuple[str, str]]]:
        """SYNCED / REJECTED / ABSENT, and why, for every live record of Accounts & Related Objects."""
        rows = tenant.rows
        state: dict[str, dict[str, tuple[str, str]]] = {}

        # Customer accounts (SPEC §3.1 "only accounts with a CRM Id; a Canceled account is removed;
        # an invalid CRM Id is a per-record error"). ZOQL shows no deleted account.
        accounts = state["CustomerAccount"] = {}
        for key, account in rows["Account"].items():
            crm = account.get("CrmId")
            if not crm:
                accounts[key] = (ABSENT, "the account has no CRM Id")
            elif account.get("Status") == CANCELED_ACCOUNT:
                accounts[key] = (ABSENT, "the account is Canceled")
            elif tenant.salesforce_account(crm) is None:
                # Master-detail to Account: without an existing Account, Salesforce must refuse it.
                accounts[key] = (REJECTED, f"its CRM Id {crm!r} is not the Id of an existing Salesforce Account")
            else:
                accounts[key] = (SYNCED, f"{account.get('Status')} account with a valid CRM Id")

        def under_account(account_id: str | None, what: str) -> tuple[str, str]:
            """A child of a customer account follows it: synced, rejected (with it) or absent."""
            verdict, why = accounts.get(account_id, (ABSENT, "no live Zuora account"))
            if verdict == SYNCED:
                return SYNCED, what
            return verdict, f"its customer account {account_id} is not synced: {why}"

        # Subscriptions: latest version only, decided per lineage (OriginalId, the first version's
        # Id) by the highest Version; the versions must agree on the subscription number (Name).
        lineages: dict[str, list[dict]] = defaultdict(list)
        for sub in rows["Subscription"].values():
            lineages[sub.get("OriginalId") or sub["Id"]].append(sub)
        latest: dict[str, str] = {}
        for lineage, versions in lineages.items():
            names = {v.get("Name") for v in versions}
            numbers = Counter(v.get("Version") for v in versions)
            top = max(numbers, key=lambda n: (n is not None, n or 0))
            if len(names) != 1 or top is None or numbers[top] != 1:
                raise OracleError(f"subscription lineage {lineage}: cannot tell its latest version "
                                  f"(names {sorted(map(str, names))}, versions {dict(numbers)})")
            newest = next(v for v in versions if v.get("Version") == top)
            for v in versions:
                latest[v["Id"]] = newest["Id"]
        subscriptions = state["Subscription"] = {}
        for key, sub in rows["Subscription"].items():
            status = sub.get("Status")
            if latest[key] != key:
                subscriptions[key] = (ABSENT, f"version {sub.get('Version')} is not the latest "
                                              f"({latest[key]} is)")
            elif status not in SYNCED_SUBSCRIPTION_STATUSES:
                subscriptions[key] = (ABSENT, f"its status is {status}")
            else:
                subscriptions[key] = under_account(sub.get("AccountId"), f"latest version, {status}")

        # Rate plans and charges follow their subscription (SPEC §3.1).
        plans = state["RatePlan"] = {}
        for key, plan in rows["RatePlan"].items():
            verdict, why = subscriptions.get(plan.get("SubscriptionId"), (ABSENT, "no live subscription"))
            plans[key] = (verdict, why if verdict == SYNCED else f"its subscription is not synced: {why}")
        charges = state["RatePlanCharge"] = {}
        for key, charge in rows["RatePlanCharge"].items():
            verdict, why = plans.get(charge.get("RatePlanId"), (ABSENT, "no live rate plan"))
            charges[key] = (verdict, why if verdict == SYNCED else f"its rate plan is not synced: {why}")

        # Invoices: posted only, under a synced customer account.
        invoices = state["Invoice"] = {}
        for key, invoice in rows["Invoice"].items():
            if invoice.get("Status") != SYNCED_INVOICE_STATUS:
                invoices[key] = (ABSENT, f"its status is {invoice.get('Status')}")
            else:
                invoices[key] = under_account(invoice.get("AccountId"), "posted invoice")

        # Payments: master-detail to the customer account.
        payments = state["Payment"] = {}
        for key, payment in rows["Payment"].items():
            payments[key] = under_account(payment.get("AccountId"), "payment")

        # Invoice payments: master-detail to the payment; the invoice is an optional lookup.
        links = state["InvoicePayment"] = {}
        for key, link in rows["InvoicePayment"].items():
            verdict, why = payments.get(link.get("PaymentId"), (ABSENT, "no live payment"))
            links[key] = (verdict, "its payment is synced" if verdict == SYNCED else f"its payment is not synced: {why}")
        return state

    # -- comparing ----------------------------------------------------------------------------------

    def check_table(self, scope: str) -> None:
        """Every field of the table exists in the org with a type its kind accepts (else the
        oracle would compare nothing, or the wrong thing)."""
        problems = []
        for obj in SCOPES[scope]:
            spec = TABLE[obj]
            described = {f["name"]: f for f in getattr(self.sf, spec.salesforce).describe()["fields"]}
            for f in spec.fields + ((Field(spec.flag, "Deleted", BOOLEAN, "MAP-P"),) if spec.flag else ()):
                have = described.get(f.salesforce)
                if have is None:
                    problems.append(f"{spec.salesforce}.{f.salesforce}: not in the org")
                elif have["type"] not in _DESCRIBE_TYPES[f.kind]:
                    problems.append(f"{spec.salesforce}.{f.salesforce}: {have['type']}, not a {f.kind} field")
        if problems:
            raise OracleError("the oracle's field table does not fit the org:\n" + "\n".join(problems))

    def salesforce_records(self, obj: str) -> tuple[dict[str, dict[str, str]], Counter]:
        """key → {Salesforce field: cell} for every record of ``obj`` in the org, and key counts."""
        spec = TABLE[obj]
        columns = {f.salesforce: f.column(TABLE) for f in spec.fields}
        if spec.flag:
            columns[spec.flag] = spec.flag
        soql = f"SELECT {', '.join(dict.fromkeys(columns.values()))} FROM {spec.salesforce}"
        records, counts = {}, Counter()
        for row in self._bulk_query(spec.salesforce, soql):
            key = row[spec.key]
            counts[key] += 1
            records[key] = {field: row.get(column, "") for field, column in columns.items()}
        return records, counts

    def compare(self, expectation: Expectation, require_deleted: Mapping[str, Iterable[str]] | None = None,
                open_rejected: Mapping[str, Iterable[str]] | None = None) -> list[Difference]:
        """Every difference between Salesforce and ``expectation``, record by record, field by field.

        ``require_deleted`` names deleted catalog records known to have been synced before they were
        deleted: those must still be in Salesforce, flagged. Other deleted ones are checked only if
        present (a record deleted before any catalog sync need never reach Salesforce).

        ``open_rejected`` (object → keys the sync holds as open rejected records, from its state
        store) adds the rejection to a missing record's words, and reports a record that must be
        synced and is, but is still held as rejected: the sync retries it every session and ends
        each one *Finished with Errors* for nothing.
        """
        self.check_table(expectation.scope)
        required = {obj: set(keys) for obj, keys in (require_deleted or {}).items()}
        rejected = {obj: set(keys) for obj, keys in (open_rejected or {}).items()}
        out: list[Difference] = []
        for obj in SCOPES[expectation.scope]:
            spec = TABLE[obj]
            actual, counts = self.salesforce_records(obj)
            held = rejected.get(obj, set())
            out += [Difference(obj, key, "duplicate", actual=str(n)) for key, n in counts.items() if n > 1]
            for key, want in expectation.records[obj].items():
                have = actual.get(key)
                if have is None:
                    note = "; the sync holds it as a rejected record" if key in held else ""
                    out.append(Difference(obj, key, "missing", reason=f"must be synced: {want.why}{note}"))
                    continue
                if key in held:
                    out.append(Difference(obj, key, "wrongly rejected", reason=(
                        f"in Salesforce and must be ({want.why}), but the sync still holds an open rejected "
                        "record for it")))
                out += self._field_differences(spec, key, want, have)
                if spec.flag and have[spec.flag] != "false":
                    out.append(Difference(obj, key, "flag", spec.flag, "false", have[spec.flag] or "empty",
                                          "live in Zuora"))
            deleted = expectation.deleted.get(obj, {})
            for key in required.get(obj, ()):
                if key not in actual:
                    out.append(Difference(obj, key, "missing", reason="deleted in Zuora after it was synced: "
                                                                      "kept in Salesforce, flagged (SPEC §3.2)"))
            for key, have in actual.items():
                if key in expectation.records[obj]:
                    continue
                if key in deleted:
                    if have[spec.flag] != "true":
                        out.append(Difference(obj, key, "flag", spec.flag, "true", have[spec.flag] or "empty",
                                              "deleted in Zuora: kept and flagged (SPEC §3.2)"))
                    out += self._field_differences(spec, key, deleted[key], have)
                    continue
                why = expectation.excluded[obj].get(key, "no live record in Zuora")
                out.append(Difference(obj, key, "extra", reason=why))
        return out

    def _field_differences(self, spec: ObjectSpec, key: str, want: Expected, have: dict[str, str]) -> list[Difference]:
        out = []
        for f in spec.fields:
            expected = want.values[f.salesforce]
            actual = actual_value(f.kind, have.get(f.salesforce, ""), self.tz)
            if not same(f.kind, expected, actual, self.tz):
                out.append(Difference(spec.name, key, "value", f.salesforce, _show(f.kind, expected),
                                      _show(f.kind, actual)))
        return out

    def unrecorded_rejections(self, expectation: Expectation, open_rejected: Mapping[str, Iterable[str]]
                              ) -> list[Difference]:
        """Keys Salesforce must refuse that are not recorded as open rejected records.

        ``open_rejected`` is object → keys, as the state store holds them (the caller reads it).
        """
        out = []
        for obj, keys in expectation.must_be_rejected.items():
            recorded = set(open_rejected.get(obj, ()))
            out += [Difference(obj, key, "not rejected",
                               reason=f"must be a rejected record ({expectation.excluded[obj][key]}), "
                                      "but the sync has no open rejection for it")
                    for key in sorted(keys - recorded)]
        return out
