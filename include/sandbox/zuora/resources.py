"""The REST resources an integrator reads: accounts, account summaries, subscriptions, invoices and
the object API, in the response shapes of Zuora's OpenAPI as zuora-sdk's models declare them.

- ``GET /v1/accounts/{account-key}`` (``AccountsApi.get_account`` → ``AccountDetailResponse``):
  ``basicInfo``, ``billingAndPayment``, ``metrics``, ``billToContact``, ``soldToContact``,
  ``taxInfo``, ``success``. The key is the account's Id or number.
- ``GET /v1/accounts/{account-key}/summary`` (``AccountSummaryResponse``): ``basicInfo`` with
  the last invoice and payment, the contacts, the subscriptions (latest versions) with their rate
  plans, the last 6 invoices and the last 6 payments with the invoices each paid, ``usage`` (none:
  usage is not modelled), ``taxInfo``.
- ``GET /v1/subscriptions/{subscription-key}`` (``GetSubscriptionResponse``): a subscription by Id
  (any version) or number (the latest version), with its account, contacts and ``ratePlans`` →
  ``ratePlanCharges``. ``GET /v1/subscriptions/accounts/{account-key}`` (``GetSubscriptionsResponse``):
  the latest version of each subscription the account owns (``ownerType=subscriptionOwner``), is
  billed for (``invoiceOwner``) or either (neither given), ``page``/``pageSize`` (≤ 40, default 20)
  and ``nextPage``.
- ``GET /v1/invoices/{invoiceKey}`` (``InvoiceResponse``): an invoice by Id or number.
- ``GET /v1/object/{object}/{id}``: the object API, one record with the object's own field names
  (PascalCase, as ZOQL spells them), nulls left out, datetimes in the tenant's time zone
  (``2024-01-01T02:00:00.000-08:00``); ``fields=A,B`` picks fields. Objects are named in the path as
  Zuora does: ``account``, ``rate-plan-charge``, ``product-rate-plan-charge-tier``...

Values keep the models' types: strings, booleans, integers, numbers, and dates ``YYYY-MM-DD``;
Zuora's picklist values become the REST enumerations (``Per Unit Pricing`` → ``PerUnit``,
``Semi-Annual`` → ``Semi_Annual``). Failures are what Zuora answers: an unknown account, subscription
or invoice is HTTP 200 ``{"success": false, "processId", "reasons": [{"code": 50000040, "message":
"Cannot find entity by key: 'X'."}], "requestId"}``; an unknown object record is HTTP 404 ``{"records":
[], "size": 0, "done": true}`` (``ProxyNoDataResponse``); an unknown field is HTTP 400 ``{"Success":
false, "Errors": [{"Code": "INVALID_VALUE", "Message"}]}`` (``ProxyBadRequestResponse``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.sqlite_store import quote
from sandbox.zuora.actions import NOT_FOUND, RestError, rest_failure
from sandbox.zuora.schema import ZObject
from sandbox.zuora.timezone import stored_to_local, tenant_time_zone
from sandbox.zuora.zoql import renderer

SUMMARY_ITEMS = 6  # the summary's last invoices and payments
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 40
_CHARGE_MODELS = {"Flat Fee Pricing": "FlatFee", "Per Unit Pricing": "PerUnit", "Tiered Pricing": "Tiered",
                  "Volume Pricing": "Volume"}
_CHANGE_TYPES = {"NewProduct": "Add", "UpdateProduct": "Update", "RemoveProduct": "Remove"}


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _clean(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without its nulls (Zuora leaves unset fields out)."""
    return {k: v for k, v in payload.items() if v is not None}


def _date(value: Any) -> str | None:
    return None if value is None else str(value)[:10]


class Reader:
    """Reads one tenant's records for the REST resources (read-only, the request thread's connection)."""

    def __init__(self, tenant: Any):
        self.tenant = tenant
        self.schema = tenant.schema
        self.conn = tenant.store.conn()
        self.tz = tenant_time_zone(tenant.store)

    def rows(self, name: str, where: str, params: tuple | list = (), order: str = "rowid") -> list[dict[str, Any]]:
        obj = self.schema.get(name)
        cursor = self.conn.execute(
            f"SELECT * FROM {quote(obj.table)} WHERE deleted = 0 AND ({where}) ORDER BY {order}", params)
        by_column = {f.column: f.name for f in obj.fields.values()}
        columns = [by_column.get(d[0], d[0]) for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def one(self, name: str, where: str, params: tuple | list = ()) -> dict[str, Any] | None:
        found = self.rows(name, where, params)
        return found[0] if found else None

    def local_time(self, stored: str | None) -> str | None:
        """A stored UTC time as Zuora's REST resources write it: ``YYYY-MM-DD HH:MM:SS``, tenant time."""
        return None if stored is None else stored_to_local(stored, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    # -- accounts ---------------------------------------------------------------------------------------

    def account(self, key: str) -> dict[str, Any]:
        account = self.one("Account", "id = ? OR accountnumber = ?", (key, key))
        if account is None:
            raise RestError(NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return account

    def contact(self, account: dict[str, Any], contact_id: str | None) -> dict[str, Any] | None:
        contact = self.one("Contact", "id = ?", (contact_id,)) if contact_id else None
        if contact is None:
            return None
        return _clean({
            "id": contact["Id"], "accountId": contact["AccountId"], "accountNumber": account["AccountNumber"],
            "firstName": contact["FirstName"], "lastName": contact["LastName"], "address1": contact["Address1"],
            "address2": contact["Address2"], "city": contact["City"], "state": contact["State"],
            "zipCode": contact["PostalCode"], "country": contact["Country"], "workEmail": contact["WorkEmail"],
            "workPhone": contact["WorkPhone"],
        })

    def _basic_info(self, account: dict[str, Any]) -> dict[str, Any]:
        return _clean({
            "id": account["Id"], "name": account["Name"], "accountNumber": account["AccountNumber"],
            "status": account["Status"], "crmId": account["CrmId"], "parentId": account["ParentId"],
            "batch": account["Batch"], "notes": account["Notes"], "purchaseOrderNumber": account["PurchaseOrderNumber"],
            "salesRep": account["SalesRepName"], "defaultPaymentMethodId": account["DefaultPaymentMethodId"],
        })

    def _tax_info(self, account: dict[str, Any]) -> dict[str, Any]:
        return _clean({"exemptStatus": account["TaxExemptStatus"]})

    def _contracted_mrr(self, subscription_ids: list[str]) -> float:
        if not subscription_ids:
            return 0.0
        marks = ", ".join("?" * len(subscription_ids))
        row = self.conn.execute(
            "SELECT COALESCE(SUM(c.mrr), 0) FROM rateplancharge c JOIN rateplan p ON p.id = c.rateplanid "
            f"WHERE c.deleted = 0 AND p.deleted = 0 AND p.subscriptionid IN ({marks})", subscription_ids).fetchone()
        return round(float(row[0]), 2)

    def latest_subscriptions(self, where: str, params: tuple | list) -> list[dict[str, Any]]:
        """The latest version of each subscription matching ``where``, by subscription number."""
        return self.rows(
            "Subscription",
            f"({where}) AND version = (SELECT MAX(s2.version) FROM subscription s2 "
            "WHERE s2.name = subscription.name AND s2.deleted = 0)",
            params, order="name")

    def account_detail(self, key: str) -> dict[str, Any]:
        account = self.account(key)
        active = [s["Id"] for s in self.latest_subscriptions("accountid = ? AND status = 'Active'", (account["Id"],))]
        unapplied = self.conn.execute(
            "SELECT COALESCE(SUM(amount - COALESCE(appliedinvoiceamount, 0)), 0) FROM payment "
            "WHERE deleted = 0 AND accountid = ? AND status = 'Processed'", (account["Id"],)).fetchone()[0]
        return _clean({
            "basicInfo": self._basic_info(account),
            "billingAndPayment": _clean({
                "billCycleDay": account["BillCycleDay"], "currency": account["Currency"],
                "paymentTerm": account["PaymentTerm"], "autoPay": bool(account["AutoPay"]),
                "invoiceDeliveryPrefsEmail": bool(account["InvoiceDeliveryPrefsEmail"]),
                "invoiceDeliveryPrefsPrint": False, "defaultPaymentMethodId": account["DefaultPaymentMethodId"],
                "additionalEmailAddresses": [],
            }),
            "metrics": {
                "balance": _number(account["Balance"] or 0), "currency": account["Currency"],
                "totalInvoiceBalance": _number(account["TotalInvoiceBalance"] or 0),
                "creditBalance": _number(account["CreditBalance"] or 0),
                "contractedMrr": self._contracted_mrr(active),
                "unappliedPaymentAmount": round(float(unapplied), 2),
            },
            "billToContact": self.contact(account, account["BillToId"]),
            "soldToContact": self.contact(account, account["SoldToId"]),
            "taxInfo": self._tax_info(account),
            "success": True,
        })

    def account_summary(self, key: str) -> dict[str, Any]:
        account = self.account(key)
        invoices = self.rows("Invoice", "accountid = ?", (account["Id"],), order="invoicedate DESC, rowid DESC")
        payments = self.rows("Payment", "accountid = ?", (account["Id"],), order="effectivedate DESC, rowid DESC")
        last_payment = payments[0] if payments else None
        basic = _clean({
            "id": account["Id"], "name": account["Name"], "accountNumber": account["AccountNumber"],
            "status": account["Status"], "batch": account["Batch"], "purchaseOrderNumber": account["PurchaseOrderNumber"],
            "balance": str(account["Balance"] or 0), "currency": account["Currency"],
            "billCycleDay": account["BillCycleDay"], "autoPay": bool(account["AutoPay"]),
            "invoiceDeliveryPrefsEmail": bool(account["InvoiceDeliveryPrefsEmail"]),
            "invoiceDeliveryPrefsPrint": False, "additionalEmailAddresses": [],
            "lastInvoiceDate": _date(account["LastInvoiceDate"]),
            "lastPaymentAmount": None if last_payment is None else str(last_payment["Amount"]),
            "lastPaymentDate": None if last_payment is None else _date(last_payment["EffectiveDate"]),
        })
        subscriptions = []
        for sub in self.latest_subscriptions("accountid = ?", (account["Id"],)):
            subscriptions.append(_clean({
                "id": sub["Id"], "subscriptionNumber": sub["Name"], "status": sub["Status"],
                "autoRenew": bool(sub["AutoRenew"]),
                "initialTerm": None if sub["InitialTerm"] is None else str(sub["InitialTerm"]),
                "renewalTerm": None if sub["RenewalTerm"] is None else str(sub["RenewalTerm"]),
                "termType": sub["TermType"], "termStartDate": _date(sub["TermStartDate"]),
                "termEndDate": _date(sub["TermEndDate"]), "subscriptionStartDate": _date(sub["SubscriptionStartDate"]),
                "ratePlans": [_clean({k: v for k, v in plan.items()
                                      if k in ("productId", "productName", "productRatePlanId", "productSku",
                                               "ratePlanName")})
                              for plan in self._rate_plans(sub, charges=False)],
            }))
        return _clean({
            "basicInfo": basic,
            "billToContact": self.contact(account, account["BillToId"]),
            "soldToContact": self.contact(account, account["SoldToId"]),
            "subscriptions": subscriptions,
            "invoices": [_clean({
                "id": inv["Id"], "invoiceNumber": inv["InvoiceNumber"], "invoiceDate": _date(inv["InvoiceDate"]),
                "dueDate": _date(inv["DueDate"]), "amount": _number(inv["Amount"]), "balance": _number(inv["Balance"]),
                "status": inv["Status"],
            }) for inv in invoices[:SUMMARY_ITEMS]],
            "payments": [self._summary_payment(p) for p in payments[:SUMMARY_ITEMS]],
            "usage": [],
            "taxInfo": self._tax_info(account),
            "success": True,
        })

    def _summary_payment(self, payment: dict[str, Any]) -> dict[str, Any]:
        paid = self.conn.execute(
            "SELECT ip.invoiceid, i.invoicenumber, ip.amount FROM invoicepayment ip JOIN invoice i ON i.id = ip.invoiceid "
            "WHERE ip.deleted = 0 AND ip.paymentid = ? ORDER BY ip.rowid", (payment["Id"],)).fetchall()
        return _clean({
            "id": payment["Id"], "paymentNumber": payment["PaymentNumber"], "paymentType": payment["Type"],
            "status": payment["Status"], "effectiveDate": _date(payment["EffectiveDate"]),
            "paidInvoices": [{"invoiceId": i, "invoiceNumber": n, "appliedPaymentAmount": str(a)} for i, n, a in paid],
        })

    # -- subscriptions ------------------------------------------------------------------------------------

    def _rate_plans(self, subscription: dict[str, Any], charges: bool = True, currency: str | None = None) -> list[dict]:
        plans = []
        for plan in self.rows("RatePlan", "subscriptionid = ?", (subscription["Id"],)):
            product_plan = self.one("ProductRatePlan", "id = ?", (plan["ProductRatePlanId"],)) if plan["ProductRatePlanId"] else None
            product = self.one("Product", "id = ?", (product_plan["ProductId"],)) if product_plan else None
            info = _clean({
                "id": plan["Id"], "productId": product and product["Id"], "productName": product and product["Name"],
                "productSku": product and product["SKU"], "productRatePlanId": plan["ProductRatePlanId"],
                "ratePlanName": plan["Name"], "lastChangeType": _CHANGE_TYPES.get(plan["AmendmentType"]),
            })
            if charges:
                info["ratePlanCharges"] = [self._charge(c, currency) for c in
                                           self.rows("RatePlanCharge", "rateplanid = ?", (plan["Id"],))]
            plans.append(info)
        return plans

    @staticmethod
    def _charge(charge: dict[str, Any], currency: str | None) -> dict[str, Any]:
        return _clean({
            "id": charge["Id"], "originalChargeId": charge["OriginalId"],
            "productRatePlanChargeId": charge["ProductRatePlanChargeId"], "number": charge["ChargeNumber"],
            "name": charge["Name"], "type": charge["ChargeType"], "model": _CHARGE_MODELS.get(charge["ChargeModel"]),
            "uom": charge["UOM"], "version": charge["Version"], "segment": charge["Segment"],
            "isLastSegment": None if charge["IsLastSegment"] is None else bool(charge["IsLastSegment"]),
            "effectiveStartDate": _date(charge["EffectiveStartDate"]),
            "effectiveEndDate": _date(charge["EffectiveEndDate"]),
            "chargedThroughDate": _date(charge["ChargedThroughDate"]), "triggerEvent": charge["TriggerEvent"],
            "price": _number(charge["Price"]), "quantity": _number(charge["Quantity"]), "mrr": _number(charge["MRR"]),
            "tcv": _number(charge["TCV"]),
            "billingPeriod": None if charge["BillingPeriod"] is None else charge["BillingPeriod"].replace("-", "_"),
            "currency": currency,
        })

    def subscription(self, key: str) -> dict[str, Any]:
        sub = self.one("Subscription", "id = ?", (key,)) or next(iter(self.latest_subscriptions("name = ?", (key,))), None)
        if sub is None:
            raise RestError(NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return {**self._subscription(sub), "success": True}

    def _subscription(self, sub: dict[str, Any]) -> dict[str, Any]:
        account = self.account(sub["AccountId"])
        owner = self.account(sub["InvoiceOwnerId"]) if sub["InvoiceOwnerId"] else account
        latest = self.conn.execute("SELECT MAX(version) FROM subscription WHERE name = ? AND deleted = 0",
                                   (sub["Name"],)).fetchone()[0]
        current_term = sub["InitialTerm"] if (sub["Version"] or 1) == 1 else sub["RenewalTerm"] or sub["InitialTerm"]
        termed = sub["TermType"] != "EVERGREEN"
        return _clean({
            "id": sub["Id"], "subscriptionNumber": sub["Name"], "accountId": account["Id"],
            "accountName": account["Name"], "accountNumber": account["AccountNumber"],
            "invoiceOwnerAccountId": owner["Id"], "invoiceOwnerAccountName": owner["Name"],
            "invoiceOwnerAccountNumber": owner["AccountNumber"], "autoRenew": bool(sub["AutoRenew"]),
            "contractEffectiveDate": _date(sub["ContractEffectiveDate"]),
            "serviceActivationDate": _date(sub["ServiceActivationDate"]),
            "customerAcceptanceDate": _date(sub["ContractAcceptanceDate"]),
            "subscriptionStartDate": _date(sub["SubscriptionStartDate"]),
            "subscriptionEndDate": _date(sub["SubscriptionEndDate"]),
            "termStartDate": _date(sub["TermStartDate"]), "termEndDate": _date(sub["TermEndDate"]),
            "termType": sub["TermType"],
            "initialTerm": sub["InitialTerm"] if termed else None,
            "initialTermPeriodType": "Month" if termed else None,
            "renewalTerm": sub["RenewalTerm"] if termed else None,
            "renewalTermPeriodType": "Month" if termed else None,
            "currentTerm": current_term if termed else None, "currentTermPeriodType": "Month" if termed else None,
            "status": sub["Status"], "notes": sub["Notes"], "isLatestVersion": sub["Version"] == latest,
            "contractedMrr": self._contracted_mrr([sub["Id"]]), "currency": account["Currency"],
            "paymentTerm": account["PaymentTerm"], "createTime": self.local_time(sub["CreatedDate"]),
            "updateTime": self.local_time(sub["UpdatedDate"]),
            "billToContact": self.contact(account, account["BillToId"]),
            "soldToContact": self.contact(account, account["SoldToId"]),
            "ratePlans": self._rate_plans(sub, currency=account["Currency"]),
        })

    def subscriptions_of(self, key: str, owner_type: str | None, page: int, page_size: int,
                         base_path: str) -> dict[str, Any]:
        account = self.account(key)
        where = {"subscriptionOwner": "accountid = ?", "invoiceOwner": "invoiceownerid = ?"}.get(
            owner_type or "", "(accountid = ? OR invoiceownerid = ?)")
        params = (account["Id"],) * where.count("?")
        found = self.latest_subscriptions(where, params)
        start = (page - 1) * page_size
        result: dict[str, Any] = {"subscriptions": [self._subscription(s) for s in found[start:start + page_size]],
                                  "success": True}
        if start + page_size < len(found):
            query = {"page": page + 1, "pageSize": page_size}
            if owner_type:
                query["ownerType"] = owner_type
            result["nextPage"] = f"{base_path}?{urlencode(query)}"
        return result

    # -- invoices -----------------------------------------------------------------------------------

    def invoice(self, key: str) -> dict[str, Any]:
        invoice = self.one("Invoice", "id = ? OR invoicenumber = ?", (key, key))
        if invoice is None:
            raise RestError(NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        account = self.account(invoice["AccountId"])
        return _clean({
            "id": invoice["Id"], "invoiceNumber": invoice["InvoiceNumber"], "accountId": invoice["AccountId"],
            "status": invoice["Status"], "invoiceDate": _date(invoice["InvoiceDate"]), "dueDate": _date(invoice["DueDate"]),
            "postedDate": None if invoice["PostedDate"] is None else self.local_time(invoice["PostedDate"])[:10],
            "amount": _number(invoice["Amount"]), "amountWithoutTax": _number(invoice["AmountWithoutTax"]),
            "taxAmount": _number(invoice["TaxAmount"]), "balance": _number(invoice["Balance"]),
            "paymentAmount": _number(invoice["PaymentAmount"]), "refundAmount": _number(invoice["RefundAmount"]),
            "currency": account["Currency"], "paymentTerm": account["PaymentTerm"],
            "billToContactId": account["BillToId"], "soldToContactId": account["SoldToId"],
            "autoPay": bool(account["AutoPay"]), "createdById": invoice["CreatedById"],
            "createdDate": self.local_time(invoice["CreatedDate"]), "updatedById": invoice["UpdatedById"],
            "updatedDate": self.local_time(invoice["UpdatedDate"]), "success": True,
        })

    # -- the object API -------------------------------------------------------------------------------

    def object_record(self, obj: ZObject, record_id: str, fields: list[str] | None) -> dict[str, Any] | None:
        wanted = list(obj.fields.values())
        if fields:
            wanted = []
            for name in fields:
                f = obj.field(name)
                if f is None:
                    raise ObjectFieldError(f"invalid field for query: {obj.name}.{name}")
                wanted.append(f)
        record = self.tenant.store.get(obj, record_id)
        if record is None:
            return None
        return {f.name: renderer(f, self.tz)(record[f.name]) for f in wanted if record.get(f.name) is not None}


class ObjectFieldError(Exception):
    """The object API was asked for a field the object does not have."""


def object_path_name(name: str) -> str:
    """``RatePlanCharge`` → ``rate-plan-charge``: how the object API names objects in its paths."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


# -- HTTP ------------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


async def _answer(request: Request, work) -> Response:
    try:
        return _json(await run_in_threadpool(lambda: work(Reader(request.app.state.tenant))))
    except RestError as exc:
        return rest_failure(exc.code, exc.message, exc.status)


async def get_account(request: Request) -> Response:
    return await _answer(request, lambda r: r.account_detail(request.path_params["key"]))


async def get_account_summary(request: Request) -> Response:
    return await _answer(request, lambda r: r.account_summary(request.path_params["key"]))


async def get_subscription(request: Request) -> Response:
    return await _answer(request, lambda r: r.subscription(request.path_params["key"]))


async def get_subscriptions_of_account(request: Request) -> Response:
    params = request.query_params
    try:
        page = int(params.get("page", 1))
        page_size = int(params.get("pageSize", DEFAULT_PAGE_SIZE))
    except ValueError:
        return rest_failure(50000020, "page and pageSize must be whole numbers")
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        return rest_failure(50000020, f"page must be at least 1 and pageSize from 1 to {MAX_PAGE_SIZE}")
    owner_type = params.get("ownerType")
    if owner_type not in (None, "invoiceOwner", "subscriptionOwner"):
        return rest_failure(50000020, "ownerType must be invoiceOwner or subscriptionOwner")
    return await _answer(request, lambda r: r.subscriptions_of(
        request.path_params["key"], owner_type, page, page_size, request.url.path))


async def get_invoice(request: Request) -> Response:
    return await _answer(request, lambda r: r.invoice(request.path_params["key"]))


async def get_object(request: Request) -> Response:
    tenant = request.app.state.tenant
    by_path = {object_path_name(name): obj for name, obj in tenant.schema.objects.items()}
    obj = by_path.get(request.path_params["object"].lower())
    if obj is None:
        return _json({"records": [], "size": 0, "done": True}, 404)
    fields = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()] or None
    try:
        record = await run_in_threadpool(
            lambda: Reader(tenant).object_record(obj, request.path_params["record_id"], fields))
    except ObjectFieldError as exc:
        return _json({"Success": False, "Errors": [{"Code": "INVALID_VALUE", "Message": str(exc)}]}, 400)
    if record is None:
        return _json({"records": [], "size": 0, "done": True}, 404)
    return _json(record)


def routes() -> list[Route]:
    return [
        Route("/v1/accounts/{key}", get_account, methods=["GET"]),
        Route("/v1/accounts/{key}/summary", get_account_summary, methods=["GET"]),
        Route("/v1/subscriptions/accounts/{key}", get_subscriptions_of_account, methods=["GET"]),
        Route("/v1/subscriptions/{key}", get_subscription, methods=["GET"]),
        Route("/v1/invoices/{key}", get_invoice, methods=["GET"]),
        Route("/v1/object/{object}/{record_id}", get_object, methods=["GET"]),
    ]
