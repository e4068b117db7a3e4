"""Extract one mapped object from Zuora into staged, Salesforce-ready files.

For one object and one selection (a window of changes, everything, or chosen accounts) this
runs the Data Query statements :mod:`zuora_sync.queries` builds from the mapping, streams their
rows, decides per row whether it belongs in Salesforce (the mapping's ``keep`` rule, and Zuora's
``deleted`` column), converts the values and writes:

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
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from zuora_sync.mapping import Column, ObjectMapping
from zuora_sync.queries import PAGE_ROWS, Selection, build_query, selection_parts
from zuora_sync.private_files import make_private_dir, open_private
from zuora_sync.transform import NULL, ValueConversionError, converter

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 90 * 1024 * 1024  # Bulk API 2.0 takes 100 MB a job; leave room for its base64 estimate
class RowSource(Protocol):
    """What extraction needs from Zuora: the rows of a Data Query statement, streamed."""

    def data_query(self, sql: str) -> Iterator[dict[str, Any]]: ...


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


__all__ = ["Selection", "extract_object", "read_keys", "NULL"]
