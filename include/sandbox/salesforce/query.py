"""SOQL on the sandbox store: compile a parsed query to SQLite and shape the results.

:mod:`sandbox.salesforce.soql` parses; this module checks the query against the schema (unknown
objects, fields and relationships get Salesforce's ``INVALID_TYPE`` / ``INVALID_FIELD`` errors with
the caret message), translates it to one SQL statement with a LEFT JOIN per parent relationship,
and renders rows as REST JSON records or Bulk API CSV cells. SOQL semantics that differ from SQL
are kept: text compares case-insensitively, ``!=`` and ``NOT IN`` also match nulls, and date
literals such as ``LAST_N_DAYS:7`` are UTC day ranges.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterator

from sandbox.salesforce import soql
from sandbox.salesforce.schema import (
    DECIMAL_TYPES,
    TEXT_TYPES,
    FieldDef,
    Schema,
    SObjectDef,
)
from sandbox.salesforce.store import quote
from sandbox.salesforce.values import (
    format_datetime,
    literal_for_compare,
    to_csv,
    to_json,
)
from sandbox.sfid import normalize_id


class QueryError(Exception):
    """A query Salesforce would refuse: ``code`` is MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _error_at(code: str, query: soql.Query, pos: soql.Pos, reason: str) -> QueryError:
    rendered = soql.SoqlSyntaxError(reason, pos.row, pos.column, query.text).salesforce_message()
    return QueryError(code, rendered)


@dataclass
class _Join:
    alias: str
    obj: SObjectDef
    relationship: str  # canonical relationship name
    ref_field: str     # the reference field on the parent side of the join
    parent_alias: str
    parent_path: tuple[str, ...]


@dataclass
class OutputColumn:
    """One selected field: where it sits in the record (``path``) and how to read it."""

    path: tuple[str, ...]        # canonical relationship names then the field name
    field: FieldDef
    sql: str
    join_path: tuple[str, ...]   # relationship path (lowercase) of the object holding the field


@dataclass
class CompiledQuery:
    """A query ready to run: SQL pieces plus what is needed to shape each row."""

    query: soql.Query
    obj: SObjectDef
    columns: list[OutputColumn]
    counts: list[tuple[str, str]]          # (output key, SQL expression) for COUNT(...)
    joins: list[_Join]
    where_sql: str
    params: list[Any]
    order_sql: str
    include_deleted: bool
    join_ids: dict[tuple[str, ...], str] = field(default_factory=dict)  # path -> SQL of that parent's Id

    @property
    def count_only(self) -> bool:
        return self.query.is_count_only

    @property
    def is_aggregate(self) -> bool:
        return bool(self.counts)

    def from_sql(self) -> str:
        sql = f"FROM {quote(self.obj.name)} t0"
        for join in self.joins:
            ref = join.ref_field
            sql += f" LEFT JOIN {quote(join.obj.name)} {join.alias} ON {join.alias}.Id = {join.parent_alias}.{quote(ref)}"
        return sql

    def filter_sql(self) -> str:
        clauses = []
        if not self.include_deleted:
            clauses.append("t0.IsDeleted = 0")
        if self.where_sql:
            clauses.append(f"({self.where_sql})")
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""

    def limit_sql(self) -> str:
        limit, offset = self.query.limit, self.query.offset
        if limit is None and offset is None:
            return ""
        return f" LIMIT {limit if limit is not None else -1}" + (f" OFFSET {offset}" if offset else "")

    def rowids_sql(self) -> str:
        """The matching rows' rowids in result order."""
        order = self.order_sql or " ORDER BY t0.rowid"
        return f"SELECT t0.rowid {self.from_sql()}{self.filter_sql()}{order}{self.limit_sql()}"

    def count_sql(self) -> str:
        inner = f"SELECT 1 {self.from_sql()}{self.filter_sql()}{self.limit_sql()}"
        return f"SELECT COUNT(*) FROM ({inner})"

    def aggregate_sql(self) -> str:
        exprs = ", ".join(expr for _, expr in self.counts)
        return f"SELECT {exprs} {self.from_sql()}{self.filter_sql()}"

    def _select_list(self) -> str:
        parts = ["t0.Id"] + [c.sql for c in self.columns] + list(self.join_ids.values())
        return ", ".join(parts)

    def rows_by_rowid_sql(self) -> str:
        """Selected values (plus Ids) for a page of rowids given as a JSON array."""
        return (
            f"SELECT t0.rowid, {self._select_list()} {self.from_sql()} "
            f"WHERE t0.rowid IN (SELECT value FROM json_each(?))"
        )

    def stream_sql(self) -> str:
        """Every result row in order (Bulk query jobs)."""
        return f"SELECT {self._select_list()} {self.from_sql()}{self.filter_sql()}{self.order_sql}{self.limit_sql()}"

    # -- shaping -----------------------------------------------------------------------------

    def json_record(self, row: tuple, version: str) -> dict[str, Any]:
        """A result row (``t0.Id``, selected values, parent Ids) as a REST record."""
        record = _attributes(self.obj, row[0], version)
        values = row[1 : 1 + len(self.columns)]
        parent_ids = dict(zip(self.join_ids, row[1 + len(self.columns) :]))
        joins = {j.parent_path + (j.relationship.lower(),): j for j in self.joins}
        for column, value in zip(self.columns, values):
            target = record
            lowered: tuple[str, ...] = ()
            for rel in column.path[:-1]:
                lowered += (rel.lower(),)
                if parent_ids.get(lowered) is None:
                    target[rel] = None
                    target = None
                    break
                if target.get(rel) is None:
                    target[rel] = _attributes(joins[lowered].obj, parent_ids[lowered], version)
                target = target[rel]
            if target is not None:
                target[column.path[-1]] = to_json(column.field, value)
        return record

    def csv_header(self) -> list[str]:
        return [".".join(c.path) for c in self.columns]

    def csv_cells(self, row: tuple) -> list[str]:
        return [to_csv(c.field, v) for c, v in zip(self.columns, row[1 : 1 + len(self.columns)])]


def _attributes(obj: SObjectDef, record_id: str, version: str) -> dict[str, Any]:
    return {"attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{record_id}"}}


class _Compiler:
    def __init__(self, schema: Schema, query: soql.Query, include_deleted: bool):
        self.schema = schema
        self.query = query
        self.include_deleted = include_deleted
        self.joins: dict[tuple[str, ...], _Join] = {}
        self.params: list[Any] = []

    def compile(self) -> CompiledQuery:
        q = self.query
        self.obj = self.schema.get(q.from_object)
        if self.obj is None:
            raise _error_at(
                "INVALID_TYPE", q, q.from_pos,
                f"sObject type '{q.from_object}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or "
                "the describe call for the appropriate names.",
            )
        columns: list[OutputColumn] = []
        counts: list[tuple[str, str]] = []
        expr_index = 0
        for item in q.select:
            if isinstance(item, soql.Count):
                if item.field is None:
                    continue
                column = self._resolve(item.field)
                key = item.alias or f"expr{expr_index}"
                expr_index += 0 if item.alias else 1
                counts.append((key, f"COUNT({column.sql})"))
            else:
                columns.append(self._resolve(item))
        where_sql = self._condition(q.where, negated=False) if q.where is not None else ""
        where_params = self.params
        order_parts = []
        for item in q.order_by:
            column = self._resolve(item.field)
            expr = self._sortable(column)
            direction = " DESC" if item.descending else " ASC"
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            order_parts.append(f"{expr}{direction} NULLS {'LAST' if nulls_last else 'FIRST'}")
        order_sql = (" ORDER BY " + ", ".join(order_parts + ["t0.rowid"])) if order_parts else ""
        compiled = CompiledQuery(
            query=q, obj=self.obj, columns=columns, counts=counts, joins=list(self.joins.values()),
            where_sql=where_sql, params=where_params, order_sql=order_sql, include_deleted=self.include_deleted,
        )
        compiled.join_ids = {path: f"{join.alias}.Id" for path, join in self.joins.items()}
        return compiled

    def _resolve(self, path: soql.FieldPath) -> OutputColumn:
        obj, alias = self.obj, "t0"
        canonical: list[str] = []
        lowered: tuple[str, ...] = ()
        parts = list(path.parts)
        # A path may start with the FROM object's name: SELECT Account.Name FROM Account.
        if len(parts) > 1 and parts[0].lower() == obj.name.lower() and obj.relationship(parts[0]) is None:
            parts = parts[1:]
        for rel in parts[:-1]:
            ref = obj.relationship(rel)
            if ref is None:
                raise _error_at(
                    "INVALID_FIELD", self.query, path.pos,
                    f"Didn't understand relationship '{rel}' in field path. If you are attempting to use a "
                    "custom relationship, be sure to append the '__r' after the custom relationship name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                )
            parent_path = lowered
            lowered = lowered + (rel.lower(),)
            join = self.joins.get(lowered)
            if join is None:
                join = _Join(f"t{len(self.joins) + 1}", self.schema.get(ref.reference_to[0]),
                             ref.relationship_name, ref.name, alias, parent_path)
                self.joins[lowered] = join
            canonical.append(ref.relationship_name)
            obj, alias = join.obj, join.alias
        f = obj.field(parts[-1])
        if f is None:
            raise _error_at(
                "INVALID_FIELD", self.query, path.pos,
                f"No such column '{parts[-1]}' on entity '{obj.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL "
                "or the describe call for the appropriate names.",
            )
        return OutputColumn(tuple(canonical) + (f.name,), f, f"{alias}.{quote(f.name)}", lowered)

    @staticmethod
    def _sortable(column: OutputColumn) -> str:
        if column.field.type in DECIMAL_TYPES:
            return f"CAST({column.sql} AS REAL)"
        if column.field.type in TEXT_TYPES:
            return f"{column.sql} COLLATE NOCASE"
        return column.sql

    # -- WHERE ---------------------------------------------------------------------------------

    def _condition(self, node: Any, negated: bool) -> str:
        if isinstance(node, soql.And):
            return " AND ".join(f"({self._condition(i, negated)})" for i in node.items)
        if isinstance(node, soql.Or):
            return " OR ".join(f"({self._condition(i, negated)})" for i in node.items)
        if isinstance(node, soql.Not):
            return f"NOT ({self._condition(node.item, True)})"
        sql = self._comparison(node)
        # Under NOT, a comparison with a null must read as false, as SOQL treats it, not unknown.
        return f"IFNULL({sql}, 0)" if negated else sql

    def _comparison(self, node: soql.Comparison) -> str:
        column = self._resolve(node.field)
        f, col = column.field, column.sql
        op = node.op
        if op in ("IN", "NOT IN"):
            values = [self._value(f, lit, op) for lit in node.value]
            non_null = [v for v in values if v is not None]
            has_null = len(non_null) != len(values)
            target = self._compare_expr(f, col)
            self.params.extend(non_null)
            placeholders = ", ".join("?" * len(non_null)) or "NULL"
            if op == "IN":
                sql = f"{target} IN ({placeholders})"
                return f"({sql} OR {col} IS NULL)" if has_null else sql
            sql = f"({col} IS NULL OR {target} NOT IN ({placeholders}))"
            return f"({sql} AND {col} IS NOT NULL)" if has_null else sql
        literal = node.value
        if literal.kind == "null":
            if op == "=":
                return f"{col} IS NULL"
            if op == "!=":
                return f"{col} IS NOT NULL"
            raise _error_at("MALFORMED_QUERY", self.query, literal.pos, f"invalid operator on null: {op}")
        if literal.kind == "date_literal":
            return self._date_range(f, col, op, literal)
        if op == "LIKE":
            if f.type not in TEXT_TYPES and f.type not in ("id", "reference"):
                raise _error_at(
                    "INVALID_FIELD", self.query, node.field.pos,
                    f"invalid operator on field type {f.type}: LIKE",
                )
            self.params.append(self._value(f, literal, op))
            return f"{col} LIKE ? ESCAPE '\\'"
        value = self._value(f, literal, op)
        self.params.append(value)
        target = self._compare_expr(f, col)
        if op == "!=":
            return f"({col} IS NULL OR {target} != ?)"
        return f"{target} {op} ?"

    @staticmethod
    def _compare_expr(f: FieldDef, col: str) -> str:
        if f.type in DECIMAL_TYPES:
            return f"CAST({col} AS REAL)"
        if f.type in TEXT_TYPES:
            return f"{col} COLLATE NOCASE"
        return col

    def _value(self, f: FieldDef, literal: soql.Literal, op: str) -> Any:
        """The literal in the stored form of ``f``, or MALFORMED_QUERY when the types differ."""
        kind, value = literal.kind, literal.value
        if kind == "null":
            return None
        expected = {
            "boolean": ("boolean",),
            "int": ("number",),
            "date": ("date",),
            "datetime": ("datetime",),
        }.get(f.type)
        if f.type in DECIMAL_TYPES:
            expected = ("number",)
        elif f.type in TEXT_TYPES or f.type in ("id", "reference"):
            expected = ("string",)
        if kind not in expected:
            shown = {"string": f"'{value}'", "boolean": str(value).lower()}.get(kind, str(value))
            type_name = {"datetime": "dateTime", "int": "int"}.get(f.type, f.type)
            raise _error_at(
                "INVALID_FIELD", self.query, literal.pos,
                f"value of filter criterion for field '{f.name}' must be of type {type_name} and should not "
                f"be enclosed in quotes" if kind == "string" else
                f"value of filter criterion for field '{f.name}' must be of type {type_name}: {shown}",
            )
        if f.type in DECIMAL_TYPES:
            return float(value)
        if f.type == "int":
            return int(value) if value == value.to_integral_value() else float(value)
        if f.type in ("id", "reference") and op != "LIKE":
            normalized = normalize_id(value)
            if normalized is None:
                raise _error_at("INVALID_QUERY_FILTER_OPERATOR", self.query, literal.pos, f"invalid ID field: {value}")
            return normalized
        return literal_for_compare(f, value)

    def _date_range(self, f: FieldDef, col: str, op: str, literal: soql.Literal) -> str:
        if f.type not in ("date", "datetime"):
            raise _error_at(
                "INVALID_FIELD", self.query, literal.pos,
                f"value of filter criterion for field '{f.name}' must be of type {f.type}",
            )
        start, end = _date_literal_range(literal.value)
        if f.type == "datetime":
            lo = format_datetime(dt.datetime.combine(start, dt.time(), dt.timezone.utc))
            hi = format_datetime(dt.datetime.combine(end, dt.time(), dt.timezone.utc))
        else:
            lo, hi = start.isoformat(), end.isoformat()
        ranges = {
            "=": (f"({col} >= ? AND {col} < ?)", [lo, hi]),
            "!=": (f"({col} IS NULL OR {col} < ? OR {col} >= ?)", [lo, hi]),
            "<": (f"{col} < ?", [lo]),
            "<=": (f"{col} < ?", [hi]),
            ">": (f"{col} >= ?", [hi]),
            ">=": (f"{col} >= ?", [lo]),
        }
        if op not in ranges:
            raise _error_at("MALFORMED_QUERY", self.query, literal.pos, f"invalid operator for a date literal: {op}")
        sql, params = ranges[op]
        self.params.extend(params)
        return sql


def _date_literal_range(value: tuple) -> tuple[dt.date, dt.date]:
    """[start, end) UTC days of TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n, NEXT_N_DAYS:n."""
    today = dt.datetime.now(dt.timezone.utc).date()
    name = value[0]
    one = dt.timedelta(days=1)
    if name == "TODAY":
        return today, today + one
    if name == "YESTERDAY":
        return today - one, today
    if name == "TOMORROW":
        return today + one, today + 2 * one
    if name == "LAST_N_DAYS":
        return today - dt.timedelta(days=int(value[1])), today + one
    if name == "NEXT_N_DAYS":
        return today + one, today + one + dt.timedelta(days=int(value[1]))
    raise ValueError(f"unsupported date literal {name}")


def compile_query(schema: Schema, text: str, include_deleted: bool = False) -> CompiledQuery:
    """Parse and compile ``text``; raises :class:`QueryError` with Salesforce's code and message."""
    try:
        parsed = soql.parse(text)
    except soql.SoqlSyntaxError as exc:
        raise QueryError("MALFORMED_QUERY", exc.salesforce_message()) from None
    return _Compiler(schema, parsed, include_deleted).compile()


def iter_rows(conn, compiled: CompiledQuery, batch: int = 5000) -> Iterator[tuple]:
    """Every result row of a compiled query, fetched in batches."""
    cursor = conn.execute(compiled.stream_sql(), compiled.params)
    while True:
        rows = cursor.fetchmany(batch)
        if not rows:
            return
        yield from rows


# -- column metadata (``query?columns=true``) --------------------------------------------------------

_APEX_TYPES = {"id": "Id", "reference": "Id", "boolean": "Boolean", "int": "Integer", "double": "Decimal",
               "currency": "Decimal", "percent": "Decimal", "date": "Date", "datetime": "Datetime"}


def _column(name: str, display: str, *, apex_type: str | None, custom: bool, insertable: bool = False,
            updatable: bool = False, aggregate: bool = False, foreign_key: str | None = None) -> dict[str, Any]:
    return {
        "aggregate": aggregate, "apexType": apex_type, "booleanType": apex_type == "Boolean",
        "columnName": name, "custom": custom, "displayName": display, "foreignKeyName": foreign_key,
        "insertable": insertable, "joinColumns": [],
        "numberType": apex_type in ("Integer", "Decimal"), "textType": apex_type == "String",
        "updatable": updatable,
    }


def column_metadata(schema: Schema, compiled: CompiledQuery) -> dict[str, Any]:
    """What ``GET query?q=...&columns=true`` answers: the query's columns, not its rows.

    The shape is the one the Developer Console, the Salesforce CLI and Jetstream read
    (``QueryColumnsSfdc``: ``columnMetadata``, ``entityName``, ``groupBy``, ``idSelected``,
    ``keyPrefix``): one column per selected field in select order; fields reached through a
    relationship nest under one column for that relationship (``joinColumns``, ``displayName`` the
    full path); ``COUNT(field)`` is an aggregate column named ``expr0``... or its alias.
    """
    columns = iter(compiled.columns)
    counts = iter(compiled.counts)
    top: list[dict[str, Any]] = []
    for item in compiled.query.select:
        if isinstance(item, soql.Count):
            if item.field is None:
                continue  # COUNT() alone counts rows; it has no column
            key, _sql = next(counts)
            display = f"COUNT({'.'.join(item.field.parts)})"
            top.append(_column(key, display, apex_type="Integer", custom=False, aggregate=True))
            continue
        column = next(columns)
        siblings, obj, path = top, compiled.obj, ()
        for rel in column.path[:-1]:
            ref = obj.relationship(rel)
            path += (rel,)
            holder = next((c for c in siblings if c["columnName"] == rel and c["joinColumns"] is not None
                           and c["apexType"] == ref.reference_to[0]), None)
            if holder is None:
                holder = _column(rel, ".".join(path), apex_type=ref.reference_to[0], custom=rel.endswith("__r"),
                                 foreign_key=ref.name)
                siblings.append(holder)
            siblings, obj = holder["joinColumns"], schema.get(ref.reference_to[0])
        f = column.field
        apex_type = _APEX_TYPES.get(f.type, "String")
        siblings.append(_column(f.name, ".".join(column.path), apex_type=apex_type, custom=f.custom,
                                insertable=f.createable, updatable=f.updateable))
    return {
        "columnMetadata": top,
        "entityName": compiled.obj.name,
        "groupBy": False,
        "idSelected": any(c.path == ("Id",) for c in compiled.columns),
        "keyPrefix": compiled.obj.key_prefix,
    }
