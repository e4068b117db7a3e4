"""Bulk API 1.0 (``/services/async/{version}``): jobs, batches of records or a SOQL query, results.

As Salesforce documents it (Bulk API 1.0 guide; ``../shared/reference/salesforce.md`` §3.5): a job
names an operation, an object and the ``contentType`` of its batches (XML, CSV or JSON); each batch
posted to an open job is ``Queued`` and processed asynchronously by the org's Bulk worker
(:mod:`sandbox.salesforce.bulk_worker`, the same one that runs Bulk API 2.0 jobs, through the same
DML engine at the same speed): ``Queued`` → ``InProgress`` → ``Completed`` or ``Failed``; a batch
still queued when its job is aborted becomes ``NotProcessed``. Batch results (``batch/{id}/result``)
and the batch's own request (``batch/{id}/request``) come back in the job's content type. Job and
batch descriptions and errors are XML or JSON (:mod:`sandbox.salesforce.bulk1_wire`); errors are
``InvalidJob``, ``InvalidBatch``, ``InvalidJobState``, ``InvalidSessionId`` (HTTP 400) and
``ExceededQuota``.

A batch's records, its results and its state commit in one transaction, so a sandbox killed while a
batch runs processes it again from the start at the next start, never twice.

Clients notice the asynchrony: simple-salesforce (and so Airflow's ``SalesforceBulkOperator``)
checks a batch once and sleeps five seconds while it is not finished, as it would against a real
org. Query batches differ from REST as Salesforce's do: JSON results give dates and datetimes as
epoch milliseconds (simple-salesforce#290), and a query Bulk 1.0 cannot run (COUNT() and other
aggregates, OFFSET, another object than the job's) fails its batch.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sandbox.salesforce import bulk1_wire as wire
from sandbox.salesforce.bulk2 import header_problem
from sandbox.salesforce.bulk_worker import BulkWorker
from sandbox.salesforce.dml import plan_columns
from sandbox.salesforce.org import Org
from sandbox.salesforce.query import CompiledQuery, QueryError, compile_query, iter_rows
from sandbox.salesforce.transport import SfHttpError, authenticate
from sandbox.salesforce.values import now_stored, parse_datetime

WORK_KIND = "v1"
CONTENT_TYPES = ("XML", "CSV", "JSON")
MAX_RECORDS = 10_000
MAX_BATCH_CHARS = 10_000_000
DONE = ("Completed", "Failed", "NotProcessed")
_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete", "query", "queryAll")
_RESULT_EXTENSIONS = {"JSON": "json", "CSV": "csv", "XML": "xml"}


def _stamp() -> str:
    return now_stored()[:-1] + "+0000"


class Bulk1:
    """Bulk API 1.0 jobs and batches, kept in the store; batches run on the org's Bulk worker."""

    def __init__(self, org: Org, worker: BulkWorker):
        self.org = org
        self.worker = worker
        worker.register(WORK_KIND, self._run, self._unfinished, self._fail)

    # -- jobs --------------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        """The stored job (without its batch counters), or ``InvalidJob``."""
        row = self.org.store.conn().execute(
            "SELECT info FROM _bulk_jobs WHERE id = ? AND api = 'v1'", (job_id,)
        ).fetchone()
        if row is None:
            raise SfHttpError(400, "InvalidJob", f"Unable to find job with id: {job_id}")
        return json.loads(row[0])

    def job_content_type(self, job_id: str | None) -> str | None:
        if not job_id:
            return None
        row = self.org.store.conn().execute(
            "SELECT json_extract(info, '$.contentType') FROM _bulk_jobs WHERE id = ? AND api = 'v1'", (job_id,)
        ).fetchone()
        return row[0] if row else None

    def job_info(self, job: dict[str, Any]) -> dict[str, Any]:
        """The JobInfo a client sees: the job with its counters, summed from its batches now."""
        counts = {state: 0 for state in ("Queued", "InProgress", "Completed", "Failed", "NotProcessed")}
        processed = failed = elapsed = 0
        for state, count, done, bad, ms in self.org.store.conn().execute(
            "SELECT json_extract(info, '$.state'), COUNT(*), SUM(json_extract(info, '$.numberRecordsProcessed')), "
            "SUM(json_extract(info, '$.numberRecordsFailed')), SUM(json_extract(info, '$.totalProcessingTime')) "
            "FROM _bulk_batches WHERE job_id = ? GROUP BY 1", (job["id"],)
        ):
            counts[state] = count
            processed, failed, elapsed = processed + (done or 0), failed + (bad or 0), elapsed + (ms or 0)
        info = dict(job)
        info.update(
            numberBatchesQueued=counts["Queued"], numberBatchesInProgress=counts["InProgress"],
            numberBatchesCompleted=counts["Completed"], numberBatchesFailed=counts["Failed"],
            numberBatchesTotal=sum(counts.values()), numberRecordsProcessed=processed,
            numberRecordsFailed=failed, totalProcessingTime=elapsed, apiActiveProcessingTime=elapsed,
        )
        return {key: info.get(key) for key in (*wire.JOB_FIELDS, "assignmentRuleId", "fastPathEnabled")}

    def _save_job(self, conn, job: dict[str, Any]) -> None:
        job["systemModstamp"] = _stamp()
        conn.execute(
            "INSERT OR REPLACE INTO _bulk_jobs(id, api, created, info) VALUES (?, 'v1', "
            "COALESCE((SELECT created FROM _bulk_jobs WHERE id = ?), ?), ?)",
            (job["id"], job["id"], time.time(), json.dumps(job)),
        )

    def create_job(self, user: str, version: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Open a job from a JobInfo request (``operation``, ``object``, ``contentType``, ...)."""
        operation = str(fields.get("operation"))
        if operation not in _OPERATIONS:
            raise SfHttpError(400, "InvalidJob", f"Invalid operation: {fields.get('operation')}")
        obj = self.org.schema.get(str(fields.get("object") or ""))
        if obj is None:
            raise SfHttpError(400, "InvalidJob", f"Unable to find object: {fields.get('object')}")
        content_type = str(fields.get("contentType") or "XML")  # Bulk API 1.0's default
        if content_type not in CONTENT_TYPES:
            raise SfHttpError(400, "InvalidJob", f"Invalid content type: {content_type}; the sandbox takes "
                                                 f"{', '.join(CONTENT_TYPES)} (no ZIP_ variants)")
        mode = fields.get("concurrencyMode", "Parallel")
        mode = {0: "Parallel", 1: "Serial", "0": "Parallel", "1": "Serial"}.get(mode, mode)
        if mode not in ("Parallel", "Serial"):
            raise SfHttpError(400, "InvalidJob", f"Invalid concurrencyMode: {mode}")
        ext = None
        if operation == "upsert":
            ext_field = obj.field(str(fields.get("externalIdFieldName") or ""))
            if ext_field is None or not (ext_field.is_key or ext_field.name == "Id"):
                raise SfHttpError(
                    400, "InvalidJob",
                    f"Field name provided, {fields.get('externalIdFieldName')} does not match an External ID, "
                    f"Salesforce Id, or indexed field for {obj.name}",
                )
            ext = ext_field.name
        stamp = _stamp()
        job = {
            "id": self.org.store.allocate_ids("750", 1)[0], "operation": operation, "object": obj.name,
            "createdById": user, "createdDate": stamp, "systemModstamp": stamp, "state": "Open",
            "externalIdFieldName": ext, "concurrencyMode": mode, "contentType": content_type, "numberRetries": 0,
            "apiVersion": float(version), "apexProcessingTime": 0, "assignmentRuleId": None, "fastPathEnabled": False,
        }
        with self.org.store.write() as conn:
            self._save_job(conn, job)
        return self.job_info(job)

    def change_job(self, job_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Close or abort an open job; aborting leaves its queued batches ``NotProcessed``."""
        state = fields.get("state")
        with self.org.store.write() as conn:
            job = self.job(job_id)
            if state not in ("Closed", "Aborted"):
                raise SfHttpError(400, "InvalidJobState", f"Invalid state: {state}")
            if job["state"] != "Open":
                raise SfHttpError(400, "InvalidJobState", f"Job {job_id} is not open; its state is {job['state']}")
            job["state"] = state
            self._save_job(conn, job)
            if state == "Aborted":
                # Salesforce: a batch still queued when its job is aborted is never processed.
                for batch_id, info in conn.execute(
                    "SELECT id, info FROM _bulk_batches WHERE job_id = ? AND json_extract(info, '$.state') = 'Queued'",
                    (job_id,),
                ).fetchall():
                    batch = json.loads(info)
                    batch.update(state="NotProcessed", systemModstamp=_stamp())
                    conn.execute("UPDATE _bulk_batches SET info = ? WHERE id = ?", (json.dumps(batch), batch_id))
        return self.job_info(job)

    # -- batches -----------------------------------------------------------------------------

    def batch(self, job_id: str, batch_id: str) -> tuple[dict[str, Any], bytes, str | None]:
        """A batch's info, its request body and its stored result, or ``InvalidBatch``."""
        row = self.org.store.conn().execute(
            "SELECT info, request, result FROM _bulk_batches WHERE id = ? AND job_id = ?", (batch_id, job_id)
        ).fetchone()
        if row is None:
            raise SfHttpError(400, "InvalidBatch", f"Unable to find batch with id: {batch_id}")
        body = row[1].encode("utf-8") if isinstance(row[1], str) else (row[1] or b"")
        return json.loads(row[0]), body, row[2]

    def add_batch(self, job_id: str, body: bytes) -> dict[str, Any]:
        """Queue a batch on an open job; the worker reads and runs it later."""
        with self.org.store.write() as conn:
            job = self.job(job_id)
            if job["state"] != "Open":
                raise SfHttpError(
                    400, "InvalidJobState", f"Job {job_id} is not open for new batches; its state is {job['state']}"
                )
            stamp = _stamp()
            batch = {
                "apexProcessingTime": 0, "apiActiveProcessingTime": 0, "createdDate": stamp,
                "id": self.org.store.allocate_ids("751", 1)[0], "jobId": job_id, "numberRecordsFailed": 0,
                "numberRecordsProcessed": 0, "state": "Queued", "stateMessage": None, "systemModstamp": stamp,
                "totalProcessingTime": 0,
            }
            seq = conn.execute("SELECT COUNT(*) FROM _bulk_batches WHERE job_id = ?", (job_id,)).fetchone()[0]
            conn.execute(
                "INSERT INTO _bulk_batches(id, job_id, seq, info, request, result) VALUES (?, ?, ?, ?, ?, NULL)",
                (batch["id"], job_id, seq, json.dumps(batch), body),
            )
        self.worker.submit(WORK_KIND, batch["id"])
        return batch

    def batches(self, job_id: str) -> list[dict[str, Any]]:
        self.job(job_id)
        rows = self.org.store.conn().execute(
            "SELECT info FROM _bulk_batches WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def batch_result(self, job_id: str, batch_id: str) -> tuple[dict[str, Any], Any]:
        """The job and a finished batch's result: DML results, or a query's result ids."""
        job = self.job(job_id)
        batch, _body, result = self.batch(job_id, batch_id)
        if batch["state"] == "Failed":
            raise SfHttpError(400, "InvalidBatch", batch["stateMessage"] or "Batch failed")
        if batch["state"] != "Completed":
            raise SfHttpError(400, "InvalidBatch", f"Batch not completed; its state is {batch['state']}")
        return job, json.loads(result or "[]")

    def query_result_file(self, job_id: str, batch_id: str, result_id: str) -> tuple[dict[str, Any], Path]:
        job, result_ids = self.batch_result(job_id, batch_id)
        path = self._result_path(job, batch_id, result_id)
        if result_id not in result_ids or not path.exists():
            raise SfHttpError(400, "InvalidBatch", f"Unable to find result with id: {result_id}")
        return job, path

    def _result_path(self, job: dict[str, Any], batch_id: str, result_id: str) -> Path:
        return self.org.bulk_dir / f"{batch_id}-{result_id}.{_RESULT_EXTENSIONS[job['contentType']]}"

    # -- the worker ----------------------------------------------------------------------------

    def _unfinished(self) -> list[str]:
        """Batches a previous run left queued or running, in the order they were posted."""
        return [row[0] for row in self.org.store.conn().execute(
            "SELECT b.id FROM _bulk_batches b JOIN _bulk_jobs j ON j.id = b.job_id "
            "WHERE j.api = 'v1' AND json_extract(b.info, '$.state') IN ('Queued', 'InProgress') "
            "ORDER BY j.created, b.seq"
        )]

    def _begin(self, batch_id: str) -> tuple[dict[str, Any], dict[str, Any], bytes] | None:
        """Move a queued batch to ``InProgress`` (also one a killed run left there); ``None`` if it is
        done or was never to be processed (``NotProcessed``)."""
        with self.org.store.write() as conn:
            row = conn.execute("SELECT job_id FROM _bulk_batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                return None
            job = self.job(row[0])
            batch, body, _result = self.batch(row[0], batch_id)
            if batch["state"] not in ("Queued", "InProgress"):
                return None
            batch.update(state="InProgress", systemModstamp=_stamp())
            conn.execute("UPDATE _bulk_batches SET info = ? WHERE id = ?", (json.dumps(batch), batch_id))
        return job, batch, body

    def _run(self, batch_id: str) -> None:
        begun = self._begin(batch_id)
        if begun is None:
            return
        job, batch, body = begun
        started = time.time()
        delay = self.org.faults.bulk_delay_seconds
        if delay:
            time.sleep(delay)  # the bulk_delay fault: watch a batch InProgress
        if len(body) > MAX_BATCH_CHARS:
            self._finish(batch, started, "Failed", f"InvalidBatch : The batch exceeds the limit of {MAX_BATCH_CHARS:,} characters")
        elif job["operation"] in ("query", "queryAll"):
            self._run_query(job, batch, body, started)
        else:
            self._run_dml(job, batch, body, started)

    def _fail(self, batch_id: str, message: str) -> None:
        row = self.org.store.conn().execute("SELECT info FROM _bulk_batches WHERE id = ?", (batch_id,)).fetchone()
        if row is not None:
            batch = json.loads(row[0])
            self._finish(batch, time.time(), "Failed", message)

    def _finish(self, batch: dict[str, Any], started: float, state: str, message: str | None = None,
                result: Any = None, conn=None) -> None:
        batch.update(state=state, stateMessage=message, systemModstamp=_stamp())
        batch["totalProcessingTime"] = batch["apiActiveProcessingTime"] = int((time.time() - started) * 1000)
        row = (json.dumps(batch), None if result is None else json.dumps(result), batch["id"])
        if conn is not None:
            conn.execute("UPDATE _bulk_batches SET info = ?, result = ? WHERE id = ?", row)
            return
        with self.org.store.write() as wconn:
            wconn.execute("UPDATE _bulk_batches SET info = ?, result = ? WHERE id = ?", row)

    def _run_dml(self, job: dict[str, Any], batch: dict[str, Any], body: bytes, started: float) -> None:
        obj = self.org.schema.get(job["object"])
        try:
            if job["contentType"] == "JSON":
                headers, rows = wire.json_records(body)
            elif job["contentType"] == "CSV":
                headers, rows = wire.csv_records(body)
            else:
                headers, rows = wire.xml_records(body)
        except wire.WireError as exc:
            self._finish(batch, started, "Failed", str(exc))
            return
        if len(rows) > MAX_RECORDS:
            self._finish(batch, started, "Failed", f"InvalidBatch : Records in a batch exceed the limit of {MAX_RECORDS}")
            return
        source = "json" if job["contentType"] == "JSON" else "csv"  # XML cells are text, as CSV's are
        columns = plan_columns(self.org.schema, obj, headers, source)
        if source == "csv":
            # CSV and XML name their fields once for the whole batch: an unknown one fails the batch.
            problem = header_problem(job["operation"], headers, columns)
            if problem:
                self._finish(batch, started, "Failed", problem)
                return
        with self.org.store.write() as conn:
            results = self.org.engine.execute(
                obj, job["operation"], columns, rows, user_id=job["createdById"],
                external_id_field=job.get("externalIdFieldName"),
            )
            out = [
                {
                    "success": r.success, "created": r.created,
                    "id": r.id if r.success else None,  # a failed SaveResult has no id
                    "errors": [{"fields": e.fields, "message": e.message, "statusCode": e.code} for e in r.errors],
                }
                for r in results
            ]
            batch.update(numberRecordsProcessed=len(out), numberRecordsFailed=sum(1 for r in out if not r["success"]))
            self._finish(batch, started, "Completed", result=out, conn=conn)

    def _run_query(self, job: dict[str, Any], batch: dict[str, Any], body: bytes, started: float) -> None:
        try:
            compiled = compile_query(self.org.schema, body.decode("utf-8"), job["operation"] == "queryAll")
        except (QueryError, UnicodeDecodeError) as exc:
            message = exc.message if isinstance(exc, QueryError) else str(exc)
            self._finish(batch, started, "Failed", f"InvalidBatch : Failed to process query: {message}")
            return
        unsupported = _unsupported_query(job, compiled)
        if unsupported:
            self._finish(batch, started, "Failed", f"InvalidBatch : Failed to process query: {unsupported}")
            return
        result_id = "752" + batch["id"][3:]
        path = self._result_path(job, batch["id"], result_id)
        partial = path.with_name(path.name + ".part")
        count = _write_query_result(partial, job, compiled, iter_rows(self.org.store.conn(), compiled))
        partial.replace(path)
        batch["numberRecordsProcessed"] = count
        self._finish(batch, started, "Completed", result=[result_id])


def _write_query_result(path: Path, job: dict[str, Any], compiled: CompiledQuery, rows: Iterator[tuple]) -> int:
    """Stream a query's rows into ``path`` in the job's content type; returns the row count."""
    version = str(job["apiVersion"])
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        if job["contentType"] == "CSV":
            writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(compiled.csv_header())
            for row in rows:
                writer.writerow(compiled.csv_cells(row))
                count += 1
        elif job["contentType"] == "XML":
            paths = [c.path for c in compiled.columns]

            def records() -> Iterator[tuple[dict[str, Any], dict[tuple[str, ...], str]]]:
                nonlocal count
                for row in rows:
                    count += 1
                    yield compiled.json_record(row, version), dict(zip(paths, compiled.csv_cells(row)))

            for chunk in wire.xml_query_records(records()):
                out.write(chunk)
        else:
            dated = [c.path for c in compiled.columns if c.field.type in ("date", "datetime")]
            out.write("[")
            for row in rows:
                out.write(("," if count else "") + json.dumps(_epoch_dates(compiled.json_record(row, version), dated)))
                count += 1
            out.write("]")
    return count


def _unsupported_query(job: dict[str, Any], compiled: CompiledQuery) -> str | None:
    """Why Bulk API 1.0 refuses this query for this job, or ``None``."""
    if compiled.count_only or compiled.is_aggregate:
        return "FUNCTIONALITY_NOT_ENABLED: Aggregate queries are not supported by Bulk API query"
    if compiled.query.offset:
        return "FUNCTIONALITY_NOT_ENABLED: OFFSET is not supported by Bulk API query"
    if compiled.obj.name != job["object"]:
        # Salesforce runs a batch against its job's object; sf.bulk.Account.query("... FROM Contact") is an easy slip.
        return f"INVALID_TYPE: The query's object {compiled.obj.name} does not match the job's object {job['object']}"
    return None


def _epoch_dates(record: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """``record`` with its date and datetime values as epoch milliseconds, as Bulk 1.0 JSON sends them."""
    for path in paths:
        target: Any = record
        for rel in path[:-1]:
            target = target.get(rel) if isinstance(target, dict) else None
        if isinstance(target, dict) and isinstance(target.get(path[-1]), str):
            parsed = parse_datetime(target[path[-1]])
            if parsed is not None:
                target[path[-1]] = round(parsed.timestamp() * 1000)
    return record


# -- HTTP ----------------------------------------------------------------------------------------


def _bulk(request: Request) -> Bulk1:
    return request.app.state.bulk1


def _format(request: Request, job_content_type: str | None) -> str:
    return wire.wire_format(request.headers.get("content-type", ""), request.headers.get("accept", ""),
                            job_content_type)


def _document(text: str, fmt: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type=f"{wire.MEDIA_TYPES[fmt]};charset=UTF-8")


def bulk_v1_endpoint(handler: Callable) -> Callable:
    """Authenticate (the ``X-SFDC-Session`` header) and answer errors as Bulk 1.0 does: HTTP 400
    (403 for the allowance) with an ``error`` document in the request's or the job's format."""

    async def endpoint(request: Request) -> Response:
        bulk = _bulk(request)
        try:
            user = authenticate(request, bulk_v1=True)
            return await handler(request, bulk, user)
        except SfHttpError as exc:
            job_id = request.path_params.get("job_id")
            fmt = _format(request, await run_in_threadpool(bulk.job_content_type, job_id))
            return _document(wire.error_document(exc.code, exc.message, fmt), fmt, exc.status)

    return endpoint


async def _read_job_fields(request: Request, fmt: str) -> dict[str, Any]:
    try:
        return wire.read_job_request(await request.body(), fmt)
    except wire.WireError as exc:
        raise SfHttpError(400, "InvalidJob", str(exc)) from None


@bulk_v1_endpoint
async def jobs(request: Request, bulk: Bulk1, user: str) -> Response:
    fmt = _format(request, None)
    fields = await _read_job_fields(request, fmt)
    job = await run_in_threadpool(bulk.create_job, user, request.path_params["version"], fields)
    return _document(wire.job_document(job, fmt), fmt, 201)


@bulk_v1_endpoint
async def job(request: Request, bulk: Bulk1, user: str) -> Response:
    job_id = request.path_params["job_id"]
    current = await run_in_threadpool(bulk.job, job_id)
    fmt = _format(request, current["contentType"])
    if request.method == "GET":
        info = await run_in_threadpool(bulk.job_info, current)
    else:
        info = await run_in_threadpool(bulk.change_job, job_id, await _read_job_fields(request, fmt))
    return _document(wire.job_document(info, fmt), fmt)


@bulk_v1_endpoint
async def batches(request: Request, bulk: Bulk1, user: str) -> Response:
    job_id = request.path_params["job_id"]
    current = await run_in_threadpool(bulk.job, job_id)
    fmt = _format(request, current["contentType"])
    if request.method == "GET":
        return _document(wire.batch_list_document(await run_in_threadpool(bulk.batches, job_id), fmt), fmt)
    batch = await run_in_threadpool(bulk.add_batch, job_id, await request.body())
    return _document(wire.batch_document(batch, fmt), fmt, 201)


@bulk_v1_endpoint
async def batch(request: Request, bulk: Bulk1, user: str) -> Response:
    job_id = request.path_params["job_id"]
    current = await run_in_threadpool(bulk.job, job_id)
    info, _body, _result = await run_in_threadpool(bulk.batch, job_id, request.path_params["batch_id"])
    fmt = _format(request, current["contentType"])
    return _document(wire.batch_document(info, fmt), fmt)


@bulk_v1_endpoint
async def batch_request(request: Request, bulk: Bulk1, user: str) -> Response:
    job_id = request.path_params["job_id"]
    current = await run_in_threadpool(bulk.job, job_id)
    _info, body, _result = await run_in_threadpool(bulk.batch, job_id, request.path_params["batch_id"])
    return Response(body, media_type=f"{wire.MEDIA_TYPES[current['contentType']]};charset=UTF-8")


@bulk_v1_endpoint
async def batch_result(request: Request, bulk: Bulk1, user: str) -> Response:
    current, result = await run_in_threadpool(
        bulk.batch_result, request.path_params["job_id"], request.path_params["batch_id"]
    )
    if current["operation"] in ("query", "queryAll"):
        fmt = _format(request, current["contentType"])
        return _document(wire.result_list_document(result, fmt), fmt)
    content_type = current["contentType"]
    return _document(wire.results_document(result, content_type), content_type)


@bulk_v1_endpoint
async def query_result(request: Request, bulk: Bulk1, user: str) -> Response:
    current, path = await run_in_threadpool(
        bulk.query_result_file,
        request.path_params["job_id"], request.path_params["batch_id"], request.path_params["result_id"],
    )
    return FileResponse(path, media_type=f"{wire.MEDIA_TYPES[current['contentType']]};charset=UTF-8")


def routes() -> list[Route]:
    base = "/services/async/{version}/job"
    return [
        Route(base, jobs, methods=["POST"]),
        Route(base + "/{job_id}", job, methods=["GET", "POST"]),
        Route(base + "/{job_id}/batch", batches, methods=["GET", "POST"]),
        Route(base + "/{job_id}/batch/{batch_id}", batch, methods=["GET"]),
        Route(base + "/{job_id}/batch/{batch_id}/request", batch_request, methods=["GET"]),
        Route(base + "/{job_id}/batch/{batch_id}/result", batch_result, methods=["GET"]),
        Route(base + "/{job_id}/batch/{batch_id}/result/{result_id}", query_result, methods=["GET"]),
    ]
