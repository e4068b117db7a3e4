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


def converter(sf_type: str, tz: dt.tzinfo) -> Callable[[Any], str]:
    """A function from a Zuora value to the CSV cell for a Salesforce field of ``sf_type``."""
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
