"""Extract one mapped object from Zuora into staged, Salesforce-ready files.

For one object and one selection (a window of changes, everything, or chosen accounts) this
runs the Data Query statements :mod:`zuora_sync.queries` builds from the mapping, streams their
rows, decides per row whether it belongs in Salesforce (the mapping's ``keep`` rule, and Zuora's
``deleted`` column), converts the values and writes the object's staged files and their
:class:`~zuora_sync.staging.Manifest` (:mod:`zuora_sync.staging`).

Rows are never all in memory; large selections are read in key-ordered pages so each Data Query
job stays within Zuora's output limits.

Pipelined (``docs/architecture.md``): the extract task only submits the selection's first Data
Query job (:func:`submit_selection`), so Zuora works on it while other objects load; the load task
runs :func:`extract_object` with that job (``first_job``) in a producer thread
(:mod:`zuora_sync.pipeline`) and uploads each upsert chunk as soon as ``on_upsert_file`` says it
is closed. There, after the parents' loads, each converted row is compared with its stored hash
(``hashes``: :mod:`zuora_sync.hashes`) and only the rows that changed or that Salesforce lacks are
staged; the load commits the pending hashes once Salesforce has answered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import operator
from dataclasses import asdict
from typing import Any, Callable, Iterable, Iterator, Protocol

from zuora_sync.hashes import PENDING_HASHES, REFUSED_UNSENT, SEEN_KEYS, HashSource
from zuora_sync.mapping import Column, ObjectMapping
from zuora_sync.queries import PAGE_ROWS, Selection, build_query, selection_parts
from zuora_sync.staging import (
    DELETE_KEYS,
    KEEP_KEYS,
    MAX_FILE_BYTES,
    REJECTED,
    Counts,
    Manifest,
    RejectedConversion,
    StagedObject,
)
from zuora_sync.transform import NULL, ValueConversionError, converter

log = logging.getLogger(__name__)


class RowSource(Protocol):
    """What extraction needs from Zuora: the rows of a Data Query statement, streamed; and, for a
    job submitted ahead (:func:`submit_selection`), the submission and the rows of that job."""

    def data_query(self, sql: str) -> Iterator[dict[str, Any]]: ...

    def submit_data_query(self, sql: str) -> str: ...

    def data_query_rows(self, job_id: str) -> Iterator[dict[str, Any]]: ...


def submit_selection(source: RowSource, obj: ObjectMapping, selection: Selection, *,
                     page_rows: int = PAGE_ROWS) -> str:
    """Submit the Data Query job of the selection's first page and return its id, without waiting.

    Its statement is the one :func:`extract_object` would send first for the same selection, so the
    load can read this job's rows instead (``first_job``). Later pages depend on the first one's
    last key and are submitted by the load as it reads.
    """
    return source.submit_data_query(build_query(obj, selection_parts(obj, selection)[0], limit=page_rows))


def extract_object(
    source: RowSource, obj: ObjectMapping, selection: Selection, directory: Any, *,
    field_types: dict[str, str], tz: dt.tzinfo, max_bytes: int = MAX_FILE_BYTES, page_rows: int = PAGE_ROWS,
    first_job: str | None = None, chunk_rows: tuple[int, int] | None = None,
    on_upsert_file: Callable[[str], None] | None = None, hashes: HashSource | None = None,
) -> Manifest:
    """Stage ``obj``'s rows for ``selection`` in ``directory`` (a Path or ObjectStoragePath).

    :param first_job: a Data Query job :func:`submit_selection` submitted for this very selection:
        its rows are the first page (``None``: submit it now).
    :param chunk_rows: ``(first, most)`` rows per upsert file (:class:`~zuora_sync.staging.CsvParts`);
        ``None``: files are cut by ``max_bytes`` only.
    :param on_upsert_file: called with each upsert file's name once it is complete, while the
        extract goes on (a pipelined load uploads it at once).
    :param hashes: compare each row with its stored hash (:mod:`zuora_sync.hashes`) and stage only
        the rows that changed or that Salesforce lacks; the others are counted as unchanged (and
        still kept, so reconciliation leaves them be). None: stage every row.
    :returns: the manifest, also written beside the files (only once every row is staged).
    """
    staged = StagedObject(directory)
    staged.create()
    columns: list[Column] = obj.columns
    flagging = obj.on_delete == "flag"
    header = obj.upsert_header
    convert = [converter(field_types.get(c.salesforce, "string"), tz) for c in columns]
    convert_second = [converter("string", tz) for _ in obj.second_pass]
    key_index = columns.index(obj.key_column)
    value_names = [f"c{i}" for i in range(len(columns) + len(obj.second_pass))]  # the statement's columns
    read_values = _values_reader(value_names)
    width = len(columns)
    upserts = staged.csv_parts("upsert", header, max_bytes, chunk_rows=chunk_rows, on_close=on_upsert_file)
    links = staged.csv_parts("links", [obj.key] + [c.salesforce for c in obj.second_pass], max_bytes)
    counts = Counts()
    with contextlib.ExitStack() as files:
        deletes = files.enter_context(staged.open_for_writing(DELETE_KEYS))
        keeps = files.enter_context(staged.open_for_writing(KEEP_KEYS))
        rejected = files.enter_context(staged.open_for_writing(REJECTED))
        changed = hashes.filter(files.enter_context(staged.open_for_writing(PENDING_HASHES)),
                                files.enter_context(staged.open_for_writing(SEEN_KEYS)),
                                files.enter_context(staged.open_for_writing(REFUSED_UNSENT))) if hashes else None
        for row in _pages(source, obj, selection, page_rows, first_job):
            counts.extracted += 1
            key = str(row["zs_id"])
            belongs = _truthy(row.get("zs_keep")) and not _truthy(row.get("zs_deleted"))
            if not belongs and not flagging:
                deletes.write(key + "\n")
                counts.deletes += 1
                continue
            values = read_values(row)
            try:
                cells = [fn(value) for fn, value in zip(convert, values)]  # the first len(columns) values
            except ValueConversionError as exc:
                rejected.write(json.dumps(asdict(RejectedConversion(key, "VALUE_CONVERSION", str(exc),
                                                                    _plain(values)))) + "\n")
                counts.rejected += 1
                continue
            if flagging:
                cells.append("false" if belongs else "true")
            second = [fn(v) for fn, v in zip(convert_second, values[width:])] if convert_second else []
            if changed is not None and not changed.admit(key, cells, second):
                if belongs:
                    keeps.write(key + "\n")
                continue
            if flagging and not belongs:
                counts.deletes += 1
            else:
                counts.upserts += 1
            upserts.write(cells)
            if belongs:
                keeps.write(key + "\n")
                # A record Salesforce lacks is created without its links: an empty one needs no pass.
                if obj.second_pass and not (changed is not None and changed.created
                                            and all(value == NULL for value in second)):
                    links.write([cells[key_index]] + second)
        if changed is not None:
            # Rows that waited for a hierarchy parent of their own object which this session sent after all.
            for _key, cells, second in changed.due():
                counts.upserts += 1
                upserts.write(cells)
                if obj.second_pass:
                    links.write([cells[key_index]] + second)
            changed.close()
    upserts.close()
    links.close()
    manifest = Manifest(object=obj.name, salesforce=obj.salesforce, key=obj.key, mode=selection.mode,
                        directory=str(directory), counts=counts, upsert_files=upserts.files,
                        link_files=links.files, on_delete=obj.on_delete, flag=obj.flag,
                        hashes=changed.counts.as_dict() if changed is not None else None)
    staged.write_manifest(manifest)
    log.info("Extracted %s (%s): %d rows from Zuora, %d to upsert, %d to remove, %d rejected",
             obj.name, selection.mode, counts.extracted, counts.upserts, counts.deletes, counts.rejected)
    if changed is not None:
        log.info("%s against the stored hashes: %d to create, %d to update, %d unchanged%s", obj.name,
                 changed.counts.created, changed.counts.updated, changed.counts.unchanged,
                 " (force: sent all the same)" if changed.force else " (not sent)")
        if changed.counts.refused:
            log.info("%s: %d row(s) Salesforce refused before, as they are now, for a reason in their own values "
                     "(or a parent still refused): not sent again; they stay rejected", obj.name, changed.counts.refused)
        if changed.counts.emptied:
            log.info("%s: %d row(s) written before with an optional lookup emptied, whose target is still not in "
                     "Salesforce: not sent again", obj.name, changed.counts.emptied)
    return manifest


def _pages(source: RowSource, obj: ObjectMapping, selection: Selection, page_rows: int,
           first_job: str | None = None) -> Iterator[dict[str, Any]]:
    """All rows of the selection, one Data Query job per part and ``page_rows`` rows (key order), each once.

    ``first_job``, when given, is the first part's first page, submitted ahead.
    """
    seen: set[str] = set()  # rows of parts that may repeat: retries and chosen accounts, few enough to keep
    for index, part in enumerate(selection_parts(obj, selection)):
        after = None
        while True:
            count = 0
            last = None
            if index == 0 and after is None and first_job is not None:
                rows = source.data_query_rows(first_job)
            else:
                rows = source.data_query(build_query(obj, part, after_key=after, limit=page_rows))
            for row in rows:
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


def _values_reader(names: list[str]) -> Callable[[dict[str, Any]], list[Any]]:
    """``row -> [row.get(name) for name in names]``: one C call for a row that has every column (Data
    Query writes nulls), the ``get`` per column for one that lacks some."""
    if len(names) < 2:
        return lambda row: [row.get(name) for name in names]
    pick = operator.itemgetter(*names)

    def read(row: dict[str, Any]) -> list[Any]:
        try:
            return list(pick(row))
        except (LookupError, TypeError):  # a column missing (or a row that is not a plain dict)
            return [row.get(name) for name in names]

    return read


def _truthy(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "t", "yes")
    return bool(value)


def _plain(values: Iterable[Any]) -> list[Any]:
    return [v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for v in values]


__all__ = ["Selection", "extract_object", "submit_selection", "NULL"]
