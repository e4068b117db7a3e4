"""Parser for the subset of SOQL that the Salesforce sandbox understands.

The sandbox answers ``/services/data/vXX.X/query?q=...`` requests from a local
SQLite store.  This module turns the query text into a small, immutable AST
(:class:`Query` and friends) that a separate compiler translates to SQL.  It
deliberately knows nothing about object schemas: checking that ``Account`` or
``Zuora__External_Id__c`` exists is the compiler's job.

Why a real grammar: SOQL is close enough to SQL that ad-hoc regular
expressions accept nonsense and reject valid input in surprising ways.  A
LALR(1) grammar (via :mod:`lark`) gives predictable behaviour, exact error
positions and parses a typical query in well under a millisecond.

What is supported::

    SELECT <field path | COUNT() | COUNT(field) [alias]>, ...
    FROM <Object>
    [WHERE <condition>]
    [ORDER BY <field path> [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Conditions are ``field op literal`` (``= != <> < <= > >= LIKE``),
``field [NOT] IN (literal, ...)``, combined with ``AND`` / ``OR`` / ``NOT`` and
parentheses.  As on Salesforce, ``AND`` and ``OR`` cannot be mixed at one
level without parentheses, and ``NOT`` may only start a (parenthesised)
condition: ``a AND NOT b`` is rejected, ``a AND (NOT b)`` is accepted.

Everything else (sub-queries, GROUP BY, HAVING, TYPEOF, WITH, FOR ..., USING
SCOPE, FIELDS(), other aggregate functions, INCLUDES/EXCLUDES, bind
variables, ...) raises :class:`SoqlSyntaxError`, whose ``str()`` mimics the
``MALFORMED_QUERY`` message Salesforce returns so that API clients see
familiar errors.

String literals: escapes are resolved, except ``\\_`` and ``\\%`` which stay as
the two characters so that the caller can treat them as literal wildcards in
``LIKE`` patterns.  In the pattern of a ``LIKE`` comparison ``\\\\`` is also kept
as two characters, so a LIKE value is an unambiguous backslash-escaped pattern
(``\\x`` means a literal ``x``); everywhere else ``\\\\`` becomes one backslash.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lark import PostLex

__all__ = [
    "And",
    "Comparison",
    "Count",
    "FieldPath",
    "Literal",
    "Not",
    "Or",
    "OrderItem",
    "Pos",
    "Query",
    "SoqlSyntaxError",
    "parse",
]


# --------------------------------------------------------------------------
# Public API: error and AST
# --------------------------------------------------------------------------


class SoqlSyntaxError(Exception):
    """A query the sandbox cannot run; maps to Salesforce's ``MALFORMED_QUERY``.

    :param message: the reason, e.g. ``"unexpected token: 'GROUP'"``.
    :param row: 1-based line of the offending token.
    :param column: 1-based column of the offending token.
    :param query: the full query text, used to render the caret line.
    """

    def __init__(self, message: str, row: int, column: int, query: str):
        self.message = message
        self.row = row
        self.column = column
        self.query = query
        super().__init__(self.salesforce_message())

    def __reduce__(self):
        # Exception pickling replays self.args, which holds the rendered text,
        # not the constructor arguments; needed when errors cross processes.
        return (type(self), (self.message, self.row, self.column, self.query))

    def salesforce_message(self) -> str:
        """Render the error the way Salesforce does.

        Example::

            \\nSELECT Id FROM Account WHERE\\n                            ^
            \\nERROR at Row:1:Column:29\\nunexpected token: <EOF>
        """
        lines = self.query.split("\n")
        line = lines[self.row - 1].rstrip("\r") if 0 < self.row <= len(lines) else ""
        # Keep tabs so the caret lines up in a terminal however tabs render.
        pad = "".join("\t" if ch == "\t" else " " for ch in line[: max(self.column - 1, 0)])
        pad += " " * max(self.column - 1 - len(line), 0)
        return (
            f"\n{line}\n{pad}^\n"
            f"ERROR at Row:{self.row}:Column:{self.column}\n{self.message}"
        )


@dataclass(frozen=True, slots=True)
class Pos:
    """1-based position in the query text, as Salesforce reports it."""

    row: int
    column: int


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A field reference, possibly through relationships (``A__r.B__r.Name``)."""

    parts: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Count:
    """``COUNT()`` (``field is None``) or ``COUNT(field) [alias]``."""

    field: FieldPath | None
    alias: str | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal value in a WHERE clause.

    ``kind`` is one of ``string`` (str), ``number`` (Decimal), ``boolean``
    (bool), ``null`` (None), ``date`` (datetime.date), ``datetime``
    (tz-aware datetime.datetime in UTC) or ``date_literal`` (a tuple such as
    ``("TODAY",)`` or ``("LAST_N_DAYS", 30)``).
    """

    kind: str
    value: object
    pos: Pos


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``; ``value`` is a tuple of literals for IN / NOT IN."""

    field: FieldPath
    op: str
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class And:
    items: tuple


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple


@dataclass(frozen=True, slots=True)
class Not:
    item: object


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One ORDER BY key; ``nulls_last`` is None when NULLS was not written."""

    field: FieldPath
    descending: bool
    nulls_last: bool | None


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query; ``text`` is the original query string."""

    select: tuple
    from_object: str
    from_pos: Pos
    where: object | None
    order_by: tuple
    limit: int | None
    offset: int | None
    text: str

    @property
    def is_count_only(self) -> bool:
        """True for ``SELECT COUNT() FROM ...``, which returns only totalSize."""
        return (
            len(self.select) == 1
            and isinstance(self.select[0], Count)
            and self.select[0].field is None
        )


# --------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------

# Keywords are case-insensitive string terminals; IDENT carries the same "i"
# flag so lark folds keywords into IDENT and re-types a match only where the
# keyword is legal.  That keeps objects such as ``Order`` usable as names.
# LAST_N_DAYS:n is one terminal because Salesforce allows no blanks in it.
_GRAMMAR = r"""
start: "select"i select_list "from"i IDENT [where_clause] [order_clause] [limit_clause] [offset_clause]

select_list: select_item ("," select_item)*
?select_item: field_path
            | COUNT "(" ")"                        -> count_all
            | COUNT "(" field_path ")" [IDENT]     -> count_field

field_path: IDENT ("." IDENT)*

where_clause: "where"i logical

?logical: condition
        | condition ("and"i condition)+     -> and_
        | condition ("or"i condition)+      -> or_
        | "not"i condition                  -> not_

?condition: "(" logical ")"
          | field_path OP value                   -> compare
          | field_path "like"i STRING             -> like
          | field_path "in"i in_list              -> in_
          | field_path "not"i "in"i in_list       -> not_in

in_list: "(" value ("," value)* ")"

?value: STRING      -> string
      | NUMBER      -> number
      | DATE        -> date
      | DATETIME    -> datetime
      | N_DAYS      -> n_days
      | IDENT       -> word

order_clause: "order"i "by"i order_item ("," order_item)*
order_item: field_path [direction] [nulls]
!direction: "asc"i | "desc"i
!nulls: "nulls"i ("first"i | "last"i)

limit_clause: "limit"i NUMBER
offset_clause: "offset"i NUMBER

COUNT: "count"i
IDENT: /[a-z_][a-z0-9_]*/i
OP: /<=|>=|!=|<>|=|<|>/
STRING: /'(?:[^'\\]|\\.)*'/s
NUMBER: /[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)/
DATE.2: /[0-9]{4}-[0-9]{2}-[0-9]{2}/
DATETIME.3: /[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?/
N_DAYS.2: /[a-z_][a-z0-9_]*:[0-9]+/i

%ignore /\s+/
"""

# Salesforce's reserved words may never be identifiers.  TYPEOF is not on
# Salesforce's list; it is here so that the unsupported TYPEOF clause is
# reported at the keyword instead of at the word after it.
_RESERVED = frozenset(
    """AND ASC DESC EXCLUDES FIRST FROM GROUP HAVING IN INCLUDES LAST LIKE
    LIMIT NOT NULLS OR SELECT WHERE WITH TYPEOF""".split()
)

_DATE_WORDS = {"TODAY", "YESTERDAY", "TOMORROW"}
_N_DAYS_WORDS = {"LAST_N_DAYS", "NEXT_N_DAYS"}

_ESCAPES = {
    "n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t",
    "b": "\b", "B": "\b", "f": "\f", "F": "\f",
    "'": "'", '"': '"', "\\": "\\",
    # Only meaningful in LIKE; kept escaped so the caller can tell them apart
    # from the wildcards.
    "_": "\\_", "%": "\\%",
}
_LIKE_ESCAPES = {**_ESCAPES, "\\": "\\\\"}
_ESCAPE_RE = re.compile(r"\\(.)?", re.S)

_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))?"
)


class _ErrorAt(Exception):
    """Raised inside lexer/transformer callbacks, which do not know the query
    text; :func:`parse` turns it into a :class:`SoqlSyntaxError`."""

    def __init__(self, message: str, index: int | None = None, token: Token | None = None):
        super().__init__(message)
        self.message = message
        self.index = index
        self.token = token


class _AlwaysIdent(PostLex):
    # Letting IDENT match in every parser state means "LIMITX" lexes as one
    # word (and is reported whole) instead of as LIMIT followed by "X".
    always_accept = ("IDENT",)

    def process(self, stream):
        return stream


def _reject_reserved(tok: Token) -> Token:
    # Called only for words that are not a keyword legal at this point, so a
    # reserved word here is always misplaced.
    if tok.value.upper() in _RESERVED:
        raise _ErrorAt(f"unexpected token: '{tok.value}'", token=tok)
    return tok


def _pos(tok: Token) -> Pos:
    return Pos(tok.line, tok.column)


def _unescape(tok: Token, like: bool) -> str:
    raw = tok.value
    body = raw[1:-1]
    if "\\" not in body:
        return body
    table = _LIKE_ESCAPES if like else _ESCAPES

    def repl(m: re.Match) -> str:
        ch = m.group(1)
        if ch is None or ch not in table:
            seq = m.group(0)
            raise _ErrorAt(
                f"Invalid string literal {raw}. Illegal character sequence "
                f"'{seq}' in string literal.",
                index=tok.start_pos + 1 + m.start(),
            )
        return table[ch]

    return _ESCAPE_RE.sub(repl, body)


@v_args(inline=True)
class _Builder(Transformer):
    """Builds AST nodes while LALR reduces (no intermediate parse tree).

    Stateless, so one instance is shared by all parses and threads.
    """

    def start(self, select, obj, where, order, limit, offset):
        return select, obj, where, order or (), limit, offset

    def select_list(self, *items):
        return items

    def field_path(self, *idents):
        return FieldPath(tuple(t.value for t in idents), _pos(idents[0]))

    def count_all(self, count_tok):
        return Count(None, None, _pos(count_tok))

    def count_field(self, count_tok, field, alias):
        return Count(field, alias.value if alias is not None else None, _pos(count_tok))

    def where_clause(self, cond):
        return cond

    # AND/OR of AND/OR of the same kind (only possible through parentheses)
    # is flattened: evaluation is identical and the compiler emits less SQL.
    def and_(self, *items):
        return And(tuple(_flatten(items, And)))

    def or_(self, *items):
        return Or(tuple(_flatten(items, Or)))

    def not_(self, item):
        return Not(item)

    def compare(self, field, op, value):
        op = "!=" if op.value == "<>" else op.value
        return Comparison(field, op, value)

    def like(self, field, tok):
        return Comparison(field, "LIKE", Literal("string", _unescape(tok, like=True), _pos(tok)))

    def in_(self, field, values):
        return Comparison(field, "IN", values)

    def not_in(self, field, values):
        return Comparison(field, "NOT IN", values)

    def in_list(self, *values):
        return values

    def string(self, tok):
        return Literal("string", _unescape(tok, like=False), _pos(tok))

    def number(self, tok):
        return Literal("number", Decimal(tok.value), _pos(tok))

    def date(self, tok):
        try:
            value = _dt.date.fromisoformat(tok.value)
        except ValueError:
            raise _ErrorAt(f"invalid date: {tok.value}", token=tok) from None
        return Literal("date", value, _pos(tok))

    def datetime(self, tok):
        m = _DATETIME_RE.fullmatch(tok.value)
        y, mo, d, h, mi, s, frac, zulu, sign, oh, om = m.groups()
        if not zulu and not sign:
            # Lexed without the zone only to give this clearer message.
            raise _ErrorAt(f"invalid datetime: {tok.value} (a time zone such as Z is required)", token=tok)
        try:
            if zulu:
                tz = _dt.timezone.utc
            else:
                offset = _dt.timedelta(hours=int(oh), minutes=int(om))
                tz = _dt.timezone(-offset if sign == "-" else offset)
            micro = int((frac or "").ljust(6, "0")[:6])
            value = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tz)
        except ValueError:
            raise _ErrorAt(f"invalid datetime: {tok.value}", token=tok) from None
        return Literal("datetime", value.astimezone(_dt.timezone.utc), _pos(tok))

    def n_days(self, tok):
        name, _, n = tok.value.partition(":")
        if name.upper() not in _N_DAYS_WORDS:
            raise _ErrorAt(f"unexpected token: '{tok.value}'", token=tok)
        return Literal("date_literal", (name.upper(), int(n)), _pos(tok))

    def word(self, tok):
        upper = tok.value.upper()
        if upper == "NULL":
            return Literal("null", None, _pos(tok))
        if upper in ("TRUE", "FALSE"):
            return Literal("boolean", upper == "TRUE", _pos(tok))
        if upper in _DATE_WORDS:
            return Literal("date_literal", (upper,), _pos(tok))
        raise _ErrorAt(f"unexpected token: '{tok.value}'", token=tok)

    def order_clause(self, *items):
        return items

    def order_item(self, field, direction, nulls):
        descending = direction is not None and direction.children[0].value.upper() == "DESC"
        nulls_last = None if nulls is None else nulls.children[1].value.upper() == "LAST"
        return OrderItem(field, descending, nulls_last)

    def limit_clause(self, tok):
        return _non_negative(tok, "LIMIT")

    def offset_clause(self, tok):
        return _non_negative(tok, "OFFSET")


def _flatten(items, kind):
    for item in items:
        if isinstance(item, kind):
            yield from item.items
        else:
            yield item


def _non_negative(tok: Token, clause: str) -> int:
    if not tok.value.isdigit():
        raise _ErrorAt(f"{clause} must be a non-negative integer, found: {tok.value}", token=tok)
    return int(tok.value)


@functools.cache
def _parser() -> Lark:
    # Built on first use (~tens of ms) and reused; lark's LALR parser keeps
    # no per-parse state on the instance, so sharing it is thread-safe.
    return Lark(
        _GRAMMAR,
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        postlex=_AlwaysIdent(),
        lexer_callbacks={"IDENT": _reject_reserved},
        maybe_placeholders=True,
    )


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _row_col(text: str, index: int) -> tuple[int, int]:
    row = text.count("\n", 0, index) + 1
    return row, index - (text.rfind("\n", 0, index) + 1) + 1


def _error_at_index(text: str, message: str, index: int) -> SoqlSyntaxError:
    row, col = _row_col(text, index)
    return SoqlSyntaxError(message, row, col, text)


def _syntax_error(text: str, err: UnexpectedInput) -> SoqlSyntaxError:
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            # Point just past the last real character, as Salesforce does,
            # rather than at trailing blanks or newlines.
            return _error_at_index(text, "unexpected token: <EOF>", len(text.rstrip()))
        return SoqlSyntaxError(f"unexpected token: '{tok.value}'", tok.line, tok.column, text)
    if isinstance(err, UnexpectedCharacters):
        index = err.pos_in_stream
        if text[index] == "'":
            message = "mismatched character '<EOF>' expecting '''"
        else:
            word = re.match(r"\w+|\S", text[index:]).group(0)
            message = f"unexpected token: '{word}'"
        return SoqlSyntaxError(message, err.line, err.column, text)
    line = getattr(err, "line", 1) or 1  # pragma: no cover - defensive
    column = getattr(err, "column", 1) or 1  # pragma: no cover
    return SoqlSyntaxError(str(err), line, column, text)  # pragma: no cover


def _dotted(field: FieldPath) -> str:
    return ".".join(field.parts)


def _validate(q: Query) -> None:
    """Semantic checks Salesforce makes after a successful parse."""

    def fail(message: str, pos: Pos):
        raise SoqlSyntaxError(message, pos.row, pos.column, q.text)

    counts = [s for s in q.select if isinstance(s, Count)]
    if any(c.field is None for c in counts) and len(q.select) > 1:
        # Report the element that comes second, whichever it is.
        fail("COUNT() cannot be combined with other fields in the SELECT list", q.select[1].pos)

    if counts:
        # Without GROUP BY (unsupported) an aggregate query cannot mention a
        # plain field anywhere, same as on Salesforce.
        for item in q.select:
            if isinstance(item, FieldPath):
                fail(f"Field must be grouped or aggregated: {_dotted(item)}", item.pos)
        if counts[0].field is not None:
            for order in q.order_by:
                fail(
                    f"Ordered field must be grouped or aggregated: {_dotted(order.field)}",
                    order.field.pos,
                )

    seen_fields: set[str] = set()
    seen_aliases: set[str] = set()
    for item in q.select:
        if isinstance(item, FieldPath):
            key = _dotted(item).lower()
            if key in seen_fields:
                fail(f"duplicate field selected: {_dotted(item)}", item.pos)
            seen_fields.add(key)
        elif item.alias is not None:
            key = item.alias.lower()
            if key in seen_aliases:
                fail(f"duplicate alias: {item.alias}", item.pos)
            seen_aliases.add(key)


def parse(text: str) -> Query:
    """Parse a SOQL query into a :class:`Query`.

    :param text: the URL-decoded query; may span several lines.
    :raises SoqlSyntaxError: for invalid or unsupported SOQL.
    """
    try:
        select, obj, where, order, limit, offset = _parser().parse(text)
    except _ErrorAt as err:
        if err.token is not None:
            raise SoqlSyntaxError(err.message, err.token.line, err.token.column, text) from None
        raise _error_at_index(text, err.message, err.index) from None
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    query = Query(
        select=select,
        from_object=obj.value,
        from_pos=_pos(obj),
        where=where,
        order_by=order,
        limit=limit,
        offset=offset,
        text=text,
    )
    _validate(query)
    return query
