"""Parser for the ZOQL that ``POST /v1/action/query`` accepts: text in, a small immutable AST out.

ZOQL (Zuora Object Query Language) is a deliberately tiny SQL: one object, a list of fields, and
an optional filter of ``field op value`` conditions joined by ``and`` / ``or``::

    select <Field>, <Field>, ... from <Object> [where <condition> (and|or <condition>)*]

    <condition> := <Field> (= | != | < | <= | > | >=) <value>
                 | <Field> like '<pattern>'
                 | <Field> is null | <Field> is not null
    <value>     := '<string>' | <number> | true | false | null

``and`` binds tighter than ``or``, as Zuora documents. Export ZOQL (``parse(text, export=True)``,
what the export object and AQuA's ``zoqlexport`` queries take) also allows a field qualified by
its object or a joined object (``Account.Name``), ``*`` for every field of the queried object, and
a trailing ``order by <field> [asc|desc]`` and ``limit <n>``. Everything ZOQL lacks is a syntax error
(Zuora's ``MALFORMED_QUERY``) with a message naming the construct: ``*``, joins (a second object or
a dotted field), parentheses, ``order by``, ``group by``, ``limit``, ``in``, ``not``, and more than
200 conditions or 10,000 characters. Whether the object and fields exist, and whether a value
fits its field, is the compiler's business (:mod:`sandbox.zuora.zoql`): this module knows no schema.

Keyword case: Zuora's documentation says "all ZOQL keywords must be in lower case", yet
production clients send both ``select ... where a='x' AND b='y'`` (zendesk/iron_bank's query
builder) and ``SELECT ... FROM ... WHERE`` (guardian/support-service-lambdas) and work. The sandbox
therefore accepts keywords in any case; field and object names are case-insensitive as in Zuora.

Why lark: a real LALR grammar rejects what ZOQL rejects, reports the offending token and column,
and parses a query in well under a millisecond.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lark import PostLex

MAX_CONDITIONS = 200  # Zuora: "at most 200 conditions" in one filter
MAX_QUERY_LENGTH = 10_000  # Zuora's MalformedQueryFault: "exceeds ... 10,000 characters"

COMPARISON_OPS = ("=", "!=", "<", "<=", ">", ">=")


class ZoqlSyntaxError(Exception):
    """Invalid or unsupported ZOQL; answered as ``MALFORMED_QUERY``."""

    def __init__(self, detail: str, column: int | None = None):
        self.detail = detail
        self.column = column
        where = f" at column {column}" if column else ""
        super().__init__(f"You have an error in your ZOQL syntax: {detail}{where}")

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class Literal:
    """A value on the right of a condition.

    ``kind`` is ``string`` (str; for ``like`` still backslash-escaped), ``number`` (Decimal),
    ``boolean`` (bool), ``null`` (None) or ``field`` (a bare word: another field's name, which
    ZOQL does not allow and the compiler reports).
    """

    kind: str
    value: object
    column: int


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op value``; ``op`` is a comparison, ``like``, ``is null`` or ``is not null``."""

    field: str
    op: str
    value: Literal | None
    column: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: field names and object as typed, the filter (or ``None``)."""

    fields: tuple[str, ...]
    object: str
    where: Condition | And | Or | None
    text: str
    order_by: tuple[str, bool] | None = None  # (field, descending); Export ZOQL only
    limit: int | None = None  # Export ZOQL only


# IDENT carries the "i" flag like the keywords, so lark folds keywords into IDENT and re-types a
# word as a keyword only where one is legal (a field may be called "Notes" or "Order").
_GRAMMAR = r"""
start: "select"i field_list "from"i IDENT [where_clause]

field_list: IDENT ("," IDENT)*

where_clause: "where"i or_expr

?or_expr: and_expr
        | and_expr ("or"i and_expr)+           -> or_

?and_expr: condition
         | condition ("and"i condition)+       -> and_

condition: IDENT OP value                      -> compare
         | IDENT "like"i value                 -> like
         | IDENT "is"i "null"i                 -> is_null
         | IDENT "is"i "not"i "null"i          -> is_not_null

?value: STRING      -> string
      | NUMBER      -> number
      | IDENT       -> word

IDENT: /[a-z_][a-z0-9_]*/i
OP: /<=|>=|!=|=|<|>/
STRING: /'(?:[^'\\]|\\.)*'/s
NUMBER: /[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)/

%ignore /\s+/
"""

# Export ZOQL: fields may carry an object (``Account.Name``); order by and limit may follow.
_EXPORT_GRAMMAR = (
    _GRAMMAR
    .replace('start: "select"i field_list "from"i IDENT [where_clause]',
             'start: "select"i field_list "from"i IDENT [where_clause] [order_clause] [limit_clause]')
    .replace('field_list: IDENT ("," IDENT)*', 'field_list: IDENT ("," IDENT)* | ALL_FIELDS')
    .replace("IDENT: /[a-z_][a-z0-9_]*/i", "IDENT: /[a-z_][a-z0-9_]*(?:\\.[a-z_][a-z0-9_]*)?/i")
    + r"""
ALL_FIELDS: "*"
order_clause: "order"i "by"i IDENT [direction]
direction: "asc"i -> ascending
         | "desc"i -> descending
limit_clause: "limit"i NUMBER
"""
)

# Words that start a construct ZOQL lacks: reported by name rather than as a bare token.
_UNSUPPORTED_WORDS = {
    "order": "order by is not supported",
    "group": "group by is not supported",
    "limit": "limit is not supported",
    "in": "the in operator is not supported; use or",
    "not": "not is only supported in 'is not null'",
    "having": "having is not supported",
    "join": "joins are not supported",
    "count": "aggregate functions are not supported",
}
_UNSUPPORTED_CHARS = {
    "*": "'*' is not supported; list the fields to select",
    "(": "parentheses are not supported",
    ")": "parentheses are not supported",
    ".": "joins are not supported (a field must belong to the queried object)",
}

_FROM_LIST = re.compile(r"\s*select\b.*\bfrom\s+\w+\s*,", re.I | re.S)

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(.)", re.S)


class _ErrorAt(Exception):
    """Raised inside lexer/transformer callbacks; :func:`parse` turns it into ZoqlSyntaxError."""

    def __init__(self, detail: str, token: Token):
        super().__init__(detail)
        self.detail = detail
        self.token = token


class _AlwaysIdent(PostLex):
    # Letting IDENT match in every parser state makes "orderx" one word, and lets a misplaced
    # keyword such as "order" reach the error handler as a word it can name.
    always_accept = ("IDENT",)

    def process(self, stream):
        return stream


def _string_value(tok: Token, like: bool) -> str:
    body = tok.value[1:-1]
    if "\\" not in body:
        return body
    if like:
        # A like pattern keeps its escapes (\% and \_ are literal characters), except \' which
        # only exists to put a quote inside the literal.
        return body.replace("\\'", "'")
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


@v_args(inline=True)
class _Builder(Transformer):
    """Builds AST nodes while LALR reduces; stateless, so one instance serves every thread."""

    def start(self, fields, obj, where, order=None, limit=None):
        return fields, obj, where, order, limit

    def order_clause(self, field, direction):
        return field.value, direction == "desc"

    def ascending(self):
        return "asc"

    def descending(self):
        return "desc"

    def limit_clause(self, tok):
        if not tok.value.isdigit():
            raise _ErrorAt(f"limit needs a whole number, not {tok.value}", tok)
        return int(tok.value)

    def field_list(self, *idents):
        return tuple(idents)

    def where_clause(self, expr):
        return expr

    def or_(self, *items):
        return Or(tuple(items))

    def and_(self, *items):
        return And(tuple(items))

    def compare(self, field, op, value):
        return Condition(field.value, op.value, value, field.column)

    def like(self, field, value):
        if value.kind != "string":
            raise _ErrorAt("like needs a quoted pattern", field)
        return Condition(field.value, "like", value, field.column)

    def is_null(self, field):
        return Condition(field.value, "is null", None, field.column)

    def is_not_null(self, field):
        return Condition(field.value, "is not null", None, field.column)

    def string(self, tok):
        return Literal("string", tok, tok.column)  # unescaped once we know whether it is a like

    def number(self, tok):
        try:
            return Literal("number", Decimal(tok.value), tok.column)
        except InvalidOperation:  # pragma: no cover - the NUMBER pattern admits only decimals
            raise _ErrorAt(f"invalid number {tok.value}", tok) from None

    def word(self, tok):
        lower = tok.value.lower()
        if lower == "null":
            return Literal("null", None, tok.column)
        if lower in ("true", "false"):
            return Literal("boolean", lower == "true", tok.column)
        return Literal("field", tok.value, tok.column)


@functools.cache
def _parser(export: bool = False) -> Lark:
    # Built once per dialect (tens of ms) and shared: lark's LALR parser keeps no per-parse state.
    return Lark(_EXPORT_GRAMMAR if export else _GRAMMAR, parser="lalr", lexer="contextual",
                transformer=_Builder(), postlex=_AlwaysIdent(), maybe_placeholders=True)


def _syntax_error(text: str, err: UnexpectedInput, export: bool = False) -> ZoqlSyntaxError:
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            return ZoqlSyntaxError("unexpected end of query", len(text.rstrip()) + 1)
        # The offending word, or the word before it ("where not Name ..." fails at "Name"), may
        # open a construct ZOQL lacks: name the construct.
        previous = re.findall(r"[A-Za-z_]\w*", text[: tok.start_pos])
        for word in (tok.value.lower(), previous[-1].lower() if previous else ""):
            if word in _UNSUPPORTED_WORDS and not (export and word in ("order", "limit")):
                return ZoqlSyntaxError(_UNSUPPORTED_WORDS[word], tok.column)
        if tok.value == "," and _FROM_LIST.match(text):
            return ZoqlSyntaxError("joins are not supported (query one object)", tok.column)
        return ZoqlSyntaxError(f"unexpected token '{tok.value}'", tok.column)
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream]
        if char in _UNSUPPORTED_CHARS:
            return ZoqlSyntaxError(_UNSUPPORTED_CHARS[char], err.column)
        if char == "'":
            return ZoqlSyntaxError("unterminated string literal", err.column)
        if char == '"':
            return ZoqlSyntaxError("strings must be in single quotes", err.column)
        return ZoqlSyntaxError(f"unexpected character '{char}'", err.column)
    return ZoqlSyntaxError(str(err))  # pragma: no cover - lark raises only the two above


def _finish_literals(node):
    """Resolve string escapes now that each literal's condition is known (like keeps them)."""
    if isinstance(node, (And, Or)):
        return type(node)(tuple(_finish_literals(item) for item in node.items))
    value = node.value
    if value is not None and value.kind == "string":
        value = Literal("string", _string_value(value.value, node.op == "like"), value.column)
        return Condition(node.field, node.op, value, node.column)
    return node


def _count_conditions(node) -> int:
    if node is None:
        return 0
    if isinstance(node, (And, Or)):
        return sum(_count_conditions(item) for item in node.items)
    return 1


def parse(text: str, export: bool = False) -> Query:
    """Parse ``text`` into a :class:`Query` (``export``: as Export ZOQL).

    :raises ZoqlSyntaxError: for anything that is not ZOQL, or not the subset the sandbox runs.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise ZoqlSyntaxError(f"the query exceeds the maximum length of {MAX_QUERY_LENGTH:,} characters")
    if not text.strip():
        raise ZoqlSyntaxError("the query is empty")
    try:
        fields, obj, where, order, limit = _parser(export).parse(text)
    except _ErrorAt as err:
        raise ZoqlSyntaxError(err.detail, err.token.column) from None
    except UnexpectedInput as err:
        raise _syntax_error(text, err, export) from None
    if _count_conditions(where) > MAX_CONDITIONS:
        raise ZoqlSyntaxError(f"a query can have at most {MAX_CONDITIONS} conditions")
    where = _finish_literals(where) if where is not None else None
    return Query(tuple(tok.value for tok in fields), obj.value, where, text, order, limit)
