"""Bulk API 2.0: ingest jobs (CSV in, per-row results out) and query jobs (SOQL to paged CSV).

A job is processed by the org's Bulk worker (:mod:`sandbox.salesforce.bulk_worker`, shared with
Bulk API 1.0 batches), never inside the request: ``UploadComplete`` queues it, the worker moves it
to ``InProgress``, runs it through the DML engine ten thousand rows at a time
(Salesforce's internal batch size) and ends it ``JobComplete``, ``Failed`` or ``Aborted``. Each
chunk's records, result rows and progress are committed together, so a sandbox killed mid-job
resumes where it stopped instead of applying rows twice. Uploads and results are files in the
data dir, streamed, never held whole in memory.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sandbox.salesforce.bulk_worker import BulkWorker
from sandbox.salesforce.dml import OPERATIONS, plan_columns
from sandbox.salesforce.org import Org
from sandbox.salesforce.query import QueryError, compile_query, iter_rows
from sandbox.salesforce.rest import rest_endpoint
from sandbox.salesforce.transport import SfHttpError, json_response, read_json
from sandbox.salesforce.values import now_stored

WORK_KIND = "v2"
CHUNK_ROWS = 10_000
MAX_UPLOAD_BYTES = 150 * 1024 * 1024
DELIMITERS = {"COMMA": ",", "BACKQUOTE": "`", "CARET": "^", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
TERMINAL = ("JobComplete", "Failed", "Aborted")
_OFFSET = struct.Struct("<q")


class Bulk2:
    """All Bulk API 2.0 jobs of the org and the worker that runs them."""

    def __init__(self, org: Org, worker: BulkWorker):
        self.org = org
        self._lock = threading.RLock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.worker = worker
        for job_id, info in org.store.conn().execute(
            "SELECT id, info FROM _bulk_jobs WHERE api IN ('v2ingest', 'v2query') ORDER BY created"
        ):
            self.jobs[job_id] = json.loads(info)
        worker.register(WORK_KIND, self._run, self._unfinished, self._fail)

    # -- work items ----------------------------------------------------------------------------

    def _unfinished(self) -> list[str]:
        """Jobs a previous run left queued or in progress (resumed at the next chunk)."""
        return [job_id for job_id, job in list(self.jobs.items()) if job["state"] in ("UploadComplete", "InProgress")]

    def _run(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job["state"] in TERMINAL:
            return
        if job["jobType"] == "V2Query":
            self._run_query(job)
        else:
            self._run_ingest(job)

    def _fail(self, job_id: str, message: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            self._finish(job, "Failed", message)

    # -- job records -------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.org.bulk_dir / job_id

    def _save(self, job: dict[str, Any], conn=None) -> None:
        job["systemModstamp"] = now_stored()[:-1] + "+0000"
        api = "v2query" if job["jobType"] == "V2Query" else "v2ingest"
        row = (job["id"], api, job["_created"], json.dumps(job))
        sql = "INSERT OR REPLACE INTO _bulk_jobs(id, api, created, info) VALUES (?, ?, ?, ?)"
        if conn is not None:
            conn.execute(sql, row)
        else:
            with self.org.store.write() as wconn:
                wconn.execute(sql, row)

    def get(self, job_id: str, job_type: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None or job["jobType"] != job_type:
            raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    @staticmethod
    def public(job: dict[str, Any], summary: bool = False) -> dict[str, Any]:
        """The job info a client sees (internal keys start with an underscore)."""
        info = {k: v for k, v in job.items() if not k.startswith("_")}
        if summary:
            for key in ("numberRecordsProcessed", "numberRecordsFailed", "retries", "totalProcessingTime",
                        "apiActiveProcessingTime", "apexProcessingTime", "errorMessage"):
                info.pop(key, None)
        elif job["state"] != "Failed":
            info.pop("errorMessage", None)
        return info

    def list(self, job_type: str) -> dict[str, Any]:
        records = [self.public(j, summary=True) for j in self.jobs.values() if j["jobType"] == job_type]
        return {"done": True, "records": records, "nextRecordsUrl": None}

    def _new_job(self, user: str, version: str, job_type: str, body: dict[str, Any]) -> dict[str, Any]:
        line_ending = body.get("lineEnding", "LF")
        delimiter = body.get("columnDelimiter", "COMMA")
        if line_ending not in LINE_ENDINGS:
            raise SfHttpError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        if delimiter not in DELIMITERS:
            raise SfHttpError(400, "INVALIDJOB", f"InvalidJob : Invalid columnDelimiter: {delimiter}")
        if body.get("contentType", "CSV") != "CSV":
            raise SfHttpError(400, "INVALIDJOB", "InvalidJob : The only content type supported is CSV")
        job_id = self.org.store.allocate_ids("750", 1)[0]
        created = now_stored()[:-1] + "+0000"
        job: dict[str, Any] = {
            "id": job_id,
            "operation": body.get("operation"),
            "object": body.get("object"),
            "createdById": user,
            "createdDate": created,
            "systemModstamp": created,
            "state": "Open",
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version),
            "jobType": job_type,
            "lineEnding": line_ending,
            "columnDelimiter": delimiter,
            "numberRecordsProcessed": 0,
            "retries": 0,
            "totalProcessingTime": 0,
            "_created": time.time(),
        }
        return job

    # -- ingest: create, upload, close ----------------------------------------------------------

    def create_ingest(self, user: str, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SfHttpError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation, name = body.get("operation"), body.get("object")
        if operation not in OPERATIONS:
            raise SfHttpError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        obj = self.org.schema.get(name or "")
        if obj is None:
            raise SfHttpError(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {name}")
        job = self._new_job(user, version, "V2Ingest", body)
        job["object"] = obj.name
        if operation == "upsert":
            ext = body.get("externalIdFieldName")
            if not ext:
                raise SfHttpError(
                    400, "INVALIDJOB",
                    f"InvalidJob : External ID was blank for {obj.name}. An External ID must be specified for upsert.",
                )
            ext_field = obj.field(ext)
            if ext_field is None or not (ext_field.is_key or ext_field.name == "Id"):
                raise SfHttpError(
                    400, "INVALIDJOB",
                    f"InvalidJob : Field name provided, {ext} does not match an External ID, Salesforce Id, "
                    f"or indexed field for {obj.name}",
                )
            job["externalIdFieldName"] = ext_field.name
        job["contentUrl"] = f"services/data/v{version}/jobs/ingest/{job['id']}/batches"
        job.update({"numberRecordsFailed": 0, "apiActiveProcessingTime": 0, "apexProcessingTime": 0})
        job["_rows_done"] = 0
        job["_uploaded"] = False
        with self._lock:
            self.jobs[job["id"]] = job
        self._save(job)
        return self.public(job, summary=True)

    async def upload(self, job: dict[str, Any], chunks) -> None:
        """Store the uploaded CSV (``chunks``: an async iterator of bytes) as the job's data."""
        if job["state"] != "Open":
            raise SfHttpError(409, "INVALIDJOBSTATE", f"Job {job['id']} is not open for uploads; its state is {job['state']}")
        if job["_uploaded"]:
            raise SfHttpError(409, "INVALIDJOBSTATE", "Only one upload is allowed per job; create another job")
        directory = self.job_dir(job["id"])
        directory.mkdir(parents=True, exist_ok=True)
        size = 0
        with open(directory / "upload.csv", "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise SfHttpError(400, "INVALIDJOB", "InvalidBatch : The upload exceeds 150 MB; split it into several jobs")
                out.write(chunk)
        job["_uploaded"] = True
        self._save(job)

    def set_state(self, job: dict[str, Any], state: str) -> dict[str, Any]:
        with self._lock:
            current = job["state"]
            if state == "UploadComplete" and job["jobType"] == "V2Ingest" and current == "Open":
                job["state"] = "UploadComplete"
                self._save(job)
                self.worker.submit(WORK_KIND, job["id"])
            elif state == "Aborted" and current not in TERMINAL:
                job["state"] = "Aborted"
                self._save(job)
            else:
                raise SfHttpError(
                    400, "INVALIDJOBSTATE", f"Invalid state change from {current} to {state} for job {job['id']}"
                )
        return self.public(job, summary=True)

    def delete(self, job: dict[str, Any]) -> None:
        if job["state"] in ("Open", "InProgress"):
            raise SfHttpError(400, "INVALIDJOBSTATE", f"Cannot delete job {job['id']} in state {job['state']}")
        with self._lock:
            self.jobs.pop(job["id"], None)
        with self.org.store.write() as conn:
            conn.execute("DELETE FROM _bulk_jobs WHERE id = ?", (job["id"],))
        shutil.rmtree(self.job_dir(job["id"]), ignore_errors=True)

    # -- ingest: processing -----------------------------------------------------------------------

    def _finish(self, job: dict[str, Any], state: str, error: str | None = None) -> None:
        with self._lock:
            if job["state"] == "Aborted" and state != "Aborted":
                state = "Aborted"
            job["state"] = state
            if error:
                job["errorMessage"] = error
            job["totalProcessingTime"] = int((time.time() - job.get("_started", time.time())) * 1000)
            job["apiActiveProcessingTime"] = job["totalProcessingTime"]
            self._save(job)

    def _begin(self, job: dict[str, Any]) -> bool:
        """Move a queued job to InProgress; False if it was aborted meanwhile."""
        with self._lock:
            if job["state"] == "Aborted":
                return False
            job["state"] = "InProgress"
            job.setdefault("_started", time.time())
            self._save(job)
        delay = self.org.faults.bulk_delay_seconds
        if delay:
            time.sleep(delay)
        return True

    def _run_ingest(self, job: dict[str, Any]) -> None:
        if not self._begin(job):
            return
        directory = self.job_dir(job["id"])
        upload = directory / "upload.csv"
        if not job.get("_uploaded") or not upload.exists():
            self._finish(job, "Failed", "InvalidBatch : No data was uploaded for this job")
            return
        delimiter = DELIMITERS[job["columnDelimiter"]]
        terminator = LINE_ENDINGS[job["lineEnding"]]
        with open(upload, "rb") as raw:
            first_line = raw.readline()
        if not first_line.strip():
            self._write_empty_results(job, [])
            self._finish(job, "JobComplete")
            return
        if first_line.endswith(b"\r\n") != (terminator == "\r\n"):
            self._finish(
                job, "Failed",
                f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {job['lineEnding']}",
            )
            return
        obj = self.org.schema.get(job["object"])
        with open(upload, newline="", encoding="utf-8", errors="replace") as text:
            reader = csv.reader(text, delimiter=delimiter, strict=False)
            header = next(reader)
            columns = plan_columns(self.org.schema, obj, header, "csv")
            problem = header_problem(job["operation"], header, columns)
            if problem:
                self._write_unprocessed(job, header, reader, terminator, delimiter)
                self._finish(job, "Failed", problem)
                return
            self._process_rows(job, obj, header, columns, reader, delimiter, terminator)

    def _result_writers(self, job, header, delimiter, terminator, resume: bool):
        directory = self.job_dir(job["id"])
        files = {}
        for kind, prefix in (("success", '"sf__Id","sf__Created"'), ("failed", '"sf__Id","sf__Error"')):
            path = directory / f"{kind}.csv"
            if resume and path.exists():
                handle = open(path, "r+", newline="", encoding="utf-8")
                handle.truncate(job[f"_{kind}_bytes"])
                handle.seek(0, io.SEEK_END)
            else:
                handle = open(path, "w", newline="", encoding="utf-8")
                line = io.StringIO()
                csv.writer(line, delimiter=delimiter, lineterminator=terminator).writerow(header)
                handle.write(prefix.replace(",", delimiter) + delimiter + line.getvalue())
            files[kind] = handle
        return files

    def _process_rows(self, job, obj, header, columns, reader, delimiter, terminator) -> None:
        resume = job["_rows_done"] > 0
        files = self._result_writers(job, header, delimiter, terminator, resume)
        writers = {k: csv.writer(f, delimiter=delimiter, lineterminator=terminator) for k, f in files.items()}
        try:
            for _ in range(job["_rows_done"]):
                next(reader)
            while True:
                if job["state"] == "Aborted":
                    self._write_unprocessed(job, header, reader, terminator, delimiter)
                    return
                consumed = [row for _, row in zip(range(CHUNK_ROWS), reader)]
                if not consumed:
                    break
                chunk = [row for row in consumed if row]  # blank lines are not records
                with self.org.store.write() as conn:
                    results = self.org.engine.execute(
                        obj, job["operation"], columns, chunk, user_id=job["createdById"],
                        external_id_field=job.get("externalIdFieldName"),
                    )
                    failed = 0
                    for row, result in zip(chunk, results):
                        if result.success:
                            writers["success"].writerow([result.id, "true" if result.created else "false", *row])
                        else:
                            failed += 1
                            writers["failed"].writerow([result.id or "", result.errors[0].bulk_text(), *row])
                    for handle in files.values():
                        handle.flush()
                    job["_rows_done"] += len(consumed)
                    job["numberRecordsProcessed"] += len(chunk)
                    job["numberRecordsFailed"] += failed
                    job["_success_bytes"] = files["success"].tell()
                    job["_failed_bytes"] = files["failed"].tell()
                    self._save(job, conn)
            self._finish(job, "JobComplete")
        finally:
            for handle in files.values():
                handle.close()

    def _write_unprocessed(self, job, header, reader: Iterator[list[str]], terminator, delimiter) -> None:
        path = self.job_dir(job["id"]) / "unprocessed.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator=terminator)
            writer.writerow(header)
            writer.writerows(row for row in reader if row)
        if job["state"] == "Aborted":
            self._finish(job, "Aborted")

    def _write_empty_results(self, job, header) -> None:
        directory = self.job_dir(job["id"])
        for kind, prefix in (("success", '"sf__Id","sf__Created"'), ("failed", '"sf__Id","sf__Error"')):
            (directory / f"{kind}.csv").write_text(prefix + "\n", encoding="utf-8")

    def result_file(self, job: dict[str, Any], kind: str) -> Path | None:
        """The file behind successfulResults / failedResults / unprocessedrecords."""
        if job["state"] not in TERMINAL:
            raise SfHttpError(
                400, "INVALIDJOBSTATE", f"Results are available when the job is complete; its state is {job['state']}"
            )
        path = self.job_dir(job["id"]) / f"{kind}.csv"
        return path if path.exists() else None

    def result_header(self, job: dict[str, Any], kind: str) -> str:
        """The header of a result file that has no rows (nothing was written for that kind)."""
        upload = self.job_dir(job["id"]) / "upload.csv"
        header = ""
        if upload.exists():
            with open(upload, encoding="utf-8", errors="replace") as handle:
                header = handle.readline().rstrip("\r\n")
        prefix = {"success": '"sf__Id","sf__Created",', "failed": '"sf__Id","sf__Error",', "unprocessed": ""}[kind]
        return prefix + header + LINE_ENDINGS[job["lineEnding"]]

    # -- query jobs -------------------------------------------------------------------------------

    def create_query(self, user: str, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SfHttpError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation = body.get("operation", "query")
        if operation not in ("query", "queryAll"):
            raise SfHttpError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        text = body.get("query")
        if not text:
            raise SfHttpError(400, "INVALIDJOB", "InvalidJob : A query is required for a query job")
        try:
            compiled = compile_query(self.org.schema, text, operation == "queryAll")
        except QueryError as exc:
            raise SfHttpError(400, exc.code, exc.message) from None
        if compiled.count_only or compiled.is_aggregate:
            raise SfHttpError(400, "INVALIDJOB", "InvalidJob : Aggregate queries are not supported by Bulk API 2.0 query jobs")
        if compiled.query.offset:
            raise SfHttpError(400, "INVALIDJOB", "InvalidJob : OFFSET is not supported by Bulk API 2.0 query jobs")
        job = self._new_job(user, version, "V2Query", body)
        job["operation"] = operation
        job["object"] = compiled.obj.name
        job["_query"] = text
        job["state"] = "UploadComplete"
        with self._lock:
            self.jobs[job["id"]] = job
        self._save(job)
        self.worker.submit(WORK_KIND, job["id"])
        return self.public(job, summary=True)

    def _run_query(self, job: dict[str, Any]) -> None:
        if not self._begin(job):
            return
        compiled = compile_query(self.org.schema, job["_query"], job["operation"] == "queryAll")
        directory = self.job_dir(job["id"])
        directory.mkdir(parents=True, exist_ok=True)
        delimiter = DELIMITERS[job["columnDelimiter"]]
        terminator = LINE_ENDINGS[job["lineEnding"]]
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=terminator, quoting=csv.QUOTE_ALL)
        count = 0
        with open(directory / "result.csv", "wb") as out, open(directory / "offsets.bin", "wb") as offsets:
            writer.writerow(compiled.csv_header())
            out.write(buffer.getvalue().encode("utf-8"))
            position = out.tell()
            for row in iter_rows(self.org.store.conn(), compiled):
                if job["state"] == "Aborted":
                    return
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(compiled.csv_cells(row))
                data = buffer.getvalue().encode("utf-8")
                offsets.write(_OFFSET.pack(position))
                out.write(data)
                position += len(data)
                count += 1
            offsets.write(_OFFSET.pack(position))
        job["numberRecordsProcessed"] = count
        self._finish(job, "JobComplete")

    def query_page(self, job: dict[str, Any], locator: str | None, max_records: int | None):
        """(header bytes, byte range of rows, row count, next locator) for one results page."""
        if job["state"] != "JobComplete":
            raise SfHttpError(
                400, "INVALIDJOBSTATE", f"Results are available when the job is complete; its state is {job['state']}"
            )
        start = 0
        if locator and locator != "null":
            try:
                start = int(base64.b64decode(locator.encode()).decode())
            except ValueError:
                raise SfHttpError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}") from None
        total = job["numberRecordsProcessed"]
        count = max(0, min(max_records or total, total - start))
        directory = self.job_dir(job["id"])
        with open(directory / "offsets.bin", "rb") as offsets:
            offsets.seek(start * _OFFSET.size)
            begin = _OFFSET.unpack(offsets.read(_OFFSET.size))[0]
            offsets.seek((start + count) * _OFFSET.size)
            end = _OFFSET.unpack(offsets.read(_OFFSET.size))[0]
            offsets.seek(0)
            first = _OFFSET.unpack(offsets.read(_OFFSET.size))[0]  # where the header ends
        with open(directory / "result.csv", "rb") as result:
            header = result.read(first)
        following = start + count
        next_locator = base64.b64encode(str(following).encode()).decode() if following < total else "null"
        return header, directory / "result.csv", begin, end, count, next_locator


def header_problem(operation: str, header: list[str], columns) -> str | None:
    """Why a CSV upload's header fails the whole job (Bulk 2.0) or batch (Bulk 1.0), or ``None``."""
    seen = set()
    for name, column in zip(header, columns):
        if name.lower() in seen:
            return f"InvalidBatch : Duplicate field name: {name}"
        seen.add(name.lower())
        if column.error is not None:
            if column.field is None:
                return f"InvalidBatch : Field name not found : {name}"
            return f"InvalidBatch : {column.error.message}"
    if operation in ("delete", "hardDelete") and [h.lower() for h in header] != ["id"]:
        return f"InvalidBatch : The '{operation}' batch must contain only 'Id' field"
    return None


# -- HTTP ------------------------------------------------------------------------------------------

_RESULT_KINDS = {"successfulresults": "success", "failedresults": "failed", "unprocessedrecords": "unprocessed"}


def _bulk(request: Request) -> Bulk2:
    return request.app.state.bulk2


def _file_range(path: Path, begin: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(begin)
        remaining = end - begin
        while remaining > 0:
            data = handle.read(min(chunk, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


def _job_collection(job_type: str, create: str):
    """``GET`` lists the jobs of ``job_type``; ``POST`` creates one with ``Bulk2.<create>``."""

    @rest_endpoint
    async def endpoint(request: Request, org: Org, version: str, user: str) -> Response:
        bulk = _bulk(request)
        if request.method == "GET":
            return json_response(bulk.list(job_type))
        body = await read_json(request)
        return json_response(await run_in_threadpool(getattr(bulk, create), user, version, body))

    return endpoint


async def _job_resource(request: Request, job_type: str, user: str) -> Response:
    bulk = _bulk(request)
    job = bulk.get(request.path_params["job_id"], job_type)
    if request.method == "GET":
        return json_response(bulk.public(job))
    if request.method == "DELETE":
        await run_in_threadpool(bulk.delete, job)
        return Response(status_code=204)
    body = await read_json(request)
    state = body.get("state") if isinstance(body, dict) else None
    return json_response(await run_in_threadpool(bulk.set_state, job, state))


@rest_endpoint
async def ingest_job(request: Request, org: Org, version: str, user: str) -> Response:
    return await _job_resource(request, "V2Ingest", user)


@rest_endpoint
async def query_job(request: Request, org: Org, version: str, user: str) -> Response:
    return await _job_resource(request, "V2Query", user)


@rest_endpoint
async def ingest_batches(request: Request, org: Org, version: str, user: str) -> Response:
    bulk = _bulk(request)
    job = bulk.get(request.path_params["job_id"], "V2Ingest")
    await bulk.upload(job, request.stream())
    return Response(status_code=201)


@rest_endpoint
async def ingest_results(request: Request, org: Org, version: str, user: str) -> Response:
    bulk = _bulk(request)
    job = bulk.get(request.path_params["job_id"], "V2Ingest")
    kind = _RESULT_KINDS.get(request.path_params["kind"].lower())
    if kind is None:
        raise SfHttpError(404, "NOT_FOUND", "The requested resource does not exist")
    path = bulk.result_file(job, kind)
    if path is None:
        return Response(bulk.result_header(job, kind), media_type="text/csv")
    return StreamingResponse(_file_range(path, 0, path.stat().st_size), media_type="text/csv")


@rest_endpoint
async def query_results(request: Request, org: Org, version: str, user: str) -> Response:
    bulk = _bulk(request)
    job = bulk.get(request.path_params["job_id"], "V2Query")
    max_records = request.query_params.get("maxRecords")
    if max_records is not None and (not max_records.isdigit() or int(max_records) <= 0):
        raise SfHttpError(400, "INVALIDREQUEST", f"Invalid maxRecords: {max_records}")
    header, path, begin, end, count, next_locator = await run_in_threadpool(
        bulk.query_page, job, request.query_params.get("locator"), int(max_records) if max_records else None
    )

    def body() -> Iterator[bytes]:
        yield header
        yield from _file_range(path, begin, end)

    headers = {"Sforce-NumberOfRecords": str(count), "Sforce-Locator": next_locator}
    return StreamingResponse(body(), media_type="text/csv", headers=headers)


def routes() -> list[Route]:
    base = "/services/data/v{version}/jobs"
    return [
        Route(base + "/ingest", _job_collection("V2Ingest", "create_ingest"), methods=["GET", "POST"]),
        Route(base + "/ingest/{job_id}", ingest_job, methods=["GET", "PATCH", "DELETE"]),
        Route(base + "/ingest/{job_id}/batches", ingest_batches, methods=["PUT"]),
        Route(base + "/ingest/{job_id}/{kind}", ingest_results, methods=["GET"]),
        Route(base + "/query", _job_collection("V2Query", "create_query"), methods=["GET", "POST"]),
        Route(base + "/query/{job_id}", query_job, methods=["GET", "PATCH", "DELETE"]),
        Route(base + "/query/{job_id}/results", query_results, methods=["GET"]),
    ]
