"""Rows Salesforce refused before: which it would refuse again as they are, so they are not sent.

Every refused row stays a rejected record with Salesforce's reason until a later session syncs it
(SPEC §4). Sending it again while nothing that decided the refusal has changed only costs a Bulk
job per object and session, and is refused again. So, comparing each row with the newest open
rejection of its record, a row is *settled* (not sent; it stays rejected, counted unchanged) when:

* its values are the ones Salesforce refused (the staged cells equal the refused row's), and
* the reason lies in those values alone:

  - ``MALFORMED_ID``: a value that is no Salesforce Id at all;
  - a required parent that is not in Salesforce (``Foreign key external ID … not found``) and is
    itself still an open rejection after its own load, which runs before this one in the session.
    Once the parent is in (its CRM Id fixed, say), its children are sent again.

Any other reason may change on Salesforce's side without the row changing (validation rules,
sharing, locks, an Id of a deleted record that is restored: ``INVALID_CROSS_REFERENCE_KEY``,
limits), so such rows are retried every session, as they were. A row whose values changed is
sent. The full sync's ``force`` param sends every row (``docs/operations.md``, "Retries").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zuora_sync.lookups import missing_foreign_key

__all__ = ["SETTLED_CODES", "Refusals"]

#: Refusals decided by the row's own values, whatever Salesforce holds.
SETTLED_CODES = frozenset({"MALFORMED_ID"})


class Refusals:
    """The open rejections of one object, and whether a row would be refused again as it is.

    :param refused: external id → ``(code, message, row)``, the newest open rejection of each
        record (:meth:`zuora_sync.state.StateStore.open_refusals`); ``row`` is the refused row's
        columns as uploaded.
    :param columns: the staged upsert file's header, in the order of the cells compared.
    :param still_refused: the open rejections' external ids of another object of the scope, by
        its Salesforce name (None: not a mapped object, so nothing is known of it).
    """

    def __init__(self, refused: dict[str, tuple[str, str, dict[str, Any]]], columns: Iterable[str],
                 still_refused: Callable[[str], set[str] | None]):
        self._refused = refused
        self._columns = list(columns)
        self._still_refused = still_refused

    def __len__(self) -> int:
        return len(self._refused)

    def unchanged(self, key: str, cells: list[str]) -> bool:
        """Whether the row is one Salesforce refused before with these very values (sent again or not)."""
        found = self._refused.get(key)
        return found is not None and [found[2].get(column, "") for column in self._columns] == list(cells)

    def settled(self, key: str, cells: list[str]) -> bool:
        """Whether Salesforce would refuse this row again as it is (then it is not sent)."""
        if not self.unchanged(key, cells):
            return False            # never refused, or its values changed since Salesforce refused them
        code, message, _row = self._refused[key]
        if code in SETTLED_CODES:
            return True
        missing = missing_foreign_key(message)
        if missing is None:
            return False            # a reason that may lie in Salesforce: retried
        value, _field, entity = missing
        parents = self._still_refused(entity)
        return parents is not None and value.strip().lower() in parents
