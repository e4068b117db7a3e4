"""The deterministic tenant generator: ``--accounts N --seed K`` always makes the same tenant.

The sync needs a realistic Zuora tenant to read, from a 20-account demo to 1,000,000 accounts
(about 20 million rows) for volume runs, and tests on both sides need to *predict* parts of it.
So every value is a pure function of ``(seed, account index)``:

- a per-account PRNG (:class:`random.Random` seeded with a 64-bit mix of seed and index; only
  ``random()`` is used, whose sequence is stable across Python versions) draws the shape and
  values of one account and everything under it;
- the facts other code predicts (status, CRM Id, parent) come from a stateless hash, so
  :func:`account_status`, :func:`crm_id_kind`, :func:`crm_id` and :func:`account_parent` answer
  without generating anything;
- Ids are ``zuora_id(seed, object, index)``: 32 lower-case hex, unique across objects, increasing
  with the per-object index (rows are appended in primary-key order, which keeps SQLite fast), and
  never equal to an API-made Id (those are UUID4s, with ``4`` where these have ``0``);
- times lie between 2023-01-01 and 2025-12-31 UTC (``UpdatedDate`` ≥ ``CreatedDate``), never the
  wall clock, so incremental syncs can window on ``UpdatedDate``.

Per account, on average (measured over 1,000,000): 1 Account, 1.33 Contacts, 2.5 Subscription
versions, 3.5 RatePlans, 6.1 RatePlanCharges, 2.6 Invoices, 2.0 Payments and 2.1 InvoicePayments,
about 21 rows; plus one product catalog per tenant (20 products, two retired, ~65 rate plans,
~115 charges, ~800 price tiers in USD, EUR, GBP and CAD).

Generation streams: one account at a time, rows buffered per table and written with
``executemany`` in write transactions of :data:`BATCH_ROWS` rows, straight into the tables. It
bypasses :meth:`TenantStore.insert` on purpose: generated data is the tenant's starting state, not
a change, so it records no events and sends no callouts. For large tenants the rows are made in a
child interpreter while this process stores them, which puts both cores to work (1,000,000
accounts in about three minutes on two cores; see ``benchmarks/zuora_generate.py``). Indexes are
left to :meth:`TenantStore.create_indexes`, which the server runs afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.crm_accounts import (
    ACCOUNT_KEY_PREFIX,
    crm_account_id,
    crm_account_name,
    crm_account_number,
)
from sandbox.sfid import make_id
from sandbox.sqlite_store import quote

# -- Ids and the stateless hash -------------------------------------------------------------------

#: The object part of a generated Id. Amendment, PaymentMethod and User have no table here, but
#: records point at them (``RatePlan.AmendmentId``, ``Payment.PaymentMethodId``, ``CreatedById``).
OBJECT_CODES = {
    "Account": 0x01, "Contact": 0x02, "Subscription": 0x03, "RatePlan": 0x04, "RatePlanCharge": 0x05,
    "Invoice": 0x06, "Payment": 0x07, "InvoicePayment": 0x08, "Product": 0x09, "ProductRatePlan": 0x0A,
    "ProductRatePlanCharge": 0x0B, "ProductRatePlanChargeTier": 0x0C, "Amendment": 0x0D,
    "PaymentMethod": 0x0E, "User": 0x0F,
}
_ID_PREFIX = "2c92"  # what Zuora production Ids typically start with
_M64 = (1 << 64) - 1

BATCH_ROWS = 50_000

# Salts keep the hash streams of different decisions independent.
_SALT_ACCOUNT_RNG, _SALT_STATUS, _SALT_CRM, _SALT_BLOCK, _SALT_PARENT, _SALT_CATALOG = 1, 2, 3, 4, 5, 6


def _mix(seed: int, index: int, salt: int) -> int:
    """A 64-bit hash of (seed, index, salt): splitmix64's finalizer over a linear combination."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB + salt) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _unit(seed: int, index: int, salt: int) -> float:
    """A number in [0, 1) from (seed, index, salt)."""
    return (_mix(seed, index, salt) >> 11) / 9007199254740992.0


def _id_prefix(seed: int, object_name: str) -> str:
    return f"{_ID_PREFIX}{seed & 0xFFFFFFFF:08x}{OBJECT_CODES[object_name]:04x}"


def zuora_id(seed: int, object_name: str, index: int) -> str:
    """The Id of the ``index``-th (0-based) generated ``object_name`` record of tenant ``seed``.

    ``2c92`` + seed (8 hex) + object code (4 hex) + index (16 hex). Accounts are numbered by
    account index; other objects in generation order, so only accounts and catalog records can be
    named without generating.
    """
    return f"{_id_prefix(seed, object_name)}{index:016x}"


def parse_zuora_id(record_id: str) -> tuple[int, str, int] | None:
    """``(seed & 0xFFFFFFFF, object name, index)`` of a generated Id, or ``None`` for any other Id."""
    if len(record_id) != 32 or not record_id.startswith(_ID_PREFIX) or record_id[12] != "0":
        return None
    try:
        seed, code, index = int(record_id[4:12], 16), int(record_id[12:16], 16), int(record_id[16:], 16)
    except ValueError:
        return None
    names = {c: n for n, c in OBJECT_CODES.items()}
    return (seed, names[code], index) if code in names else None


def account_id(seed: int, index: int) -> str:
    """The Zuora Id of the ``index``-th account."""
    return zuora_id(seed, "Account", index)


# -- account facts other code can predict -----------------------------------------------------------

ACCOUNT_STATUSES = ("Draft", "Active", "Canceled")
CRM_ID_KINDS = ("valid", "none", "unknown", "malformed")
_INVALID_CRM_PERIOD = 400  # two of every 400 accounts (1 in 200) carry an invalid CRM Id
_UNKNOWN_CRM_OFFSET, _MALFORMED_CRM_OFFSET = 17, 217
_NO_CRM_SHARE = 0.08
_HIERARCHY_BLOCK = 32
MAX_HIERARCHY_LEVELS = 5


def crm_id_kind(seed: int, index: int) -> str:
    """What the ``index``-th account's ``CrmId`` is.

    ``valid``: ``crm_account_id(seed, index)``, an Account the Salesforce sandbox started with the
    same ``--accounts``/``--seed`` holds. ``none``: no CRM Id (about 8%; the sync skips these).
    ``unknown``: a well-formed Account Id no sandbox ever creates (accounts 17, 417, 817, ...).
    ``malformed``: not an Account Id at all (accounts 217, 617, ...). The invalid ones sit at fixed
    places so that even a 20-account demo tenant shows the per-record error path.
    """
    position = index % _INVALID_CRM_PERIOD
    if position == _UNKNOWN_CRM_OFFSET:
        return "unknown"
    if position == _MALFORMED_CRM_OFFSET:
        return "malformed"
    return "none" if _unit(seed, index, _SALT_CRM) < _NO_CRM_SHARE else "valid"


def has_crm_id(seed: int, index: int) -> bool:
    """Whether the ``index``-th account has a ``CrmId`` at all (valid or not)."""
    return crm_id_kind(seed, index) != "none"


def crm_id(seed: int, index: int) -> str | None:
    """The ``CrmId`` the ``index``-th account carries (see :func:`crm_id_kind`)."""
    kind = crm_id_kind(seed, index)
    if kind == "valid":
        return crm_account_id(seed, index)
    if kind == "unknown":
        # The fourth character is "Y": seeded Salesforce Ids have "Z", sandbox-created ones "0".
        return make_id(ACCOUNT_KEY_PREFIX, f"Y{seed % 1000:03d}{index + 1:08d}")
    if kind == "malformed":
        return crm_account_id(seed, index)[:13]  # a truncated paste: 13 characters
    return None


def account_status(seed: int, index: int) -> str:
    """The ``index``-th account's ``Status``: about 91% Active, 6% Canceled, 3% Draft.

    Accounts with an invalid CRM Id are always Active, so a sync does try them.
    """
    if crm_id_kind(seed, index) in ("unknown", "malformed"):
        return "Active"
    u = _unit(seed, index, _SALT_STATUS)
    return "Draft" if u < 0.03 else "Canceled" if u < 0.09 else "Active"


def account_parent(seed: int, index: int) -> int | None:
    """The index of the ``index``-th account's parent in its customer hierarchy, or ``None``.

    Accounts come in blocks of 32; about one block in four (and always the first) holds a
    hierarchy rooted at its first account, spanning its first 2–16 accounts. A member's parent is
    an earlier member, so parents have lower indexes and there are no cycles, and never one on the
    fifth level (:data:`MAX_HIERARCHY_LEVELS`). The first block starts with a five-level chain.
    """
    block, offset = divmod(index, _HIERARCHY_BLOCK)
    if offset == 0:
        return None
    h = _mix(seed, block, _SALT_BLOCK)
    if block == 0:
        size = 8 + h % 9
    elif h % 4 == 0:
        size = 2 + (h >> 8) % 15
    else:
        return None
    if offset >= size:
        return None
    first = block * _HIERARCHY_BLOCK
    if block == 0 and offset < MAX_HIERARCHY_LEVELS:
        return index - 1
    g = _mix(seed, index, _SALT_PARENT)
    # Half the members hang under the previous member, which makes deep chains common.
    candidate = index - 1 if g & 1 else first + (g >> 1) % offset
    return candidate if account_level(seed, candidate) < MAX_HIERARCHY_LEVELS else first


def account_level(seed: int, index: int) -> int:
    """The ``index``-th account's level in its hierarchy: 1 for a root (or a lone account)."""
    level = 1
    parent = account_parent(seed, index)
    while parent is not None:
        level += 1
        parent = account_parent(seed, parent)
    return level


# -- calendar: dates as day numbers, formatted from tables -----------------------------------------

_DAY0 = dt.date(2020, 1, 1)
_LAST_DAY = dt.date(2045, 12, 31)
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)  #: generated times start here...
END = dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.UTC)  #: ...and end here
_START_S = (START.date() - _DAY0).days * 86400
_END_S = (END.date() - _DAY0).days * 86400 + 86399
_END_DAY = _END_S // 86400


class _Calendar:
    """Day-number ↔ text tables, built once: formatting by lookup is several times faster."""

    def __init__(self) -> None:
        days = (_LAST_DAY - _DAY0).days + 1
        self.day_text: list[str] = []
        self.day_month: list[int] = []  # months since 2020-01
        self.day_of_month: list[int] = []
        self.month_start: list[int] = []
        self.month_length: list[int] = []
        for n in range(days):
            d = _DAY0 + dt.timedelta(days=n)
            self.day_text.append(d.isoformat())
            self.day_month.append((d.year - 2020) * 12 + d.month - 1)
            self.day_of_month.append(d.day)
            if d.day == 1:
                self.month_start.append(n)
                if self.month_start[1:]:
                    self.month_length.append(n - self.month_start[-2])
        self.month_length.append(days - self.month_start[-1])
        self.clock = [f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]

    def add_months(self, day: int, months: int) -> int:
        """The same day of the month ``months`` later (clamped to the month's end and the table)."""
        month = min(self.day_month[day] + months, len(self.month_start) - 1)
        return self.month_start[month] + min(self.day_of_month[day], self.month_length[month]) - 1

    def datetime(self, seconds: int) -> str:
        return self.day_text[seconds // 86400] + self.clock[seconds % 86400]


_calendar: _Calendar | None = None


def _get_calendar() -> _Calendar:
    global _calendar
    if _calendar is None:
        _calendar = _Calendar()
    return _calendar


# -- the product catalog ------------------------------------------------------------------------------

CURRENCIES = (("USD", 1.0), ("EUR", 0.92), ("GBP", 0.79), ("CAD", 1.36))
_PRODUCTS = (
    # name, category, end date (None = still sold)
    ("Analytics Platform", "Base Products", None), ("Billing Cloud", "Base Products", None),
    ("Collaboration Suite", "Base Products", None), ("Data Warehouse", "Base Products", None),
    ("Edge Network", "Base Products", None), ("Field Service", "Base Products", None),
    ("Identity Manager", "Base Products", None), ("Marketing Hub", "Base Products", None),
    ("Observability", "Base Products", None), ("Legacy CRM", "Base Products", "2024-06-30"),
    ("Premium Support", "Add On Services", None), ("Extra Storage", "Add On Services", None),
    ("API Access", "Add On Services", None), ("Sandbox Environments", "Add On Services", None),
    ("Single Sign-On", "Add On Services", None), ("Audit Log Retention", "Add On Services", None),
    ("Training Credits", "Add On Services", None), ("Classic Reports", "Add On Services", "2025-03-31"),
    ("Onboarding Package", "Miscellaneous Products", None), ("Hardware Token", "Miscellaneous Products", None),
)
_PLAN_NAMES = ("Starter", "Professional", "Enterprise", "Annual Prepaid")
# charge name, type, model, billing period, uom, base price
_RECURRING = (
    ("Subscription Fee", "Recurring", "Flat Fee Pricing", "Month", None, 99.0),
    ("User Licenses", "Recurring", "Per Unit Pricing", "Month", "User", 25.0),
    ("Annual Platform Fee", "Recurring", "Flat Fee Pricing", "Annual", None, 1200.0),
    ("Seats", "Recurring", "Volume Pricing", "Quarter", "License", 60.0),
    ("Capacity", "Recurring", "Tiered Pricing", "Semi-Annual", "GB", 4.0),
)
_EXTRA = (
    ("Setup Fee", "OneTime", "Flat Fee Pricing", None, None, 500.0),
    ("Overage", "Usage", "Per Unit Pricing", "Month", "API Call", 0.02),
    ("Storage Overage", "Usage", "Tiered Pricing", "Month", "GB", 0.5),
    ("Add-on Licenses", "Recurring", "Per Unit Pricing", "Month", "User", 15.0),
)
_PERIOD_MONTHS = {"Month": 1, "Quarter": 3, "Semi-Annual": 6, "Annual": 12, None: 1}
_TIERS = ((0.0, 100.0, 1.0), (101.0, 1000.0, 0.8), (1001.0, None, 0.6))
_CATALOG_START = "2020-01-01"
_CATALOG_FOREVER = "2099-12-31"


class _Charge:
    """A catalog charge as subscriptions use it (not a row)."""

    __slots__ = ("id", "name", "type", "model", "period", "months", "uom", "trigger", "tiers", "default_qty")

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    def price(self, currency: str, quantity: float) -> float:
        """The list price for ``quantity`` in ``currency`` (the tier the quantity falls in)."""
        tiers = self.tiers[currency]
        for _start, end, price in tiers:
            if end is None or quantity <= end:
                return price
        return tiers[-1][2]


class _Catalog:
    """The tenant's product catalog: rows to insert, and the plans subscriptions pick from."""

    def __init__(self, seed: int, user: str):
        rng = random.Random(_mix(seed, 0, _SALT_CATALOG))
        self.rows: dict[str, list[tuple]] = {name: [] for name in
                                             ("product", "productrateplan", "productrateplancharge",
                                              "productrateplanchargetier")}
        stamp = "2023-01-01 00:00:00"  # the catalog exists before the first customer
        self.plans: list[tuple[str, str, int, list[_Charge], str]] = []  # id, name, end day, charges, category
        counters = {"ProductRatePlan": 0, "ProductRatePlanCharge": 0, "ProductRatePlanChargeTier": 0}

        def next_id(name: str) -> str:
            counters[name] += 1
            return zuora_id(seed, name, counters[name] - 1)

        for p, (name, category, end) in enumerate(_PRODUCTS):
            product_id = zuora_id(seed, "Product", p)
            end_text = end or _CATALOG_FOREVER
            end_day = (dt.date.fromisoformat(end) - _DAY0).days if end else 10**9
            self.rows["product"].append((
                product_id, name, f"SKU-{p + 1:08d}", category, f"{name}: {category.lower()}.",
                _CATALOG_START, end_text, user, stamp, user, stamp))
            for q in range(2 + int(rng.random() * 3)):
                plan_id = next_id("ProductRatePlan")
                plan_name = f"{name} {_PLAN_NAMES[q]}"
                self.rows["productrateplan"].append((
                    plan_id, product_id, plan_name, f"The {_PLAN_NAMES[q]} plan of {name}.", _CATALOG_START,
                    end_text, user, stamp, user, stamp))
                templates = [_RECURRING[int(rng.random() * len(_RECURRING))]]
                u = rng.random()
                extras = 0 if u < 0.55 else 1 if u < 0.9 else 2
                pool = list(_EXTRA)
                for _ in range(extras):
                    templates.append(pool.pop(int(rng.random() * len(pool))))
                charges = []
                for c_name, c_type, model, period, uom, base in templates:
                    charge_id = next_id("ProductRatePlanCharge")
                    base = round(base * (0.6 + rng.random() * 0.8) * (1 + q * 0.5), 2)
                    trigger = "ContractEffective" if rng.random() < 0.8 else "ServiceActivation"
                    default_qty = 1.0 if model == "Flat Fee Pricing" else 10.0
                    self.rows["productrateplancharge"].append((
                        charge_id, plan_id, c_name, c_type, model, period, default_qty, uom, trigger,
                        0 if c_type == "Usage" else 1, user, stamp, user, stamp))
                    tiers: dict[str, list[tuple]] = {}
                    multi = model in ("Tiered Pricing", "Volume Pricing")
                    for currency, rate in CURRENCIES:
                        tiers[currency] = []
                        for t, (start, stop, factor) in enumerate(_TIERS if multi else ((0.0, None, 1.0),)):
                            price = round(base * rate * factor, 2)
                            tiers[currency].append((start, stop, price))
                            self.rows["productrateplanchargetier"].append((
                                next_id("ProductRatePlanChargeTier"), charge_id, currency, price, t + 1, start, stop,
                                user, stamp, user, stamp))
                    charges.append(_Charge(id=charge_id, name=c_name, type=c_type, model=model, period=period,
                                           months=_PERIOD_MONTHS[period], uom=uom, trigger=trigger, tiers=tiers,
                                           default_qty=default_qty))
                self.plans.append((plan_id, plan_name, end_day, charges, category))
        self.base_plans = [plan for plan in self.plans if plan[4] == "Base Products"]
        self.addon_plans = [plan for plan in self.plans if plan[4] != "Base Products"]


# -- rows -----------------------------------------------------------------------------------------------

_AUDIT = ("createdbyid", "createddate", "updatedbyid", "updateddate")
#: The columns each generated row fills, in order (Data Query names).
COLUMNS = {
    "product": ("id", "name", "sku", "category", "description", "effectivestartdate", "effectiveenddate", *_AUDIT),
    "productrateplan": ("id", "productid", "name", "description", "effectivestartdate", "effectiveenddate", *_AUDIT),
    "productrateplancharge": ("id", "productrateplanid", "name", "chargetype", "chargemodel", "billingperiod",
                              "defaultquantity", "uom", "triggerevent", "taxable", *_AUDIT),
    "productrateplanchargetier": ("id", "productrateplanchargeid", "currency", "price", "tier", "startingunit",
                                  "endingunit", *_AUDIT),
    "account": ("id", "accountnumber", "name", "crmid", "parentid", "status", "balance", "creditbalance",
                "totalinvoicebalance", "currency", "billcycleday", "autopay", "paymentterm", "batch", "billtoid",
                "soldtoid", "defaultpaymentmethodid", "lastinvoicedate", "salesrepname", "purchaseordernumber",
                "notes", "taxexemptstatus", "invoicedeliveryprefsemail", *_AUDIT),
    "contact": ("id", "accountid", "firstname", "lastname", "address1", "address2", "city", "state", "postalcode",
                "country", "workemail", "workphone", *_AUDIT),
    "subscription": ("id", "accountid", "invoiceownerid", "name", "status", "version", "originalid",
                     "previoussubscriptionid", "originalcreateddate", "autorenew", "initialterm", "renewalterm",
                     "termtype", "termstartdate", "termenddate", "subscriptionstartdate", "subscriptionenddate",
                     "contracteffectivedate", "serviceactivationdate", "contractacceptancedate", "cancelleddate",
                     "notes", *_AUDIT),
    "rateplan": ("id", "subscriptionid", "productrateplanid", "name", "amendmentid", "amendmenttype", *_AUDIT),
    "rateplancharge": ("id", "rateplanid", "productrateplanchargeid", "chargenumber", "name", "chargetype",
                       "chargemodel", "price", "quantity", "uom", "mrr", "tcv", "billingperiod", "effectivestartdate",
                       "effectiveenddate", "chargedthroughdate", "triggerevent", "segment", "islastsegment", "version",
                       "originalid", *_AUDIT),
    "invoice": ("id", "accountid", "invoicenumber", "status", "invoicedate", "duedate", "posteddate", "amount",
                "amountwithouttax", "taxamount", "balance", "paymentamount", "refundamount", *_AUDIT),
    "payment": ("id", "accountid", "paymentnumber", "amount", "appliedinvoiceamount", "refundamount", "status", "type",
                "effectivedate", "paymentmethodid", "gatewaystate", "referenceid", *_AUDIT),
    "invoicepayment": ("id", "invoiceid", "paymentid", "amount", "refundamount", *_AUDIT),
}
#: Tables in the order rows are written (parents first, for readers that follow along).
TABLES = tuple(COLUMNS)

_FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
                "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yara")
_LAST_NAMES = ("Anders", "Bauer", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanova", "Jensen",
               "Kowalski", "Lopez", "Meyer", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt", "Tanaka", "Weber")
_STREETS = ("Main Street", "Market Street", "Harbour Road", "Station Road", "Park Avenue", "Hauptstrasse",
            "Rue de la Paix", "King Street", "Queen Street", "Bay Street")
_PLACES = {  # currency -> (city, state, postal code stem, country)
    "USD": (("San Francisco", "CA", "941", "United States"), ("New York", "NY", "100", "United States"),
            ("Austin", "TX", "787", "United States"), ("Chicago", "IL", "606", "United States")),
    "EUR": (("Berlin", None, "101", "Germany"), ("Munich", None, "803", "Germany"), ("Paris", None, "750", "France"),
            ("Amsterdam", None, "101", "Netherlands")),
    "GBP": (("London", None, "EC1", "United Kingdom"), ("Manchester", None, "M1 ", "United Kingdom")),
    "CAD": (("Toronto", "ON", "M5V", "Canada"), ("Vancouver", "BC", "V6B", "Canada")),
}
_PAYMENT_TERMS = ("Due Upon Receipt", "Net 30", "Net 30", "Net 30", "Net 45", "Net 60")
_TERM_DAYS = {"Due Upon Receipt": 0, "Net 30": 30, "Net 45": 45, "Net 60": 60}
_SALES_REPS = ("Alex Morgan", "Sam Rivera", "Jordan Lee", "Casey Kim", "Taylor Brooks", None)
_TAX_RATES = (0.0, 0.07, 0.085, 0.19, 0.2)
# Final status of a subscription number in an Active account, cumulative shares.
_SUB_STATUSES = ((0.70, "Active"), (0.78, "Cancelled"), (0.83, "Expired"), (0.87, "Suspended"),
                 (0.91, "Pending Activation"), (0.94, "Pending Acceptance"), (1.0, "Draft"))
_ONE_VERSION = frozenset(("Draft", "Pending Activation", "Pending Acceptance"))
_BILLABLE = frozenset(("Active", "Cancelled", "Expired", "Suspended"))


_INSERT_SQL = {table: f"INSERT INTO {quote(table)} ({', '.join(map(quote, columns))}) "
                      f"VALUES ({', '.join('?' * len(columns))})" for table, columns in COLUMNS.items()}

Batch = dict[str, list[tuple]]


class _Batches:
    """Per-table row buffers, handed to ``emit`` every :data:`BATCH_ROWS` rows (and at the end).

    ``emit(batch, accounts_done)`` either writes the batch or ships it to the process that does.
    """

    def __init__(self, emit: Callable[[Batch, int], None], batch_rows: int = BATCH_ROWS):
        self.emit = emit
        self.batch_rows = batch_rows
        self.buffers: Batch = {table: [] for table in TABLES}
        self.pending = 0

    def add(self, table: str, rows: list[tuple]) -> None:
        self.buffers[table].extend(rows)
        self.pending += len(rows)

    def maybe_flush(self, accounts_done: int) -> None:
        if self.pending >= self.batch_rows:
            self.flush(accounts_done)

    def flush(self, accounts_done: int) -> None:
        batch = {table: rows for table, rows in self.buffers.items() if rows}
        self.buffers = {table: [] for table in TABLES}
        self.pending = 0
        self.emit(batch, accounts_done)


def _write_batch(store, batch: Batch) -> None:
    """One write transaction: plain ``executemany`` inserts, no change events."""
    with store.write() as conn:
        for table, rows in batch.items():
            conn.executemany(_INSERT_SQL[table], rows)


class _Generator:
    """Makes one tenant's rows, account after account."""

    def __init__(self, seed: int, accounts: int, rows: _Batches):
        self.seed = seed
        self.accounts = accounts
        self.rows = rows
        self.cal = _get_calendar()
        self.user = zuora_id(seed, "User", 0)
        self.catalog = _Catalog(seed, self.user)
        self.prefix = {name: _id_prefix(seed, name) for name in OBJECT_CODES}
        self.counters = dict.fromkeys(OBJECT_CODES, 0)
        self.rng = random.Random()
        self.numbers: dict[str, int] = {}  # subscription, charge, invoice and payment numbers

    def next_id(self, name: str) -> tuple[int, str]:
        """The next per-object index and its Id."""
        n = self.counters[name]
        self.counters[name] = n + 1
        return n, f"{self.prefix[name]}{n:016x}"

    def next_number(self, name: str) -> int:
        """The next 1-based business number (``A-S…``, ``C-…``, ``INV…``, ``P-…``) for ``name``."""
        n = self.numbers[name] = self.numbers.get(name, 0) + 1
        return n

    def run(self) -> None:
        rows = self.rows
        for table, catalog_rows in self.catalog.rows.items():
            rows.add(table, catalog_rows)
        for index in range(self.accounts):
            self.account(index)
            rows.maybe_flush(index + 1)
        rows.flush(self.accounts)

    # The methods below are the hot path: locals instead of attribute lookups, day numbers
    # instead of dates, tuples in column order.

    def account(self, index: int) -> None:
        seed, rng, cal, user = self.seed, self.rng, self.cal, self.user
        rng.seed(_mix(seed, index, _SALT_ACCOUNT_RNG))
        r = rng.random
        account = f"{self.prefix['Account']}{index:016x}"
        status = account_status(seed, index)
        parent = account_parent(seed, index)
        parent_id = None if parent is None else f"{self.prefix['Account']}{parent:016x}"
        u = r()
        currency = "USD" if u < 0.65 else "EUR" if u < 0.83 else "GBP" if u < 0.93 else "CAD"
        created = _START_S + int(r() * (_END_S - _START_S) * 0.8)
        created_text = cal.datetime(created)
        name = crm_account_name(seed, index)

        # Contacts: a bill-to, and a separate sold-to for a third of the accounts; a Draft
        # account may have none yet.
        contacts = []
        bill_to = sold_to = None
        if status != "Draft" or r() < 0.5:
            place = _PLACES[currency][int(r() * len(_PLACES[currency]))]
            domain = name.split(" ")[0].lower() + f"{index + 1}.example.com"
            for role in range(1 if r() < 0.65 else 2):
                _, contact = self.next_id("Contact")
                first = _FIRST_NAMES[int(r() * len(_FIRST_NAMES))]
                last = _LAST_NAMES[int(r() * len(_LAST_NAMES))]
                contacts.append((
                    contact, account, first, last, f"{1 + int(r() * 999)} {_STREETS[int(r() * len(_STREETS))]}",
                    "Suite 100" if r() < 0.1 else None, place[0], place[1],
                    f"{place[2]}{int(r() * 100):02d}", place[3], f"{first}.{last}@{domain}".lower(),
                    f"+1 555 {int(r() * 10000):04d}" if r() < 0.8 else None,
                    user, created_text, user, created_text))
                if role == 0:
                    bill_to = sold_to = contact
                else:
                    sold_to = contact
            self.rows.add("contact", contacts)

        # Subscriptions: a number of subscription numbers, each with its versions.
        invoice_owner = parent_id if parent_id is not None and r() < 0.5 else account
        if status == "Draft":
            subscription_count = 1 if r() < 0.4 else 0
        else:
            u = r()
            subscription_count = 1 if u < 0.65 else 2 if u < 0.9 else 3 if u < 0.98 else 4
        monthly_cents = 0
        first_billable_day = None
        for _ in range(subscription_count):
            if status == "Draft":
                final = "Draft"
            elif status == "Canceled":
                final = "Cancelled" if r() < 0.8 else "Expired"
            else:
                u = r()
                final = next(s for share, s in _SUB_STATUSES if u < share)
            start = created + int(r() * (_END_S - created) * 0.3)
            if final == "Expired" and self.cal.add_months(start // 86400, 12) > _END_DAY:
                # Too young to have run out its (12-month) term by the end of the window.
                final = "Cancelled" if status == "Canceled" else "Active"
            mrr = self.subscription(account, invoice_owner, currency, final, start)
            if final in _BILLABLE:
                monthly_cents += mrr
                start_day = start // 86400
                if first_billable_day is None or start_day < first_billable_day:
                    first_billable_day = start_day

        # Invoices, payments and their links.
        balance_cents = 0
        last_invoice_day = None
        account_updated = created
        payment_term = _PAYMENT_TERMS[int(r() * len(_PAYMENT_TERMS))]
        autopay = r() < 0.6
        method = f"{self.prefix['PaymentMethod']}{index:016x}"
        tax_exempt = "No" if r() < 0.92 else "Yes" if r() < 0.8 else "PendingVerification"
        tax_rate = 0.0 if tax_exempt != "No" else _TAX_RATES[int(r() * len(_TAX_RATES))]
        bill_cycle_day = 1 if r() < 0.6 else 1 + int(r() * 28)
        if first_billable_day is not None:
            balance_cents, last_invoice_day, account_updated = self.billing(
                account, first_billable_day, max(monthly_cents, 1000), tax_rate, payment_term, autopay,
                method, created)

        crm = crm_id(seed, index)
        self.rows.add("account", [(
            account, crm_account_number(seed, index), name, crm, parent_id, status, balance_cents / 100, 0.0,
            balance_cents / 100, currency, bill_cycle_day, int(autopay), payment_term,
            f"Batch{1 + int(r() * 5)}", bill_to, sold_to, method if autopay else None,
            None if last_invoice_day is None else cal.day_text[last_invoice_day],
            _SALES_REPS[int(r() * len(_SALES_REPS))],
            f"PO-{int(r() * 1_000_000):06d}" if r() < 0.3 else None,
            "Key account: quarterly business review." if r() < 0.05 else None,
            tax_exempt, int(r() < 0.9),
            user, created_text, user, cal.datetime(max(account_updated, created)))])

    def subscription(self, account: str, invoice_owner: str, currency: str, final: str, start: int) -> int:
        """Write one subscription number's versions; returns its first version's MRR in cents.

        Every version is a row of its own with new Ids for it, its rate plans and their charges;
        the charges keep their ``ChargeNumber`` and ``OriginalId`` across versions, as in Zuora.
        """
        r, cal, user, catalog = self.rng.random, self.cal, self.user, self.catalog
        if final in _ONE_VERSION:
            versions = 1
        else:
            u = r()
            versions = 1 if u < 0.55 else 2 if u < 0.8 else 3 if u < 0.92 else 4 if u < 0.98 else 5
            if final in ("Cancelled", "Suspended") and versions == 1:
                versions = 2  # cancelling or suspending is itself an amendment: a new version
        name = f"A-S{self.next_number('Subscription'):08d}"
        termed = r() < 0.85 or final == "Expired"
        auto_renew = termed and final != "Expired" and r() < 0.7
        # An Expired subscription ran out a 12-month term inside the window, without renewing.
        initial_term = 12 if final == "Expired" else (12, 12, 12, 24, 36)[int(r() * 5)] if termed else None
        renewal_term = 12 if termed else None
        start_day = start // 86400
        start_text = cal.day_text[start_day]
        term_start = start_day
        term_end = cal.add_months(start_day, initial_term) if termed else None

        # Amendment times: each later than the last (by at most half the time left), all in the
        # window, and before the term's end for a subscription that expires.
        horizon = term_end * 86400 if final == "Expired" else _END_S
        times = [start]
        for _ in range(versions - 1):
            times.append(times[-1] + 3600 + int(r() * (horizon - times[-1] - 3600) * 0.5))

        # The rate plans: a base plan, sometimes an add-on.
        plans = [self.new_plan(catalog.base_plans, start_day, currency, term_end, initial_term, None, None)]
        if r() < 0.25:
            plans.append(self.new_plan(catalog.addon_plans, start_day, currency, term_end, initial_term, None, None))
        first_mrr = sum(round(lineage[7] * 100) for plan in plans for lineage in plan[4])

        sub_rows: list[tuple] = []
        plan_rows: list[tuple] = []
        charge_rows: list[tuple] = []
        original_id = previous_id = None
        original_created = cal.datetime(start)
        pending = final in _ONE_VERSION
        for v in range(1, versions + 1):
            at = times[v - 1]
            at_day = at // 86400
            last = v == versions
            _, sub_id = self.next_id("Subscription")
            if original_id is None:
                original_id = sub_id
            removed = None
            if v > 1 and not (last and final in ("Cancelled", "Suspended")):
                # An amendment: add a product, change quantities, or remove a product.
                _, amendment = self.next_id("Amendment")
                u = r()
                if u < 0.3:
                    plans.append(self.new_plan(catalog.addon_plans, at_day, currency, term_end, initial_term,
                                               amendment, "NewProduct"))
                elif u < 0.9 or len(plans) < 2:
                    plan = plans[int(r() * len(plans))]
                    plan[2], plan[3] = amendment, "UpdateProduct"
                    for lineage in plan[4]:
                        self.update_charge(lineage, currency, at_day, initial_term)
                else:
                    # Removed: shown in this version once more, marked, its charges ending that day.
                    removed = plans.pop(int(r() * len(plans)))
                    removed[2], removed[3] = amendment, "RemoveProduct"
                    for lineage in removed[4]:
                        lineage[10] = max(at_day, lineage[9])
            while auto_renew and term_end is not None and at_day >= term_end:
                term_start, term_end = term_end, cal.add_months(term_end, renewal_term)
            cancelled = cal.day_text[at_day] if last and final == "Cancelled" else None
            not_active = last and final in ("Draft", "Pending Activation")
            not_accepted = last and final in ("Draft", "Pending Activation", "Pending Acceptance")
            sub_rows.append((
                sub_id, account, invoice_owner, name, final if last else "Expired", v, original_id, previous_id,
                original_created, int(auto_renew), initial_term, renewal_term, "TERMED" if termed else "EVERGREEN",
                cal.day_text[term_start], None if term_end is None else cal.day_text[term_end], start_text,
                cancelled or (None if term_end is None else cal.day_text[term_end]), start_text,
                None if not_active else start_text, None if not_accepted else start_text, cancelled, None,
                # An old version changes once more: when the next one replaces it (or the term ends).
                user, cal.datetime(at), user,
                cal.datetime(times[v] if not last else horizon if final == "Expired" else at)))
            billed_to = None if pending else cal.add_months(at_day, 1)
            for plan in plans:
                self.emit_plan(plan, sub_id, at, billed_to, plan_rows, charge_rows)
            if removed is not None:
                self.emit_plan(removed, sub_id, at, billed_to, plan_rows, charge_rows)
            previous_id = sub_id
        self.rows.add("subscription", sub_rows)
        self.rows.add("rateplan", plan_rows)
        self.rows.add("rateplancharge", charge_rows)
        return first_mrr

    def new_plan(self, choices: list, day: int, currency: str, term_end: int | None, term: int | None,
                 amendment: str | None, amendment_type: str | None) -> list:
        """A rate plan from the catalog: ``[product rate plan Id, name, amendment Id, type, charges]``."""
        plan = choices[int(self.rng.random() * len(choices))]
        if plan[2] <= day:  # no longer sold that day: the customer buys the first plan instead
            plan = choices[0]
        charges = [self.new_charge(charge, currency, day, term_end, term) for charge in plan[3]]
        return [plan[0], plan[1], amendment, amendment_type, charges]

    def new_charge(self, charge: _Charge, currency: str, day: int, term_end: int | None, term: int | None) -> list:
        """A charge as it lives across versions: ``[catalog charge, charge number, original Id, price,
        quantity, segment, version, MRR, TCV, segment start day, end day]``."""
        lineage = [charge, f"C-{self.next_number('RatePlanCharge'):08d}", None, 0.0, None, 1, 1, 0.0, 0.0, day,
                   term_end]
        self.price_charge(lineage, currency, term)
        return lineage

    def price_charge(self, lineage: list, currency: str, term: int | None) -> None:
        """Draw a quantity and set price, MRR and TCV (2 decimals) from the catalog's tiers."""
        r = self.rng.random
        charge: _Charge = lineage[0]
        if charge.type == "Usage":
            quantity = None  # billed on usage: no quantity, no MRR
            price = charge.tiers[currency][0][2]
        else:
            if charge.model == "Flat Fee Pricing":
                quantity = 1.0
            else:
                quantity = float(1 + int(r() * (50 if charge.model == "Per Unit Pricing" else 1500)))
            price = charge.price(currency, quantity)
        amount = price * (quantity or 0.0)
        if charge.type == "Recurring":
            mrr = round(amount / charge.months, 2)
            tcv = round(mrr * (term or 12), 2)
        else:
            mrr = 0.0
            tcv = round(amount, 2) if charge.type == "OneTime" else 0.0
        lineage[3], lineage[4], lineage[7], lineage[8] = price, quantity, mrr, tcv

    def update_charge(self, lineage: list, currency: str, day: int, term: int | None) -> None:
        """An UpdateProduct amendment: a new segment and version of the charge from ``day``."""
        self.price_charge(lineage, currency, term)
        lineage[5] += 1
        lineage[6] += 1
        lineage[9] = max(day, lineage[9])

    def emit_plan(self, plan: list, sub_id: str, at: int, billed_to: int | None, plan_rows: list,
                  charge_rows: list) -> None:
        """One version's copy of a rate plan and its charges."""
        day_text, user = self.cal.day_text, self.user
        stamp = self.cal.datetime(at)
        _, plan_id = self.next_id("RatePlan")
        plan_rows.append((plan_id, sub_id, plan[0], plan[1], plan[2], plan[3], user, stamp, user, stamp))
        for lineage in plan[4]:
            charge: _Charge = lineage[0]
            _, charge_id = self.next_id("RatePlanCharge")
            if lineage[2] is None:
                lineage[2] = charge_id
            begin, end = lineage[9], lineage[10]
            if charge.type == "OneTime":
                end = begin
            through = None
            if billed_to is not None:
                through = max(begin, billed_to if end is None else min(billed_to, end))
            charge_rows.append((
                charge_id, plan_id, charge.id, lineage[1], charge.name, charge.type, charge.model, lineage[3],
                lineage[4], charge.uom, lineage[7], lineage[8], charge.period, day_text[begin],
                None if end is None else day_text[end], None if through is None else day_text[through],
                charge.trigger, lineage[5], 1, lineage[6], lineage[2], user, stamp, user, stamp))

    def billing(self, account: str, first_day: int, monthly_cents: int, tax_rate: float, payment_term: str,
                autopay: bool, method: str, created: int) -> tuple[int, int | None, int]:
        """Monthly invoices from ``first_day``, their payments and links.

        Returns the account's open balance in cents, its last posted invoice's day and the time
        of its last billing change (which moves the account's ``UpdatedDate``).
        """
        r, cal, user = self.rng.random, self.cal, self.user
        u = r()
        wanted = 1 if u < 0.2 else 2 if u < 0.4 else 3 if u < 0.65 else 4 if u < 0.85 else 5
        terms_days = _TERM_DAYS[payment_term]
        # [id, number, status, day, due day, posted at, net, tax, paid, updated at]
        invoices: list[list] = []
        payments: list[tuple] = []
        links: list[tuple] = []
        latest = created
        last_posted = None
        open_before: list | None = None  # the previous posted invoice, if it was left open
        day = first_day
        for n in range(wanted):
            if day > _END_DAY:
                break
            last = n == wanted - 1 or cal.add_months(day, 1) > _END_DAY
            number = self.next_number("Invoice")
            _, invoice_id = self.next_id("Invoice")
            net = int(monthly_cents * (0.9 + r() * 0.2))
            tax = round(net * tax_rate)
            posted_at = day * 86400 + 3600 * (2 + int(r() * 8))
            u = r()
            status = "Draft" if last and u < 0.15 else "Canceled" if u > 0.98 else "Posted"
            invoice = [invoice_id, number, status, day, day + terms_days, posted_at, net, tax, 0, posted_at]
            invoices.append(invoice)
            day = cal.add_months(day, 1)
            if status != "Posted":
                continue
            last_posted = invoice[3]
            latest = max(latest, posted_at)
            if r() < 0.82 and invoice[4] <= _END_DAY:
                # Paid, now and then only in half; sometimes one payment also settles the
                # previous, open invoice; a few payments fail or are voided and apply nothing.
                amount = net + tax
                settle = [(invoice, amount if r() < 0.95 else amount // 2)]
                if open_before is not None and r() < 0.5:
                    settle.append((open_before, open_before[6] + open_before[7] - open_before[8]))
                total = sum(part for _, part in settle)
                pay_day = min(_END_DAY, invoice[3] + int(r() * max(3, terms_days)))
                pay_at = pay_day * 86400 + 3600 * (10 + int(r() * 12))
                pay_text = cal.datetime(pay_at)
                u = r()
                p_status = "Processed" if u < 0.95 else "Error" if u < 0.98 else "Voided"
                electronic = autopay or r() < 0.3
                payment_number = self.next_number("Payment")
                _, payment_id = self.next_id("Payment")
                payments.append((
                    payment_id, account, f"P-{payment_number:08d}", total / 100,
                    total / 100 if p_status == "Processed" else 0.0, 0.0, p_status,
                    "Electronic" if electronic else "External", cal.day_text[pay_day], method if electronic else None,
                    ("Settled" if p_status == "Processed" else "FailedToSettle") if electronic else "NotSubmitted",
                    f"ch_{int(r() * 2**48):012x}" if electronic else None, user, pay_text, user, pay_text))
                latest = max(latest, pay_at)
                if p_status == "Processed":
                    for settled, part in settle:
                        _, link_id = self.next_id("InvoicePayment")
                        links.append((link_id, settled[0], payment_id, part / 100, 0.0, user, pay_text, user, pay_text))
                        settled[8] += part
                        settled[9] = pay_at
                    if open_before is not None and open_before[8] == open_before[6] + open_before[7]:
                        open_before = None
            if invoice[8] < net + tax:
                open_before = invoice
        balance = 0
        rows = []
        for invoice_id, number, status, inv_day, due_day, posted_at, net, tax, paid, updated in invoices:
            amount = net + tax
            open_cents = 0 if status == "Canceled" else amount - paid
            if status == "Posted":
                balance += open_cents
            rows.append((
                invoice_id, account, f"INV{number:08d}", status, cal.day_text[inv_day], cal.day_text[due_day],
                cal.datetime(posted_at) if status == "Posted" else None, amount / 100, net / 100, tax / 100,
                open_cents / 100, paid / 100, 0.0, user, cal.datetime(inv_day * 86400 + 3600), user,
                cal.datetime(updated)))
        self.rows.add("invoice", rows)
        self.rows.add("payment", payments)
        self.rows.add("invoicepayment", links)
        return balance, last_posted, latest


# -- entry point ---------------------------------------------------------------------------------------

_RUN_SETTING = "generator_run"
_BULK_CHECKPOINT_PAGES = 10_000  # 40 MB of WAL between checkpoints while loading (default 1,000)
#: From this many accounts on, rows are made in a child process while this one writes them:
#: making and storing cost about the same, so two cores nearly halve the time. Below it, the
#: child's start-up (a fresh interpreter, ~0.3 s) costs more than it saves.
PROCESS_THRESHOLD = 5_000


def generate_tenant(tenant, *, accounts: int, seed: int, progress: Callable[[int], None] | None = None,
                    use_process: bool | None = None) -> None:
    """Fill ``tenant``'s tables with the tenant of ``accounts`` accounts made from ``seed``.

    ``progress`` (optional) is called with the number of accounts stored after each batch.
    ``use_process`` forces (or forbids) the child process; by default it is used for
    :data:`PROCESS_THRESHOLD` accounts or more. Either way the rows are the same, written in the
    same order. Safe to rerun after a crash: an interrupted run leaves a marker, and the next run
    first removes the rows it had written (generated Ids only, never API-made ones).
    """
    if accounts < 0:
        raise ValueError("accounts must be zero or more")
    store = tenant.store
    if store.get_setting(_RUN_SETTING) is not None:
        _remove_generated_rows(store)
    store.set_setting(_RUN_SETTING, {"accounts": accounts, "seed": seed})

    def write(batch: Batch, accounts_done: int) -> None:
        _write_batch(store, batch)
        if progress is not None:
            progress(accounts_done)

    conn = store.conn()  # this thread's connection: the one store.write() uses here
    # A bulk load needs no fsync per checkpoint: WAL with synchronous=OFF still survives a crash
    # of the process (only an OS crash could hurt, and only during this run, which the marker
    # makes repeatable); fewer, larger checkpoints write the WAL back in longer runs.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(f"PRAGMA wal_autocheckpoint={_BULK_CHECKPOINT_PAGES}")
    try:
        if use_process if use_process is not None else accounts >= PROCESS_THRESHOLD:
            _generate_in_child(seed, accounts, write)
        else:
            _Generator(seed, accounts, _Batches(write)).run()
    finally:
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=1000")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the database file, durably
    with store.write() as conn:
        conn.execute("DELETE FROM _settings WHERE key = ?", (_RUN_SETTING,))


def _generate_in_child(seed: int, accounts: int, write: Callable[[Batch, int], None]) -> None:
    """Make the rows in a child interpreter and write each batch here as it arrives.

    The child (``python -m sandbox.zuora.generator --emit-rows``) writes length-prefixed pickles
    of batches to its stdout; the pipe holds little, so it makes batch k+1 while this process
    stores batch k. A plain subprocess, not :mod:`multiprocessing`: ``fork`` is unsafe once the
    server runs threads, and ``spawn`` would re-import the caller's ``__main__``.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding ``sandbox``
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "sandbox.zuora.generator", "--emit-rows", str(seed), str(accounts)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            stream = child.stdout
            while True:
                header = stream.read(_FRAME.size)
                if len(header) < _FRAME.size:
                    child.wait()
                    errors.seek(0)
                    detail = errors.read().decode("utf-8", "replace").strip()
                    raise RuntimeError(
                        f"the tenant generator process stopped (exit code {child.returncode}): {detail}")
                accounts_done, batch = pickle.loads(stream.read(_FRAME.unpack(header)[0]))
                if batch is None:
                    break
                write(batch, accounts_done)
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()


_FRAME = struct.Struct("<Q")


def _emit_rows(seed: int, accounts: int) -> None:
    """The child's side: every row, as frames of (accounts done, batch) on stdout; ``None`` ends."""
    out = sys.stdout.buffer

    def send(batch: Batch | None, accounts_done: int) -> None:
        data = pickle.dumps((accounts_done, batch), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_FRAME.pack(len(data)))
        out.write(data)
        out.flush()

    _Generator(seed, accounts, _Batches(send)).run()
    send(None, accounts)


def _remove_generated_rows(store) -> None:
    with store.write() as conn:
        for table in TABLES:
            # Generated Ids have "0" where a UUID4 (the API's Ids) has its version digit "4".
            conn.execute(f"DELETE FROM {quote(table)} WHERE id GLOB '{_ID_PREFIX}????????0*'")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--emit-rows":
        raise SystemExit("internal: python -m sandbox.zuora.generator --emit-rows SEED ACCOUNTS")
    _emit_rows(int(sys.argv[2]), int(sys.argv[3]))
