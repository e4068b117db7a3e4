"""Unit tests for the sandbox SOQL parser (``sandbox.salesforce.soql``).

They pin the AST the SQLite compiler relies on and the Salesforce-style
``MALFORMED_QUERY`` errors API clients see for unsupported input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

try:
    from sandbox.salesforce import soql
except ImportError:  # run without PYTHONPATH=include
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))
    from sandbox.salesforce import soql

from sandbox.salesforce.soql import (
    And,
    Comparison,
    Count,
    FieldPath,
    Literal,
    Not,
    Or,
    OrderItem,
    Pos,
    Query,
    SoqlSyntaxError,
    parse,
)

UTC = dt.timezone.utc


def where(condition: str):
    """Parse ``SELECT Id FROM Account WHERE <condition>`` and return the WHERE AST."""
    return parse(f"SELECT Id FROM Account WHERE {condition}").where


def literal(value_text: str) -> Literal:
    """The literal on the right of ``X = <value_text>``."""
    return where(f"X = {value_text}").value


def col(text: str, fragment: str) -> int:
    """1-based column of the first occurrence of ``fragment`` in one-line ``text``."""
    return text.index(fragment) + 1


def error(text: str) -> SoqlSyntaxError:
    with pytest.raises(SoqlSyntaxError) as info:
        parse(text)
    return info.value


# ---------------------------------------------------------------------------
# SELECT / FROM
# ---------------------------------------------------------------------------


def test_simple_query_round_trips_to_full_ast():
    text = "SELECT Id, Name FROM Account"
    assert parse(text) == Query(
        select=(
            FieldPath(("Id",), Pos(1, 8)),
            FieldPath(("Name",), Pos(1, 12)),
        ),
        from_object="Account",
        from_pos=Pos(1, 22),
        where=None,
        order_by=(),
        limit=None,
        offset=None,
        text=text,
    )


def test_relationship_paths_single_and_multi_level():
    q = parse(
        "SELECT Zuora__CustomerAccount__r.Zuora__External_Id__c, A__r.B__r.Name "
        "FROM Zuora__Subscription__c"
    )
    assert q.select == (
        FieldPath(("Zuora__CustomerAccount__r", "Zuora__External_Id__c"), Pos(1, 8)),
        FieldPath(("A__r", "B__r", "Name"), Pos(1, 57)),
    )
    assert q.from_object == "Zuora__Subscription__c"


def test_count_all_is_count_only():
    q = parse("SELECT COUNT() FROM Contact")
    assert q.select == (Count(None, None, Pos(1, 8)),)
    assert q.is_count_only


def test_count_field_with_and_without_alias():
    q = parse("SELECT COUNT(Id) total, COUNT(Account.Name) FROM Contact")
    assert q.select == (
        Count(FieldPath(("Id",), Pos(1, 14)), "total", Pos(1, 8)),
        Count(FieldPath(("Account", "Name"), Pos(1, 31)), None, Pos(1, 25)),
    )
    assert not q.is_count_only


def test_plain_query_is_not_count_only():
    assert not parse("SELECT Id FROM Account").is_count_only


def test_count_only_allows_where_and_limit():
    q = parse("SELECT COUNT() FROM Account WHERE Name = 'x' LIMIT 5")
    assert q.is_count_only
    assert q.limit == 5


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id FROM Account WHERE Name = 'a' ORDER BY Name LIMIT 1 OFFSET 2",
        "select Id from Account where Name = 'a' order by Name limit 1 offset 2",
        "Select Id From Account Where Name = 'a' Order By Name Limit 1 Offset 2",
        "sElEcT Id fRoM Account wHeRe Name = 'a' oRdEr bY Name lImIt 1 oFfSeT 2",
    ],
)
def test_keywords_are_case_insensitive(text):
    q = parse(text)
    assert q.select == (FieldPath(("Id",), Pos(1, 8)),)
    assert q.from_object == "Account"
    assert q.where.field.parts == ("Name",)
    assert q.order_by[0].field.parts == ("Name",)
    assert (q.limit, q.offset) == (1, 2)


def test_operator_keywords_are_case_insensitive():
    text = "SELECT Id FROM Account WHERE a = 1 and (b like 'x' or c not in (1)) and (not d in (2))"
    cond = parse(text).where
    assert isinstance(cond, And)
    assert cond.items[1] == Or(
        (
            Comparison(FieldPath(("b",), Pos(1, col(text, "b like"))), "LIKE",
                       Literal("string", "x", Pos(1, col(text, "'x'")))),
            Comparison(FieldPath(("c",), Pos(1, col(text, "c not"))), "NOT IN",
                       (Literal("number", Decimal(1), Pos(1, col(text, "1))"))),)),
        )
    )
    assert cond.items[2] == Not(
        Comparison(FieldPath(("d",), Pos(1, col(text, "d in"))), "IN",
                   (Literal("number", Decimal(2), Pos(1, col(text, "2))"))),))
    )


def test_identifier_case_is_preserved():
    q = parse("SELECT nAmE, ACCOUNT.owner.NAME FROM account")
    assert q.select[0].parts == ("nAmE",)
    assert q.select[1].parts == ("ACCOUNT", "owner", "NAME")
    assert q.from_object == "account"


@pytest.mark.parametrize(
    "text, obj, fields",
    [
        # Order is an object name and ORDER a keyword: both must work.
        ("SELECT Id FROM Order ORDER BY Name", "Order", ("Id",)),
        ("SELECT Count__c, Limit__c, Select__c FROM Order__c", "Order__c", ("Count__c", "Limit__c", "Select__c")),
        ("SELECT Notes__c, Offset__c, Nulls_Flag__c FROM X", "X", ("Notes__c", "Offset__c", "Nulls_Flag__c")),
        ("SELECT By, Asc_Field__c FROM Desc__c", "Desc__c", ("By", "Asc_Field__c")),
    ],
)
def test_keyword_like_identifiers(text, obj, fields):
    q = parse(text)
    assert q.from_object == obj
    assert tuple(f.parts[0] for f in q.select) == fields


def test_where_field_starting_with_keyword():
    cond = where("Notes__c = 'x' AND Order__c = 1 AND Like_Count__c = 2 AND In_Stock__c = true")
    assert [c.field.parts[0] for c in cond.items] == ["Notes__c", "Order__c", "Like_Count__c", "In_Stock__c"]


# ---------------------------------------------------------------------------
# WHERE
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, expected",
    [("=", "="), ("!=", "!="), ("<>", "!="), ("<", "<"), ("<=", "<="), (">", ">"), (">=", ">=")],
)
def test_comparison_operators(op, expected):
    assert where(f"Amount {op} 10") == Comparison(
        FieldPath(("Amount",), Pos(1, 30)), expected, Literal("number", Decimal(10), Pos(1, 38 + len(op)))
    )


def test_operators_without_spaces():
    cond = where("a>=1 AND b<>'x' AND c<-2")
    assert [(c.op, c.value.value) for c in cond.items] == [(">=", Decimal(1)), ("!=", "x"), ("<", Decimal(-2))]


def test_like():
    assert where("Name LIKE 'Acme%'") == Comparison(
        FieldPath(("Name",), Pos(1, 30)), "LIKE", Literal("string", "Acme%", Pos(1, 40))
    )


def test_in_and_not_in():
    assert where("Id IN ('a', 'b')") == Comparison(
        FieldPath(("Id",), Pos(1, 30)),
        "IN",
        (Literal("string", "a", Pos(1, 37)), Literal("string", "b", Pos(1, 42))),
    )
    cond = where("Status__c NOT IN ('Cancelled', null)")
    assert cond.op == "NOT IN"
    assert [lit.kind for lit in cond.value] == ["string", "null"]


def test_null_tests():
    assert where("Email = null") == Comparison(
        FieldPath(("Email",), Pos(1, 30)), "=", Literal("null", None, Pos(1, 38))
    )
    assert where("Email != NULL").op == "!="
    assert where("Email <> Null").value.kind == "null"


def test_and_is_flattened():
    cond = where("a = 1 AND b = 2 AND c = 3")
    assert isinstance(cond, And)
    assert [c.field.parts for c in cond.items] == [("a",), ("b",), ("c",)]


def test_parenthesised_same_operator_is_flattened():
    cond = where("(a = 1 AND b = 2) AND c = 3")
    assert isinstance(cond, And)
    assert len(cond.items) == 3
    cond = where("a = 1 OR (b = 2 OR c = 3)")
    assert isinstance(cond, Or)
    assert len(cond.items) == 3


def test_or_of_ands_keeps_structure():
    cond = where("(a = 1 AND b = 2) OR (c = 3 AND d = 4) OR e = 5")
    assert isinstance(cond, Or)
    assert [type(i) for i in cond.items] == [And, And, Comparison]
    assert cond.items[1].items[1].field.parts == ("d",)


def test_not_and_parentheses():
    cond = where("NOT (a = 1 OR b = 2)")
    assert isinstance(cond, Not)
    assert isinstance(cond.item, Or)
    assert where("NOT a = 1") == Not(
        Comparison(FieldPath(("a",), Pos(1, 34)), "=", Literal("number", Decimal(1), Pos(1, 38)))
    )
    cond = where("a = 1 AND (NOT b = 2)")
    assert isinstance(cond, And)
    assert isinstance(cond.items[1], Not)


def test_redundant_parentheses_vanish():
    assert where("((a = 1))") == Comparison(
        FieldPath(("a",), Pos(1, 32)), "=", Literal("number", Decimal(1), Pos(1, 36))
    )


# ---------------------------------------------------------------------------
# Literals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "soql_text, expected",
    [
        (r"'plain'", "plain"),
        (r"''", ""),
        (r"'O\'Brien'", "O'Brien"),
        (r"'say \"hi\"'", 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'a\nb\rc\td\be\ff'", "a\nb\rc\td\be\ff"),
        (r"'A\NB\RC\TD\BE\FF'", "A\nB\rC\tD\bE\fF"),
        (r"'50\% off\_now'", "50\\% off\\_now"),
        ("'spans\nlines'", "spans\nlines"),
        ("'unicode ünïcødé €'", "unicode ünïcødé €"),
    ],
)
def test_string_escapes(soql_text, expected):
    lit = literal(soql_text)
    assert lit.kind == "string"
    assert lit.value == expected


def test_like_pattern_keeps_backslash_escapes_unambiguous():
    # '\\%' is a literal backslash followed by the % wildcard, '\%' a literal %.
    assert where(r"Name LIKE 'a\\%'").value.value == "a\\\\%"
    assert where(r"Name LIKE 'a\%'").value.value == "a\\%"
    assert where(r"Name LIKE 'a\_b\'c\n'").value.value == "a\\_b'c\n"


@pytest.mark.parametrize(
    "soql_text, expected",
    [
        ("0", Decimal("0")),
        ("42", Decimal("42")),
        ("-7", Decimal("-7")),
        ("+3", Decimal("3")),
        ("1.5", Decimal("1.5")),
        ("-1.5", Decimal("-1.5")),
        (".25", Decimal("0.25")),
        ("12345678901234567890.123456789", Decimal("12345678901234567890.123456789")),
    ],
)
def test_numbers(soql_text, expected):
    lit = literal(soql_text)
    assert lit.kind == "number"
    assert isinstance(lit.value, Decimal)
    assert lit.value == expected


@pytest.mark.parametrize("soql_text, expected", [("true", True), ("TRUE", True), ("False", False), ("fAlSe", False)])
def test_booleans(soql_text, expected):
    assert literal(soql_text) == Literal("boolean", expected, Pos(1, 34))


def test_date():
    assert literal("2024-01-31") == Literal("date", dt.date(2024, 1, 31), Pos(1, 34))


@pytest.mark.parametrize(
    "soql_text, expected",
    [
        ("2024-01-31T10:00:00Z", dt.datetime(2024, 1, 31, 10, 0, tzinfo=UTC)),
        ("2024-01-31T10:00:00.000+02:00", dt.datetime(2024, 1, 31, 8, 0, tzinfo=UTC)),
        ("2024-01-31T22:30:00-0500", dt.datetime(2024, 2, 1, 3, 30, tzinfo=UTC)),
        ("2024-01-01T01:00:00+05:30", dt.datetime(2023, 12, 31, 19, 30, tzinfo=UTC)),
        ("2024-01-31T10:00:00.123456789Z", dt.datetime(2024, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-31T10:00:00.5Z", dt.datetime(2024, 1, 31, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_datetimes_are_converted_to_utc(soql_text, expected):
    lit = literal(soql_text)
    assert lit.kind == "datetime"
    assert lit.value == expected
    assert lit.value.utcoffset() == dt.timedelta(0)
    assert lit.value.tzinfo is UTC


@pytest.mark.parametrize(
    "soql_text, expected",
    [
        ("TODAY", ("TODAY",)),
        ("today", ("TODAY",)),
        ("YESTERDAY", ("YESTERDAY",)),
        ("Tomorrow", ("TOMORROW",)),
        ("LAST_N_DAYS:30", ("LAST_N_DAYS", 30)),
        ("next_n_days:0", ("NEXT_N_DAYS", 0)),
    ],
)
def test_date_literals(soql_text, expected):
    assert literal(soql_text) == Literal("date_literal", expected, Pos(1, 34))


def test_mixed_literals_in_in_list():
    cond = where("X IN (1, 'a', true, null, 2024-01-31, 2024-01-31T00:00:00Z, TODAY)")
    assert [lit.kind for lit in cond.value] == [
        "number", "string", "boolean", "null", "date", "datetime", "date_literal",
    ]


# ---------------------------------------------------------------------------
# ORDER BY / LIMIT / OFFSET
# ---------------------------------------------------------------------------


def test_order_by_variants():
    q = parse(
        "SELECT Id FROM Account ORDER BY Name, CreatedDate DESC, Owner.Name ASC NULLS LAST, "
        "Rating__c nulls first"
    )
    assert q.order_by == (
        OrderItem(FieldPath(("Name",), Pos(1, 33)), False, None),
        OrderItem(FieldPath(("CreatedDate",), Pos(1, 39)), True, None),
        OrderItem(FieldPath(("Owner", "Name"), Pos(1, 57)), False, True),
        OrderItem(FieldPath(("Rating__c",), Pos(1, 84)), False, False),
    )


def test_limit_and_offset():
    q = parse("SELECT Id FROM Account LIMIT 200 OFFSET 0")
    assert (q.limit, q.offset) == (200, 0)
    q = parse("SELECT Id FROM Account OFFSET 10")
    assert (q.limit, q.offset) == (None, 10)
    assert parse("SELECT Id FROM Account LIMIT 0").limit == 0


def test_full_query():
    text = (
        "SELECT Id, Name, Zuora__CustomerAccount__r.Zuora__External_Id__c "
        "FROM Zuora__Subscription__c "
        "WHERE Zuora__Status__c = 'Active' AND Zuora__TermEndDate__c >= 2024-01-01 "
        "ORDER BY Name DESC NULLS LAST LIMIT 10 OFFSET 20"
    )
    q = parse(text)
    assert q.from_object == "Zuora__Subscription__c"
    assert q.from_pos == Pos(1, col(text, "Zuora__Subscription__c"))
    assert isinstance(q.where, And)
    assert q.where.items[0] == Comparison(
        FieldPath(("Zuora__Status__c",), Pos(1, col(text, "Zuora__Status__c"))),
        "=",
        Literal("string", "Active", Pos(1, col(text, "'Active'"))),
    )
    assert q.where.items[1].value == Literal("date", dt.date(2024, 1, 1), Pos(1, col(text, "2024-01-01")))
    assert q.order_by == (OrderItem(FieldPath(("Name",), Pos(1, col(text, "Name DESC"))), True, True),)
    assert (q.limit, q.offset) == (10, 20)


# ---------------------------------------------------------------------------
# Layout: whitespace and lines
# ---------------------------------------------------------------------------


def test_multi_line_query_positions():
    text = "SELECT Id,\n       Name\n  FROM   Account\r\n WHERE Name = 'x'\n\tORDER BY Name\n"
    q = parse(text)
    assert q.select[1].pos == Pos(2, 8)
    assert q.from_pos == Pos(3, 10)
    assert q.where.field.pos == Pos(4, 8)
    assert q.where.value.pos == Pos(4, 15)
    assert q.order_by[0].field.pos == Pos(5, 11)
    assert q.text == text


def test_extra_whitespace_is_ignored():
    assert parse("  SELECT   Id ,Name\tFROM\n\nAccount   ").select[1].parts == ("Name",)


def test_ast_is_immutable():
    q = parse("SELECT Id FROM Account")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.limit = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.select[0].parts = ("Name",)


# ---------------------------------------------------------------------------
# Errors: unsupported constructs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, row, column, message",
    [
        # sub-queries and semi-joins
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", 1, 12, "unexpected token: '('"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", 1, 37, "unexpected token: 'SELECT'"),
        ("SELECT Id FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact)", 1, 41, "unexpected token: 'SELECT'"),
        # clauses
        ("SELECT Name FROM Account GROUP BY Name", 1, 26, "unexpected token: 'GROUP'"),
        ("SELECT Id FROM Account HAVING COUNT(Id) > 1", 1, 24, "unexpected token: 'HAVING'"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", 1, 24, "unexpected token: 'WITH'"),
        ("SELECT Id FROM Account FOR UPDATE", 1, 24, "unexpected token: 'FOR'"),
        ("SELECT Id FROM Account FOR VIEW", 1, 24, "unexpected token: 'FOR'"),
        ("SELECT Id FROM Account LIMIT 1 FOR REFERENCE", 1, 32, "unexpected token: 'FOR'"),
        ("SELECT Id FROM Account USING SCOPE Mine", 1, 24, "unexpected token: 'USING'"),
        ("SELECT TYPEOF What WHEN Account THEN Name END FROM Event", 1, 8, "unexpected token: 'TYPEOF'"),
        # select list forms
        ("SELECT FIELDS(ALL) FROM Account", 1, 14, "unexpected token: '('"),
        ("SELECT * FROM Account", 1, 8, "unexpected token: '*'"),
        ("SELECT SUM(Amount) FROM Opportunity", 1, 11, "unexpected token: '('"),
        ("SELECT MAX(CreatedDate) FROM Account", 1, 11, "unexpected token: '('"),
        ("SELECT COUNT_DISTINCT(Name) FROM Account", 1, 22, "unexpected token: '('"),
        ("SELECT Name n FROM Account", 1, 13, "unexpected token: 'n'"),
        ("SELECT COUNT() c FROM Account", 1, 16, "unexpected token: 'c'"),
        ("SELECT Id FROM Account a", 1, 24, "unexpected token: 'a'"),
        ("SELECT Id FROM Account, Contact", 1, 23, "unexpected token: ','"),
        # where forms
        ("SELECT Id FROM Account WHERE Tags__c INCLUDES ('a')", 1, 38, "unexpected token: 'INCLUDES'"),
        ("SELECT Id FROM Account WHERE Tags__c EXCLUDES ('a')", 1, 38, "unexpected token: 'EXCLUDES'"),
        ("SELECT Id FROM Account WHERE Id = :accountId", 1, 35, "unexpected token: ':'"),
        ("SELECT Id FROM Account WHERE Id IN :ids", 1, 36, "unexpected token: ':'"),
        ("SELECT Id FROM Account WHERE Name = OtherField__c", 1, 37, "unexpected token: 'OtherField__c'"),
        ("SELECT Id FROM Account WHERE CALENDAR_YEAR(CreatedDate) = 2024", 1, 43, "unexpected token: '('"),
        ("SELECT Id FROM Account WHERE CreatedDate = THIS_MONTH", 1, 44, "unexpected token: 'THIS_MONTH'"),
        ("SELECT Id FROM Account WHERE CreatedDate = LAST_N_WEEKS:2", 1, 44, "unexpected token: 'LAST_N_WEEKS:2'"),
        ("SELECT Id FROM Account WHERE CreatedDate = todayish", 1, 44, "unexpected token: 'todayish'"),
        ("SELECT Id FROM Account WHERE Name LIKE 5", 1, 40, "unexpected token: '5'"),
        ('SELECT Id FROM Account WHERE Name = "x"', 1, 37, "unexpected token: '\"'"),
        ("SELECT Id FROM Account WHERE Id IN ()", 1, 37, "unexpected token: ')'"),
        ("SELECT Id FROM Account WHERE Id IN ('a',)", 1, 41, "unexpected token: ')'"),
        ("SELECT Id FROM Account WHERE Name = 'x' Name = 'y'", 1, 41, "unexpected token: 'Name'"),
        # Salesforce refuses AND/OR mixed at one level and NOT after AND/OR.
        ("SELECT Id FROM Account WHERE a = 1 AND b = 2 OR c = 3", 1, 46, "unexpected token: 'OR'"),
        ("SELECT Id FROM Account WHERE a = 1 OR b = 2 AND c = 3", 1, 45, "unexpected token: 'AND'"),
        ("SELECT Id FROM Account WHERE a = 1 AND NOT b = 2", 1, 40, "unexpected token: 'NOT'"),
        ("SELECT Id FROM Account WHERE NOT a = 1 AND b = 2", 1, 40, "unexpected token: 'AND'"),
        ("SELECT Id FROM Account WHERE NOT NOT a = 1", 1, 34, "unexpected token: 'NOT'"),
        # structure, order of clauses and trailing garbage
        ("SELECT Id FROM Account WHERE", 1, 29, "unexpected token: <EOF>"),
        ("SELECT Id FROM Account WHERE   \n  ", 1, 29, "unexpected token: <EOF>"),
        ("SELECT Id FROM", 1, 15, "unexpected token: <EOF>"),
        ("", 1, 1, "unexpected token: <EOF>"),
        ("SELECT FROM Account", 1, 8, "unexpected token: 'FROM'"),
        ("SELECT Id, FROM Account", 1, 12, "unexpected token: 'FROM'"),
        ("SELECT Id FROM Account LIMIT 5 WHERE Name = 'x'", 1, 32, "unexpected token: 'WHERE'"),
        ("SELECT Id FROM Account OFFSET 5 LIMIT 5", 1, 33, "unexpected token: 'LIMIT'"),
        ("SELECT Id FROM Account LIMIT 5 LIMIT 5", 1, 32, "unexpected token: 'LIMIT'"),
        ("SELECT Id FROM Account LIMITX 5", 1, 24, "unexpected token: 'LIMITX'"),
        ("SELECT Id FROM Account ORDER Name", 1, 30, "unexpected token: 'Name'"),
        ("SELECT Id FROM Account ORDER BY Name NULLS", 1, 43, "unexpected token: <EOF>"),
        ("SELECT Id FROM Account;", 1, 23, "unexpected token: ';'"),
        ("SELECT Id FROM Account garbage trailing", 1, 24, "unexpected token: 'garbage'"),
        ("UPDATE Account SET Name = 'x'", 1, 1, "unexpected token: 'UPDATE'"),
        ("SELECT Id FROM Account WHERE Name = 'abc", 1, 37, "mismatched character '<EOF>' expecting '''"),
    ],
)
def test_unsupported_constructs_raise_with_position(text, row, column, message):
    err = error(text)
    assert (err.row, err.column, err.message) == (row, column, message)
    assert err.query == text


@pytest.mark.parametrize(
    "word", ["SELECT", "From", "where", "AND", "or", "NOT", "IN", "LIKE", "LIMIT", "WITH", "GROUP", "NULLS"]
)
def test_reserved_words_cannot_be_field_names(word):
    err = error(f"SELECT Id, {word} FROM Account")
    assert (err.row, err.column, err.message) == (1, 12, f"unexpected token: '{word}'")


# ---------------------------------------------------------------------------
# Errors: literal and semantic validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, row, column, message",
    [
        ("SELECT Name, Id, name FROM Account", 1, 18, "duplicate field selected: name"),
        ("SELECT Owner.Name, OWNER.NAME FROM Account", 1, 20, "duplicate field selected: OWNER.NAME"),
        ("SELECT COUNT(), Id FROM Account", 1, 17, "COUNT() cannot be combined with other fields in the SELECT list"),
        ("SELECT Id, COUNT() FROM Account", 1, 12, "COUNT() cannot be combined with other fields in the SELECT list"),
        ("SELECT COUNT(), COUNT(Id) FROM Account", 1, 17, "COUNT() cannot be combined with other fields in the SELECT list"),
        ("SELECT COUNT(Id), Name FROM Account", 1, 19, "Field must be grouped or aggregated: Name"),
        ("SELECT COUNT(Id) n, COUNT(Name) N FROM Account", 1, 21, "duplicate alias: N"),
        ("SELECT COUNT(Id) FROM Account ORDER BY Name", 1, 40, "Ordered field must be grouped or aggregated: Name"),
        ("SELECT Id FROM Account LIMIT -1", 1, 30, "LIMIT must be a non-negative integer, found: -1"),
        ("SELECT Id FROM Account LIMIT 1.5", 1, 30, "LIMIT must be a non-negative integer, found: 1.5"),
        ("SELECT Id FROM Account LIMIT +1", 1, 30, "LIMIT must be a non-negative integer, found: +1"),
        ("SELECT Id FROM Account OFFSET -5", 1, 31, "OFFSET must be a non-negative integer, found: -5"),
        ("SELECT Id FROM Account LIMIT ten", 1, 30, "unexpected token: 'ten'"),
        ("SELECT Id FROM Account WHERE D = 2024-02-30", 1, 34, "invalid date: 2024-02-30"),
        ("SELECT Id FROM Account WHERE D = 2024-01-31T25:00:00Z", 1, 34, "invalid datetime: 2024-01-31T25:00:00Z"),
        (
            "SELECT Id FROM Account WHERE D = 2024-01-31T10:00:00",
            1, 34, "invalid datetime: 2024-01-31T10:00:00 (a time zone such as Z is required)",
        ),
        (
            r"SELECT Id FROM Account WHERE Name = 'ab\qc'",
            1, 40, r"Invalid string literal 'ab\qc'. Illegal character sequence '\q' in string literal.",
        ),
    ],
)
def test_validation_errors(text, row, column, message):
    err = error(text)
    assert (err.row, err.column, err.message) == (row, column, message)


def test_two_counts_with_field_are_allowed():
    q = parse("SELECT COUNT(Id), COUNT(Name) FROM Account")
    assert [c.field.parts for c in q.select] == [("Id",), ("Name",)]


def test_syntax_errors_win_over_semantic_ones():
    # The duplicate field would also be an error, but the parse fails first.
    assert error("SELECT Name, Name FROM Account GROUP BY Name").message == "unexpected token: 'GROUP'"


# ---------------------------------------------------------------------------
# Error message format
# ---------------------------------------------------------------------------


def test_salesforce_message_for_eof():
    err = error("SELECT Id FROM Account WHERE")
    expected = (
        "\nSELECT Id FROM Account WHERE\n"
        "                            ^\n"
        "ERROR at Row:1:Column:29\n"
        "unexpected token: <EOF>"
    )
    assert err.salesforce_message() == expected
    assert str(err) == expected


def test_salesforce_message_for_bad_token():
    err = error("SELECT Name FROM Account GROUP BY Name")
    assert str(err) == (
        "\nSELECT Name FROM Account GROUP BY Name\n"
        "                         ^\n"
        "ERROR at Row:1:Column:26\n"
        "unexpected token: 'GROUP'"
    )


def test_salesforce_message_on_later_line_shows_that_line():
    text = "SELECT Id\nFROM Account\nWHERE Name = 'x'\n  HAVING x"
    err = error(text)
    assert (err.row, err.column) == (4, 3)
    assert str(err) == "\n  HAVING x\n  ^\nERROR at Row:4:Column:3\nunexpected token: 'HAVING'"


def test_multi_line_eof_points_after_last_token():
    err = error("SELECT Id\nFROM Account\nWHERE\n\n")
    assert (err.row, err.column) == (3, 6)


def test_caret_keeps_tabs_for_alignment():
    err = error("SELECT Id\n\tFROM Account x")
    assert str(err).split("\n")[1:3] == ["\tFROM Account x", "\t             ^"]


def test_error_constructed_directly():
    err = SoqlSyntaxError("No such column 'Nme' on entity 'Account'", 1, 8, "SELECT Nme FROM Account")
    assert str(err) == (
        "\nSELECT Nme FROM Account\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Nme' on entity 'Account'"
    )
    assert (err.message, err.row, err.column, err.query) == (
        "No such column 'Nme' on entity 'Account'", 1, 8, "SELECT Nme FROM Account",
    )


def test_error_survives_pickling():
    err = error("SELECT Id FROM Account GROUP BY Id")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.message, clone.row, clone.column, clone.query) == (err.message, err.row, err.column, err.query)
    assert str(clone) == str(err)


def test_errors_are_not_leaking_lark_exceptions():
    # Every failure must be a SoqlSyntaxError, never a lark or Python error.
    for text in ["SELECT", "(", "'", "\\", "SELECT Id FROM Account WHERE (a = 1", "SELECT Id FROM Account WHERE a = 1)",
                 "SELECT Id FROM Account WHERE a", "SELECT Id FROM Account WHERE a =", "SELECT Id FROM Account ORDER BY",
                 "SELECT Id FROM Account WHERE Name = 'x\\'", "SELECT Id FROM A WHERE d = 2024-01-31T10:00:00+25:00",
                 "SELECT Nämé FROM Account", "SELECT Id FROM Account WHERE x = -"]:
        with pytest.raises(SoqlSyntaxError):
            parse(text)


# ---------------------------------------------------------------------------
# Performance
# ---------------------------------------------------------------------------


def test_parse_is_fast():
    text = (
        "SELECT Id, Name, Zuora__CustomerAccount__r.Zuora__External_Id__c FROM Zuora__Subscription__c "
        "WHERE Zuora__Status__c IN ('Active', 'Suspended') AND CreatedDate >= 2024-01-01T00:00:00Z "
        "ORDER BY Name LIMIT 200"
    )
    parse(text)  # builds the parser
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        parse(text)
    per_query = (time.perf_counter() - start) / runs
    # Generous bound so slow CI machines pass; typical is ~0.2 ms.
    assert per_query < 0.005


def test_module_exports():
    assert set(soql.__all__) >= {"parse", "Query", "SoqlSyntaxError", "Literal", "Pos"}
