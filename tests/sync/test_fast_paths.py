"""The producer's fast paths (the load's row loop: ``docs/benchmarks.md``, "The producer's CPU") give
exactly what the plain code they replace gives, value by value and byte by byte: the converters
against :func:`~zuora_sync.transform.reference_converter` (SPEC §3's exact decimals and datetimes),
a result line's JSON against ``json.loads(line, parse_float=Decimal)``, the row hash against
``json.dumps`` + SHA-256, the staged CSV lines against ``csv.writer``, Salesforce's keys read a range
at a time against a plain set, the row's values against ``row.get`` per column."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import random
import string
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from zuora_sync import transform
from zuora_sync.extract import _truthy, _values_reader
from zuora_sync.hashes import KeySet, row_hash
from zuora_sync.hooks.zuora import _json_line
from zuora_sync.staging import CsvParts
from zuora_sync.transform import NUMBER_TYPES, ValueConversionError, converter, reference_converter

ZONES = [ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Kolkata"), dt.timezone.utc,
         dt.timezone(dt.timedelta(hours=-3, minutes=-30))]
TYPES = sorted(NUMBER_TYPES) + ["boolean", "date", "datetime", "string", "textarea", "id", "reference", "picklist"]

NUMBERS = [
    Decimal("0"), Decimal("0.0"), Decimal("-0"), Decimal("-0.0"), Decimal("0.000000"), Decimal("230.0"),
    Decimal("199.95"), Decimal("-199.950"), Decimal("-0.000001"), Decimal("1E+5"), Decimal("1.5E+3"),
    Decimal("1E-7"), Decimal("-1.23E-10"), Decimal("12345678901234.567"), Decimal("123456789012.123456"),
    Decimal("1E+400"), Decimal("100000000000000000000.0"), Decimal("10.10"), Decimal("0.1e1"),
    Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN"),
    0, 1, -1, 36, -9223372036854775809, 18446744073709551616, 10 ** 5000,   # the last: too long for str()
    True, False, 10.0, 199.95, -0.0, 1e-06, 1e22, float("nan"), float("inf"),
    "12.50", " 7 ", "-0.0", "1e3", "twelve", "", None, [], {}, dt.date(2024, 1, 1),
]
DATETIMES = [
    "2024-01-05 02:00:00", "2024-07-01 02:00:00", "2024-07-01", "2024-07-01T02:00:00Z",
    "2024-03-10 02:30:00",              # does not exist in Pacific time (spring forward)
    "2024-11-03 01:30:00",              # happens twice in Pacific time (fall back)
    "2024-06-20 07:51:55.123456", "2024-06-20 07:51:55.5", "2024-06-20T07:51:55+05:30",
    "2024-06-20T07:51:55.999-08:00", "2024-06-20 23:59:59.9999", " 2024-06-20 07:51:55 ",
    "2024-02-29", "2023-02-29", "2024-13-01", "0999-12-31 23:00:00", "0001-01-01 00:00:00",
    "9999-12-31 23:59:59", "20240620", "2024-W25-4", "2024-06-20T07", "not a date", "", None,
    True, 0, 1718870400, Decimal("1.5"), [],
]
BOOLEANS = [True, False, 0, 1, 2, -1, "true", "True ", "1", "yes", "t", "false", "no", "", None,
            Decimal("0"), Decimal("1"), 0.0, [], [0]]
TEXTS = ["Acme", "", " ", "#N/A", "a,b\n\"c\"", "ünïcødé", "\u2028", None, 0, 12, -3, True, False,
         Decimal("1.50"), Decimal("-0.0"), 1.5, 10.0, float("inf"), ["x"], {"k": 1}, dt.date(2024, 6, 20)]


def outcome(convert, value):
    try:
        return "ok", convert(value)
    except Exception as exc:  # noqa: BLE001 - the same error, whatever it is (10 ** 5000 cannot even be shown)
        return type(exc).__name__, str(exc)


def both(sf_type: str, tz, values) -> None:
    fast, slow = converter(sf_type, tz), reference_converter(sf_type, tz)
    for value in values:
        assert outcome(fast, value) == outcome(slow, value), (sf_type, tz, value)
        assert outcome(fast, value) == outcome(slow, value), (sf_type, tz, value)   # remembered alike


@pytest.mark.parametrize("sf_type", TYPES)
@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_every_converter_equals_the_reference_rules_for_every_kind_of_value(sf_type, tz):
    both(sf_type, tz, NUMBERS + DATETIMES + BOOLEANS + TEXTS)


def test_exact_decimals_and_datetimes_the_fast_paths_take():
    number = converter("currency", ZONES[0])
    assert [number(v) for v in (Decimal("-199.950"), Decimal("1E+5"), Decimal("-1.23E-10"), Decimal("-0.0"),
                                Decimal("123456789012.123456"), 42, -7)] == [
        "-199.95", "100000", "-0.000000000123", "0", "123456789012.123456", "42", "-7"]
    with pytest.raises(ValueError):   # as before: too long to show in the message, too
        number(10 ** 5000)
    datetime = converter("datetime", ZONES[0])
    assert datetime("2024-01-05 02:00:00") == "2024-01-05T10:00:00.000Z"
    assert datetime("2024-06-20T07:51:55.999-08:00") == "2024-06-20T15:51:55.999Z"
    assert datetime("2024-07-01") == "2024-07-01T07:00:00.000Z"
    assert converter("date", ZONES[0])("2024-06-20 23:30:00") == "2024-06-20"
    with pytest.raises(ValueConversionError):
        converter("date", ZONES[0])("2023-02-29")
    assert converter("boolean", ZONES[0])(True) == "true" and converter("string", ZONES[0])("") == "#N/A"


def test_generated_values_convert_as_the_reference_rules_say():
    rng = random.Random(14)
    decimals = [Decimal(f"{rng.choice(['', '-'])}{rng.randint(0, 10 ** rng.randint(1, 18))}"
                        f"{rng.choice(['', '.' + str(rng.randint(0, 999999)).rjust(6, '0'), '.0', '.10'])}"
                        f"{rng.choice(['', '', 'E+2', 'E-3', 'e5'])}") for _ in range(3000)]
    ints = [rng.randint(-10 ** 12, 10 ** 12) for _ in range(500)]
    start = dt.datetime(2019, 1, 1)
    moments = [start + dt.timedelta(seconds=rng.randint(0, 10 ** 9), microseconds=rng.choice([0, 0, rng.randint(0, 999999)]))
               for _ in range(3000)]
    texts = [m.strftime(rng.choice(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S.%f",
                                    "%Y-%m-%dT%H:%M:%S+02:00"])) for m in moments]
    for tz in ZONES:
        both("currency", tz, decimals + ints)
        both("double", tz, decimals + ints)
        both("datetime", tz, texts)
        both("date", tz, texts)


def test_remembered_dates_start_again_when_the_memory_is_full(monkeypatch):
    monkeypatch.setattr(transform, "MEMO_SIZE", 3)
    fast, slow = converter("datetime", ZONES[0]), reference_converter("datetime", ZONES[0])
    days = [f"2024-06-{day:02d} 12:00:00" for day in range(1, 29)] * 3
    assert [fast(v) for v in days] == [slow(v) for v in days]


LINES = [
    b'{"zs_id":"2c92","zs_deleted":false,"zs_keep":1,"c0":"Acme","c1":811.87,"c2":0.0,"c3":null,"c4":true}',
    b'{"a": 123456789012.123456, "b": -0.0, "c": 1E5, "d": 1e-7, "e": 0.1e1, "f": 100000000000000000000.0}',
    b'{"a": 123456789012345678901234567890, "b": -9223372036854775809, "c": -0}',
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": "\\ud800"}', b'{"a": "\xed\xa0\x80"}',
    b'\xef\xbb\xbf{"a": 1}', b'{"a": 1, "a": 2}', b'{"a": "\\u0000\\/\\"\\\\"}', b'{"\\u00e9": "\xc3\xa9"}',
    b'{"a": 1}  ', b'  {"a": 1}', b'{"a": 1}\r', b'[1, 2]', b'"text"', b'{"a": {"b": [1.5, {"c": 2}]}}',
    # not JSON: both refuse
    b'{"a": "x\ty"}', b'{"a": 01}', b'{"a": +1}', b'{"a": 1.}', b'{"a": .5}', b'{"a": 1e}', b'{"a": "\xff"}',
    b'{"a": 1} x', b'{"a": [1, 2,]}', b'{"a": 1,}', b'{"a":1}\x00', b'{"a": 1', b'', b'{"a": "unterminated',
    '{"a": "ü"}'.encode("utf-16"), '{"a": 1}'.encode("utf-32-le"),
]


def parsed(function, line):
    try:
        value = function(line)
    except ValueError:
        return "error"
    return value, json.dumps(value, default=repr)   # the types too: Decimal('1.0') is not 1.0


@pytest.mark.parametrize("line", LINES)
def test_a_result_line_reads_as_json_loads_with_exact_decimals_reads_it(line):
    assert parsed(_json_line, line) == parsed(lambda raw: json.loads(raw, parse_float=Decimal), line)


def reference_hash(cells, links=()) -> str:
    payload = json.dumps([list(cells), list(links)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def test_the_row_hash_is_the_stored_format_for_every_string():
    rng = random.Random(7)
    alphabet = string.printable + "\"\\\u2028\u2029\x00\x1f\x7féü€𝄞中"
    for _ in range(2000):
        cells = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(0, 6))]
        links = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(0, 2))]
        assert row_hash(cells, links) == reference_hash(cells, links)
        assert row_hash(iter(cells), tuple(links)) == reference_hash(cells, links)
    assert row_hash([]) == reference_hash([]) and row_hash(["a"]) == reference_hash(["a"])
    # Not strings (no converter makes them, but a caller might): json.dumps's own text.
    assert row_hash(["a", 1, None, 2.5, True], [0]) == reference_hash(["a", 1, None, 2.5, True], [0])
    with pytest.raises(UnicodeEncodeError):
        row_hash(["\ud800"])
    with pytest.raises(UnicodeEncodeError):
        reference_hash(["\ud800"])


def test_staged_csv_lines_are_what_csv_writer_writes(tmp_path):
    rng = random.Random(3)
    alphabet = "ab ,\"'\n\r\t;éü€𝄞#/"
    rows = [["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(4)] for _ in range(500)]
    rows += [["", "", "", ""], ["#N/A", "true", "0", "-1.5"], [" lead", "trail ", '"', "\\"]]
    header = ["Name", "Zuora__External_Id__c", "Zuora__Notes__c", "Zuora__Balance__c"]
    parts = CsvParts(tmp_path, "upsert", header, max_bytes=2000, chunk_rows=(50, 200))
    for row in rows:
        parts.write(row)
    parts.close()
    expected = io.StringIO(newline="")
    writer = csv.writer(expected, lineterminator="\n")
    written = b""
    for name in parts.files:
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 2000
        head, _, body = data.partition(b"\n")
        assert head + b"\n" == b"Name,Zuora__External_Id__c,Zuora__Notes__c,Zuora__Balance__c\n"
        written += body
    writer.writerows(rows)
    assert written == expected.getvalue().encode("utf-8")
    assert parts.rows == len(rows) and len(parts.files) > 3


def test_salesforce_keys_answer_alike_in_any_order(tmp_path):
    rng = random.Random(5)
    keys = sorted({f"{rng.randrange(16 ** 6):06x}" for _ in range(3000)})
    touched = {key: rng.random() < 0.3 for key in keys}
    exported = tmp_path / "keys.csv"
    with open(exported, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Zuora__External_Id__c", "SystemModstamp"])
        for key in keys:
            writer.writerow(["a0B", key, "2026-01-02T00:00:00.000Z" if touched[key] else "2025-01-01T00:00:00.000Z"])
    asked = sorted({f"{rng.randrange(16 ** 6):06x}" for _ in range(3000)} | set(keys[::3]))
    orders = {"key order": asked, "random": rng.sample(asked, len(asked)),
              "backwards": asked[::-1], "two parts": asked[1::2] + asked[::2]}
    for label, order in orders.items():
        work = tmp_path / label
        work.mkdir()
        found = KeySet(exported, work, since="2025-06-01T00:00:00.000Z", page=100)
        try:
            for key in order:
                assert (key in found) == (key in touched), (label, key)
                assert found.touched(key) == touched.get(key, False), (label, key)
            assert list(found.missing(order[:50])) == [k for k in order[:50] if k not in touched]
            assert 7 not in found and not found.touched(None)
        finally:
            found.close()


def test_a_rows_values_are_read_as_get_reads_them():
    names = ["c0", "c1", "c2"]
    read = _values_reader(names)
    assert read({"c0": "a", "c1": None, "c2": Decimal("1.0"), "zs_id": "k"}) == ["a", None, Decimal("1.0")]
    assert read({"c0": "a", "c2": 2}) == ["a", None, 2]          # a column left out (null) reads None
    assert _values_reader(["c0"])({"c0": "only"}) == ["only"] and _values_reader(["c0"])({}) == [None]

    class Row:   # a row source's own mapping type: only .get
        def get(self, name):
            return name.upper()

    assert read(Row()) == ["C0", "C1", "C2"]
    for value in (True, False, 1, 0, None, "true", " TRUE ", "t", "yes", "1", "false", "", "0", 2, Decimal("0")):
        expected = value.strip().lower() in ("true", "1", "t", "yes") if isinstance(value, str) else bool(value)
        assert _truthy(value) is expected, value
