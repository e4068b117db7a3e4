"""The sync's Bulk API 2.0 jobs: what a job is, driven carefully, on :class:`SalesforceBulkHook`.

The hook (:mod:`zuora_sync.hooks.salesforce_bulk`) owns the connection, counting, re-login and
retries of single requests. The loader owns the jobs, with these rules (``docs/operations.md``):

* **Budget.** Before a job starts, fewer remaining daily requests than ``api_reserve`` raise
  :class:`ApiBudgetExhausted` (so does ``REQUEST_LIMIT_EXCEEDED`` at any time): the session stops
  cleanly and resumes next time instead of burning retries.
* **Upload.** The ``PUT`` of the CSV is never repeated on the same job. A connection that drops
  during or after the upload leaves it unknown whether Salesforce stored the data, and Bulk 2.0
  allows one upload per job; but data in a job that is never closed is never processed. So the
  loader aborts that job and starts a new one with the same file: nothing is applied twice, for
  any operation.
* **Close.** Closing a job (``PATCH UploadComplete``) is not blindly repeated: after a failure the
  loader reads the job's state and only closes it again if it is still ``Open``.
* **Pipelining.** :meth:`SalesforceBulkLoader.start_upsert` creates, uploads and closes a job and
  returns at once; :meth:`SalesforceBulkLoader.finish` polls it and reads its failed rows. A load
  uploads its next chunk while Salesforce processes the one before, and collects the jobs later
  (one poll each when they are done by then).
* **Failures.** A job that ends ``Failed`` or ``Aborted`` raises :class:`BulkJobFailed` with
  Salesforce's ``errorMessage``. Rejected rows never raise: they come back as
  :class:`RejectedRow` in the :class:`JobOutcome`, parsed from ``failedResults``, which are only
  downloaded when the job reports failed rows. ``successfulResults`` are never downloaded (the
  external ids already say which record is which; every request counts against the org's allowance).

simple-salesforce's own ``bulk2`` loops are not used: they sleep 5 seconds before the first poll,
never re-login, never retry a dropped connection, and hold the whole CSV in memory.

One log line per job says object, operation, job id, rows processed and failed, seconds and API
requests. Credentials and session ids are never logged.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from zuora_sync.hooks.salesforce_bulk import (
    ApiBudgetExhausted,
    QueryPage,
    SalesforceBulkHook,
    describe_error,
    is_transient,
)
from zuora_sync.retry import SALESFORCE as SALESFORCE_RETRY

__all__ = [
    "MAX_JOB_BYTES",
    "ApiBudgetExhausted",
    "BulkJobFailed",
    "JobOutcome",
    "RejectedRow",
    "SalesforceBulkLoader",
    "StartedJob",
]

log = logging.getLogger(__name__)

#: Bulk API 2.0 accepts 150 MB per upload; Salesforce advises 100 MB (base64 expansion inside the
#: platform) and simple-salesforce caps a job there too.
MAX_JOB_BYTES = 100 * 1024 * 1024

#: SOQL statements may be 100,000 characters long; IN lists are cut to stay well inside that.
SOQL_MAX_CHARS = 100_000
_SOQL_BUDGET = SOQL_MAX_CHARS - 5_000

#: Rows per results page of a Bulk 2.0 query job (simple-salesforce's default; Salesforce's own
#: page size is chosen by the server when none is given).
DEFAULT_QUERY_PAGE_SIZE = 50_000

#: How many query jobs :meth:`SalesforceBulkLoader.ids_for_external_ids` keeps running at once.
_QUERY_JOBS_IN_FLIGHT = 4
_BATCH_SUBREQUESTS = 25   # composite batch: subrequests per request

_UTF8_BOM = b"\xef\xbb\xbf"

class BulkJobFailed(Exception):
    """A Bulk API 2.0 job as a whole ended ``Failed`` or ``Aborted`` (or never finished).

    Row-level errors never raise this; a job fails for reasons such as an unknown column
    (``InvalidBatch : Field name not found : X``) that no retry of the same file can fix.

    :param job_id: the Salesforce job id.
    :param state: the job's last state (``Failed``, ``Aborted``, or the state it was stuck in).
    :param message: Salesforce's ``errorMessage``, or the loader's reason.
    """

    def __init__(self, job_id: str, state: str, message: str):
        super().__init__(f"Bulk API 2.0 job {job_id} {state}: {message}")
        self.job_id = job_id
        self.state = state
        self.message = message


@dataclass
class RejectedRow:
    """One row Salesforce refused, with what a person needs to fix and retry it.

    :ivar external_id: the row's value in its external-id column (``None`` for deletes, or when
        the column is absent or empty).
    :ivar sf_id: the Salesforce Id the row refers to (``sf__Id``), ``None`` for a failed create.
    :ivar error_code: Salesforce's status code, e.g. ``REQUIRED_FIELD_MISSING``.
    :ivar message: Salesforce's message, plus the fields it names when the message does not
        (``message (fields: Field1,Field2)``).
    :ivar row: the row's original columns as uploaded.
    """

    external_id: str | None
    sf_id: str | None
    error_code: str
    message: str
    row: dict[str, str]


@dataclass
class JobOutcome:
    """What one Bulk API 2.0 ingest (or a chunked delete spanning several jobs) did.

    :ivar job_id: the Salesforce job id; several comma-separated when a delete needed more jobs;
        empty when there was nothing to send.
    :ivar operation: ``upsert``, ``insert``, ``update``, ``delete`` or ``hardDelete``.
    :ivar sobject: the object written.
    :ivar processed: rows Salesforce processed (successful and failed).
    :ivar failed: rows rejected (``len(rejected)``); deletes of already deleted records are not
        counted as failed.
    :ivar rejected: the rejected rows.
    """

    job_id: str
    operation: str
    sobject: str
    processed: int
    failed: int
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        """Rows that reached Salesforce as asked."""
        return self.processed - self.failed


@dataclass
class StartedJob:
    """An ingest job created, uploaded and closed, not yet collected (:meth:`SalesforceBulkLoader.finish`).

    :ivar job_id: the Salesforce job id; empty when the file had no rows (``outcome`` is then set).
    :ivar outcome: the job's outcome once collected.
    """

    job_id: str
    operation: str
    sobject: str
    external_id_column: str | None = None
    already_deleted: bool = False
    started: float = 0.0
    closed_at: float = 0.0
    requests: int = 0
    outcome: JobOutcome | None = None


class _JobRestart(Exception):
    """Internal: the upload failed in a way that needs a new job (see the module docstring)."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class SalesforceBulkLoader:
    """Bulk API 2.0 writes and reads for the sync, on :class:`SalesforceBulkHook`.

    Nothing touches the network until the first call. One loader per task.

    :param salesforce_conn_id: the Airflow connection (the provider's ``salesforce`` type).
    :param api_reserve: daily API requests to leave untouched; a job does not start when fewer
        remain (:class:`ApiBudgetExhausted`). ``0`` disables the check (``REQUEST_LIMIT_EXCEEDED``
        still stops the loader).
    :param poll_interval: the first wait between job-status polls, seconds. Default the
        connection's extra ``poll_interval``, else 0.2 (an org that finishes small jobs in
        milliseconds, such as the sandbox, may ask for less).
    :param max_poll_interval: the wait grows by half each poll up to this many seconds.
    :param job_timeout: seconds a job may take from close to completion before it is aborted.
    :param max_retries: tries after the first for a transient failure of one call, and restarts
        of a job whose upload failed.
    :param request_timeout: ``requests`` timeout (connect, read) for every HTTP request.
    """

    #: Row errors that, for a delete, mean the record is already gone: the job's goal is met.
    ALREADY_DELETED_CODES = frozenset({"ENTITY_IS_DELETED"})

    def __init__(
        self,
        salesforce_conn_id: str = "salesforce_default",
        *,
        api_reserve: int = 0,
        poll_interval: float | None = None,
        max_poll_interval: float = 5.0,
        job_timeout: float = 24 * 3600,
        max_retries: int = 4,
        request_timeout: float | tuple[float, float] = (30.0, 600.0),
    ):
        if poll_interval is not None and (poll_interval <= 0 or max_poll_interval < poll_interval):
            raise ValueError("poll_interval must be > 0 and at most max_poll_interval")
        self.salesforce_conn_id = salesforce_conn_id
        self.api_reserve = int(api_reserve or 0)
        self.poll_interval = None if poll_interval is None else float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.job_timeout = float(job_timeout)
        self.max_retries = int(max_retries)
        #: The hook every request goes through (connection, counting, re-login, retries).
        self.hook = SalesforceBulkHook(salesforce_conn_id, retry=SALESFORCE_RETRY.with_(retries=self.max_retries),
                                       request_timeout=request_timeout)
        self._key_prefixes: dict[str, str | None] = {}

    @property
    def api_requests(self) -> int:
        """Every HTTP request to Salesforce's API made through this loader (logins excluded)."""
        return self.hook.api_requests

    @property
    def relogins(self) -> int:
        """Logins after the first one (``INVALID_SESSION_ID`` recoveries)."""
        return self.hook.relogins

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """``(used, max)`` from the last ``Sforce-Limit-Info`` header seen, if any."""
        return self.hook.api_usage

    # -- public API ---------------------------------------------------------------------------

    def check_budget(self) -> tuple[int, int]:
        """Ask Salesforce (``GET /limits``) how many daily API requests remain.

        :returns: ``(remaining, max)`` of ``DailyApiRequests``.
        :raises ApiBudgetExhausted: fewer than ``api_reserve`` remain, or the allowance is gone.
        """
        daily = self.hook.limits()["DailyApiRequests"]
        remaining, maximum = int(daily["Remaining"]), int(daily["Max"])
        self.hook.api_usage = (maximum - remaining, maximum)
        self._enforce_reserve(remaining, maximum)
        return remaining, maximum

    def upsert_csv(self, sobject: str, external_id_field: str, path: str | os.PathLike, *,
                   external_id_column: str | None = None) -> JobOutcome:
        """Upsert one CSV file by external id as one Bulk API 2.0 job.

        The file is streamed from disk (never held in memory) and must already be Bulk-ready:
        API names in the header, UTF-8, ``#N/A`` to clear a field, relationship columns such as
        ``Zuora__CustomerAccount__r.Zuora__External_Id__c`` for links. A UTF-8 byte order mark
        is skipped (Salesforce would fail the job on it). Uploading the same file again is safe:
        an upsert by external id converges.

        :param sobject: the object's API name.
        :param external_id_field: the upsert key (an External ID field of ``sobject``).
        :param path: the CSV file, at most 100 MB; a local path or an ``ObjectStoragePath``.
        :param external_id_column: the column holding each row's external id, to name rejected
            rows; defaults to ``external_id_field``.
        :returns: the job's counts and its rejected rows.
        :raises ValueError: the file is larger than 100 MB (split it into several jobs).
        :raises BulkJobFailed: the job as a whole failed (e.g. an unknown column).
        :raises ApiBudgetExhausted: see :meth:`check_budget`.
        """
        return self._ingest("upsert", sobject, path, external_id_field=external_id_field,
                            external_id_column=external_id_column or external_id_field)

    def insert_csv(self, sobject: str, path: str | os.PathLike, *,
                   external_id_column: str | None = None) -> JobOutcome:
        """Insert the rows of one CSV file as one Bulk API 2.0 job (see :meth:`upsert_csv`).

        A failed upload is never repeated on the same job, so no row is inserted twice.
        """
        return self._ingest("insert", sobject, path, external_id_column=external_id_column)

    def update_csv(self, sobject: str, path: str | os.PathLike, *,
                   external_id_column: str | None = None) -> JobOutcome:
        """Update records by their ``Id`` column from one CSV file as one Bulk API 2.0 job."""
        return self._ingest("update", sobject, path, external_id_column=external_id_column)

    def delete_ids(self, sobject: str, ids: Iterable[str], *, hard: bool = False) -> JobOutcome:
        """Delete records by Salesforce Id with Bulk API 2.0 (``hardDelete`` skips the recycle bin).

        The ids are written to ``Id``-only CSV files of at most 100 MB each, one job per file,
        without repeating an id within a job. A record that is already deleted counts as done,
        not rejected (``ENTITY_IS_DELETED``, or ``INVALID_CROSS_REFERENCE_KEY`` for an Id of
        this object that no longer exists at all, e.g. after a hard delete): the goal, the
        record being gone, is met.

        :returns: the counts over all jobs; ``job_id`` lists them comma-separated.
        """
        operation = "hardDelete" if hard else "delete"
        outcomes: list[JobOutcome] = []
        with tempfile.TemporaryDirectory(prefix="zuora-sync-delete-") as directory:
            for chunk in self._write_id_chunks(ids, Path(directory)):
                outcome = self._ingest(operation, sobject, chunk, already_deleted=True)
                outcomes.append(outcome)
                chunk.unlink()
        if not outcomes:
            log.info("Bulk API 2.0 %s of %s: no ids, nothing to do", operation, sobject)
            return JobOutcome("", operation, sobject, 0, 0, [])
        return JobOutcome(
            job_id=",".join(o.job_id for o in outcomes if o.job_id),
            operation=operation,
            sobject=sobject,
            processed=sum(o.processed for o in outcomes),
            failed=sum(o.failed for o in outcomes),
            rejected=[row for o in outcomes for row in o.rejected],
        )

    def query_to_csv(self, soql: str, path: str | os.PathLike, *, include_deleted: bool = False,
                     page_size: int = DEFAULT_QUERY_PAGE_SIZE) -> int:
        """Run a Bulk API 2.0 query job and write its result to one CSV file on disk.

        Pages (followed by ``Sforce-Locator``) are streamed to a temporary file each and appended
        to ``path``, the header written once, so memory stays flat whatever the result size.

        :param soql: the query; columns come back in its order.
        :param path: the CSV file to (over)write; a local path or an ``ObjectStoragePath``.
        :param include_deleted: ``queryAll``: include records in the recycle bin.
        :param page_size: rows per results page (``maxRecords``).
        :returns: the number of rows written.
        """
        operation = "queryAll" if include_deleted else "query"
        self._connect()
        self._ensure_reserve()
        started, before = time.monotonic(), self.api_requests
        job_id = self.hook.create_query_job(soql, operation)
        self._wait(job_id, is_query=True)
        rows = 0
        with tempfile.TemporaryDirectory(prefix="zuora-sync-query-") as directory, \
                _open(path, "wb") as out:
            for index, page in enumerate(self._result_pages(job_id, page_size, Path(directory))):
                rows += page.count
                with open(page.file, "rb") as handle:
                    if index > 0:
                        handle.readline()  # the header, written once already
                    _append(handle, out)
                os.unlink(page.file)
        log.info("Bulk API 2.0 %s: job %s, %d rows to %s, %.1f s, %d API requests",
                 operation, job_id, rows, _display(path), time.monotonic() - started,
                 self.api_requests - before)
        return rows

    def ids_for_external_ids(self, sobject: str, external_id_field: str,
                             external_ids: Iterable[str]) -> dict[str, str]:
        """Map external ids to Salesforce Ids with Bulk API 2.0 query jobs.

        The ids go into ``WHERE field IN (...)`` lists cut to stay inside SOQL's 100,000
        character limit; a few jobs run at once. Ids not found are absent from the result.
        Values match as Salesforce matches them (case-insensitively for text external ids);
        the keys of the result are the values given.

        :returns: ``{external id: Salesforce Id}``.
        """
        wanted: dict[str, str] = {}
        for value in external_ids:
            if value is not None and str(value) != "":
                wanted.setdefault(str(value), str(value))
        if not wanted:
            return {}
        folded: dict[str, str] = {}
        for value in wanted:
            folded.setdefault(value.casefold(), value)
        started, before = time.monotonic(), self.api_requests
        queries = list(self._in_list_queries(sobject, external_id_field, list(wanted)))
        self._ensure_reserve()
        found: dict[str, str] = {}
        pending: list[str] = []
        position = 0
        with tempfile.TemporaryDirectory(prefix="zuora-sync-ids-") as directory:
            while position < len(queries) or pending:
                # Keep a few jobs running so that the later ones are done when their turn comes.
                while position < len(queries) and len(pending) < _QUERY_JOBS_IN_FLIGHT:
                    pending.append(self.hook.create_query_job(queries[position], "query"))
                    position += 1
                job_id = pending.pop(0)
                self._wait(job_id, is_query=True)
                for page in self._result_pages(job_id, DEFAULT_QUERY_PAGE_SIZE, Path(directory)):
                    with open(page.file, newline="", encoding="utf-8") as handle:
                        for record in csv.DictReader(handle):
                            value, record_id = record.get(external_id_field), record.get("Id")
                            if not value or not record_id:
                                continue
                            key = value if value in wanted else folded.get(value.casefold())
                            if key is not None:
                                found[key] = record_id
                    os.unlink(page.file)
        log.info("Bulk API 2.0 id lookup on %s.%s: %d of %d external ids found, %d query jobs, "
                 "%.1f s, %d API requests", sobject, external_id_field, len(found), len(wanted),
                 len(queries), time.monotonic() - started, self.api_requests - before)
        return found

    def count(self, soql_where: str) -> int:
        """``SELECT COUNT() FROM ...`` through REST: the number of matching records, one API request."""
        return self.hook.count(soql_where)

    def describe_global(self) -> dict:
        """The org's global ``describe`` (every sObject's name, label, whether it is queryable)."""
        return self.hook.describe_global()

    def describe(self, sobject: str) -> dict:
        """The REST ``describe`` of ``sobject`` (fields, their types, external ids, writability).

        Used by the mapping preflight; one API request.
        """
        return self.hook.describe_sobject(sobject)

    def rest_batch(self, paths: list[str]) -> list[tuple[int, Any]]:
        """GET several REST resources with composite batch: one API request per 25 paths.

        :param paths: relative to the versioned REST base (``sobjects/X/describe``, ``query?q=…``).
        :returns: ``(HTTP status, result)`` per path, in order; an error's result is Salesforce's
            list of ``{"errorCode", "message"}``.
        """
        answers: list[tuple[int, Any]] = []
        for start in range(0, len(paths), _BATCH_SUBREQUESTS):
            for result in self.hook.composite_batch(paths[start:start + _BATCH_SUBREQUESTS]):
                answers.append((int(result.get("statusCode") or 0), result.get("result")))
        return answers

    def describe_many(self, sobjects: list[str]) -> dict[str, dict | Exception]:
        """The REST ``describe`` of each of ``sobjects`` through :meth:`rest_batch` (one request per 25);
        an object Salesforce would not describe maps to an exception that says why."""
        names = list(dict.fromkeys(sobjects))
        described: dict[str, dict | Exception] = {}
        for name, (status, result) in zip(names, self.rest_batch([f"sobjects/{name}/describe" for name in names])):
            described[name] = result if status == 200 and isinstance(result, dict) else \
                LookupError(f"describe {name}: HTTP {status} {_errors_text(result)}")
        return described

    def fingerprints(self, owned: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """What Salesforce holds of each object's owned records (those with the external id):
        ``{sObject: {"record_count", "last_modified"}}`` (the newest ``SystemModstamp``).

        Two REST queries per object (``SELECT COUNT()`` and the newest ``SystemModstamp``), all in
        composite batches: one API request for up to twelve objects.

        :param owned: ``(sObject, external id field)`` pairs.
        :raises LookupError: Salesforce refused a query (the message says which and why).
        """
        paths: list[str] = []
        for sobject, key in owned:
            where = f"FROM {sobject} WHERE {key} != null"
            paths.append("query?q=" + quote(f"SELECT COUNT() {where}", safe=""))
            paths.append("query?q=" + quote(f"SELECT SystemModstamp {where} ORDER BY SystemModstamp DESC LIMIT 1",
                                            safe=""))
        answers = self.rest_batch(paths)
        found: dict[str, dict[str, Any]] = {}
        for index, (sobject, _key) in enumerate(owned):
            (count_status, count), (newest_status, newest) = answers[2 * index], answers[2 * index + 1]
            if count_status != 200 or newest_status != 200:
                raise LookupError(f"counting {sobject}'s owned records: HTTP {count_status}/{newest_status} "
                                  f"{_errors_text(count if count_status != 200 else newest)}")
            records = newest.get("records") or []
            found[sobject] = {"record_count": int(count["totalSize"]),
                              "last_modified": records[0].get("SystemModstamp") if records else None}
        return found

    # -- the ingest job ------------------------------------------------------------------------

    def start_upsert(self, sobject: str, external_id_field: str, path: str | os.PathLike, *,
                     external_id_column: str | None = None) -> StartedJob:
        """Create, upload and close one upsert job, without waiting for Salesforce to process it.

        The pipelined load (:func:`zuora_sync.writing.upsert_object`) uploads the next chunk while
        Salesforce processes this one, then collects each job with :meth:`finish`. The same rules
        as :meth:`upsert_csv` (which is ``finish(start_upsert(...))``): an upload in doubt restarts
        its job, the file may be deleted once this returns.
        """
        return self._start("upsert", sobject, path, external_id_field=external_id_field,
                           external_id_column=external_id_column or external_id_field)

    def finish(self, job: StartedJob, *, closely: bool = False) -> JobOutcome:
        """Wait for a job :meth:`start_upsert` started and return its outcome (with rejected rows).

        A job closed a while ago is polled at once (no first wait), so collecting several jobs
        that Salesforce has already processed costs one request each.

        :param closely: nothing else can go on until this job is done (an object's last job: the
            next object waits for it; the jobs before it are collected after it). The wait between
            polls then grows by a quarter, up to 1 s, rather than doubling up to
            ``max_poll_interval``: the end is noticed within a quarter of the time waited (at most
            1 s) instead of as much again, for a few more polls.
        """
        if job.outcome is not None:
            return job.outcome
        before = self.api_requests
        info = self._wait(job.job_id, is_query=False, closed_at=job.closed_at, growth=1.25 if closely else 2.0,
                          max_interval=min(1.0, self.max_poll_interval) if closely else None)
        processed = int(info.get("numberRecordsProcessed") or 0)
        failed = int(info.get("numberRecordsFailed") or 0)
        rejected: list[RejectedRow] = []
        if failed:
            rejected = self._failed_rows(job.sobject, job.job_id, job.external_id_column)
            if job.already_deleted:
                rejected = [r for r in rejected if not self._already_deleted(job.sobject, r)]
            failed = len(rejected)
        log.info("Bulk API 2.0 %s of %s: job %s, %d processed, %d failed, %.1f s, %d API requests",
                 job.operation, job.sobject, job.job_id, processed, failed, time.monotonic() - job.started,
                 job.requests + self.api_requests - before)
        job.outcome = JobOutcome(job.job_id, job.operation, job.sobject, processed, failed, rejected)
        return job.outcome

    def _ingest(self, operation: str, sobject: str, path: str | os.PathLike | Path, *,
                external_id_field: str | None = None, external_id_column: str | None = None,
                already_deleted: bool = False) -> JobOutcome:
        """One file → one ingest job: create, upload, close, poll, failed results."""
        return self.finish(self._start(operation, sobject, path, external_id_field=external_id_field,
                                       external_id_column=external_id_column, already_deleted=already_deleted))

    def _start(self, operation: str, sobject: str, path: str | os.PathLike | Path, *,
               external_id_field: str | None = None, external_id_column: str | None = None,
               already_deleted: bool = False) -> StartedJob:
        """One file → one ingest job, created, uploaded and closed (see :meth:`finish`)."""
        size = _size(path)
        if size > MAX_JOB_BYTES:
            raise ValueError(
                f"{_display(path)} is {size:,} bytes; a Bulk API 2.0 job takes at most "
                f"{MAX_JOB_BYTES:,} bytes (100 MB): split the rows into several files"
            )
        job = StartedJob("", operation, sobject, external_id_column, already_deleted)
        if not _has_rows(path):
            log.info("Bulk API 2.0 %s of %s: %s has no rows, no job created",
                     operation, sobject, _display(path))
            job.outcome = JobOutcome("", operation, sobject, 0, 0, [])
            return job
        self._connect()  # log in first, so the job's seconds are the job's
        self._ensure_reserve()
        job.started, before = time.monotonic(), self.api_requests
        restarts = 0
        while True:
            job_id = self.hook.create_ingest_job(operation, sobject, external_id_field)
            try:
                self._upload(sobject, job_id, path)
                break
            except _JobRestart as restart:
                self._abandon(sobject, job_id)
                if restarts >= self.max_retries:
                    raise restart.cause from None
                log.warning("Upload to Bulk API 2.0 job %s (%s of %s) failed (%s); the job was "
                            "abandoned and a new one starts", job_id, operation, sobject,
                            describe_error(restart.cause))
                self.hook.sleep_before_retry(restarts)
                restarts += 1
        self._close(sobject, job_id)
        job.job_id, job.closed_at, job.requests = job_id, time.monotonic(), self.api_requests - before
        return job

    def _upload(self, sobject: str, job_id: str, path: str | os.PathLike | Path) -> None:
        """``PUT`` the file into the job, streamed from disk; never repeated on the same job.

        Any failure except the API budget becomes :class:`_JobRestart`: the caller abandons the
        job (its data, if any arrived, is never processed because the job is never closed) and
        starts over. A ``401`` re-logs in first, so that the new job is created with a valid
        session.
        """
        from simple_salesforce.exceptions import SalesforceError

        try:
            with _open(path, "rb") as body:
                if body.read(len(_UTF8_BOM)) != _UTF8_BOM:
                    body.seek(0)
                self.hook.upload(job_id, body)
        except SalesforceError as exc:
            self.hook.raise_if_budget(exc)
            if exc.status == 401:
                self.hook.relogin("upload job data")
                raise _JobRestart(exc) from None
            if is_transient(exc):
                raise _JobRestart(exc) from None
            self._abandon(sobject, job_id)
            raise BulkJobFailed(job_id, "Open", f"upload refused: {describe_error(exc)}") from None
        except requests.RequestException as exc:
            if isinstance(exc, requests.exceptions.SSLError):
                raise
            raise _JobRestart(exc) from None

    def _close(self, sobject: str, job_id: str) -> None:
        """``PATCH state=UploadComplete``; after a transient failure, re-close only if still Open."""
        for attempt in range(self.max_retries + 1):
            try:
                self.hook.close_job(job_id)
                return
            except Exception as exc:  # classified below
                if not is_transient(exc) or attempt >= self.max_retries:
                    raise
                log.warning("Closing Bulk API 2.0 job %s failed (%s); checking its state",
                            job_id, describe_error(exc))
                self.hook.sleep_before_retry(attempt)
                state = self.hook.get_job(job_id)["state"]
                if state != "Open":
                    return  # the earlier PATCH did land

    def _wait(self, job_id: str, *, is_query: bool, closed_at: float | None = None, growth: float = 1.5,
              max_interval: float | None = None) -> dict:
        """Poll the job until it is complete; the wait grows from ``poll_interval`` by ``growth``.

        :param closed_at: when the job was closed (``time.monotonic()``); the first wait is only
            what is left of ``poll_interval`` since then.
        :param growth: how the wait grows after each poll (up to ``max_poll_interval``); a job
            collected late (:meth:`finish`) is either done at the first poll or a large one, and
            doubles, so a long wait costs fewer requests.
        :param max_interval: the longest wait between polls (default ``max_poll_interval``).
        """
        deadline = time.monotonic() + self.job_timeout
        cap = max_interval or self.max_poll_interval
        delay = min(self._first_poll(), cap)
        first = delay if closed_at is None else max(0.0, delay - (time.monotonic() - closed_at))
        while True:
            time.sleep(delay if first is None else first)
            first = None
            info = self.hook.get_job(job_id, is_query=is_query)
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in ("Failed", "Aborted"):
                raise BulkJobFailed(job_id, state, info.get("errorMessage") or f"the job was {state.lower()}")
            if time.monotonic() >= deadline:
                try:
                    self.hook.abort_job(job_id, is_query=is_query)
                except ApiBudgetExhausted:
                    raise
                except Exception as exc:  # noqa: BLE001 - best effort: the job ends on its own
                    log.warning("Could not abort Bulk API 2.0 job %s (%s)", job_id, describe_error(exc))
                raise BulkJobFailed(job_id, str(state),
                                    f"not finished within {self.job_timeout:.0f} s; aborted")
            delay = min(delay * growth, cap)

    def _first_poll(self) -> float:
        """The first wait before a job-status poll: as asked, else the connection's hint, else 0.2 s."""
        if self.poll_interval is None:
            hint = self.hook.poll_interval_hint
            self.poll_interval = min(max(hint if hint is not None else 0.2, 0.01), self.max_poll_interval)
        return self.poll_interval

    def _abandon(self, sobject: str, job_id: str) -> None:
        """Abort a job whose upload is in doubt; if even that fails, the job stays Open, and
        Salesforce never processes an open job (it expires after 24 hours)."""
        try:
            self.hook.abort_job(job_id)
        except ApiBudgetExhausted:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort, explained above
            log.warning("Could not abort Bulk API 2.0 job %s (%s); it stays Open and is never "
                        "processed", job_id, describe_error(exc))

    def _failed_rows(self, sobject: str, job_id: str, external_id_column: str | None) -> list[RejectedRow]:
        """Download ``failedResults`` to a temporary file and parse it into :class:`RejectedRow`."""
        handle, name = tempfile.mkstemp(prefix="zuora-sync-failed-", suffix=".csv")
        os.close(handle)
        try:
            self.hook.download_failed_results(job_id, name)
            rows: list[RejectedRow] = []
            with open(name, newline="", encoding="utf-8") as results:
                reader = csv.DictReader(results)
                column = _match_column(reader.fieldnames or [], external_id_column)
                for record in reader:
                    code, message = parse_sf_error(record.get("sf__Error") or "")
                    original = {k: v for k, v in record.items() if k is not None and not k.startswith("sf__")}
                    rows.append(RejectedRow(
                        external_id=(original.get(column) or None) if column else None,
                        sf_id=record.get("sf__Id") or None,
                        error_code=code,
                        message=message,
                        row=original,
                    ))
            return rows
        finally:
            os.unlink(name)

    def _already_deleted(self, sobject: str, row: RejectedRow) -> bool:
        """Whether a failed delete row means the record was already gone."""
        if row.error_code in self.ALREADY_DELETED_CODES:
            return True
        if row.error_code == "INVALID_CROSS_REFERENCE_KEY":
            # A well-formed Id of this very object that Salesforce no longer knows: purged (hard
            # deleted, or emptied from the recycle bin). An Id of another object stays an error.
            record_id = row.row.get("Id") or row.sf_id or ""
            prefix = self._key_prefix(sobject)
            return bool(prefix) and len(record_id) in (15, 18) and record_id[:3] == prefix
        return False

    def _key_prefix(self, sobject: str) -> str | None:
        if sobject not in self._key_prefixes:
            self._key_prefixes[sobject] = self.describe(sobject).get("keyPrefix")
        return self._key_prefixes[sobject]

    # -- query jobs ----------------------------------------------------------------------------

    def _result_pages(self, job_id: str, page_size: int, directory: Path) -> Iterator[QueryPage]:
        """Each results page of a query job, streamed to a file in ``directory``."""
        locator = ""
        for number in itertools.count():
            page = self.hook.download_query_page(job_id, locator, page_size, directory / f"page-{number:05d}.csv")
            yield page
            locator = page.locator
            if not locator:
                return

    @staticmethod
    def _in_list_queries(sobject: str, field_name: str, values: list[str]) -> Iterator[str]:
        """``SELECT Id, field FROM sobject WHERE field IN (...)`` statements within the budget."""
        prefix = f"SELECT Id, {field_name} FROM {sobject} WHERE {field_name} IN ("
        literals: list[str] = []
        length = len(prefix) + 1
        for value in values:
            literal = _soql_literal(value)
            if literals and length + len(literal) + 1 > _SOQL_BUDGET:
                yield prefix + ",".join(literals) + ")"
                literals, length = [], len(prefix) + 1
            literals.append(literal)
            length += len(literal) + 1
        if literals:
            yield prefix + ",".join(literals) + ")"

    # -- ids for deletes -----------------------------------------------------------------------

    @staticmethod
    def _write_id_chunks(ids: Iterable[str], directory: Path) -> Iterator[Path]:
        """``Id``-only CSV files of at most :data:`MAX_JOB_BYTES`, no id twice in one file."""
        number = 0
        handle: IO[str] | None = None
        path: Path | None = None
        seen: set[str] = set()
        size = 0
        try:
            for raw in ids:
                record_id = (raw or "").strip()
                if not record_id or record_id in seen:
                    continue
                line = record_id + "\n"
                if handle is None or size + len(line) > MAX_JOB_BYTES - 1024:
                    if handle is not None:
                        handle.close()
                        yield path  # type: ignore[misc]
                    number += 1
                    path = directory / f"ids-{number:04d}.csv"
                    handle = open(path, "w", encoding="ascii", newline="")  # noqa: SIM115 - closed below
                    handle.write("Id\n")
                    size = 3
                    seen = set()
                handle.write(line)
                seen.add(record_id)
                size += len(line)
            if handle is not None:
                handle.close()
                handle = None
                yield path  # type: ignore[misc]
        finally:
            if handle is not None:
                handle.close()

    # -- the budget ----------------------------------------------------------------------------

    def _ensure_reserve(self) -> None:
        """Before a job: stop if fewer than ``api_reserve`` requests remain.

        Uses the latest ``Sforce-Limit-Info`` seen (free); only the first check of a loader
        that has not talked to Salesforce yet asks ``/limits``.
        """
        if self.api_reserve <= 0:
            return
        if self.api_usage is None:
            self.check_budget()
            return
        used, maximum = self.api_usage
        self._enforce_reserve(maximum - used, maximum)

    def _enforce_reserve(self, remaining: int, maximum: int) -> None:
        if remaining < self.api_reserve:
            raise ApiBudgetExhausted(
                f"Salesforce daily API requests: {remaining:,} of {maximum:,} remain, below the "
                f"reserve of {self.api_reserve:,}; stopping cleanly, the next session resumes",
                remaining=remaining, maximum=maximum, reserve=self.api_reserve,
            )

    def _connect(self) -> None:
        """Log in now (if not yet), so that a job's seconds and requests are the job's."""
        self.hook.get_conn()


# -- helpers -----------------------------------------------------------------------------------


def _errors_text(result: Any) -> str:
    """Salesforce's ``[{"errorCode", "message"}]`` as ``CODE: message; …``."""
    if isinstance(result, list):
        return "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in result if isinstance(e, dict))
    return str(result)


def parse_sf_error(text: str) -> tuple[str, str]:
    """Split a Bulk result's ``sf__Error`` (``CODE:message:fields --``) into code and message.

    The message may itself contain colons; the fields Salesforce names are appended when the
    message does not mention them already.

    >>> parse_sf_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --")
    ('REQUIRED_FIELD_MISSING', 'Required fields are missing: [Name]')
    >>> parse_sf_error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access:Zuora__Status__c --")
    ('UNABLE_TO_LOCK_ROW', 'unable to obtain exclusive access (fields: Zuora__Status__c)')
    >>> parse_sf_error("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--")
    ('INVALID_CROSS_REFERENCE_KEY', 'invalid cross reference id')
    """
    text = text.strip()
    code, sep, rest = text.partition(":")
    if not sep:
        return text or "UNKNOWN_ERROR", text
    if rest.endswith("--"):
        message, _, fields = rest[:-2].rstrip().rpartition(":")
        message, fields = message.strip(), fields.strip()
        if not message and fields:
            message, fields = fields, ""
        if fields and fields not in message:
            message = f"{message} (fields: {fields})"
        return code.strip(), message
    return code.strip(), rest.strip()


def _soql_literal(value: str) -> str:
    escaped = (value.replace("\\", "\\\\").replace("'", "\\'")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f"'{escaped}'"


def _match_column(columns: list[str], wanted: str | None) -> str | None:
    if not wanted:
        return None
    if wanted in columns:
        return wanted
    lowered = wanted.lower()
    return next((c for c in columns if c.lower() == lowered), None)


def _is_local(path: Any) -> bool:
    return isinstance(path, (str, bytes, os.PathLike)) and not hasattr(path, "protocol")


def _open(path: Any, mode: str) -> IO[bytes]:
    """Open a local path, or an ``ObjectStoragePath`` (anything with ``.open``) on any storage."""
    if _is_local(path):
        return open(path, mode)
    return path.open(mode)


def _size(path: Any) -> int:
    if _is_local(path):
        return os.path.getsize(path)
    return int(path.stat().st_size)


def _has_rows(path: Any) -> bool:
    """Whether the CSV holds at least one non-blank line after its header."""
    with _open(path, "rb") as handle:
        handle.readline()
        while True:
            chunk = handle.read(1 << 16)
            if not chunk:
                return False
            if chunk.strip():
                return True


def _append(source: IO[bytes], target: IO[bytes]) -> None:
    """Copy ``source`` to ``target``, making sure what was written ends with a newline."""
    last = b""
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            break
        target.write(chunk)
        last = chunk[-1:]
    if last and last not in (b"\n", b"\r"):
        target.write(b"\n")


def _display(path: Any) -> str:
    return os.fspath(path) if _is_local(path) else str(path)
