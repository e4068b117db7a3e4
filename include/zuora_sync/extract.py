"""Extract one mapped object from Zuora into staged, Salesforce-ready files.

For one object and one selection (a window of changes, everything, or chosen accounts) this
builds the Data Query statement from the mapping, streams its rows, decides per row whether it
belongs in Salesforce (the mapping's ``keep`` rule, and Zuora's ``deleted`` column), converts the
values and writes:

``upsert-NNNN.csv``   Bulk API 2.0 upsert files, each under 100 MB (relationship columns included)
``links-NNNN.csv``    second-pass columns (e.g. the customer hierarchy) for the kept rows
``delete-keys.txt``   external ids of rows to remove from Salesforce (objects with ``on_delete: flag``
                      get upsert rows with the flag set instead)
``keep-keys.txt``     every kept external id, for a full sync's reconciliation
``rejected.jsonl``    rows whose values cannot be converted, with the reason (nothing is dropped silently)
``manifest.json``     counts and file names

Rows are never all in memory; large selections are read in key-ordered pages so each Data Query
job stays within Zuora's output limits.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from zuora_sync.mapping import Column, ObjectMapping
from zuora_sync.private_files import make_private_dir, open_private
from zuora_sync.transform import NULL, ValueConversionError, converter

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 90 * 1024 * 1024  # Bulk API 2.0 takes 100 MB a job; leave room for its base64 estimate
PAGE_ROWS = 400_000                # rows per Data Query job (Zuora caps Live query output)
MAX_IN_LIST = 1_000                # ids per IN list in one statement
MODES = ("window", "full", "accounts")


class RowSource(Protocol):
    """What extraction needs from Zuora: the rows of a Data Query statement, streamed."""

    def data_query(self, sql: str) -> Iterator[dict[str, Any]]: ...


@dataclass
class Selection:
    """Which rows of an object to extract.

    A window selection also reads rows outside the window that must be tried again: the object's
    own rows Salesforce rejected before (``retry_keys``), and rows whose related record (a
    ``changes_with`` alias) is being retried or was just fixed (``related_keys``), so that their
    lookup to it is written once it is in Salesforce. All of them, in pages of ``MAX_IN_LIST``.
    """

    mode: str                                   # window | full | accounts
    window_start: dt.datetime | None = None     # aware; window mode
    window_end: dt.datetime | None = None
    retry_keys: list[str] = field(default_factory=list)   # rejected last time: extract again (window mode)
    account_keys: list[str] = field(default_factory=list)  # account ids or numbers (accounts mode)
    related_keys: dict[str, list[str]] = field(default_factory=dict)  # alias -> ids (window mode)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "window" and (self.window_start is None or self.window_end is None):
            raise ValueError("a window selection needs window_start and window_end")
        if self.mode == "accounts" and not self.account_keys:
            raise ValueError("an accounts selection needs at least one account id or number")


def sql_string(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_timestamp(moment: dt.datetime) -> str:
    """A Trino timestamp literal with an explicit zone, so the tenant's time zone cannot shift it."""
    utc = moment.astimezone(dt.timezone.utc)
    return f"TIMESTAMP '{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d} UTC'"


def _in_list(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(sql_string(v) for v in values)})"


def _chunks(values: list[Any], size: int | None = None) -> Iterator[list[Any]]:
    size = size or MAX_IN_LIST
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass(frozen=True)
class Part:
    """One statement's share of a selection: a condition, and whether its rows may repeat another part's."""

    condition: str | None
    may_repeat: bool = False


def selection_parts(obj: ObjectMapping, selection: Selection) -> list[Part]:
    """The conditions whose rows make up ``selection``, each read as its own (key-paged) statements.

    A window's retries exclude the rows the window reads anyway; the parts that may still meet a
    row twice (retries, account lists) say so.
    """
    base = obj.table
    if selection.mode == "full":
        return [Part(None)]
    if selection.mode == "accounts":
        if obj.account is None:
            raise ValueError(f"object {obj.name} has no 'account' alias, so it cannot be synced by account")
        return [Part(f"({_in_list(obj.account + '.id', chunk)} OR {_in_list(obj.account + '.accountnumber', chunk)})",
                     may_repeat=True) for chunk in _chunks(selection.account_keys)]
    start, end = sql_timestamp(selection.window_start), sql_timestamp(selection.window_end)
    window = "(" + " OR ".join(f"({alias}.updateddate >= {start} AND {alias}.updateddate < {end})"
                               for alias in [base, *obj.changes_with]) + ")"
    parts = [Part(window)]
    outside = f"NOT COALESCE({window}, false)"  # a LEFT JOIN's missing row makes the window NULL
    # Every (alias, id) to retry, MAX_IN_LIST of them per statement: usually all in one.
    pairs = [(base, key) for key in sorted(set(selection.retry_keys))]
    for alias, keys in selection.related_keys.items():
        if alias not in obj.joins:
            raise ValueError(f"object {obj.name} has no alias {alias}")
        pairs += [(alias, key) for key in sorted(set(keys))]
    for chunk in _chunks(pairs):
        by_alias: dict[str, list[str]] = {}
        for alias, key in chunk:
            by_alias.setdefault(alias, []).append(key)
        wanted = " OR ".join(_in_list(f"{alias}.id", keys) for alias, keys in by_alias.items())
        parts.append(Part(f"({wanted}) AND {outside}", may_repeat=True))
    return parts


def build_query(obj: ObjectMapping, part: Part | Selection, *, after_key: str | None = None,
                limit: int = PAGE_ROWS) -> str:
    """The Data Query statement for one page of ``part`` (keys greater than ``after_key``).

    Given a :class:`Selection`, the statement of its first part.
    """
    if isinstance(part, Selection):
        part = selection_parts(obj, part)[0]
    base = obj.table
    keep = f"CASE WHEN {obj.keep} THEN true ELSE false END" if obj.keep else "true"
    select = [f"{base}.id AS zs_id", f"{base}.deleted AS zs_deleted", f"{keep} AS zs_keep"]
    select += [f"{c.expression} AS c{i}" for i, c in enumerate(obj.columns + obj.second_pass)]
    sql = f"SELECT {', '.join(select)} FROM {base}"
    for clause in obj.joins.values():
        sql += f" {clause}"
    conditions = [part.condition] if part.condition else []
    if after_key is not None:
        conditions.append(f"{base}.id > {sql_string(after_key)}")
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + f" ORDER BY {base}.id LIMIT {limit}"


class _PartWriter:
    """CSV parts under a size limit, each with the header, in a staging directory."""

    def __init__(self, directory: Any, prefix: str, header: list[str], max_bytes: int):
        self.directory, self.prefix, self.header, self.max_bytes = directory, prefix, header, max_bytes
        self.files: list[str] = []
        self.rows = 0
        self._handle = None
        self._size = 0
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def _encode(self, cells: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()

    def write(self, cells: list[str]) -> None:
        line = self._encode(cells)
        size = len(line.encode("utf-8"))
        if self._handle is None or self._size + size > self.max_bytes:
            self._open()
        self._handle.write(line)
        self._size += size
        self.rows += 1

    def _open(self) -> None:
        self.close()
        name = f"{self.prefix}-{len(self.files):04d}.csv"
        self._handle = open_private(self.directory / name, "w", encoding="utf-8", newline="")
        header = self._encode(self.header)
        self._handle.write(header)
        self._size = len(header.encode("utf-8"))
        self.files.append(name)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def extract_object(
    source: RowSource, obj: ObjectMapping, selection: Selection, directory: Any, *,
    field_types: dict[str, str], tz: dt.tzinfo, max_bytes: int = MAX_FILE_BYTES, page_rows: int = PAGE_ROWS,
) -> dict[str, Any]:
    """Stage ``obj``'s rows for ``selection`` in ``directory`` (a Path or ObjectStoragePath).

    The files hold customer data: on local disk they are created ``0600`` in directories created
    ``0700`` (:mod:`zuora_sync.private_files`).
    """
    make_private_dir(directory)
    columns: list[Column] = obj.columns
    flagging = obj.on_delete == "flag"
    header = [c.salesforce for c in columns] + ([obj.flag] if flagging else [])
    convert = [converter(field_types.get(c.salesforce, "string"), tz) for c in columns]
    convert_second = [converter("string", tz) for _ in obj.second_pass]
    key_index = columns.index(obj.key_column)
    upserts = _PartWriter(directory, "upsert", header, max_bytes)
    links = _PartWriter(directory, "links", [obj.key] + [c.salesforce for c in obj.second_pass], max_bytes)
    counts = {"extracted": 0, "upserts": 0, "deletes": 0, "rejected": 0}
    with open_private(directory / "delete-keys.txt", "w", encoding="utf-8") as deletes, \
            open_private(directory / "keep-keys.txt", "w", encoding="utf-8") as keeps, \
            open_private(directory / "rejected.jsonl", "w", encoding="utf-8") as rejected:
        for row in _pages(source, obj, selection, page_rows):
            counts["extracted"] += 1
            values = [row.get(f"c{i}") for i in range(len(columns) + len(obj.second_pass))]
            key = str(row["zs_id"])
            belongs = _truthy(row.get("zs_keep")) and not _truthy(row.get("zs_deleted"))
            if not belongs and not flagging:
                deletes.write(key + "\n")
                counts["deletes"] += 1
                continue
            try:
                cells = [fn(value) for fn, value in zip(convert, values[: len(columns)])]
            except ValueConversionError as exc:
                rejected.write(json.dumps({"external_id": key, "error_code": "VALUE_CONVERSION",
                                           "message": str(exc), "row": _plain(values)}) + "\n")
                counts["rejected"] += 1
                continue
            if flagging:
                cells.append("false" if belongs else "true")
                counts["upserts" if belongs else "deletes"] += 1
            else:
                counts["upserts"] += 1
            upserts.write(cells)
            if belongs:
                keeps.write(key + "\n")
                if obj.second_pass:
                    links.write([cells[key_index]] + [fn(v) for fn, v in zip(convert_second, values[len(columns):])])
    upserts.close()
    links.close()
    manifest = {
        "object": obj.name, "salesforce": obj.salesforce, "key": obj.key, "mode": selection.mode,
        "counts": counts, "upsert_files": upserts.files, "link_files": links.files,
        "on_delete": obj.on_delete, "flag": obj.flag,
    }
    with open_private(directory / "manifest.json", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=1))
    log.info("Extracted %s (%s): %d rows from Zuora, %d to upsert, %d to remove, %d rejected",
             obj.name, selection.mode, counts["extracted"], counts["upserts"], counts["deletes"], counts["rejected"])
    return manifest


def _pages(source: RowSource, obj: ObjectMapping, selection: Selection, page_rows: int) -> Iterator[dict[str, Any]]:
    """All rows of the selection, one Data Query job per part and ``page_rows`` rows (key order), each once."""
    seen: set[str] = set()  # rows of parts that may repeat: retries and chosen accounts, few enough to keep
    for part in selection_parts(obj, selection):
        after = None
        while True:
            count = 0
            last = None
            for row in source.data_query(build_query(obj, part, after_key=after, limit=page_rows)):
                count += 1
                last = row["zs_id"]
                if part.may_repeat:
                    if last in seen:
                        continue
                    seen.add(last)
                yield row
            if count < page_rows:
                break
            after = last


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "t", "yes")
    return bool(value)


def _plain(values: Iterable[Any]) -> list[Any]:
    return [v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for v in values]


def read_keys(path: Any) -> Iterator[str]:
    """The external ids in a staged ``*-keys.txt`` file."""
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            key = line.strip()
            if key:
                yield key


def local_path(path: Any) -> Path:
    """A local file for ``path``: itself when it is on this machine's disk."""
    if isinstance(path, Path):
        return path
    protocol = getattr(path, "protocol", "file")
    if protocol in ("file", "local", ""):
        return Path(getattr(path, "path", str(path)))
    raise ValueError("copy remote staged files to a local temporary file first")


__all__ = ["Selection", "build_query", "extract_object", "read_keys", "sql_timestamp", "NULL"]
