"""Changing the tenant's data the way Zuora's own API does: the generic actions and three REST calls.

The sync only reads Zuora, but incremental and real-time sync can only be proven against a tenant
that changes the way a real one does, driven by Zuora's official ``zuora-sdk`` unmodified. So this
module speaks the wire shapes of the SDK's request and response models, and applies Zuora's rules.

Generic actions (``ActionsApi``; SOAP-era calls, up to 50 zObjects of one type):

- ``POST /v1/action/create`` ``{"type": "Account", "objects": [{...}]}`` and ``POST /v1/action/update``
  (each object carries ``Id`` and optional ``fieldsToNull``) answer 200 with one ``SaveResult`` per
  object, in request order: ``{"Success": true, "Id": ...}`` or ``{"Success": false, "Errors":
  [{"Code", "Message"}]}``. One bad object does not stop the others.
- ``POST /v1/action/delete`` ``{"type", "ids"}`` answers ``DeleteResult``s, which Zuora spells in
  lower case: ``{"id", "success"[, "errors"]}``.
- A request that cannot run at all (unknown type, more than 50 objects, no JSON) is HTTP 400:
  ``{"FaultCode", "FaultMessage"}`` for create/update, ``{"code", "message"}`` for delete (the SDK's
  ``FaultResponse`` and ``FailedReason``).
- Per-object codes are SOAP ``ErrorCode`` values: MISSING_REQUIRED_VALUE, INVALID_VALUE (type,
  length, picklist, business rule), INVALID_FIELD (unknown, or not createable/updateable), INVALID_ID
  (no live record with that Id, also for a reference field), DUPLICATE_VALUE (AccountNumber,
  InvoiceNumber, PaymentNumber, SKU, a new subscription number), CANNOT_DELETE.

REST calls (``AccountsApi.create_account``/``update_account``, ``SubscriptionsApi.cancel_subscription``):
``POST /v1/accounts``, ``PUT /v1/accounts/{account-key}`` (Id or AccountNumber),
``PUT /v1/subscriptions/{subscription-key}/cancel`` (Id or subscription number). Failures are HTTP
200 ``{"success": false, "processId", "reasons": [{"code", "message"}], "requestId"}``, as Zuora
answers them; codes are Zuora's eight digits, resource ``500000`` plus the category: 20 invalid
value, 22 missing field, 30 business rule, 40 not found (``Cannot find entity by key: 'X'.``), 90
malformed JSON (HTTP 400).

The records, Zuora's rules and defaults are :mod:`sandbox.zuora.changes`' business; this module
reads the requests, calls it and shapes the answers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.zuora import callouts
from sandbox.zuora.schema import ZObject
from sandbox.zuora.store import new_id
from sandbox.zuora.changes import (
    CANCELLATION_POLICIES,
    Changes,
    RecordError,
    account_defaults,
    account_rules,
    in_list,
    is_empty,
    to_stored,
)
from sandbox.zuora.tenant import Tenant

MAX_OBJECTS = 50

# REST error categories (the last two digits of Zuora's eight-digit codes) on the generic resource.
INVALID_VALUE = 50000020
MISSING_FIELD = 50000022
RULE = 50000030
NOT_FOUND = 50000040
MALFORMED = 50000090

class RestError(Exception):
    """A REST call refused: an eight-digit Zuora code and a message."""

    def __init__(self, code: int, message: str, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# -- values: from the wire to the stored form ------------------------------------------------------

def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


def rest_failure(code: int, message: str, status: int = 200) -> Response:
    """A REST call's failure as Zuora answers it: ``{"success": false, "processId", "reasons", "requestId"}``."""
    return _json({"success": False, "processId": uuid.uuid4().hex[:16].upper(),
                  "reasons": [{"code": code, "message": message}], "requestId": str(uuid.uuid4())}, status)


async def _read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return _MALFORMED


_MALFORMED = object()


def _write(tenant: Tenant, work: Callable[[Changes], Any]) -> Any:
    """Run ``work`` in one write transaction, then wake the callout sender."""
    with tenant.store.write() as conn:
        result = work(Changes(tenant, conn))
    callouts.wake(tenant)
    return result


# -- the generic actions ---------------------------------------------------------------------------------

def _fault(operation: str, code: str, message: str) -> Response:
    if operation == "delete":
        return _json({"code": code, "message": message}, 400)
    return _json({"FaultCode": code, "FaultMessage": message}, 400)


async def _action(request: Request, operation: str) -> Response:
    tenant: Tenant = request.app.state.tenant
    body = await _read_json(request)
    if body is _MALFORMED or not isinstance(body, dict):
        return _fault(operation, "INVALID_VALUE", "The request body must be a JSON object")
    items_key = "ids" if operation == "delete" else "objects"
    if request.query_params.get("rejectUnknownFields", "").lower() == "true" and set(body) - {"type", items_key}:
        return _json({"message": "Error - unrecognised fields"}, 400)
    type_name = body.get("type")
    if not isinstance(type_name, str) or not type_name:
        return _fault(operation, "MISSING_REQUIRED_VALUE", "type is required")
    obj = tenant.schema.get(type_name)
    if obj is None:
        return _fault(operation, "INVALID_TYPE", f"invalid type: {type_name}")
    items = body.get(items_key)
    if not isinstance(items, list):
        return _fault(operation, "MISSING_REQUIRED_VALUE", f"{items_key} is required and must be a list")
    if len(items) > MAX_OBJECTS:
        return _fault(operation, "MAX_RECORDS_EXCEEDED",
                      f"{len(items)} {items_key} given; at most {MAX_OBJECTS} are allowed in one call")
    wanted = dict if operation != "delete" else str
    if any(not isinstance(item, wanted) for item in items):
        return _fault(operation, "INVALID_VALUE", f"every item of {items_key} must be a "
                                                  f"{'JSON object' if wanted is dict else 'string'}")

    def work(ch: Changes) -> list[dict[str, Any]]:
        return [_one(ch, obj, operation, item) for item in items]

    return _json(await run_in_threadpool(_write, tenant, work))


def _one(ch: Changes, obj: ZObject, operation: str, item: Any) -> dict[str, Any]:
    """One object's result; its writes are undone if it fails."""
    try:
        if operation == "create":
            record_id = ch.savepoint(lambda: ch.create(obj, ch.parse(obj, item, "create")))
        elif operation == "update":
            to_null = item.get("fieldsToNull") or []
            if not isinstance(to_null, list):
                raise RecordError("INVALID_VALUE", "fieldsToNull must be a list of field names")
            record_id = ch.savepoint(lambda: ch.update(obj, item.get("Id"), ch.parse(obj, item, "update"), to_null))
        else:
            ch.savepoint(lambda: ch.delete(obj, item))
            return {"id": item, "success": True}
    except RecordError as exc:
        error = [{"Code": exc.code, "Message": exc.message}]
        if operation == "delete":
            return {"id": item, "success": False, "errors": error}
        return {"Success": False, "Errors": error}
    return {"Success": True, "Id": record_id}


async def action_create(request: Request) -> Response:
    return await _action(request, "create")


async def action_update(request: Request) -> Response:
    return await _action(request, "update")


async def action_delete(request: Request) -> Response:
    return await _action(request, "delete")


# -- REST: accounts ------------------------------------------------------------------------------------------

# CreateAccountRequest / UpdateAccountRequest fields → Account fields.
ACCOUNT_FIELDS = {
    "name": "Name", "accountNumber": "AccountNumber", "crmId": "CrmId", "parentId": "ParentId",
    "currency": "Currency", "billCycleDay": "BillCycleDay", "autoPay": "AutoPay", "paymentTerm": "PaymentTerm",
    "batch": "Batch", "salesRep": "SalesRepName", "purchaseOrderNumber": "PurchaseOrderNumber", "notes": "Notes",
    "invoiceDeliveryPrefsEmail": "InvoiceDeliveryPrefsEmail", "defaultPaymentMethodId": "DefaultPaymentMethodId",
}
# CreateAccountContact / UpdateAccountContact fields → Contact fields (``zipCode`` is Zuora's; the
# ``postalCode`` spelling is accepted too).
CONTACT_FIELDS = {
    "firstName": "FirstName", "lastName": "LastName", "address1": "Address1", "address2": "Address2",
    "city": "City", "state": "State", "country": "Country", "zipCode": "PostalCode", "postalCode": "PostalCode",
    "workEmail": "WorkEmail", "workPhone": "WorkPhone",
}
_RECORD_TO_REST = {"MISSING_REQUIRED_VALUE": MISSING_FIELD, "INVALID_ID": NOT_FOUND, "CANNOT_DELETE": RULE}


def _rest_values(obj: ZObject, body: dict[str, Any], mapping: dict[str, str], where: str) -> dict[str, Any]:
    values = {}
    for key, name in mapping.items():
        if key in body:
            try:
                values[name] = to_stored(obj.fields[name], body[key])
            except RecordError as exc:
                raise RestError(INVALID_VALUE, f"'{where}{key}': {exc.message}") from None
    return values


def _contact_values(ch: Changes, body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RestError(INVALID_VALUE, f"'{where}' must be a JSON object")
    return _rest_values(ch.obj("Contact"), body, CONTACT_FIELDS, f"{where}.")


def _record_to_rest(exc: RecordError) -> RestError:
    return RestError(_RECORD_TO_REST.get(exc.code, INVALID_VALUE), exc.message)


def _tax_values(body: dict[str, Any]) -> dict[str, Any]:
    tax = body.get("taxInfo")
    if isinstance(tax, dict) and tax.get("exemptStatus") is not None:
        return {"TaxExemptStatus": tax["exemptStatus"]}
    return {}


def _create_account(ch: Changes, body: dict[str, Any]) -> dict[str, Any]:
    account_obj, contact_obj = ch.obj("Account"), ch.obj("Contact")
    for key in ("name", "currency", "billToContact"):
        if is_empty(body.get(key)):
            raise RestError(MISSING_FIELD, f"'{key}' may not be null")
    if body.get("subscription") is not None:
        raise RestError(INVALID_VALUE, "This sandbox creates accounts without a subscription; create the "
                                       "subscription with POST /v1/action/create")
    if body.get("billCycleDay") is None:
        raise RestError(MISSING_FIELD, "'billCycleDay' is required when no subscription is created")
    values = _rest_values(account_obj, body, {k: v for k, v in ACCOUNT_FIELDS.items() if k != "defaultPaymentMethodId"}, "")
    for key in ("hpmCreditCardPaymentMethodId", "paymentMethodId"):
        if body.get(key):
            values["DefaultPaymentMethodId"] = to_stored(account_obj.fields["DefaultPaymentMethodId"], body[key])
    if isinstance(body.get("paymentMethod"), dict) or isinstance(body.get("creditCard"), dict):
        values["DefaultPaymentMethodId"] = new_id()  # the sandbox keeps no payment methods, only the link
    if values.get("AutoPay") and not values.get("DefaultPaymentMethodId"):
        raise RestError(INVALID_VALUE, "When 'autoPay' is true, a payment method is required (paymentMethod, "
                                       "creditCard or hpmCreditCardPaymentMethodId)")
    if body.get("parentAccountNumber") and "ParentId" not in values:
        parent = ch.rows(account_obj, "accountnumber = ?", (str(body["parentAccountNumber"]),))
        if not parent:
            raise RestError(NOT_FOUND, f"Cannot find entity by key: '{body['parentAccountNumber']}'.")
        values["ParentId"] = parent[0]["Id"]
    values.update(_rest_values(account_obj, _tax_values(body), {"TaxExemptStatus": "TaxExemptStatus"}, "taxInfo."))
    if values.get("AccountNumber") and ch.exists(account_obj, "accountnumber = ?", (values["AccountNumber"],)):
        raise RestError(INVALID_VALUE, f"The account number {values['AccountNumber']} is already in use")
    bill_to = _contact_values(ch, body["billToContact"], "billToContact")
    sold_body = body.get("soldToContact")
    sold_to = _contact_values(ch, sold_body, "soldToContact") if sold_body is not None else None
    account_id, bill_id = new_id(), new_id()
    same = sold_to is None and bool(body.get("soldToSameAsBillTo"))
    sold_id = bill_id if same else new_id()
    values.update(Status="Active", BillToId=bill_id, SoldToId=sold_id)
    try:
        # The account refers to contacts inserted right after it, in the same transaction.
        ch.savepoint(lambda: (
            _insert_account_first(ch, account_obj, values, account_id, bill_id, sold_id),
            ch.create(contact_obj, {**bill_to, "AccountId": account_id}, bill_id),
            None if same else ch.create(contact_obj, {**(sold_to if sold_to is not None else bill_to),
                                                      "AccountId": account_id}, sold_id),
        ))
    except RecordError as exc:
        raise _record_to_rest(exc) from None
    account = ch.get(account_obj, account_id)
    return {"success": True, "accountId": account_id, "accountNumber": account["AccountNumber"],
            "billToContactId": bill_id, "soldToContactId": sold_id}


def _insert_account_first(ch: Changes, obj: ZObject, values: dict[str, Any], account_id: str,
                          bill_id: str, sold_id: str) -> None:
    # Checked without the contacts (not inserted yet), then inserted with them.
    staged = {**values, "Status": "Draft", "BillToId": None, "SoldToId": None}
    record = dict(staged)
    changed = set(record) | account_defaults(ch, record, account_id)
    if is_empty(record.get("AccountNumber")):
        record["AccountNumber"] = ch.numbers.take(ch.conn, obj)
        changed.add("AccountNumber")
    ch.check(obj, record, changed, account_id)
    account_rules(ch, None, record, account_id)
    record.update(Id=account_id, Status="Active", BillToId=bill_id, SoldToId=sold_id)
    ch.store.insert(ch.conn, obj, [record], ch.user, when=ch.when)


def _account_by_key(ch: Changes, key: str) -> dict[str, Any]:
    account_obj = ch.obj("Account")
    account = ch.get(account_obj, key) or next(iter(ch.rows(account_obj, "accountnumber = ?", (key,))), None)
    if account is None:
        raise RestError(NOT_FOUND, f"Cannot find entity by key: '{key}'.")
    return account


def _update_account(ch: Changes, key: str, body: dict[str, Any]) -> dict[str, Any]:
    account_obj, contact_obj = ch.obj("Account"), ch.obj("Contact")
    account = _account_by_key(ch, key)
    mapping = {k: v for k, v in ACCOUNT_FIELDS.items() if k not in ("currency", "accountNumber")}
    values = _rest_values(account_obj, body, mapping, "")
    values.update(_rest_values(account_obj, _tax_values(body), {"TaxExemptStatus": "TaxExemptStatus"}, "taxInfo."))
    for key_name, field_name in (("billToContactId", "BillToId"), ("soldToContactId", "SoldToId")):
        if body.get(key_name):
            values[field_name] = to_stored(account_obj.fields[field_name], body[key_name])
    contact_changes = []
    for key_name, field_name in (("billToContact", "BillToId"), ("soldToContact", "SoldToId")):
        if body.get(key_name) is not None:
            changes = _contact_values(ch, body[key_name], key_name)
            contact_id = values.get(field_name) or account.get(field_name)
            if contact_id is None:
                raise RestError(RULE, f"The account has no {key_name} to update")
            contact_changes.append((contact_id, changes))

    def apply() -> None:
        ch.update(account_obj, account["Id"], values)
        for contact_id, changes in contact_changes:
            if changes:
                ch.update(contact_obj, contact_id, changes)

    try:
        ch.savepoint(apply)
    except RecordError as exc:
        raise _record_to_rest(exc) from None
    return {"success": True}


# -- REST: cancel a subscription ---------------------------------------------------------------------------

def _date_arg(body: dict[str, Any], key: str) -> dt.date | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RestError(INVALID_VALUE, f"'{key}' must be a date in the format yyyy-mm-dd") from None


def _cancel_subscription(ch: Changes, key: str, body: dict[str, Any]) -> dict[str, Any]:
    sub_obj = ch.obj("Subscription")
    subscription = ch.get(sub_obj, key) or ch.latest_version(key)
    if subscription is None:
        raise RestError(NOT_FOUND, f"Cannot find entity by key: '{key}'.")
    policy = body.get("cancellationPolicy")
    if is_empty(policy):
        raise RestError(MISSING_FIELD, "'cancellationPolicy' may not be null")
    if policy not in CANCELLATION_POLICIES:
        raise RestError(INVALID_VALUE, f"'cancellationPolicy' value should be one of: {', '.join(CANCELLATION_POLICIES)}")
    if subscription.get("Status") != "Active":
        raise RestError(RULE, f"Only an Active subscription can be cancelled; subscription "
                              f"{subscription.get('Name')} version {subscription.get('Version')} is "
                              f"{subscription.get('Status')}")
    start = dt.date.fromisoformat(subscription["ContractEffectiveDate"])
    term_end = dt.date.fromisoformat(subscription["TermEndDate"]) if subscription.get("TermEndDate") else None
    termed = subscription.get("TermType") != "EVERGREEN"
    plans = ch.rows(ch.obj("RatePlan"), "subscriptionid = ?", (subscription["Id"],))
    charges = ch.rows(ch.obj("RatePlanCharge"), f"rateplanid IN ({in_list(plans)})", [p["Id"] for p in plans]) if plans else []
    if policy == "EndOfCurrentTerm":
        if not termed or term_end is None:
            raise RestError(INVALID_VALUE, "EndOfCurrentTerm cannot be used for an evergreen subscription")
        cancel_on = term_end
    elif policy == "EndOfLastInvoicePeriod":
        charged = [dt.date.fromisoformat(c["ChargedThroughDate"]) for c in charges if c.get("ChargedThroughDate")]
        cancel_on = max(charged) if charged else start
    else:
        cancel_on = _date_arg(body, "cancellationEffectiveDate")
        if cancel_on is None:
            raise RestError(MISSING_FIELD, "'cancellationEffectiveDate' is required when cancellationPolicy is SpecificDate")
        if cancel_on < start or (termed and term_end is not None and cancel_on > term_end):
            raise RestError(INVALID_VALUE, f"The cancellation effective date {cancel_on} must lie between the contract "
                                           f"effective date {start} and the term end date {term_end}")
    cancelled = cancel_on.isoformat()

    def end_charge(charge: dict[str, Any]) -> dict[str, Any]:
        end = charge.get("EffectiveEndDate")
        return {"EffectiveEndDate": cancelled if end is None or end > cancelled else end}

    try:
        version_id = ch.savepoint(lambda: ch.new_version(
            subscription, {"Status": "Cancelled", "CancelledDate": cancelled, "SubscriptionEndDate": cancelled},
            end_charge))
    except RecordError as exc:
        raise _record_to_rest(exc) from None
    mrr = sum(c.get("MRR") or 0.0 for c in charges)
    months_lost = ((term_end - cancel_on).days / 30.4375) if termed and term_end and term_end > cancel_on else 0.0
    return {"success": True, "subscriptionId": version_id, "cancelledDate": cancelled,
            "totalDeltaMrr": round(0.0 - mrr, 2), "totalDeltaTcv": round(0.0 - mrr * months_lost, 2)}


async def _rest(request: Request, work: Callable[[Changes, dict[str, Any]], dict[str, Any]]) -> Response:
    tenant: Tenant = request.app.state.tenant
    body = await _read_json(request)
    if body is _MALFORMED:
        return rest_failure(MALFORMED, "Malformed JSON in the request body", 400)
    if not isinstance(body, dict):
        return rest_failure(MALFORMED, "The request body must be a JSON object", 400)
    try:
        return _json(await run_in_threadpool(_write, tenant, lambda ch: work(ch, body)))
    except RestError as exc:
        return rest_failure(exc.code, exc.message, exc.status)


async def create_account(request: Request) -> Response:
    return await _rest(request, _create_account)


async def update_account(request: Request) -> Response:
    key = request.path_params["key"]
    return await _rest(request, lambda ch, body: _update_account(ch, key, body))


async def cancel_subscription(request: Request) -> Response:
    key = request.path_params["key"]
    return await _rest(request, lambda ch, body: _cancel_subscription(ch, key, body))


def routes() -> list[Route]:
    return [
        Route("/v1/action/create", action_create, methods=["POST"]),
        Route("/v1/action/update", action_update, methods=["POST"]),
        Route("/v1/action/delete", action_delete, methods=["POST"]),
        Route("/v1/accounts", create_account, methods=["POST"]),
        Route("/v1/accounts/{key}", update_account, methods=["PUT"]),
        Route("/v1/subscriptions/{key}/cancel", cancel_subscription, methods=["PUT"]),
    ]
