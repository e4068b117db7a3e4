"""The Zuora sandbox's records changing as Zuora's do: the backend behind every write endpoint.

:class:`Changes` is one write transaction on the tenant: it parses and checks values against
``schema.yaml`` (:func:`to_stored`), applies Zuora's defaults and business rules, versions
subscriptions on amendment, generates business numbers and cascades deletes. It raises
:class:`RecordError` with Zuora's SOAP error codes; the wire modules (:mod:`sandbox.zuora.actions`
and the REST resources) turn those into each API's answer shapes.

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
import math
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from sandbox.sqlite_store import quote
from sandbox.zuora.schema import ZField, ZObject
from sandbox.zuora.store import format_datetime, new_id
from sandbox.zuora.tenant import Tenant

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


def is_empty(value: Any) -> bool:
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
            if f.required and is_empty(record.get(f.name)):
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
            if is_empty(record.get(number_field)):
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

def account_defaults(ch: Changes, record: dict[str, Any], record_id: str) -> set[str]:
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
            end = add_months(dt.date.fromisoformat(record["TermStartDate"]), record["InitialTerm"])
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
    "Account": account_defaults,
    "Subscription": _subscription_defaults,
    "RatePlan": _rate_plan_defaults,
    "RatePlanCharge": _charge_defaults,
    "Invoice": _invoice_defaults,
    "Payment": _payment_defaults,
}


def account_rules(ch: Changes, current: dict[str, Any] | None, record: dict[str, Any], record_id: str) -> None:
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
    "Account": account_rules,
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
    sql = f"SELECT id FROM {quote(obj.table)} WHERE deleted = 0 AND {quote(column)} IN ({in_list(values)}) ORDER BY id"
    return [row[0] for row in ch.conn.execute(sql, list(values))]


def in_list(values: list) -> str:
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
    if plan_ids and ch.exists(ch.obj("RatePlan"), f"productrateplanid IN ({in_list(plan_ids)})", plan_ids):
        raise RecordError("CANNOT_DELETE", "A subscription uses this product rate plan; it cannot be deleted")
    if charge_ids and ch.exists(ch.obj("RatePlanCharge"), f"productrateplanchargeid IN ({in_list(charge_ids)})", charge_ids):
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


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))
