"""Data Query's SQL, compiled for the sandbox: Trino text in, a read-only SQLite query out.

Zuora's Data Query runs Trino 351 over the tenant's tables, named and columned in lower case. The
sandbox parses the same text with sqlglot (dialect ``trino``), refuses what Data Query refuses (DDL,
DML, several statements, unknown tables) with Trino's ``line L:C: ...`` messages, and rewrites the
tree before handing it to SQLite:

- every table reference becomes a subquery that filters ``deleted`` as Data Query does: live rows
  only by default, deleted rows only with ``readDeleted``, both when the select list names
  ``deleted``; deleted rows older than the 30-day retention are never visible;
- timestamp and date literals (``timestamp '...'``, ``date '...'``, ``from_iso8601_timestamp``,
  ``current_timestamp``, ISO strings compared with datetime columns, ``date_add`` and interval
  arithmetic on literals) become text in the stored form, UTC ``YYYY-MM-DD HH:MM:SS``, so they
  compare correctly with the stored datetimes instead of turning into SQLite casts; a literal
  without a zone is read in the tenant's time zone;
- ``*`` is expanded here (without ``deleted``, which Data Query only returns when asked for), and
  unnamed expressions get Trino's ``_col<N>`` names.

The result also says, per output column, what kind of value it carries (boolean, decimal, ...), so
the writer can render booleans and decimals as Data Query does although SQLite stores 0/1 and REAL.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import sqlite3
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sandbox.zuora.schema import TenantSchema, ZObject
from sandbox.zuora.store import RETENTION_DAYS, format_datetime

# sqlglot warns on stderr when it falls back to a generic command (SHOW ...); we handle those.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

# Data Query's column types as DESCRIBE reports them (Zuora's "Construct SQL Queries" page).
TRINO_TYPES = {"id": "varchar", "string": "varchar", "picklist": "varchar", "integer": "bigint",
               "decimal": "decimal(18,6)", "boolean": "boolean", "date": "date",
               "datetime": "timestamp with time zone"}
_WRITE_STATEMENTS = {
    exp.Insert: "Cannot insert into table {}", exp.Delete: "Cannot delete from table {}",
    exp.Update: "Cannot update columns in table {}", exp.Merge: "Cannot merge into table {}",
    exp.Create: "Cannot create {}", exp.Drop: "Cannot drop {}", exp.Alter: "Cannot alter {}",
}
_TS_PATTERN = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?|[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+)?$"
)
_SQLITE_UNITS = {"SECOND": ("seconds", 1), "MINUTE": ("minutes", 1), "HOUR": ("hours", 1), "DAY": ("days", 1),
                 "WEEK": ("days", 7), "MONTH": ("months", 1), "QUARTER": ("months", 3), "YEAR": ("years", 1)}


class QueryError(Exception):
    """The query cannot run; the message is what Data Query puts in the job's ``errorMessage``."""


@dataclass
class CompiledQuery:
    """What the worker executes: SQLite text (or, for SHOW/DESCRIBE, the rows themselves)."""

    columns: list[str]
    kinds: list[str | None]
    sql: str | None = None
    tables: set[str] = field(default_factory=set)
    rows: list[tuple] | None = None


def position(text: str, offset: int | None) -> str:
    """Trino's ``line L:C`` for a character offset into the query (1-based, as Trino counts)."""
    if offset is None:
        return "line 1:1"
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}:{column}"


def node_position(text: str, node: exp.Expression | None) -> str:
    ident = node.this if isinstance(node, (exp.Column, exp.Table)) else node
    start = ident.meta.get("start") if isinstance(ident, exp.Expression) else None
    return position(text, start)


def normalize_timestamp(value: str, tz: dt.tzinfo = dt.UTC) -> str | None:
    """An ISO / Trino timestamp text as the stored form (UTC, seconds; a fraction only if non-zero).

    A timestamp without a zone is read in ``tz``, the tenant's time zone, as Data Query does.
    """
    match = _TS_PATTERN.match(value.strip())
    if not match:
        return None
    day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = dt.datetime.fromisoformat(day).replace(
            hour=int(hour or 0), minute=int(minute or 0), second=int(second or 0),
            microsecond=int((fraction or "0")[:6].ljust(6, "0")))
    except ValueError:
        return None
    if not zone:
        moment = moment.replace(tzinfo=tz)
    elif zone not in ("Z", "UTC"):
        if zone[0] in "+-":
            digits = zone[1:].replace(":", "")
            offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            moment = moment.replace(tzinfo=dt.timezone(offset if zone[0] == "+" else -offset))
        else:
            try:
                moment = moment.replace(tzinfo=ZoneInfo(zone))
            except (ZoneInfoNotFoundError, ValueError):
                return None
    text = format_datetime(moment)
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text


def normalize_date(value: str) -> str | None:
    try:
        return dt.date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        return None


def compile_query(text: str, schema: TenantSchema, *, read_deleted: bool = False,
                  now: dt.datetime | None = None, tz: dt.tzinfo = dt.UTC) -> CompiledQuery:
    """Compile a Data Query statement, or raise :class:`QueryError` with Trino's message.

    ``tz`` is the tenant's time zone: literals without a zone and ``current_date`` are read in it.
    """
    return _Compiler(text, schema, read_deleted, now or dt.datetime.now(dt.UTC), tz).compile()


class _Compiler:
    def __init__(self, text: str, schema: TenantSchema, read_deleted: bool, now: dt.datetime, tz: dt.tzinfo):
        self.tz = tz
        self._converted: set[int] = set()  # literals already in the stored (UTC) form
        self.text = text
        self.schema = schema
        self.read_deleted = read_deleted
        self.now = now.astimezone(dt.UTC)

    # -- entry -----------------------------------------------------------------------------------

    def compile(self) -> CompiledQuery:
        statement = self._parse()
        meta = self._metadata_statement(statement)
        if meta is not None:
            return meta
        if isinstance(statement, exp.Subquery):
            statement = statement.unnest()
        if not isinstance(statement, exp.Query):
            raise QueryError(self._refusal(statement))
        for ident in statement.find_all(exp.Identifier):
            # Trino folds identifiers to lower case, quoted or not. They reach SQLite unquoted where
            # possible: SQLite reads an unknown "quoted" name as a string, which would hide the error.
            ident.set("this", ident.name.lower())
            ident.set("quoted", _needs_quotes(ident.name))
        ctes = {cte.alias for cte in statement.find_all(exp.CTE)}
        tables = self._check_tables(statement, ctes)
        deleted_selected = any(
            column.name == "deleted"
            for select in statement.find_all(exp.Select) for projection in select.expressions
            for column in projection.find_all(exp.Column)
        )
        columns = self._shape_selects(statement)
        self._rewrite_values(statement)
        kinds = [self._kind(projection) for projection in _first_select(statement).expressions]
        self._filter_tables(statement, ctes, deleted_selected)
        return CompiledQuery(columns=columns, kinds=kinds, sql=statement.sql(dialect="sqlite"),
                             tables=tables)

    def _parse(self) -> exp.Expression:
        try:
            statements = [s for s in sqlglot.parse(self.text, read="trino") if s is not None]
        except ParseError as exc:
            error = (exc.errors or [{}])[0]
            highlight = error.get("highlight") or ""
            line, col = error.get("line", 1), error.get("col", 1)
            start = max(col - len(highlight) + 1, 1)
            description = error.get("description") or str(exc)
            raise QueryError(f"line {line}:{start}: mismatched input '{highlight}'. {description}") from None
        except TokenError as exc:
            raise QueryError(f"line 1:1: {exc}") from None
        if not statements:
            raise QueryError("line 1:1: mismatched input '<EOF>'. Expecting: 'SELECT', 'SHOW', 'DESCRIBE', 'WITH'")
        if len(statements) > 1:
            # Trino takes one statement; the first ';' followed by more text is where it stops.
            offset = self._second_statement_offset()
            raise QueryError(f"{position(self.text, offset)}: mismatched input ';'. Expecting: <EOF>")
        return statements[0]

    def _second_statement_offset(self) -> int | None:
        tokens = sqlglot.Dialect.get_or_raise("trino").tokenize(self.text)
        for token in tokens:
            if token.token_type == sqlglot.TokenType.SEMICOLON:
                return token.start
        return None

    def _refusal(self, statement: exp.Expression) -> str:
        for kind, template in _WRITE_STATEMENTS.items():
            if isinstance(statement, kind):
                target = statement.find(exp.Table)
                name = target.name.lower() if target is not None else (statement.args.get("kind") or "object")
                return f"Access Denied: {template.format(name)}"
        if isinstance(statement, exp.Command):
            words = f"{statement.name} {statement.expression.name if statement.expression else ''}".split()
            return (f"line 1:1: {' '.join(words[:2]).upper()} is not supported by the sandbox "
                    "(SELECT, SHOW TABLES, SHOW COLUMNS and DESCRIBE are)")
        return f"line 1:1: Data Query only runs read-only statements; got {statement.key.upper()}"

    # -- SHOW TABLES / DESCRIBE --------------------------------------------------------------------

    def _metadata_statement(self, statement: exp.Expression) -> CompiledQuery | None:
        if isinstance(statement, exp.Describe):
            return self._describe(statement.this)
        if isinstance(statement, exp.Command) and statement.name.upper() == "SHOW":
            words = (statement.expression.name if statement.expression else "").split()
            if [w.lower() for w in words] == ["tables"]:
                rows = sorted((obj.table,) for obj in self.schema.objects.values())
                return CompiledQuery(columns=["Table"], kinds=[None], rows=rows)
            if len(words) == 3 and words[0].lower() == "columns" and words[1].lower() in ("from", "in"):
                return self._describe(exp.to_table(words[2]))
        return None

    def _describe(self, table: exp.Expression) -> CompiledQuery:
        obj = self.schema.get(table.name) if isinstance(table, exp.Table) else None
        if obj is None:
            raise QueryError(f"{node_position(self.text, table)}: Table '{table.sql().lower()}' does not exist")
        rows = [(f.column, TRINO_TYPES[f.type], "", f.name) for f in obj.fields.values()]
        return CompiledQuery(columns=["Column", "Type", "Extra", "Comment"], kinds=[None] * 4, rows=rows)

    # -- tables and columns ------------------------------------------------------------------------

    def _check_tables(self, statement: exp.Expression, ctes: set[str]) -> set[str]:
        tables = set()
        for table in statement.find_all(exp.Table):
            if not table.args.get("db") and table.name in ctes:
                continue
            obj = self.schema.get(table.name) if not table.args.get("db") else None
            if obj is None or not table.name:
                raise QueryError(f"{node_position(self.text, table)}: Table '{table.sql(dialect='trino')}' does not exist")
            tables.add(obj.table)
        return tables

    def _sources(self, select: exp.Select) -> dict[str, ZObject | exp.Query]:
        """The relations a SELECT reads, by the name its columns use for them."""
        sources: dict[str, ZObject | exp.Query] = {}
        from_ = select.args.get("from_")
        relations = ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]
        ctes = self._visible_ctes(select)
        for relation in relations:
            name = relation.alias_or_name
            if isinstance(relation, exp.Table):
                if relation.name in ctes and not relation.args.get("db"):
                    sources[name] = ctes[relation.name]
                else:
                    sources[name] = self.schema.get(relation.name)
            elif isinstance(relation, exp.Subquery):
                sources[name] = relation.this
            else:
                raise QueryError(f"{node_position(self.text, relation)}: this kind of relation "
                                 f"({relation.key}) is not supported by the sandbox")
        return sources

    @staticmethod
    def _visible_ctes(node: exp.Expression) -> dict[str, exp.Query]:
        ctes: dict[str, exp.Query] = {}
        scope: exp.Expression | None = node
        while scope is not None:
            with_ = scope.args.get("with_") if isinstance(scope, exp.Query) else None
            if with_ is not None:
                for cte in with_.expressions:
                    ctes.setdefault(cte.alias, cte.this)
            scope = scope.parent
        return ctes

    def _source_columns(self, source: ZObject | exp.Query) -> list[str]:
        if isinstance(source, ZObject):
            return [f.column for f in source.fields.values()]
        return [p.alias_or_name for p in _first_select(source).expressions]

    def _shape_selects(self, statement: exp.Expression) -> list[str]:
        """Expand ``*`` (without ``deleted``) and name unnamed expressions ``_col<N>``, as Trino does.

        Inner SELECTs go first, so a star over a subquery sees its already-shaped columns. Returns
        the output column names.
        """
        for select in reversed(list(statement.find_all(exp.Select))):
            if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and p.is_star) for p in select.expressions):
                select.set("expressions", self._expanded(select))
            for index, projection in enumerate(select.expressions):
                if not isinstance(projection, (exp.Alias, exp.Column)):
                    projection.replace(exp.alias_(projection.copy(), f"_col{index}"))
        return [p.alias_or_name for p in _first_select(statement).expressions]

    def _expanded(self, select: exp.Select) -> list[exp.Expression]:
        sources = self._sources(select)
        expanded: list[exp.Expression] = []
        for projection in select.expressions:
            if isinstance(projection, exp.Star):
                wanted = list(sources)
            elif isinstance(projection, exp.Column) and projection.is_star:
                if projection.table not in sources:
                    raise QueryError(f"{node_position(self.text, projection)}: Table '{projection.table}' not found")
                wanted = [projection.table]
            else:
                expanded.append(projection)
                continue
            for name in wanted:
                table = exp.to_identifier(name, quoted=_needs_quotes(name))
                expanded += [exp.column(c, table=table.copy()) for c in self._source_columns(sources[name])]
        return expanded

    def _filter_tables(self, statement: exp.Expression, ctes: set[str], deleted_selected: bool) -> None:
        """Replace each table by a subquery that keeps only the rows Data Query would show."""
        cutoff = format_datetime(self.now - dt.timedelta(days=RETENTION_DAYS))
        retained = exp.GTE(this=exp.column("deleteddate"), expression=exp.Literal.string(cutoff))
        if self.read_deleted and not deleted_selected:
            condition = exp.and_(exp.column("deleted").eq(1), retained)
        elif deleted_selected:
            condition = exp.or_(exp.column("deleted").eq(0), retained)
        else:
            condition = exp.column("deleted").eq(0)
        for table in list(statement.find_all(exp.Table)):
            if table.name in ctes and not table.args.get("db"):
                continue
            obj = self.schema.get(table.name)
            columns = [exp.column(c) for c in self._source_columns(obj)] + [exp.column("deleted")]
            rows = exp.select(*columns).from_(exp.table_(obj.table)).where(condition.copy())
            alias = table.alias_or_name
            table.replace(rows.subquery(exp.to_identifier(alias, quoted=_needs_quotes(alias))))

    # -- values: timestamps, dates, functions ---------------------------------------------------------

    def _rewrite_values(self, statement: exp.Expression) -> None:
        # Children before parents, so folding works inside out (date_add over current_timestamp).
        for node in reversed(list(statement.walk(bfs=False))):
            replacement = self._rewrite(node)
            if replacement is not None and replacement is not node:
                node.replace(replacement)

    def _rewrite(self, node: exp.Expression) -> exp.Expression | None:
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.FromISO8601Timestamp):
            return self._timestamp_literal(node.this, node)
        if isinstance(node, exp.FromISO8601Date):
            return self._date_literal(node.this, node)
        if isinstance(node, exp.CurrentTimestamp) or (isinstance(node, exp.Anonymous) and node.name.lower() == "now"):
            return self._stored(format_datetime(self.now))
        if isinstance(node, exp.CurrentDate):
            return self._stored(self.now.astimezone(self.tz).date().isoformat())
        if isinstance(node, exp.AtTimeZone) or (isinstance(node, exp.Anonymous) and node.name.lower() == "at_timezone"):
            zone = node.args.get("zone") if isinstance(node, exp.AtTimeZone) else (node.expressions[1:] or [None])[0]
            if isinstance(zone, exp.Literal) and zone.name.upper() in ("UTC", "Z", "+00:00"):
                return (node.this if isinstance(node, exp.AtTimeZone) else node.expressions[0]).copy()
            raise QueryError(f"{node_position(self.text, node)}: the sandbox supports only "
                             "at_timezone(..., 'UTC'); results are shown in the tenant's time zone")
        if isinstance(node, exp.DateAdd):
            return self._shift(node.this, node.expression, node.args.get("unit"), 1, node)
        if isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
            interval = node.expression
            return self._shift(node.this, interval.this, interval.args.get("unit"),
                               -1 if isinstance(node, exp.Sub) else 1, node)
        if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
            self._normalize_against_column(node.this, [node.expression])
            self._normalize_against_column(node.expression, [node.this])
        elif isinstance(node, exp.Between):
            self._normalize_against_column(node.this, [node.args.get("low"), node.args.get("high")])
        elif isinstance(node, exp.In):
            self._normalize_against_column(node.this, node.expressions)
        return None

    def _cast(self, node: exp.Cast) -> exp.Expression | None:
        target = node.to.this
        if target in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.DATETIME,
                      exp.DataType.Type.TIMESTAMPLTZ):
            if isinstance(node.this, exp.Literal) and node.this.is_string:
                return self._timestamp_literal(node.this, node)
            # A stored datetime already is the canonical text; dates become midnight.
            return exp.Anonymous(this="datetime", expressions=[node.this.copy()])
        if target == exp.DataType.Type.DATE:
            if isinstance(node.this, exp.Literal) and node.this.is_string:
                return self._date_literal(node.this, node)
            return exp.Anonymous(this="date", expressions=[node.this.copy()])
        return None

    def _timestamp_literal(self, literal: exp.Expression, node: exp.Expression) -> exp.Expression:
        value = normalize_timestamp(literal.name, self.tz) if isinstance(literal, exp.Literal) else None
        if value is None:
            raise QueryError(f"{self._literal_position(literal, node)}: "
                             f"'{literal.name}' is not a valid timestamp literal")
        return self._stored(value)

    def _date_literal(self, literal: exp.Expression, node: exp.Expression) -> exp.Expression:
        value = normalize_date(literal.name) if isinstance(literal, exp.Literal) else None
        if value is None:
            raise QueryError(f"{self._literal_position(literal, node)}: '{literal.name}' is not a valid date literal")
        return self._stored(value)

    def _literal_position(self, literal: exp.Expression, node: exp.Expression) -> str:
        """Where Trino points for a bad literal: at ``timestamp '...'`` / ``date '...'``, else the string."""
        start = literal.meta.get("start")
        if start is not None and isinstance(node, exp.Cast):
            match = re.search(r"(timestamp|date)\s*$", self.text[:start], re.IGNORECASE)
            if match:
                start = match.start()
        return position(self.text, start)

    def _shift(self, base: exp.Expression, amount: exp.Expression, unit: exp.Expression | None, sign: int,
               node: exp.Expression) -> exp.Expression | None:
        number = _integer(amount)
        unit_name = (unit.name if unit is not None else "DAY").upper().rstrip("S")
        if number is None or unit_name not in _SQLITE_UNITS:
            return None
        modifier, factor = _SQLITE_UNITS[unit_name]
        count = sign * number * factor
        if isinstance(base, exp.Literal) and base.is_string:
            stamp = normalize_timestamp(base.name, self.tz)
            if stamp is not None:
                moment = dt.datetime.fromisoformat(stamp)
                if modifier == "months":
                    shifted = _add_months(moment, count)
                else:
                    shifted = moment + dt.timedelta(**{modifier: count})
                # A date shifted by days stays a date, as in Trino.
                if len(base.name.strip()) == 10 and modifier in ("days", "months", "years"):
                    return self._stored(shifted.date().isoformat())
                return self._stored(format_datetime(shifted))
            return None
        function = "date" if self._kind(base) == "date" else "datetime"
        return exp.Anonymous(this=function, expressions=[base.copy(), exp.Literal.string(f"{count:+d} {modifier}")])

    def _stored(self, text: str) -> exp.Literal:
        """A literal already in the stored form, so a comparison does not convert it a second time."""
        literal = exp.Literal.string(text)
        self._converted.add(id(literal))
        return literal

    def _normalize_against_column(self, column: exp.Expression, values: list[exp.Expression | None]) -> None:
        kind = self._kind(column) if isinstance(column, exp.Column) else None
        if kind not in ("datetime", "date"):
            return
        for value in values:
            if isinstance(value, exp.Literal) and value.is_string and id(value) not in self._converted:
                text = normalize_timestamp(value.name, self.tz) if kind == "datetime" else normalize_date(value.name)
                if text is not None:
                    value.replace(exp.Literal.string(text))

    # -- kinds of values ---------------------------------------------------------------------------

    def _kind(self, node: exp.Expression | None) -> str | None:
        """What a value is (``boolean``, ``decimal``, ``integer``, ``date``, ``datetime``), if known."""
        if isinstance(node, exp.Alias):
            return self._kind(node.this)
        if isinstance(node, exp.Column):
            return self._column_kind(node)
        if isinstance(node, exp.Count):
            return "integer"
        if isinstance(node, exp.Avg):
            return "decimal"
        if isinstance(node, (exp.Sum, exp.Min, exp.Max, exp.Coalesce, exp.Paren)):
            return self._kind(node.this)
        if isinstance(node, exp.Cast):
            target = node.to.this
            if target == exp.DataType.Type.BOOLEAN:
                return "boolean"
            if target in exp.DataType.INTEGER_TYPES:
                return "integer"
            if target in exp.DataType.REAL_TYPES:
                return "decimal"
            return None
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
            sides = {self._kind(node.this), self._kind(node.expression)}
            return "integer" if sides == {"integer"} and not isinstance(node, exp.Div) else "decimal"
        if isinstance(node, (exp.Round, exp.Abs, exp.Neg)):
            return self._kind(node.this)
        if isinstance(node, exp.Literal) and not node.is_string:
            return "integer" if node.is_int else "decimal"
        if isinstance(node, (exp.Predicate, exp.Connector, exp.Not, exp.Boolean)):
            return "boolean"
        if isinstance(node, exp.Anonymous) and node.name.lower() in ("datetime", "date"):
            return node.name.lower()
        return None

    def _column_kind(self, column: exp.Column) -> str | None:
        select = column.find_ancestor(exp.Select)
        seen = 0
        while select is not None and seen < 32:
            seen += 1
            try:
                sources = self._sources(select)
            except QueryError:
                return None
            candidates = [sources.get(column.table)] if column.table else list(sources.values())
            for source in candidates:
                if isinstance(source, ZObject):
                    if column.name == "deleted":
                        return "boolean"
                    f = source.field(column.name)
                    if f is not None:
                        return f.type if f.type in ("boolean", "decimal", "integer", "date", "datetime") else None
                elif isinstance(source, exp.Query):
                    for projection in _first_select(source).expressions:
                        if projection.alias_or_name == column.name:
                            return self._kind(projection)
            select = select.find_ancestor(exp.Select)
        return None


@functools.lru_cache(maxsize=4096)
def _needs_quotes(name: str) -> bool:
    """Whether SQLite needs ``name`` quoted (a keyword or an odd character), probed on SQLite itself."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return True
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(f'SELECT {name} FROM (SELECT 0 AS "{name}") AS {name}')
        return False
    except sqlite3.Error:
        return True
    finally:
        probe.close()


def _first_select(query: exp.Expression) -> exp.Select:
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.this
    if not isinstance(query, exp.Select):
        raise QueryError("line 1:1: unsupported query shape")
    return query


def _integer(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Neg):
        inner = _integer(node.this)
        return -inner if inner is not None else None
    if isinstance(node, exp.Literal):
        try:
            return int(node.name)
        except ValueError:
            return None
    return None


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    days = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return moment.replace(year=year, month=month, day=min(moment.day, days[month - 1]))


def locate_column(text: str, name: str, table: str | None = None) -> str:
    """Where a column first appears in the query text, as Trino's ``line L:C`` (for SQLite's errors)."""
    try:
        tree = sqlglot.parse_one(text, read="trino")
    except (ParseError, TokenError):
        return "line 1:1"
    for column in tree.find_all(exp.Column):
        if column.name.lower() == name and (table is None or column.table.lower() == table):
            return node_position(text, column)
    return "line 1:1"
