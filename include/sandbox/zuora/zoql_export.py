"""Export ZOQL over the tenant's store, written to CSV files: what the export object
(``POST /v1/object/export``) and AQuA batches run.

Export ZOQL is ZOQL (:mod:`sandbox.zuora.zoql`: the same parser, filters, literal reading and time
zone) plus what Zuora's data source exports add: a field may be qualified by the queried object or
by an object it joins to (``select Account.Name, Subscription.Name from Subscription``; the joined
objects and their names are the describe's ``related-objects``: ``Account``, ``BillToContact``,
``InvoiceOwnerAccount``...), ``*`` selects every field of the queried object, and
``order by <field> [asc|desc]`` and ``limit <n>`` may follow.

The CSV has one header per selected field, ``Object.Field`` (API names) or ``Object: Field Label``
(labels, AQuA's default), values as Zuora exports them: text as is, booleans ``true``/``false``,
dates ``YYYY-MM-DD``, datetimes ``YYYY-MM-DDThh:mm:ss±hhmm`` in the tenant's time zone (or UTC when
``dateTimeUtc`` is asked), decimals without float noise, nulls empty (or AQuA's ``nullReplacement``).

Rows: the queried object's live records; an incremental AQuA batch passes a window of change times
instead, and, with AQuA's ``deleted`` option, also the records deleted in that window, flagged in an
extra first column (``Object.Deleted``: ``true``/``false`` or ``1``/``0``).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import sqlite3
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from sandbox.sqlite_store import quote
from sandbox.zuora.schema import TenantSchema, ZField, ZObject
from sandbox.zuora.zoql import ZoqlFault, condition_sql, label, related_objects
from sandbox.zuora.zoql_parser import ZoqlSyntaxError, parse

FETCH_ROWS = 2000


@dataclass
class ExportColumn:
    """One selected field: its object's name, the field, and its SQL expression."""

    object_name: str
    object_label: str
    field: ZField
    sql: str

    def header(self, api_names: bool) -> str:
        if api_names:
            return f"{self.object_name}.{self.field.name}"
        return f"{self.object_label}: {label(self.field.name)}"


@dataclass
class ExportQuery:
    """A checked Export ZOQL query, ready to run against the store."""

    obj: ZObject
    columns: list[ExportColumn]
    joins: list[str]
    where_sql: str
    params: list[Any]
    order_sql: str
    limit: int | None

    def sql(self, window: tuple[str, str] | None, deleted: bool) -> tuple[str, list[Any]]:
        """The statement and its parameters. ``window`` (stored UTC times ``[since, until]``) keeps
        the rows changed in it; ``deleted`` also yields rows deleted in it (only with a window).

        Both ends are inclusive: change times have whole seconds, so a change made in the second a
        window ends comes again in the next window rather than never."""
        select = ", ".join(["t0.deleted"] + [c.sql for c in self.columns])
        sql = f"SELECT {select} FROM {quote(self.obj.table)} t0 " + " ".join(self.joins)
        clauses, params = [], []
        if window is None:
            clauses.append("t0.deleted = 0")
        else:
            live = "(t0.deleted = 0 AND t0.updateddate >= ? AND t0.updateddate <= ?)"
            params += list(window)
            if deleted:
                live += " OR (t0.deleted = 1 AND t0.deleteddate >= ? AND t0.deleteddate <= ?)"
                params += list(window)
            clauses.append(f"({live})")
        if self.where_sql:
            clauses.append(f"({self.where_sql})")
            params += self.params
        sql += " WHERE " + " AND ".join(clauses) + (self.order_sql or " ORDER BY t0.rowid")
        if self.limit is not None:
            sql += f" LIMIT {self.limit}"
        return sql, params


def compile_export(schema: TenantSchema, text: str, tz: ZoneInfo, joins_allowed: bool = True) -> ExportQuery:
    """Parse and check Export ZOQL (plain ZOQL when ``joins_allowed`` is false: AQuA's ``zoql`` type);
    raises :class:`~sandbox.zuora.zoql.ZoqlFault`."""
    try:
        query = parse(text, export=joins_allowed)
    except ZoqlSyntaxError as exc:
        raise ZoqlFault("MALFORMED_QUERY", exc.message) from None
    obj = schema.get(query.object)
    if obj is None:
        raise ZoqlFault("INVALID_TYPE", f"invalid type specified: {query.object}")
    related = {name.lower(): (name, f) for name, f in related_objects(obj).items()}
    aliases: dict[str, tuple[str, ZObject]] = {}  # joined object (lower) → (alias, object)
    joins: list[str] = []

    def resolve(name: str) -> tuple[ZField, str]:
        owner, _, field_name = name.rpartition(".")
        if not owner or owner.lower() == obj.name.lower():
            f = obj.field(field_name)
            if f is None:
                raise ZoqlFault("INVALID_FIELD", f"invalid field for query: {obj.name}.{field_name}")
            return f, f"t0.{quote(f.column)}"
        if owner.lower() not in related:
            raise ZoqlFault("INVALID_FIELD", f"invalid field for query: {name} ({obj.name} does not join {owner})")
        joined_name, ref = related[owner.lower()]
        target = schema.get(ref.references)
        if owner.lower() not in aliases:
            alias = f"t{len(aliases) + 1}"
            aliases[owner.lower()] = (alias, target)
            joins.append(f"LEFT JOIN {quote(target.table)} {alias} ON {alias}.id = t0.{quote(ref.column)}")
        alias, target = aliases[owner.lower()]
        f = target.field(field_name)
        if f is None:
            raise ZoqlFault("INVALID_FIELD", f"invalid field for query: {joined_name}.{field_name}")
        return f, f"{alias}.{quote(f.column)}"

    def owner_of(name: str) -> tuple[str, str]:
        owner = name.rpartition(".")[0]
        if not owner or owner.lower() == obj.name.lower():
            return obj.name, obj.label
        joined_name = related[owner.lower()][0]
        return joined_name, label(joined_name)

    columns = []
    names = [f.name for f in obj.fields.values()] if query.fields == ("*",) else query.fields
    for name in names:
        f, sql = resolve(name)
        columns.append(ExportColumn(*owner_of(name), f, sql))
    params: list[Any] = []
    where_sql = condition_sql(query.where, obj, tz, params, resolve) if query.where is not None else ""
    order_sql = ""
    if query.order_by is not None:
        _f, sql = resolve(query.order_by[0])
        order_sql = f" ORDER BY {sql} {'DESC' if query.order_by[1] else 'ASC'}, t0.rowid"
    return ExportQuery(obj, columns, joins, where_sql, params, order_sql, query.limit)


# -- writing files -----------------------------------------------------------------------------------


def _cell(f: ZField, tz: dt.tzinfo) -> Callable[[Any], str]:
    if f.type == "datetime":
        return lambda v: (dt.datetime.fromisoformat(v).replace(tzinfo=dt.timezone.utc).astimezone(tz)
                          .strftime("%Y-%m-%dT%H:%M:%S%z"))
    if f.type == "boolean":
        return lambda v: "true" if v else "false"
    if f.type == "decimal":
        return lambda v: format(Decimal(repr(float(v))).normalize(), "f")
    if f.type == "integer":
        return lambda v: str(int(v))
    return str


@dataclass
class ExportOptions:
    """How an export file is written."""

    api_names: bool = True
    date_time_utc: bool = False
    null_replacement: str = ""
    deleted: tuple[str, str] | None = None  # (column, "Boolean" | "Numeric")
    compression: str = "NONE"  # NONE, GZIP or ZIP


def write_export(conn: sqlite3.Connection, query: ExportQuery, path: Path, tz: ZoneInfo, options: ExportOptions,
                 window: tuple[str, str] | None = None, check: Callable[[], None] = lambda: None) -> int:
    """Run ``query`` and write its CSV to ``path`` (compressed as asked); returns the row count.

    ``check`` is called between fetches (it raises to stop a cancelled job)."""
    zone = dt.timezone.utc if options.date_time_utc else tz
    cells = [_cell(c.field, zone) for c in query.columns]
    header = [c.header(options.api_names) for c in query.columns]
    flag = None
    if options.deleted is not None:
        column, kind = options.deleted
        header.insert(0, f"{query.obj.name}.{column}")
        flag = (lambda d: "1" if d else "0") if kind.lower() == "numeric" else (lambda d: "true" if d else "false")
    sql, params = query.sql(window, deleted=options.deleted is not None and window is not None)
    count = 0
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)

    def rows() -> Iterator[str]:
        nonlocal count
        cursor = conn.execute(sql, params)
        while True:
            batch = cursor.fetchmany(FETCH_ROWS)
            if not batch:
                break
            check()
            for row in batch:
                values = [options.null_replacement if v is None else cell(v) for cell, v in zip(cells, row[1:])]
                writer.writerow(([flag(row[0])] if flag else []) + values)
                count += 1
            yield text.getvalue()
            text.seek(0)
            text.truncate()

    head = text.getvalue()
    text.seek(0)
    text.truncate()
    if options.compression == "ZIP":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
                archive.open(f"{query.obj.name}.csv", "w") as member:
            member.write(head.encode("utf-8"))
            for chunk in rows():
                member.write(chunk.encode("utf-8"))
    else:
        opener = gzip.open if options.compression == "GZIP" else open
        with opener(path, "wb") as out:
            out.write(head.encode("utf-8"))
            for chunk in rows():
                out.write(chunk.encode("utf-8"))
    return count
