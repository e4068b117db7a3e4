"""Zuora values → Bulk API 2.0 CSV cells, by the Salesforce field's type.

Data Query returns JSON values; Salesforce's Bulk API wants text. Conversions are exact:
decimals keep every digit (no float formatting), datetimes shown in the tenant's time zone become
UTC ``...Z``, a date given for a datetime field is midnight in the tenant's zone, booleans are
``true``/``false``, and a missing value is ``#N/A`` — Bulk API 2.0's "set to null", since an empty
cell would leave the old value in place.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable

NULL = "#N/A"
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})


class ValueConversionError(ValueError):
    """A Zuora value that cannot become the Salesforce field's type."""


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        value = Decimal(repr(value))
    number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _boolean(value: Any) -> str:
    if isinstance(value, str):
        return "true" if value.strip().lower() in ("true", "1", "yes") else "false"
    return "true" if value else "false"


def _parse_datetime(value: Any, tz: dt.tzinfo) -> dt.datetime:
    """A Data Query datetime (tenant time, or ISO with an offset) or a date, as an aware datetime."""
    text = str(value).strip().replace("T", " ")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueConversionError(f"not a date or datetime: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment


def _datetime(tz: dt.tzinfo) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        moment = _parse_datetime(value, tz).astimezone(dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    return convert


def _date(tz: dt.tzinfo) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip()
        if len(text) == 10:
            return dt.date.fromisoformat(text).isoformat()
        return _parse_datetime(text, tz).date().isoformat()

    return convert


def _text(value: Any) -> str:
    if type(value) is str:  # most values: nothing to do
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (float, Decimal)):
        return _number(value)
    return str(value)


def reference_converter(sf_type: str, tz: dt.tzinfo) -> Callable[[Any], str]:
    """The conversion rules as written above, one value at a time, every branch taken in order: what
    :func:`converter`'s fast paths must equal byte for byte (the tests compare the two)."""
    if sf_type in NUMBER_TYPES:
        base = _number
    elif sf_type == "boolean":
        base = _boolean
    elif sf_type == "datetime":
        base = _datetime(tz)
    elif sf_type == "date":
        base = _date(tz)
    else:
        base = _text

    def convert(value: Any) -> str:
        if value is None or value == "":
            return NULL
        try:
            return base(value)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ValueConversionError(f"cannot convert {value!r} to {sf_type}: {exc}") from None

    return convert


#: Distinct date and datetime texts remembered per converter (per column of one extract) before the
#: memory starts again: a few hundred kB a column. Dates repeat a lot (a tenant has a few thousand
#: distinct ones), datetimes often (rows created together); rows come in key order, so repeats are near.
MEMO_SIZE = 8192


def converter(sf_type: str, tz: dt.tzinfo) -> Callable[[Any], str]:
    """A function from a Zuora value to the CSV cell for a Salesforce field of ``sf_type``.

    The same function as :func:`reference_converter` (the same cell or the same error for every
    value), with fast paths for the values Data Query's JSON lines hold: a ``str`` for a text field,
    a ``Decimal`` or ``int`` for a number, a ``bool`` for a checkbox; and dates and datetimes
    remembered by their text (each distinct text is converted once, by the reference rules). Any
    other value takes the reference path.
    """
    slow = reference_converter(sf_type, tz)
    if sf_type in NUMBER_TYPES:
        return _fast_number(slow)
    if sf_type == "boolean":
        return _fast_boolean(slow)
    if sf_type in ("datetime", "date"):
        return _memo(slow)
    return _fast_text(slow)


def _fast_text(slow: Callable[[Any], str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if type(value) is str and value:
            return value
        return slow(value)

    return convert


def _fast_boolean(slow: Callable[[Any], str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value is True:
            return "true"
        if value is False:
            return "false"
        return slow(value)

    return convert


def _fast_number(slow: Callable[[Any], str]) -> Callable[[Any], str]:
    decimal, integer = Decimal, int

    def convert(value: Any) -> str:
        kind = type(value)
        try:
            if kind is decimal:       # _number's Decimal branch, without the type tests before it
                text = format(value, "f")
                if "." in text:
                    text = text.rstrip("0").rstrip(".")
                return "0" if text in ("-0", "") else text
            if kind is integer:       # not bool (a subclass); an int's digits are its exact decimal text
                return str(value)
        except (ArithmeticError, ValueError, TypeError):
            pass                      # e.g. an int too long for str(): the reference path says so
        return slow(value)

    return convert


def _memo(slow: Callable[[Any], str]) -> Callable[[Any], str]:
    """``slow`` remembered for ``str`` values (a pure function of the text: the converter's time zone
    is fixed); a value that fails is not remembered, so it fails again the same way."""
    known: dict[str, str] = {}

    def convert(value: Any) -> str:
        if type(value) is not str:
            return slow(value)
        cell = known.get(value)
        if cell is None:
            cell = slow(value)
            if len(known) >= MEMO_SIZE:
                known.clear()
            known[value] = cell
        return cell

    return convert
