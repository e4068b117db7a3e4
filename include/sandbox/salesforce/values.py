"""Field values: from the wire (CSV text or JSON) to what is stored, and back.

Stored forms are chosen so SQLite compares and sorts them correctly and nothing is lost: text as
text, checkboxes as 0/1, numbers with decimals as canonical decimal strings rounded to the field's
scale (never floats), dates as ``YYYY-MM-DD`` and datetimes as UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ``,
Ids in their 18-character form. A value that does not fit its field raises
:class:`FieldValueError` carrying the error code Salesforce would give.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable

from sandbox.salesforce.schema import DECIMAL_TYPES, TEXT_TYPES, FieldDef
from sandbox.sfid import normalize_id

NOT_SET = object()
"""The input leaves the field alone (an empty CSV cell, or a key absent from a JSON record)."""

NULL_TOKEN = "#N/A"
"""Bulk API CSV's way to set a field to null."""

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class FieldValueError(ValueError):
    """A value that Salesforce would reject for this field."""

    def __init__(self, code: str, message: str, fields: list[str]):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


def _wrong_type(f: FieldDef, value: Any) -> FieldValueError:
    return FieldValueError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {value}", [f.name]
    )


def parse_datetime(text: str) -> dt.datetime | None:
    """An ISO 8601 date or datetime as an aware UTC datetime (no zone means UTC), else None."""
    match = _DATETIME_RE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        value = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro,
            tzinfo=dt.timezone.utc,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        value = value - sign * offset
    return value


def format_datetime(value: dt.datetime) -> str:
    """The stored form of a datetime: UTC with milliseconds and ``Z``."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def now_stored() -> str:
    """The current time in the stored datetime form."""
    return format_datetime(dt.datetime.now(dt.timezone.utc))


def _text(f: FieldDef) -> Callable[[Any], Any]:
    limit = f.length
    is_email = f.type == "email"

    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                raise _wrong_type(f, value)
            value = str(value)
        if value == "":
            return None
        if len(value) > limit:
            raise FieldValueError(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {value[:limit]} (max length={limit})",
                [f.name],
            )
        if is_email and not _EMAIL_RE.match(value):
            raise FieldValueError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name])
        return value

    return convert


def _boolean(f: FieldDef) -> Callable[[Any], Any]:
    truthy = {"true", "1", "yes", "y"}
    falsy = {"false", "0", "no", "n"}

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in truthy:
                return 1
            if lowered in falsy:
                return 0
        if isinstance(value, int) and value in (0, 1):
            return value
        raise _wrong_type(f, value)

    return convert


def _integer(f: FieldDef) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise _wrong_type(f, value)
        try:
            number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
        except (InvalidOperation, ValueError, TypeError):
            raise _wrong_type(f, value) from None
        if number != number.to_integral_value():
            raise _wrong_type(f, value)
        result = int(number)
        if not _INT_MIN <= result <= _INT_MAX:
            raise FieldValueError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return result

    return convert


def _decimal(f: FieldDef) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-f.scale)
    max_integer_digits = f.precision - f.scale
    # Text already in canonical form (right number of decimals, not too long) is stored as it is.
    canonical = re.compile(
        rf"-?(0|[1-9]\d{{0,{max(max_integer_digits - 1, 0)}}})" + (rf"\.\d{{{f.scale}}}" if f.scale else "")
    ).fullmatch

    def convert(value: Any) -> Any:
        if isinstance(value, str) and canonical(value) and not value.startswith("-0"):
            return value
        if isinstance(value, bool):
            raise _wrong_type(f, value)
        try:
            if isinstance(value, str):
                number = Decimal(value.strip())
            elif isinstance(value, float):
                number = Decimal(repr(value))
            else:
                number = Decimal(value)
        except (InvalidOperation, ValueError, TypeError):
            raise _wrong_type(f, value) from None
        if not number.is_finite():
            raise _wrong_type(f, value)
        number = number.quantize(quantum, rounding=ROUND_HALF_UP)
        if number == 0:
            number = abs(number)  # no negative zero
        if number.adjusted() + 1 > max_integer_digits and number != 0:
            raise FieldValueError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return format(number, "f")

    return convert


@functools.lru_cache(maxsize=8192)
def _canonical_date(text: str) -> str | None:
    """``YYYY-MM-DD`` if ``text`` is a real calendar date in that form (dates repeat: cache them)."""
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        return ""


def _date(f: FieldDef) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise _wrong_type(f, value)
        text = value.strip()
        canonical = _canonical_date(text)
        if canonical == "":
            raise _wrong_type(f, value)
        if canonical is not None:
            return canonical
        # Salesforce accepts a datetime for a date field and keeps its (UTC) date.
        parsed = parse_datetime(text)
        if parsed is None:
            raise _wrong_type(f, value)
        return parsed.date().isoformat()

    return convert


def _datetime(f: FieldDef) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise _wrong_type(f, value)
        parsed = parse_datetime(value)
        if parsed is None:
            raise _wrong_type(f, value)
        return format_datetime(parsed)

    return convert


def _reference(f: FieldDef) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise _wrong_type(f, value)
        if value == "":
            return None
        normalized = normalize_id(value.strip())
        if normalized is None:
            raise FieldValueError(
                "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        return normalized

    return convert


def converter(f: FieldDef) -> Callable[[Any], Any]:
    """A function from a present, non-null wire value to the stored value of field ``f``."""
    if f.type in TEXT_TYPES:
        return _text(f)
    if f.type == "boolean":
        return _boolean(f)
    if f.type == "int":
        return _integer(f)
    if f.type in DECIMAL_TYPES:
        return _decimal(f)
    if f.type == "date":
        return _date(f)
    if f.type == "datetime":
        return _datetime(f)
    return _reference(f)  # id and reference


def csv_reader_for(f: FieldDef) -> Callable[[str], Any]:
    """Bulk CSV cell → stored value: empty leaves the field alone, ``#N/A`` sets it to null."""
    convert = converter(f)

    def read(cell: str) -> Any:
        if cell == "":
            return NOT_SET
        if cell == NULL_TOKEN:
            return None
        return convert(cell)

    return read


def json_reader_for(f: FieldDef) -> Callable[[Any], Any]:
    """JSON value → stored value: ``null`` sets the field to null."""
    convert = converter(f)

    def read(value: Any) -> Any:
        if value is NOT_SET:
            return NOT_SET
        if value is None:
            return None
        return convert(value)

    return read


def to_json(f: FieldDef, stored: Any) -> Any:
    """A stored value as REST JSON shows it."""
    if stored is None:
        return None
    if f.type == "boolean":
        return bool(stored)
    if f.type in DECIMAL_TYPES:
        return float(stored)
    if f.type == "datetime":
        return stored[:-1] + "+0000"
    return stored


def to_csv(f: FieldDef, stored: Any) -> str:
    """A stored value as a Bulk API query result cell shows it."""
    if stored is None:
        return ""
    if f.type == "boolean":
        return "true" if stored else "false"
    return str(stored)


def literal_for_compare(f: FieldDef, value: Any) -> Any:
    """A SOQL literal converted to the stored form of ``f`` so SQLite can compare them."""
    if value is None:
        return None
    if f.type == "boolean":
        return int(bool(value))
    if f.type in ("id", "reference"):
        normalized = normalize_id(str(value))
        return normalized if normalized is not None else str(value)
    if f.type in DECIMAL_TYPES or f.type == "int":
        return value
    if f.type == "datetime" and isinstance(value, dt.datetime):
        return format_datetime(value)
    if f.type == "date" and isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
