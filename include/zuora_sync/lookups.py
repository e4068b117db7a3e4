"""Optional lookups: written only when their target is in Salesforce.

A link column (``Zuora__InvoiceOwner__r.Zuora__External_Id__c``) names its target by external id.
When Salesforce cannot find that target (it is not synced: no CRM Id, canceled, rejected, or not
yet loaded), it refuses the whole row with ``Foreign key external ID: <value> not found for field
<field> in entity <object>``. For an optional lookup (the mapping's ``lookups`` and
``second_pass``: an invoice owner, a hierarchy parent) that must not cost the record: the row is
sent again with that lookup set to null (``#N/A``), so the record is synced and its lookup stays
empty until the target is in Salesforce (``docs/operations.md``, "Lookups"). A missing parent
(the mapping's ``links``, or a lookup Salesforce requires, such as a master-detail one) stays a
rejection of the row.

Salesforce names only the first missing key of a row, so a row may come back once per optional
lookup; :func:`split_missing_lookups` is applied to each answer until nothing is left to clear.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zuora_sync.transform import NULL

# Salesforce's wording (Bulk API 2.0 failedResults, REST and SOAP alike).
_MISSING = re.compile(r"Foreign key external ID: (?P<value>.*?) not found for field (?P<field>\w+) "
                      r"in entity (?P<entity>\w+)")


@dataclass(frozen=True)
class Lookup:
    """One relationship column of an object's staged files, as Salesforce ``describe`` tells it.

    :ivar column: the CSV column, e.g. ``Zuora__InvoiceOwner__r.Zuora__External_Id__c``.
    :ivar sobject: the object the lookup points at, e.g. ``Zuora__CustomerAccount__c``.
    :ivar required: a missing target rejects the row: a parent (the mapping's ``links``), or a
        lookup Salesforce will not leave empty (master-detail).
    """

    column: str
    sobject: str
    required: bool

    @property
    def target_field(self) -> str:
        return self.column.split(".", 1)[1]

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "sobject": self.sobject, "required": self.required}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> "Lookup":
        return cls(str(value["column"]), str(value["sobject"]), bool(value["required"]))


def missing_foreign_key(message: str) -> tuple[str, str, str] | None:
    """``(value, target field, target object)`` when ``message`` says a foreign key was not found."""
    found = _MISSING.search(message or "")
    if found is None:
        return None
    return found["value"], found["field"], found["entity"]


def _folded(value: str) -> str:
    return value.strip().lower()


def split_missing_lookups(rejected: Iterable[Any], lookups: Iterable[Lookup]) -> tuple[
        list[tuple[dict[str, str], list[str]]], list[Any]]:
    """Split rejected rows into rows to send again with an optional lookup emptied, and real rejections.

    :param rejected: rejected rows (anything with ``message`` and ``row``, the uploaded columns).
    :param lookups: the object's relationship columns.
    :returns: ``(rows to send again with the columns emptied in each, rows that stay rejected)``.
        A row is sent again only when every column holding the missing key is an optional lookup
        of the object Salesforce named; the others stay rejected with Salesforce's reason.
    """
    lookups = list(lookups)
    resend: list[tuple[dict[str, str], list[str]]] = []
    still: list[Any] = []
    for row in rejected:
        missing = missing_foreign_key(row.message)
        if missing is None:
            still.append(row)
            continue
        value, field, entity = missing
        holders = [lookup for lookup in lookups
                   if lookup.sobject.lower() == entity.lower() and lookup.target_field.lower() == field.lower()
                   and _folded(row.row.get(lookup.column) or "") == _folded(value)]
        if not holders or any(lookup.required for lookup in holders):
            still.append(row)
            continue
        again = dict(row.row)
        for lookup in holders:
            again[lookup.column] = NULL
        resend.append((again, [lookup.column for lookup in holders]))
    return resend, still


@dataclass
class Upserted:
    """What :func:`upsert_keeping_records` did with one staged file."""

    succeeded: int
    rejected: list[Any]
    emptied: Counter
    #: Keys of the rows sent again with a lookup emptied: not written exactly as staged, so they keep
    #: no hash (:mod:`zuora_sync.hashes`) and go again next session, when the target may be there.
    emptied_keys: set = field(default_factory=set)
    #: Of the rows written with lookups emptied: key → the emptied columns.
    emptied_columns: dict = field(default_factory=dict)


def upsert_keeping_records(loader: Any, sobject: str, external_id_field: str, path: Path,
                           lookups: Iterable[Lookup], workdir: Path, *, outcome: Any = None,
                           header: list[str] | None = None) -> Upserted:
    """Upsert a staged CSV; rows refused only for a missing optional lookup target go again without it.

    :param loader: a :class:`~zuora_sync.salesforce_loader.SalesforceBulkLoader`.
    :param workdir: a private directory for the files sent again.
    :param outcome: the file's job outcome when it was uploaded already (a pipelined load:
        ``loader.finish(loader.start_upsert(...))``); then ``path`` names the files sent again and
        ``header`` is the file's header (the file itself may be gone).
    """
    lookups = list(lookups)
    if outcome is None:
        outcome = loader.upsert_csv(sobject, external_id_field, path)
    succeeded, rejected, emptied = outcome.processed - outcome.failed, list(outcome.rejected), Counter()
    pending: dict[Any, list[str]] = {}  # key -> lookups emptied so far, while it is being sent again
    emptied_keys: set = set()
    emptied_columns: dict = {}
    for attempt in range(sum(1 for lookup in lookups if not lookup.required)):
        resend, rejected = split_missing_lookups(rejected, lookups)
        if not resend:
            break
        if header is None:
            with open(path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle))
        again = workdir / f"{path.stem}-again-{attempt}.csv"
        with open(again, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([row.get(column, "") for column in header] for row, _ in resend)
        outcome = loader.upsert_csv(sobject, external_id_field, again)
        succeeded += outcome.processed - outcome.failed
        rejected += outcome.rejected
        refused = {r.external_id for r in outcome.rejected}
        for row, columns in resend:
            key = row.get(external_id_field)
            emptied_keys.add(key)
            pending.setdefault(key, []).extend(columns)
            if key not in refused:
                emptied_columns[key] = list(pending[key])
                emptied.update(pending.pop(key))
    return Upserted(succeeded, rejected, emptied, emptied_keys, emptied_columns)
