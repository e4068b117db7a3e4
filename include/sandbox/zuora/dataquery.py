"""Zuora Data Query: SQL jobs over the tenant, run in the background, results served by signed URL.

The sync extracts with Data Query (``docs/architecture.md``), so the sandbox speaks its wire protocol as Zuora's API
reference and ``zuora-sdk``'s ``DataQueriesApi`` define it:

- ``POST /query/jobs`` (``Content-Type: application/json`` or 415) answers ``{"data": job}`` with
  ``queryStatus`` ``accepted``; ``GET /query/jobs/{job-id}`` polls it; ``GET /query/jobs``
  lists jobs newest first (``queryStatus`` filter, ``pageSize``); ``DELETE /query/jobs/{job-id}``
  cancels an accepted or in-progress job.
- Jobs run on worker threads, never inside a request: ``accepted`` → ``in_progress`` →
  ``completed`` (``dataFile``, ``outputRows``, ``processingTime``) or ``failed``
  (``errorMessage`` in Trino's words) or ``cancelled``. Records live in the store's ``_jobs``
  table, so a restart resumes unfinished jobs (an interrupted run uses up one of the job's
  ``remainingRetries``, as Zuora retries a failed attempt).
- The SQL is compiled by :mod:`sandbox.zuora.dataquery_sql` and executed on a read-only SQLite
  connection; rows stream into the result file (JSON Lines, CSV, TSV or DSV; NONE or GZIP), never
  all in memory.
- ``dataFile`` is a URL on the host the client called, under ``/files/dataquery/``, carrying an
  expiring HMAC signature in S3 presigned-URL style (``X-Amz-Date``, ``X-Amz-Expires``,
  ``X-Amz-Signature``); a wrong or expired signature gets S3's 403 XML error. No bearer token is
  needed to download, as with S3.

Values in result files: booleans ``true``/``false``, decimals as numbers without float noise
(``230.0``, ``199.95``), nulls as JSON ``null`` or an empty CSV cell, dates ``YYYY-MM-DD``.
Timestamps: Zuora documents that Data Query Live renders timestamps in the tenant's time zone, so
they come out as ``YYYY-MM-DD HH:MM:SS`` in that zone (:mod:`sandbox.zuora.timezone`: Pacific unless
set otherwise), and a timestamp literal without a zone is read in it too.

Faults for tests, set with ``POST /__admin/dataquery``: ``fail_next`` (the next job fails with that
message), ``truncate_next`` (the next result file is cut short, like a broken download),
``delay_seconds`` (every job waits that long in ``in_progress``), ``url_ttl_seconds`` (lifetime of
new ``dataFile`` URLs) and ``max_output_rows`` (Zuora's Live limit is 500,000; off by default).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import hashlib
import hmac
import json
import logging
import math
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, TextIO
from urllib.parse import quote as url_quote
from xml.sax.saxutils import escape as xml_escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sandbox.zuora.dataquery_sql import (
    CompiledQuery,
    QueryError,
    compile_query,
    locate_column,
)
from sandbox.zuora.timezone import stored_to_local, tenant_time_zone

log = logging.getLogger(__name__)

JOB_KIND = "dataquery"
STATUSES = ("accepted", "in_progress", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
EXTENSIONS = {"JSON": "jsonl", "CSV": "csv", "TSV": "tsv", "DSV": "dsv"}
MEDIA_TYPES = {"jsonl": "application/json", "csv": "text/csv", "tsv": "text/tab-separated-values",
               "dsv": "text/plain"}
RETRIES = 3  # Zuora: "up to three retries for retryable queries"
WORKERS = 3
FETCH_ROWS = 2000
MAX_QUERY_CHARS = 1_000_000  # Zuora's limit for queries submitted through the API
DEFAULT_URL_TTL = 3600
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 1000
_FILE_NAME = re.compile(r"^[0-9a-f-]{36}_[0-9]+\.(jsonl|csv|tsv|dsv)(\.gz)?$")


class DataQueryFaults:
    """Fault hooks and limits the admin API sets; in memory, cleared by a restart."""

    KEYS = ("fail_next", "truncate_next", "delay_seconds", "url_ttl_seconds", "max_output_rows")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fail_next: str | None = None
        self.truncate_next = False
        self.delay_seconds = 0.0
        self.url_ttl_seconds = DEFAULT_URL_TTL
        self.max_output_rows: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        unknown = set(values) - set(self.KEYS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {list(self.KEYS)}")
        if "fail_next" in values:
            self.fail_next = None if values["fail_next"] in (None, False) else str(values["fail_next"])
        if "truncate_next" in values:
            self.truncate_next = bool(values["truncate_next"])
        if "delay_seconds" in values:
            self.delay_seconds = max(float(values["delay_seconds"] or 0), 0.0)
        if "url_ttl_seconds" in values:
            self.url_ttl_seconds = max(int(values["url_ttl_seconds"] or DEFAULT_URL_TTL), 1)
        if "max_output_rows" in values:
            self.max_output_rows = None if values["max_output_rows"] is None else int(values["max_output_rows"])

    def describe(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    def take_failure(self) -> str | None:
        message, self.fail_next = self.fail_next, None
        return message

    def take_truncation(self) -> bool:
        truncate, self.truncate_next = self.truncate_next, False
        return truncate


class DataQueryError(Exception):
    """A request the API refuses, answered in Data Query's ``{"code", "message"}`` shape."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Stopping(Exception):
    """The server is stopping: leave the job as it is, to be resumed by the next start."""


class _Cancelled(Exception):
    """The job was cancelled while it ran."""


class DataQuery:
    """All Data Query jobs of the tenant and the workers that run them."""

    def __init__(self, tenant: Any):
        self.tenant = tenant
        self.store = tenant.store
        self.faults = DataQueryFaults()
        self.files_dir = Path(tenant.files_dir) / "dataquery"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._file_key = self._signing_key()
        self.jobs: dict[str, dict[str, Any]] = {}
        for job_id, info in self.store.conn().execute(
            "SELECT id, info FROM _jobs WHERE kind = ? ORDER BY created", (JOB_KIND,)
        ):
            self.jobs[job_id] = json.loads(info)

    def _signing_key(self) -> bytes:
        # Kept in the data dir, so URLs handed out before a restart still verify after it.
        key = self.store.get_setting("dataquery_file_key")
        if key is None:
            key = secrets.token_hex(32)
            self.store.set_setting("dataquery_file_key", key)
        return bytes.fromhex(key)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers; queue the jobs a previous run left unfinished."""
        self._stopping.clear()
        self._queue = queue.Queue()  # a fresh queue: no stop sentinels left over from an earlier run
        for stale in self.files_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)  # a result file a killed process left half-written
        for job in sorted(self.jobs.values(), key=lambda j: j["_created"]):
            if job["queryStatus"] == "accepted":
                self._queue.put(job["id"])
            elif job["queryStatus"] == "in_progress":
                self._resume_interrupted(job)
        for index in range(WORKERS):
            worker = threading.Thread(target=self._work, name=f"dataquery-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        threading.Thread(target=self._purge_deleted, name="dataquery-retention", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
        self._workers.clear()

    def _resume_interrupted(self, job: dict[str, Any]) -> None:
        """A job the last run left in progress: retry it if it has retries left, else fail it."""
        with self._lock:
            if job["remainingRetries"] > 0:
                job["remainingRetries"] -= 1
                self._save(job)
                self._queue.put(job["id"])
            else:
                self._set_failed(job, "The query was interrupted and no retries remain")

    def _purge_deleted(self) -> None:
        # Deleted rows past the 30-day retention are already invisible to queries; this frees them.
        while not self._stopping.wait(5):
            try:
                removed = self.store.purge_deleted()
                if removed:
                    log.info("Purged %d deleted rows past retention", removed)
            except Exception:  # the store may be closing under it; try again tomorrow
                log.exception("Purging deleted rows failed")
            if self._stopping.wait(86400):
                return

    # -- job records ---------------------------------------------------------------------------------

    def _save(self, job: dict[str, Any]) -> None:
        job["updatedOn"] = _iso_now()
        with self.store.write() as conn:
            conn.execute("INSERT OR REPLACE INTO _jobs(id, kind, created, info) VALUES (?, ?, ?, ?)",
                         (job["id"], JOB_KIND, job["_created"], json.dumps(job)))

    def _created_by(self) -> str:
        user = self.tenant.config.user_id
        with contextlib.suppress(ValueError):
            return str(uuid.UUID(hex=user))  # Zuora shows user ids here as UUIDs
        return user

    def submit(self, body: Any) -> dict[str, Any]:
        """Validate a submit request and queue its job (SQL errors fail the job later, as Zuora's do)."""
        if not isinstance(body, dict):
            raise DataQueryError(400, "The request body must be a JSON object")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise DataQueryError(400, "query is required")
        if len(query) > MAX_QUERY_CHARS:
            raise DataQueryError(400, f"The query exceeds the maximum length of {MAX_QUERY_CHARS} characters")
        output_format = str(body.get("outputFormat") or "").upper()
        if output_format not in EXTENSIONS:
            raise DataQueryError(400, "outputFormat is required and must be one of JSON, CSV, TSV, DSV")
        compression = str(body.get("compression") or "").upper()
        if compression == "ZIP":
            raise DataQueryError(400, "compression ZIP is not supported by the sandbox; use NONE or GZIP")
        if compression not in ("NONE", "GZIP"):
            raise DataQueryError(400, "compression is required and must be one of NONE, GZIP, ZIP")
        output = body.get("output")
        if not isinstance(output, dict) or str(output.get("target", "")).upper() != "S3":
            raise DataQueryError(400, "output.target is required and must be S3")
        separator = body.get("columnSeparator")
        if output_format == "DSV" and (not isinstance(separator, str) or len(separator) != 1):
            raise DataQueryError(400, "columnSeparator must be a single character when outputFormat is DSV")
        if body.get("encryptionKey"):
            raise DataQueryError(400, "encryptionKey is not supported by the sandbox; submit without it")
        source = str(body.get("sourceData") or "LIVE").upper()
        if source not in ("LIVE", "WAREHOUSE"):
            raise DataQueryError(400, "sourceData must be LIVE or WAREHOUSE")
        read_deleted = body.get("readDeleted", False)
        if not isinstance(read_deleted, bool):
            raise DataQueryError(400, "readDeleted must be a boolean")
        now = _iso_now()
        job: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "query": query,
            "useIndexJoin": bool(body.get("useIndexJoin", False)),
            "sourceData": source,
            "queryStatus": "accepted",
            "remainingRetries": RETRIES,
            "retries": RETRIES,
            "updatedOn": now,
            "createdOn": now,
            "createdBy": self._created_by(),
            "outputFormat": output_format,
            "compression": compression,
            "readDeleted": read_deleted,
            "_created": time.time(),
        }
        if output_format == "DSV":
            job["columnSeparator"] = separator
        with self._lock:
            self.jobs[job["id"]] = job
            self._save(job)
            accepted = dict(job)  # the answer shows the job as submitted, whatever the workers do next
        self._queue.put(job["id"])
        return accepted

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise DataQueryError(404, f"Query job {job_id} not found")
        return job

    def list_jobs(self, status: str | None, page_size: int) -> list[dict[str, Any]]:
        """Jobs newest first, as Zuora lists them."""
        with self._lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j["_created"], reverse=True)
        return [j for j in jobs if status is None or j["queryStatus"] == status][:page_size]

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        with self._lock:
            if job["queryStatus"] not in ("accepted", "in_progress"):
                raise DataQueryError(400, f"Cannot cancel query job {job_id} because its status is "
                                          f"{job['queryStatus']}")
            job["queryStatus"] = "cancelled"
            self._save(job)
        return job

    def public(self, job: dict[str, Any], base_url: str) -> dict[str, Any]:
        """The job as the API shows it (internal keys start with an underscore)."""
        with self._lock:  # workers change jobs while requests read them
            info = {k: v for k, v in job.items() if not k.startswith("_")}
        if info["queryStatus"] == "completed" and job.get("_file"):
            info["dataFile"] = self.signed_url(base_url, job["_file"])
        return info

    # -- the workers ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            job = self.jobs.get(job_id)
            if job is None or job["queryStatus"] in TERMINAL:
                continue
            try:
                self._run(job)
            except _Stopping:
                pass  # stays in_progress; the next start resumes it
            except Exception as exc:  # a bug must fail the job visibly, not kill the worker
                log.exception("Data Query job %s failed", job_id)
                self._set_failed(job, f"Internal error: {exc}")

    def _begin(self, job: dict[str, Any]) -> bool:
        with self._lock:
            if job["queryStatus"] not in ("accepted", "in_progress"):
                return False
            job["queryStatus"] = "in_progress"
            job["_started"] = time.time()
            job.pop("errorMessage", None)
            self._save(job)
        return True

    def _check(self, job: dict[str, Any]) -> None:
        if self._stopping.is_set():
            raise _Stopping
        if job["queryStatus"] == "cancelled":
            raise _Cancelled

    def _run(self, job: dict[str, Any]) -> None:
        if not self._begin(job):
            return
        deadline = time.monotonic() + self.faults.delay_seconds
        while time.monotonic() < deadline:
            self._check(job)
            time.sleep(0.05)
        self._check(job)
        injected = self.faults.take_failure()
        if injected is not None:
            self._set_failed(job, injected)
            return
        try:
            compiled = compile_query(job["query"], self.tenant.schema, read_deleted=job["readDeleted"],
                                     tz=tenant_time_zone(self.tenant.store))
        except QueryError as exc:
            self._set_failed(job, str(exc))
            return
        extension = EXTENSIONS[job["outputFormat"]] + (".gz" if job["compression"] == "GZIP" else "")
        name = f"{job['id']}_{secrets.randbelow(10**17):017d}.{extension}"
        partial = self.files_dir / f".{name}.part"
        try:
            rows = self._write_results(job, compiled, partial)
        except _Cancelled:
            partial.unlink(missing_ok=True)
            return
        except _Stopping:
            partial.unlink(missing_ok=True)
            raise
        except QueryError as exc:
            partial.unlink(missing_ok=True)
            self._set_failed(job, str(exc))
            return
        if self.faults.take_truncation():
            # A download cut off mid-stream: the file ends early, outputRows still counts all rows.
            size = partial.stat().st_size
            with open(partial, "r+b") as handle:
                handle.truncate(max(size // 2, 1) if size > 1 else 0)
        with self._lock:
            if job["queryStatus"] != "in_progress":
                partial.unlink(missing_ok=True)
                return
            os.replace(partial, self.files_dir / name)
            job.update(queryStatus="completed", outputRows=rows,
                       processingTime=int((time.time() - job["_started"]) * 1000), _file=name)
            self._save(job)

    def _set_failed(self, job: dict[str, Any], message: str) -> None:
        with self._lock:
            if job["queryStatus"] == "cancelled":
                return
            job["queryStatus"] = "failed"
            job["errorMessage"] = message
            if "_started" in job:
                job["processingTime"] = int((time.time() - job["_started"]) * 1000)
            self._save(job)

    def _write_results(self, job: dict[str, Any], compiled: CompiledQuery, path: Path) -> int:
        """Run the query and stream its rows into ``path``; returns the row count."""
        limit = self.faults.max_output_rows
        with _ResultWriter(path, job, compiled, tenant_time_zone(self.tenant.store)) as writer:
            if compiled.rows is not None:
                writer.write_rows(compiled.rows)
                return len(compiled.rows)
            conn = self._read_only_connection(job, compiled)
            try:
                try:
                    cursor = conn.execute(compiled.sql)
                    while True:
                        batch = cursor.fetchmany(FETCH_ROWS)
                        if not batch:
                            break
                        self._check(job)
                        writer.write_rows(batch)
                        if limit is not None and writer.count > limit:
                            raise QueryError(f"Query exceeded the maximum number of output records ({limit})")
                except sqlite3.Error as exc:
                    self._check(job)  # an interrupt raised for a cancel or a stop
                    raise QueryError(self._sqlite_message(job["query"], exc)) from None
            finally:
                conn.close()
            return writer.count

    def _read_only_connection(self, job: dict[str, Any], compiled: CompiledQuery) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.store.path}?mode=ro", uri=True, timeout=60)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA case_sensitive_like = ON")  # Trino's LIKE is case-sensitive
        allowed = compiled.tables

        def authorize(action: int, table: str | None, *_: Any) -> int:
            # Only reads of the tables the query names; never the sandbox's own tables.
            if action == sqlite3.SQLITE_READ:
                return sqlite3.SQLITE_OK if table in allowed else sqlite3.SQLITE_DENY
            if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY

        conn.set_authorizer(authorize)
        # Lets a cancel or a server stop interrupt a long-running statement.
        conn.set_progress_handler(
            lambda: 1 if self._stopping.is_set() or job["queryStatus"] == "cancelled" else 0, 10_000)
        return conn

    @staticmethod
    def _sqlite_message(query: str, exc: sqlite3.Error) -> str:
        """SQLite's complaint in Trino's words, where there is an equivalent."""
        text = str(exc)
        for pattern, template in (
            (r"no such column: (.+)", "Column '{}' cannot be resolved"),
            (r"ambiguous column name: (.+)", "Column '{}' is ambiguous"),
        ):
            match = re.match(pattern, text)
            if match:
                name = match.group(1).replace('"', "")
                table, _, column = name.rpartition(".")
                where = locate_column(query, column, table or None)
                return f"{where}: {template.format(name)}"
        match = re.match(r"no such function: (.+)", text)
        if match:
            return f"line 1:1: Function '{match.group(1).lower()}' not registered"
        if "not authorized" in text:
            return "Access Denied: Cannot select from the requested table"
        return f"line 1:1: {text}"

    # -- result files ---------------------------------------------------------------------------------

    def _signature(self, path: str, amz_date: str, expires: str, credential: str) -> str:
        message = f"GET\n{path}\n{amz_date}\n{expires}\n{credential}".encode()
        return hmac.new(self._file_key, message, hashlib.sha256).hexdigest()

    def signed_url(self, base_url: str, name: str) -> str:
        """A presigned-style URL for a result file, valid for ``url_ttl_seconds`` from now."""
        now = dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        expires = str(self.faults.url_ttl_seconds)
        credential = f"ZUORASANDBOX/{now:%Y%m%d}/us-west-2/s3/aws4_request"
        path = f"/files/dataquery/{name}"
        signature = self._signature(path, amz_date, expires, credential)
        return (f"{base_url}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={amz_date}"
                f"&X-Amz-SignedHeaders=host&X-Amz-Expires={expires}"
                f"&X-Amz-Credential={url_quote(credential, safe='')}&X-Amz-Signature={signature}")

    def verify(self, name: str, params: Any) -> Response | Path:
        """The file behind a signed URL, or S3's XML error for a bad or expired signature."""
        required = ("X-Amz-Date", "X-Amz-Expires", "X-Amz-Credential", "X-Amz-Signature")
        if not all(params.get(key) for key in required):
            return _s3_error(403, "AccessDenied",
                             "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                             "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        expected = self._signature(f"/files/dataquery/{name}", params["X-Amz-Date"], params["X-Amz-Expires"],
                                   params["X-Amz-Credential"])
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return _s3_error(403, "SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature you provided. "
                             "Check your key and signing method.")
        try:
            signed = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            expires_at = signed + dt.timedelta(seconds=int(params["X-Amz-Expires"]))
        except ValueError:
            return _s3_error(400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed")
        now = dt.datetime.now(dt.UTC)
        if now > expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired", {
                "X-Amz-Expires": params["X-Amz-Expires"], "Expires": f"{expires_at:%Y-%m-%dT%H:%M:%SZ}",
                "ServerTime": f"{now:%Y-%m-%dT%H:%M:%SZ}"})
        path = self.files_dir / name
        if not _FILE_NAME.match(name) or not path.is_file():
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.", {"Key": name})
        return path


class _ResultWriter:
    """Writes rows to a result file in the job's format, rendering values as Data Query does."""

    def __init__(self, path: Path, job: dict[str, Any], compiled: CompiledQuery, tz: dt.tzinfo):
        self.path = path
        self.format = job["outputFormat"]
        self.gzip = job["compression"] == "GZIP"
        self.columns = compiled.columns
        self.count = 0
        self.handle: TextIO | None = None
        # Only booleans, decimals and integers need converting; the json and csv writers (C code)
        # do the rest, with None as null / an empty cell.
        converters = dict(_JSON_CONVERT if self.format == "JSON" else _TEXT_CONVERT)
        # Datetimes are stored in UTC and shown in the tenant's time zone, as Data Query Live does.
        converters["datetime"] = lambda value: None if value is None else _local_text(value, tz)
        self.convert = [(i, converters[kind]) for i, kind in enumerate(compiled.kinds) if kind in converters]
        if self.format == "JSON":
            self.encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
        else:
            self.delimiter = {"CSV": ",", "TSV": "\t"}.get(self.format) or job["columnSeparator"]

    def __enter__(self) -> Self:
        if self.gzip:
            self.handle = gzip.open(self.path, "wt", encoding="utf-8", newline="", compresslevel=3)
        else:
            self.handle = open(self.path, "w", encoding="utf-8", newline="")
        if self.format != "JSON":
            self.writer = csv.writer(self.handle, delimiter=self.delimiter, lineterminator="\n")
            self.writer.writerow(self.columns)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def write_rows(self, rows: list[tuple]) -> None:
        convert = self.convert
        if convert:
            rows = [self._converted(row, convert) for row in rows]
        if self.format == "JSON":
            columns, encode = self.columns, self.encode
            self.handle.write("".join(encode(dict(zip(columns, row))) + "\n" for row in rows))
        else:
            self.writer.writerows(rows)
        self.count += len(rows)

    @staticmethod
    def _converted(row: tuple, convert: list[tuple[int, Callable[[Any], Any]]]) -> list:
        values = list(row)
        for index, function in convert:
            if values[index] is not None:
                values[index] = function(values[index])
        return values


def _decimal_text(value: Any) -> str:
    """A decimal as Data Query prints it: ``230.0``, ``199.95`` — never ``1e-06`` or float noise."""
    number = float(value)
    if not math.isfinite(number):
        return "null"
    exact = Decimal(repr(round(number, 6)))
    if exact == exact.to_integral_value():
        return f"{int(exact)}.0"
    return format(exact.normalize(), "f")


def _json_decimal(value: Any) -> float | None:
    number = round(float(value), 6)  # decimal(18,6): rounding also drops float noise
    return number if math.isfinite(number) else None


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_true(value: Any) -> bool:
    return value not in (0, "0", "false")


_JSON_CONVERT: dict[str, Callable[[Any], Any]] = {"boolean": _is_true, "decimal": _json_decimal, "integer": _whole}
_TEXT_CONVERT: dict[str, Callable[[Any], Any]] = {
    "boolean": lambda value: "true" if _is_true(value) else "false",
    "decimal": _decimal_text,
    "integer": _whole,
}


def _local_text(stored: Any, tz: dt.tzinfo) -> str:
    local = stored_to_local(str(stored), tz)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{local.microsecond:06d}".rstrip("0") if local.microsecond else "")


def _iso_now() -> str:
    """Zuora's ``updatedOn`` form: ISO 8601 UTC with milliseconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _s3_error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    fields = {"Code": code, "Message": message, **(extra or {}),
              "RequestId": secrets.token_hex(8).upper(), "HostId": secrets.token_urlsafe(48)}
    body = "".join(f"<{k}>{xml_escape(str(v))}</{k}>" for k, v in fields.items())
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>', status_code=status,
                    media_type="application/xml")


# -- HTTP ------------------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


def _error(status: int, message: str) -> Response:
    # Data Query's own error shape (its 415 answer is {"code":415,"message":"HTTP 415 Unsupported Media Type"}).
    return _json({"code": status, "message": message}, status)


def service(tenant: Any) -> DataQuery:
    """The tenant's Data Query service (created on first use if the app's lifespan has not run)."""
    existing = getattr(tenant, "dataquery", None)
    if existing is None:
        existing = tenant.dataquery = DataQuery(tenant)
    return existing


def _base_url(request: Request) -> str:
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"


async def jobs_endpoint(request: Request) -> Response:
    dq = service(request.app.state.tenant)
    if request.method == "GET":
        status = request.query_params.get("queryStatus")
        if status is not None and status not in STATUSES:
            return _error(400, f"queryStatus must be one of {', '.join(STATUSES)}")
        try:
            page_size = int(request.query_params.get("pageSize", DEFAULT_PAGE_SIZE))
        except ValueError:
            return _error(400, "pageSize must be an integer")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return _error(400, f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        base = _base_url(request)
        return _json({"data": [dq.public(job, base) for job in dq.list_jobs(status, page_size)]})
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _error(415, "HTTP 415 Unsupported Media Type")
    raw = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return _error(400, "The request body is not valid gzip")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return _error(400, "The request body is not valid JSON")
    try:
        job = await run_in_threadpool(dq.submit, body)
    except DataQueryError as exc:
        return _error(exc.status, exc.message)
    return _json({"data": dq.public(job, _base_url(request))})


async def job_endpoint(request: Request) -> Response:
    dq = service(request.app.state.tenant)
    job_id = request.path_params["job_id"]
    try:
        if request.method == "DELETE":
            job = await run_in_threadpool(dq.cancel, job_id)
        else:
            job = dq.get(job_id)
    except DataQueryError as exc:
        return _error(exc.status, exc.message)
    return _json({"data": dq.public(job, _base_url(request))})


async def file_endpoint(request: Request) -> Response:
    dq = service(request.app.state.tenant)
    result = dq.verify(request.path_params["name"], request.query_params)
    if isinstance(result, Response):
        return result
    extension = result.name.split(".")[-1]
    media_type = "application/octet-stream" if extension == "gz" else MEDIA_TYPES[extension]
    return FileResponse(result, media_type=media_type)  # streamed in chunks, with Range support


async def admin_endpoint(request: Request) -> Response:
    dq = service(request.app.state.tenant)
    if request.method == "DELETE":
        dq.faults.reset()
    elif request.method == "POST":
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise TypeError("send a JSON object")
            dq.faults.update(body)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
    return _json(dq.faults.describe())


def routes() -> list[Route]:
    return [
        Route("/query/jobs", jobs_endpoint, methods=["GET", "POST"]),
        Route("/query/jobs/{job_id}", job_endpoint, methods=["GET", "DELETE"]),
        Route("/files/dataquery/{name}", file_endpoint, methods=["GET", "HEAD"]),
        Route("/__admin/dataquery", admin_endpoint, methods=["GET", "POST", "DELETE"]),
    ]


def start(tenant: Any) -> None:
    service(tenant).start()


def stop(tenant: Any) -> None:
    existing = getattr(tenant, "dataquery", None)
    if existing is not None:
        existing.stop()
