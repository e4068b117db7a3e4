"""Every Data Query statement the sync sends to Zuora, built from the mapping alone.

The extract's pages (:func:`selection_parts`, :func:`build_query`: a window of changes plus every
row to retry, everything, or chosen accounts, key-paged) and the polling event source's change
counts (:func:`monitored_tables`, :func:`changed_records_query`). No other module writes Data
Query SQL or parses the mapping's joins (``docs/operations.md``, "The mapping").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from zuora_sync.mapping import ObjectMapping
from zuora_sync.vocabulary import Mode

PAGE_ROWS = 400_000                # rows per Data Query job (Zuora caps Live query output)
MAX_IN_LIST = 1_000                # ids per IN list in one statement
MODES = tuple(mode.value for mode in Mode)


@dataclass
class Selection:
    """Which rows of an object to extract.

    A window selection also reads rows outside the window that must be tried again: the object's
    own rows Salesforce rejected before (``retry_keys``), and rows whose related record (a
    ``changes_with`` alias) is being retried or was just fixed (``related_keys``), so that their
    lookup to it is written once it is in Salesforce. All of them, in pages of ``MAX_IN_LIST``.
    """

    mode: str                                   # window | full | accounts
    window_start: dt.datetime | None = None     # aware; window mode
    window_end: dt.datetime | None = None
    retry_keys: list[str] = field(default_factory=list)   # rejected last time: extract again (window mode)
    account_keys: list[str] = field(default_factory=list)  # account ids or numbers (accounts mode)
    related_keys: dict[str, list[str]] = field(default_factory=dict)  # alias -> ids (window mode)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "window" and (self.window_start is None or self.window_end is None):
            raise ValueError("a window selection needs window_start and window_end")
        if self.mode == "accounts" and not self.account_keys:
            raise ValueError("an accounts selection needs at least one account id or number")


    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: the extract task hands the selection to the load task with it."""
        return {"mode": self.mode,
                "window_start": self.window_start.isoformat() if self.window_start else None,
                "window_end": self.window_end.isoformat() if self.window_end else None,
                "retry_keys": list(self.retry_keys), "account_keys": list(self.account_keys),
                "related_keys": {alias: list(keys) for alias, keys in self.related_keys.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        """The selection :meth:`to_dict` wrote (the same statements come out of it)."""
        instant = lambda v: dt.datetime.fromisoformat(v) if v else None  # noqa: E731
        return cls(data["mode"], instant(data.get("window_start")), instant(data.get("window_end")),
                   retry_keys=list(data.get("retry_keys") or []), account_keys=list(data.get("account_keys") or []),
                   related_keys={a: list(k) for a, k in (data.get("related_keys") or {}).items()})


def sql_string(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_timestamp(moment: dt.datetime) -> str:
    """A Trino timestamp literal with an explicit zone, so the tenant's time zone cannot shift it."""
    utc = moment.astimezone(dt.timezone.utc)
    return f"TIMESTAMP '{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d} UTC'"


def _in_list(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(sql_string(v) for v in values)})"


def _chunks(values: list[Any], size: int | None = None) -> Iterator[list[Any]]:
    size = size or MAX_IN_LIST
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass(frozen=True)
class Part:
    """One statement's share of a selection: a condition, and whether its rows may repeat another part's."""

    condition: str | None
    may_repeat: bool = False


def selection_parts(obj: ObjectMapping, selection: Selection) -> list[Part]:
    """The conditions whose rows make up ``selection``, each read as its own (key-paged) statements.

    A window's retries exclude the rows the window reads anyway; the parts that may still meet a
    row twice (retries, account lists) say so.
    """
    base = obj.table
    if selection.mode == "full":
        return [Part(None)]
    if selection.mode == "accounts":
        if obj.account is None:
            raise ValueError(f"object {obj.name} has no 'account' alias, so it cannot be synced by account")
        return [Part(f"({_in_list(obj.account + '.id', chunk)} OR {_in_list(obj.account + '.accountnumber', chunk)})",
                     may_repeat=True) for chunk in _chunks(selection.account_keys)]
    start, end = sql_timestamp(selection.window_start), sql_timestamp(selection.window_end)
    window = "(" + " OR ".join(f"({alias}.updateddate >= {start} AND {alias}.updateddate < {end})"
                               for alias in [base, *obj.changes_with]) + ")"
    parts = [Part(window)]
    outside = f"NOT COALESCE({window}, false)"  # a LEFT JOIN's missing row makes the window NULL
    # Every (alias, id) to retry, MAX_IN_LIST of them per statement: usually all in one.
    pairs = [(base, key) for key in sorted(set(selection.retry_keys))]
    for alias, keys in selection.related_keys.items():
        if alias not in obj.joins:
            raise ValueError(f"object {obj.name} has no alias {alias}")
        pairs += [(alias, key) for key in sorted(set(keys))]
    for chunk in _chunks(pairs):
        by_alias: dict[str, list[str]] = {}
        for alias, key in chunk:
            by_alias.setdefault(alias, []).append(key)
        wanted = " OR ".join(_in_list(f"{alias}.id", keys) for alias, keys in by_alias.items())
        parts.append(Part(f"({wanted}) AND {outside}", may_repeat=True))
    return parts


def build_query(obj: ObjectMapping, part: Part | Selection, *, after_key: str | None = None,
                limit: int = PAGE_ROWS) -> str:
    """The Data Query statement for one page of ``part`` (keys greater than ``after_key``).

    Given a :class:`Selection`, the statement of its first part.
    """
    if isinstance(part, Selection):
        part = selection_parts(obj, part)[0]
    base = obj.table
    keep = f"CASE WHEN {obj.keep} THEN true ELSE false END" if obj.keep else "true"
    select = [f"{base}.id AS zs_id", f"{base}.deleted AS zs_deleted", f"{keep} AS zs_keep"]
    select += [f"{c.expression} AS c{i}" for i, c in enumerate(obj.columns + obj.second_pass)]
    sql = f"SELECT {', '.join(select)} FROM {base}"
    for clause in obj.joins.values():
        sql += f" {clause}"
    conditions = [part.condition] if part.condition else []
    if after_key is not None:
        conditions.append(f"{base}.id > {sql_string(after_key)}")
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + f" ORDER BY {base}.id LIMIT {limit}"


def monitored_tables(scope: str = "accounts") -> list[str]:
    """The Data Query tables whose changes count in polling mode: the scope's objects' tables and
    the tables of the aliases each object re-syncs with (``changes_with``, e.g. bill-to contacts)."""
    from zuora_sync.mapping import load_mapping

    tables: list[str] = []
    for obj in load_mapping().scope_objects(scope):
        for table in [obj.table, *(obj.join_tables.get(alias) for alias in obj.changes_with)]:
            if table and table not in tables:
                tables.append(table)
    return tables


def changed_records_query(tables: list[str], since: dt.datetime) -> str:
    """One Data Query statement counting, per table, the rows updated at or after ``since``.

    ``since`` is floored to the second (Zuora's ``UpdatedDate`` has whole seconds, so a change in
    the watermark's own second is counted rather than missed). Naming ``deleted`` in the select
    list makes Data Query return deleted rows too: a deletion is a change.
    """
    stamp = sql_timestamp(since.replace(microsecond=0))
    parts = [f"SELECT '{t}' AS zs_table, {t}.deleted AS zs_deleted FROM {t} WHERE {t}.updateddate >= {stamp}"
             for t in tables]
    return f"SELECT zs_table, count(*) AS changed FROM ({' UNION ALL '.join(parts)}) changes GROUP BY zs_table"
