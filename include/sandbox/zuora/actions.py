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

Zuora behaviour reproduced (sources: developer.zuora.com Action_POSTcreate/update/delete,
POST_Account, PUT_Account, PUT_CancelSubscription, "Error codes", the SOAP "Errors" page, and
"Cancel and delete customer accounts"):

- Amendments version subscriptions. Changing a subscription through ``action/update`` (any field but
  ``Notes``) or cancelling it creates a new version: new Id, same ``Name``, ``Version`` + 1,
  ``OriginalId`` = the first version, ``PreviousSubscriptionId`` = the one before; the previous
  version becomes ``Expired``; rate plans and charges are copied with new Ids (charges keep their
  ``ChargeNumber``, with ``Version`` + 1 and ``OriginalId``). The answer's Id is the new version's.
  Only the latest version can be amended; only an Active subscription can be cancelled.
- Accounts: created by ``action/create`` in Draft, by ``POST /v1/accounts`` Active; activating needs
  bill-to and sold-to contacts of the same account; cancelling needs every subscription cancelled.
- Deletes keep rows, marked deleted, for Data Query. Deleting an account deletes everything under it
  (contacts, subscriptions with rate plans and charges, invoices, payments), unless it owns a
  subscription billed to another account or is billed for another account's (Zuora refuses that),
  or has child accounts. Only Draft, Canceled or Error invoices can be deleted; a contact that is an
  account's bill-to or sold-to cannot; nor can catalog items a subscription uses.
- Numbers are generated as Zuora does when not given: ``A00000001``, ``A-S00000001``,
  ``C-00000001``, ``INV00000001``, ``P-00000001``, ``SKU-00000001``.

Every change goes through :class:`TenantStore` (audit fields, one ``_events`` row per record), and
the callout sender is woken once the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.sqlite_store import quote
from sandbox.zuora import callouts
from sandbox.zuora.schema import ZField, ZObject
from sandbox.zuora.store import format_datetime, new_id
from sandbox.zuora.tenant import Tenant

MAX_OBJECTS = 50

# REST error categories (the last two digits of Zuora's eight-digit codes) on the generic resource.
INVALID_VALUE = 50000020
MISSING_FIELD = 50000022
RULE = 50000030
NOT_FOUND = 50000040
MALFORMED = 50000090

# Business numbers Zuora generates: object → (field, prefix); eight zero-padded digits follow.
NUMBERS = {
    "Account": ("AccountNumber", "A"),
    "Subscription": ("Name", "A-S"),
    "RatePlanCharge": ("ChargeNumber", "C-"),
    "Invoice": ("InvoiceNumber", "INV"),
    "Payment": ("PaymentNumber", "P-"),
    "Product": ("SKU", "SKU-"),
}
_DIGITS = 8

# Subscription fields an update may change in place; any other change is an amendment.
IN_PLACE_SUBSCRIPTION_FIELDS = frozenset({"Notes"})
OPEN_SUBSCRIPTION_STATUSES = ("Draft", "Pending Activation", "Pending Acceptance", "Active", "Suspended")
DELETABLE_INVOICE_STATUSES = ("Draft", "Canceled", "Error")
CANCELLATION_POLICIES = ("EndOfCurrentTerm", "EndOfLastInvoicePeriod", "SpecificDate")

_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class RecordError(Exception):
    """One object refused, with the SOAP error code Zuora would give."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RestError(Exception):
    """A REST call refused: an eight-digit Zuora code and a message."""

    def __init__(self, code: int, message: str, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# -- values: from the wire to the stored form ------------------------------------------------------

def to_stored(f: ZField, value: Any) -> Any:
    """A JSON value as ``f`` stores it, or :class:`RecordError` (INVALID_VALUE) if it does not fit."""
    if value is None:
        return None
    kind = f.type
    if kind in ("string", "id"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _invalid(f, value, "a text value is expected")
        text = str(value)
        if f.length and len(text) > f.length:
            raise RecordError("INVALID_VALUE", f"The length of field {f.name} exceeds the maximum of {f.length}")
        return text
    if kind == "picklist":
        if isinstance(value, str):
            for allowed in f.values:
                if allowed.lower() == value.strip().lower():
                    return allowed
        raise RecordError("INVALID_VALUE", f"Invalid value for field {f.name}: {value!r}; "
                                           f"allowed values are {', '.join(f.values)}")
    if kind == "integer":
        if isinstance(value, bool):
            raise _invalid(f, value, "an integer is expected")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER_RE.match(value.strip()):
            return int(value)
        raise _invalid(f, value, "an integer is expected")
    if kind == "decimal":
        if isinstance(value, bool):
            raise _invalid(f, value, "a number is expected")
        try:
            number = float(value) if isinstance(value, (int, float, str)) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _invalid(f, value, "a number is expected")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return int(value.strip().lower() == "true")
        raise _invalid(f, value, "true or false is expected")
    if kind == "date":
        # A datetime is accepted for a date field; its date part is kept.
        text = value.strip() if isinstance(value, str) else ""
        if len(text) == 10 or text[10:11] in ("T", " "):
            try:
                return dt.date.fromisoformat(text[:10]).isoformat()
            except ValueError:
                pass
        raise _invalid(f, value, "a date (yyyy-mm-dd) is expected")
    if kind == "datetime":
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.strip())  # Python 3.11 reads a trailing Z
            except ValueError:
                parsed = None
            if parsed is not None:
                # Zuora reads a time without an offset in the tenant's zone; this tenant's is UTC.
                return format_datetime(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))
        raise _invalid(f, value, "a datetime (ISO 8601) is expected")
    raise RecordError("INVALID_VALUE", f"Field {f.name} cannot be set")


def _invalid(f: ZField, value: Any, expected: str) -> RecordError:
    return RecordError("INVALID_VALUE", f"Invalid value for field {f.name}: {value!r}; {expected}")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# -- the write engine -------------------------------------------------------------------------------

class Numbers:
    """The next business number per object, seeded once from the table (kept on the tenant)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self.lock = threading.Lock()

    def take(self, conn: sqlite3.Connection, obj: ZObject) -> str:
        field_name, prefix = NUMBERS[obj.name]
        column = quote(obj.fields[field_name].column)
        with self.lock:
            if obj.name not in self._next:
                # Only numbers of exactly this shape count; generated tenants use the same shapes.
                pattern = prefix + "[0-9]" * _DIGITS
                top = conn.execute(f"SELECT MAX({column}) FROM {quote(obj.table)} WHERE {column} GLOB ?",
                                   (pattern,)).fetchone()[0]
                self._next[obj.name] = int(top[len(prefix):]) + 1 if top else 1
            while True:
                number = f"{prefix}{self._next[obj.name]:0{_DIGITS}d}"
                self._next[obj.name] += 1
                taken = conn.execute(f"SELECT 1 FROM {quote(obj.table)} WHERE {column} = ? LIMIT 1",
                                     (number,)).fetchone()
                if not taken:
                    return number


def _numbers(tenant: Tenant) -> Numbers:
    numbers = getattr(tenant, "action_numbers", None)
    if numbers is None:
        numbers = tenant.action_numbers = Numbers()
    return numbers


class Changes:
    """One request's changes, inside one write transaction; each record in its own savepoint."""

    def __init__(self, tenant: Tenant, conn: sqlite3.Connection):
        self.tenant = tenant
        self.conn = conn
        self.store = tenant.store
        self.schema = tenant.schema
        self.user = tenant.config.user_id
        self.when = self.store.change_time()
        self.numbers = _numbers(tenant)

    def obj(self, name: str) -> ZObject:
        return self.schema.objects[name]

    # reading ------------------------------------------------------------------------------------

    def rows(self, obj: ZObject, where: str, params: tuple | list = (), order: str = "id") -> list[dict[str, Any]]:
        """Live records of ``obj`` matching ``where`` (SQL on column names), field name → value."""
        cursor = self.conn.execute(
            f"SELECT * FROM {quote(obj.table)} WHERE deleted = 0 AND ({where}) ORDER BY {order}", params)
        names = [obj.field(d[0]).name if obj.field(d[0]) else d[0] for d in cursor.description]
        return [{n: v for n, v in zip(names, row) if n in obj.fields} for row in cursor.fetchall()]

    def get(self, obj: ZObject, record_id: Any) -> dict[str, Any] | None:
        if not isinstance(record_id, str) or not record_id:
            return None
        found = self.rows(obj, "id = ?", (record_id,))
        return found[0] if found else None

    def exists(self, obj: ZObject, where: str, params: tuple | list = ()) -> bool:
        sql = f"SELECT 1 FROM {quote(obj.table)} WHERE deleted = 0 AND ({where}) LIMIT 1"
        return self.conn.execute(sql, params).fetchone() is not None

    def savepoint(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` so that a failure undoes its writes and nothing else."""
        self.conn.execute("SAVEPOINT zuora_record")
        try:
            result = work()
        except BaseException:
            self.conn.execute("ROLLBACK TO zuora_record")
            self.conn.execute("RELEASE zuora_record")
            raise
        self.conn.execute("RELEASE zuora_record")
        return result

    # values -------------------------------------------------------------------------------------

    def parse(self, obj: ZObject, raw: dict[str, Any], operation: str) -> dict[str, Any]:
        """Wire fields → stored values by canonical field name; unknown or read-only fields refused."""
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if operation == "update" and key in ("Id", "fieldsToNull"):
                continue
            f = obj.field(key)
            if f is None:
                raise RecordError("INVALID_FIELD", f"Invalid field for {operation}: {obj.name}.{key}")
            allowed = f.createable if operation == "create" else f.updateable
            if not allowed:
                raise RecordError("INVALID_FIELD", f"The field {obj.name}.{f.name} is not {operation}able")
            values[f.name] = to_stored(f, value)
        return values

    def check(self, obj: ZObject, record: dict[str, Any], changed: set[str], record_id: str) -> None:
        """Required fields, references and unique values of a record about to be written."""
        for f in obj.fields.values():
            if f.required and _empty(record.get(f.name)):
                raise RecordError("MISSING_REQUIRED_VALUE", f"Missing required value: {f.name}")
        for name in changed:
            f = obj.fields[name]
            value = record.get(name)
            if value is None:
                continue
            # A new record may point at itself (OriginalId of a first version).
            if f.references and value != record_id and not self.get(self.obj(f.references), value):
                raise RecordError("INVALID_ID", f"Invalid value for field {f.name}: no {f.references} "
                                                f"with Id {value!r}")
            if f.unique and self.exists(obj, f"{quote(f.column)} = ? AND id != ?", (value, record_id)):
                raise RecordError("DUPLICATE_VALUE", f"Duplicate value for field {f.name}: {value!r}")

    # create -------------------------------------------------------------------------------------

    def create(self, obj: ZObject, values: dict[str, Any], record_id: str | None = None) -> str:
        """Insert one record after Zuora's defaults and checks; returns its Id."""
        record_id = record_id or new_id()
        record = dict(values)
        changed = set(record)
        defaults = _CREATE_DEFAULTS.get(obj.name)
        if defaults is not None:
            changed |= defaults(self, record, record_id)
        if obj.name in NUMBERS:
            number_field = NUMBERS[obj.name][0]
            if _empty(record.get(number_field)):
                record[number_field] = self.numbers.take(self.conn, obj)
            elif obj.name == "Subscription" and self.exists(obj, "name = ?", (record[number_field],)):
                raise RecordError("DUPLICATE_VALUE", f"Duplicate value for field Name: {record[number_field]!r}")
            changed.add(number_field)
        self.check(obj, record, changed, record_id)
        rule = _RULES.get(obj.name)
        if rule is not None:
            rule(self, None, record, record_id)
        record["Id"] = record_id
        self.store.insert(self.conn, obj, [record], self.user, when=self.when)
        return record_id

    # update -------------------------------------------------------------------------------------

    def update(self, obj: ZObject, record_id: Any, values: dict[str, Any], to_null: list[Any] | None = None) -> str:
        """Change one live record; returns the Id of the record that now holds the change."""
        current = self.get(obj, record_id)
        if current is None:
            raise RecordError("INVALID_ID", f"Invalid Id: no {obj.name} with Id {record_id!r}")
        values = dict(values)
        for name in to_null or []:
            f = obj.field(name) if isinstance(name, str) else None
            if f is None or not f.updateable:
                raise RecordError("INVALID_FIELD", f"Invalid field in fieldsToNull: {name!r}")
            if f.required:
                raise RecordError("MISSING_REQUIRED_VALUE", f"Missing required value: {f.name} cannot be null")
            values[f.name] = None
        record = {**current, **values}
        changed = {name for name, value in values.items() if value != current.get(name)}
        self.check(obj, record, changed, current["Id"])
        rule = _RULES.get(obj.name)
        if rule is not None:
            rule(self, current, record, current["Id"])
        if obj.name == "Subscription" and changed - IN_PLACE_SUBSCRIPTION_FIELDS:
            self.require_latest(current)
            return self.new_version(current, {name: record[name] for name in changed})
        self.store.update(self.conn, obj, current["Id"], values, self.user, when=self.when)
        return current["Id"]

    # subscriptions: versions ------------------------------------------------------------------------

    def latest_version(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        found = self.rows(self.obj("Subscription"), "name = ?", (name,), order="version DESC")
        return found[0] if found else None

    def require_latest(self, current: dict[str, Any]) -> None:
        latest = self.latest_version(current.get("Name"))
        if latest is not None and latest["Id"] != current["Id"]:
            raise RecordError("INVALID_VALUE", f"Subscription {current['Id']} is version {current.get('Version')} "
                                               f"of {current.get('Name')}; only the latest version "
                                               f"({latest['Id']}) can be amended")

    def new_version(self, current: dict[str, Any], changes: dict[str, Any],
                    charge_changes: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> str:
        """The amendment: a new subscription version carrying ``changes``; returns its Id."""
        sub, plan, charge = self.obj("Subscription"), self.obj("RatePlan"), self.obj("RatePlanCharge")
        version_id = new_id()
        record = {name: value for name, value in current.items() if not sub.fields[name].system}
        record.update(changes)
        record.update(
            Id=version_id,
            Version=(current.get("Version") or 1) + 1,
            OriginalId=current.get("OriginalId") or current["Id"],
            PreviousSubscriptionId=current["Id"],
            OriginalCreatedDate=current.get("OriginalCreatedDate") or current.get("CreatedDate"),
        )
        self.store.insert(self.conn, sub, [record], self.user, when=self.when)
        self.store.update(self.conn, sub, current["Id"], {"Status": "Expired"}, self.user, when=self.when)
        plans = self.rows(plan, "subscriptionid = ?", (current["Id"],))
        plan_ids = {p["Id"]: new_id() for p in plans}
        if plans:
            self.store.insert(self.conn, plan, [
                {**_copyable(plan, p), "Id": plan_ids[p["Id"]], "SubscriptionId": version_id} for p in plans
            ], self.user, when=self.when)
            placeholders = ",".join("?" * len(plan_ids))
            charges = self.rows(charge, f"rateplanid IN ({placeholders})", list(plan_ids))
            if charges:
                self.store.insert(self.conn, charge, [
                    {**_copyable(charge, c), "Id": new_id(), "RatePlanId": plan_ids[c["RatePlanId"]],
                     "Version": (c.get("Version") or 1) + 1, "OriginalId": c.get("OriginalId") or c["Id"],
                     **(charge_changes(c) if charge_changes else {})}
                    for c in charges
                ], self.user, when=self.when)
        return version_id

    # delete -------------------------------------------------------------------------------------

    def delete(self, obj: ZObject, record_id: Any) -> None:
        """Delete one live record and what Zuora deletes with it (rows stay, marked deleted)."""
        current = self.get(obj, record_id)
        if current is None:
            raise RecordError("INVALID_ID", f"Invalid Id: no {obj.name} with Id {record_id!r}")
        plan = _DELETE_PLANS.get(obj.name)
        doomed = plan(self, current) if plan is not None else {obj.name: [current["Id"]]}
        for name in _DELETE_ORDER:
            ids = doomed.get(name)
            if ids:
                self.store.delete(self.conn, self.obj(name), list(dict.fromkeys(ids)), self.user, when=self.when)


def _copyable(obj: ZObject, record: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if not obj.fields[name].system}


# -- per-object defaults and rules ------------------------------------------------------------------

def _account_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    defaults = {"Status": "Draft", "Balance": 0.0, "CreditBalance": 0.0, "TotalInvoiceBalance": 0.0,
                "AutoPay": 0, "InvoiceDeliveryPrefsEmail": 0, "PaymentTerm": "Due Upon Receipt"}
    return _apply_defaults(record, defaults)


def _subscription_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    start = record.get("ContractEffectiveDate")
    defaults: dict[str, Any] = {
        "Status": "Active", "Version": 1, "OriginalId": record_id, "OriginalCreatedDate": ch.when,
        "InvoiceOwnerId": record.get("AccountId"), "TermType": "TERMED", "AutoRenew": 0,
        "TermStartDate": start, "SubscriptionStartDate": start, "ServiceActivationDate": start,
        "ContractAcceptanceDate": start,
    }
    changed = _apply_defaults(record, defaults)
    if record.get("TermType") == "TERMED":
        changed |= _apply_defaults(record, {"InitialTerm": 12, "RenewalTerm": 12})
        if record.get("TermStartDate") and record.get("TermEndDate") is None:
            end = _add_months(dt.date.fromisoformat(record["TermStartDate"]), record["InitialTerm"])
            record["TermEndDate"] = end.isoformat()
            changed.add("TermEndDate")
        changed |= _apply_defaults(record, {"SubscriptionEndDate": record.get("TermEndDate")})
    return changed


def _rate_plan_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    product_plan = ch.get(ch.obj("ProductRatePlan"), record.get("ProductRatePlanId"))
    return _apply_defaults(record, {"Name": product_plan["Name"] if product_plan else None})


def _charge_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    return _apply_defaults(record, {"Version": 1, "OriginalId": record_id, "Segment": 1, "IsLastSegment": 1})


def _invoice_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    changed = _apply_defaults(record, {"Status": "Draft", "Amount": 0.0, "TaxAmount": 0.0, "PaymentAmount": 0.0,
                                       "RefundAmount": 0.0})
    return changed | _apply_defaults(record, {"Balance": record["Amount"],
                                              "AmountWithoutTax": record["Amount"] - (record["TaxAmount"] or 0.0)})


def _payment_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
    return _apply_defaults(record, {"Status": "Processed", "Type": "External", "AppliedInvoiceAmount": 0.0,
                                    "RefundAmount": 0.0})


def _apply_defaults(record: dict[str, Any], defaults: dict[str, Any]) -> set[str]:
    applied = {name for name, value in defaults.items() if record.get(name) is None and value is not None}
    for name in applied:
        record[name] = defaults[name]
    return applied


_CREATE_DEFAULTS: dict[str, Callable[[Changes, dict[str, Any], str], set[str]]] = {
    "Account": _account_defaults,
    "Subscription": _subscription_defaults,
    "RatePlan": _rate_plan_defaults,
    "RatePlanCharge": _charge_defaults,
    "Invoice": _invoice_defaults,
    "Payment": _payment_defaults,
}


def _account_rules(ch: Changes, current: dict[str, Any] | None, record: dict[str, Any], record_id: str) -> None:
    day = record.get("BillCycleDay")
    if day is not None and not 0 <= day <= 31:
        raise RecordError("INVALID_VALUE", f"Invalid value for field BillCycleDay: {day}; it must be 1-31 (0 = auto-set)")
    if record.get("Currency") is not None and not _CURRENCY_RE.match(record["Currency"]):
        raise RecordError("INVALID_VALUE", f"Invalid value for field Currency: {record['Currency']!r}")
    contacts = ch.obj("Contact")
    for name in ("BillToId", "SoldToId"):
        contact = ch.get(contacts, record.get(name))
        if contact is not None and contact["AccountId"] != record_id:
            raise RecordError("INVALID_VALUE", f"Invalid value for field {name}: contact {contact['Id']} "
                                               "belongs to another account")
    previous_status = current.get("Status") if current else None

    def lacks_contacts(r: dict[str, Any]) -> bool:
        return r.get("BillToId") is None or r.get("SoldToId") is None

    # Refuse only a new violation, so an older account without contacts can still be edited.
    if record.get("Status") == "Active" and lacks_contacts(record) and (
            previous_status != "Active" or not lacks_contacts(current or {})):
        raise RecordError("MISSING_REQUIRED_VALUE", "An active account needs a BillToId and a SoldToId contact")
    if record.get("Status") == "Canceled" and previous_status != "Canceled" and current is not None:
        placeholders = ",".join("?" * len(OPEN_SUBSCRIPTION_STATUSES))
        if ch.exists(ch.obj("Subscription"), f"accountid = ? AND status IN ({placeholders})",
                     (record_id, *OPEN_SUBSCRIPTION_STATUSES)):
            raise RecordError("INVALID_VALUE", "An account can be canceled only after all its subscriptions are canceled")
    parent_id = record.get("ParentId")
    seen = {record_id}
    while parent_id is not None:
        if parent_id in seen:
            raise RecordError("INVALID_VALUE", "Invalid value for field ParentId: the customer hierarchy would be circular")
        seen.add(parent_id)
        parent = ch.get(ch.obj("Account"), parent_id)
        parent_id = parent.get("ParentId") if parent else None


def _subscription_rules(ch: Changes, current: dict[str, Any] | None, record: dict[str, Any], record_id: str) -> None:
    if current is not None and record.get("Name") != current.get("Name"):
        raise RecordError("INVALID_VALUE", "The subscription number (Name) cannot be changed")
    for name in ("InitialTerm", "RenewalTerm"):
        if record.get(name) is not None and record[name] < 0:
            raise RecordError("INVALID_VALUE", f"Invalid value for field {name}: {record[name]}")


def _invoice_payment_rules(ch: Changes, current: dict[str, Any] | None, record: dict[str, Any], record_id: str) -> None:
    invoice = ch.get(ch.obj("Invoice"), record.get("InvoiceId"))
    payment = ch.get(ch.obj("Payment"), record.get("PaymentId"))
    if invoice and payment and invoice["AccountId"] != payment["AccountId"]:
        raise RecordError("INVALID_VALUE", "The invoice and the payment belong to different accounts")


_RULES: dict[str, Callable[[Changes, dict[str, Any] | None, dict[str, Any], str], None]] = {
    "Account": _account_rules,
    "Subscription": _subscription_rules,
    "InvoicePayment": _invoice_payment_rules,
}


# -- what a delete takes with it ----------------------------------------------------------------------

# Children before parents, so a crash-free transaction reads naturally in the event log too.
_DELETE_ORDER = ("InvoicePayment", "RatePlanCharge", "RatePlan", "Subscription", "Invoice", "Payment", "Contact",
                 "Account", "ProductRatePlanChargeTier", "ProductRatePlanCharge", "ProductRatePlan", "Product")


def _ids(ch: Changes, name: str, column: str, values: list[Any]) -> list[str]:
    """Ids of live ``name`` records whose ``column`` is one of ``values``."""
    if not values:
        return []
    obj = ch.obj(name)
    sql = f"SELECT id FROM {quote(obj.table)} WHERE deleted = 0 AND {quote(column)} IN ({_in(values)}) ORDER BY id"
    return [row[0] for row in ch.conn.execute(sql, list(values))]


def _in(values: list) -> str:
    return ",".join("?" * len(values))


def _subscription_tree(ch: Changes, subscription_ids: list[str]) -> dict[str, list[str]]:
    plans = _ids(ch, "RatePlan", "subscriptionid", subscription_ids)
    charges = _ids(ch, "RatePlanCharge", "rateplanid", plans)
    return {"Subscription": subscription_ids, "RatePlan": plans, "RatePlanCharge": charges}


def _delete_account(ch: Changes, account: dict[str, Any]) -> dict[str, list[str]]:
    account_id = account["Id"]
    if ch.exists(ch.obj("Subscription"), "(accountid = ? AND invoiceownerid != ?) OR (invoiceownerid = ? AND accountid != ?)",
                 (account_id, account_id, account_id, account_id)):
        raise RecordError("CANNOT_DELETE", "The account cannot be deleted: it owns a subscription whose invoice owner "
                                           "is another account, or is the invoice owner of another account's subscription")
    if ch.exists(ch.obj("Account"), "parentid = ?", (account_id,)):
        raise RecordError("CANNOT_DELETE", "The account cannot be deleted: it is the parent of other accounts")
    subscriptions = _ids(ch, "Subscription", "accountid", [account_id])
    invoices = _ids(ch, "Invoice", "accountid", [account_id])
    payments = _ids(ch, "Payment", "accountid", [account_id])
    links = _ids(ch, "InvoicePayment", "invoiceid", invoices) + \
        _ids(ch, "InvoicePayment", "paymentid", payments)
    return {**_subscription_tree(ch, subscriptions), "Invoice": invoices, "Payment": payments,
            "InvoicePayment": links, "Contact": _ids(ch, "Contact", "accountid", [account_id]),
            "Account": [account_id]}


def _delete_contact(ch: Changes, contact: dict[str, Any]) -> dict[str, list[str]]:
    if ch.exists(ch.obj("Account"), "billtoid = ? OR soldtoid = ?", (contact["Id"], contact["Id"])):
        raise RecordError("CANNOT_DELETE", "The contact is the bill-to or sold-to contact of an account and cannot be deleted")
    return {"Contact": [contact["Id"]]}


def _delete_subscription(ch: Changes, subscription: dict[str, Any]) -> dict[str, list[str]]:
    # A subscription is all its versions: deleting one version's Id deletes the subscription.
    versions = _ids(ch, "Subscription", "name", [subscription["Name"]]) if subscription.get("Name") else []
    return _subscription_tree(ch, versions or [subscription["Id"]])


def _delete_rate_plan(ch: Changes, plan: dict[str, Any]) -> dict[str, list[str]]:
    return {"RatePlan": [plan["Id"]], "RatePlanCharge": _ids(ch, "RatePlanCharge", "rateplanid", [plan["Id"]])}


def _delete_invoice(ch: Changes, invoice: dict[str, Any]) -> dict[str, list[str]]:
    if invoice.get("Status") not in DELETABLE_INVOICE_STATUSES:
        raise RecordError("CANNOT_DELETE", f"Only invoices in {', '.join(DELETABLE_INVOICE_STATUSES)} status can be "
                                           f"deleted; this one is {invoice.get('Status')}")
    return {"Invoice": [invoice["Id"]], "InvoicePayment": _ids(ch, "InvoicePayment", "invoiceid", [invoice["Id"]])}


def _delete_payment(ch: Changes, payment: dict[str, Any]) -> dict[str, list[str]]:
    return {"Payment": [payment["Id"]], "InvoicePayment": _ids(ch, "InvoicePayment", "paymentid", [payment["Id"]])}


def _catalog_tree(ch: Changes, product_ids: list[str], plan_ids: list[str], charge_ids: list[str]) -> dict[str, list[str]]:
    plan_ids = plan_ids + _ids(ch, "ProductRatePlan", "productid", product_ids)
    charge_ids = charge_ids + _ids(ch, "ProductRatePlanCharge", "productrateplanid", plan_ids)
    if plan_ids and ch.exists(ch.obj("RatePlan"), f"productrateplanid IN ({_in(plan_ids)})", plan_ids):
        raise RecordError("CANNOT_DELETE", "A subscription uses this product rate plan; it cannot be deleted")
    if charge_ids and ch.exists(ch.obj("RatePlanCharge"), f"productrateplanchargeid IN ({_in(charge_ids)})", charge_ids):
        raise RecordError("CANNOT_DELETE", "A subscription uses this product rate plan charge; it cannot be deleted")
    tiers = _ids(ch, "ProductRatePlanChargeTier", "productrateplanchargeid", charge_ids)
    return {"Product": product_ids, "ProductRatePlan": plan_ids, "ProductRatePlanCharge": charge_ids,
            "ProductRatePlanChargeTier": tiers}


_DELETE_PLANS: dict[str, Callable[[Changes, dict[str, Any]], dict[str, list[str]]]] = {
    "Account": _delete_account,
    "Contact": _delete_contact,
    "Subscription": _delete_subscription,
    "RatePlan": _delete_rate_plan,
    "Invoice": _delete_invoice,
    "Payment": _delete_payment,
    "Product": lambda ch, r: _catalog_tree(ch, [r["Id"]], [], []),
    "ProductRatePlan": lambda ch, r: _catalog_tree(ch, [], [r["Id"]], []),
    "ProductRatePlanCharge": lambda ch, r: _catalog_tree(ch, [], [], [r["Id"]]),
}


# -- HTTP plumbing ------------------------------------------------------------------------------------

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
        if _empty(body.get(key)):
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
    changed = set(record) | _account_defaults(ch, record, account_id)
    if _empty(record.get("AccountNumber")):
        record["AccountNumber"] = ch.numbers.take(ch.conn, obj)
        changed.add("AccountNumber")
    ch.check(obj, record, changed, account_id)
    _account_rules(ch, None, record, account_id)
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

def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


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
    if _empty(policy):
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
    charges = ch.rows(ch.obj("RatePlanCharge"), f"rateplanid IN ({_in(plans)})", [p["Id"] for p in plans]) if plans else []
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
