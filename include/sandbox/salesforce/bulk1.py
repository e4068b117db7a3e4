"""Bulk API 1.0 with JSON content, as simple-salesforce's ``sf.bulk`` and Airflow's
``SalesforceBulkOperator`` use it: jobs, batches of records (or a SOQL query), results.

Batches are processed as soon as they are posted: simple-salesforce checks a batch once and then
sleeps five seconds between checks, so a batch still queued would cost every caller five seconds.
Errors use Bulk 1.0's own shape, ``{"exceptionCode", "exceptionMessage"}``.

Query results differ from REST in two ways clients notice: dates and datetimes come back as epoch
milliseconds (simple-salesforce#290), and a query Bulk 1.0 cannot run (COUNT() and other aggregates,
OFFSET, or another object than the job's) fails its batch instead of returning records.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.salesforce.dml import json_rows, plan_columns
from sandbox.salesforce.org import Org
from sandbox.salesforce.query import CompiledQuery, QueryError, compile_query, iter_rows
from sandbox.salesforce.transport import (
    SfHttpError,
    authenticate,
    bulk_v1_error_response,
    json_response,
    org_of,
)
from sandbox.salesforce.values import now_stored, parse_datetime

_V1_OPERATIONS = {"insert": "insert", "update": "update", "upsert": "upsert", "delete": "delete",
                  "hardDelete": "hardDelete", "query": "query", "queryAll": "queryAll"}
_JOB_COUNTERS = ("numberBatchesCompleted", "numberBatchesFailed", "numberBatchesInProgress",
                 "numberBatchesQueued", "numberBatchesTotal", "numberRecordsFailed", "numberRecordsProcessed")


def _stamp() -> str:
    return now_stored()[:-1] + "+0000"


def bulk_v1_endpoint(handler: Callable) -> Callable:
    async def endpoint(request: Request) -> Response:
        try:
            user = authenticate(request, bulk_v1=True)
            return await handler(request, org_of(request), user)
        except SfHttpError as exc:
            return bulk_v1_error_response(exc)

    return endpoint


class Bulk1:
    """Bulk API 1.0 jobs and batches, kept in the store."""

    def __init__(self, org: Org):
        self.org = org

    # -- storage -----------------------------------------------------------------------------

    def _job(self, job_id: str) -> dict[str, Any]:
        row = self.org.store.conn().execute(
            "SELECT info FROM _bulk_jobs WHERE id = ? AND api = 'v1'", (job_id,)
        ).fetchone()
        if row is None:
            raise SfHttpError(400, "InvalidJob", f"Unable to find job with id: {job_id}")
        return json.loads(row[0])

    def _save_job(self, conn, job: dict[str, Any]) -> None:
        job["systemModstamp"] = _stamp()
        conn.execute(
            "INSERT OR REPLACE INTO _bulk_jobs(id, api, created, info) VALUES (?, 'v1', ?, ?)",
            (job["id"], time.time(), json.dumps(job)),
        )

    def _batch(self, job_id: str, batch_id: str) -> tuple[dict[str, Any], str | None, str | None]:
        row = self.org.store.conn().execute(
            "SELECT info, request, result FROM _bulk_batches WHERE id = ? AND job_id = ?", (batch_id, job_id)
        ).fetchone()
        if row is None:
            raise SfHttpError(400, "InvalidBatch", f"Unable to find batch with id: {batch_id}")
        return json.loads(row[0]), row[1], row[2]

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, user: str, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SfHttpError(400, "InvalidJob", "The job description must be a JSON object")
        operation = _V1_OPERATIONS.get(str(body.get("operation")))
        if operation is None:
            raise SfHttpError(400, "InvalidJob", f"Invalid operation: {body.get('operation')}")
        obj = self.org.schema.get(str(body.get("object") or ""))
        if obj is None:
            raise SfHttpError(400, "InvalidJob", f"Unable to find object: {body.get('object')}")
        content_type = body.get("contentType", "JSON")
        if content_type != "JSON":
            raise SfHttpError(400, "InvalidJob", f"This sandbox speaks Bulk API 1.0 in JSON only, not {content_type}")
        mode = body.get("concurrencyMode", "Parallel")
        mode = {0: "Parallel", 1: "Serial", "0": "Parallel", "1": "Serial"}.get(mode, mode)
        if mode not in ("Parallel", "Serial"):
            raise SfHttpError(400, "InvalidJob", f"Invalid concurrencyMode: {mode}")
        ext = None
        if operation == "upsert":
            ext_field = obj.field(str(body.get("externalIdFieldName") or ""))
            if ext_field is None or not (ext_field.is_key or ext_field.name == "Id"):
                raise SfHttpError(
                    400, "InvalidJob",
                    f"Field name provided, {body.get('externalIdFieldName')} does not match an External ID, "
                    f"Salesforce Id, or indexed field for {obj.name}",
                )
            ext = ext_field.name
        job_id = self.org.store.allocate_ids("750", 1)[0]
        stamp = _stamp()
        job = {
            "apexProcessingTime": 0, "apiActiveProcessingTime": 0, "apiVersion": float(version),
            "assignmentRuleId": None, "concurrencyMode": mode, "contentType": "JSON",
            "createdById": user, "createdDate": stamp, "externalIdFieldName": ext, "fastPathEnabled": False,
            "id": job_id, "numberRetries": 0, "object": obj.name, "operation": operation, "state": "Open",
            "systemModstamp": stamp, "totalProcessingTime": 0,
        }
        job.update(dict.fromkeys(_JOB_COUNTERS, 0))
        with self.org.store.write() as conn:
            self._save_job(conn, job)
        return job

    def change_job(self, job_id: str, body: Any) -> dict[str, Any]:
        state = body.get("state") if isinstance(body, dict) else None
        with self.org.store.write() as conn:
            job = self._job(job_id)
            if state not in ("Closed", "Aborted"):
                raise SfHttpError(400, "InvalidJobState", f"Invalid state: {state}")
            if job["state"] != "Open":
                raise SfHttpError(400, "InvalidJobState", f"Job {job_id} is not open; its state is {job['state']}")
            job["state"] = state
            self._save_job(conn, job)
        return job

    # -- batches -----------------------------------------------------------------------------

    def add_batch(self, job_id: str, body: bytes) -> dict[str, Any]:
        job = self._job(job_id)
        if job["state"] != "Open":
            raise SfHttpError(400, "InvalidJobState", f"Job {job_id} is not open for new batches; its state is {job['state']}")
        batch_id = self.org.store.allocate_ids("751", 1)[0]
        stamp = _stamp()
        batch = {
            "apexProcessingTime": 0, "apiActiveProcessingTime": 0, "createdDate": stamp, "id": batch_id,
            "jobId": job_id, "numberRecordsFailed": 0, "numberRecordsProcessed": 0, "state": "InProgress",
            "stateMessage": None, "systemModstamp": stamp, "totalProcessingTime": 0,
        }
        started = time.time()
        if job["operation"] in ("query", "queryAll"):
            result = self._run_query_batch(job, batch, body)
        else:
            result = self._run_dml_batch(job, batch, body)
        batch["totalProcessingTime"] = int((time.time() - started) * 1000)
        with self.org.store.write() as conn:
            job = self._job(job_id)
            seq = conn.execute("SELECT COUNT(*) FROM _bulk_batches WHERE job_id = ?", (job_id,)).fetchone()[0]
            conn.execute(
                "INSERT INTO _bulk_batches(id, job_id, seq, info, request, result) VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, job_id, seq, json.dumps(batch), body.decode("utf-8", "replace"), result),
            )
            job["numberBatchesTotal"] += 1
            job["numberBatchesCompleted" if batch["state"] == "Completed" else "numberBatchesFailed"] += 1
            job["numberRecordsProcessed"] += batch["numberRecordsProcessed"]
            job["numberRecordsFailed"] += batch["numberRecordsFailed"]
            job["totalProcessingTime"] += batch["totalProcessingTime"]
            self._save_job(conn, job)
        return batch

    def _run_dml_batch(self, job: dict[str, Any], batch: dict[str, Any], body: bytes) -> str | None:
        try:
            records = json.loads(body)
        except ValueError as exc:
            return self._fail_batch(batch, f"InvalidBatch : Failed to parse JSON: {exc}")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return self._fail_batch(batch, "InvalidBatch : A batch is a JSON array of records")
        if len(records) > 10_000:
            return self._fail_batch(batch, "InvalidBatch : Records in a batch exceed the limit of 10000")
        obj = self.org.schema.get(job["object"])
        headers, rows = json_rows(records)
        columns = plan_columns(self.org.schema, obj, headers, "json")
        results = self.org.engine.execute(
            obj, job["operation"], columns, rows, user_id=job["createdById"],
            external_id_field=job.get("externalIdFieldName"),
        )
        out = []
        for result in results:
            out.append({
                "success": result.success,
                "created": result.created,
                "id": result.id if result.success else None,  # a failed SaveResult has no id
                "errors": [{"fields": e.fields, "message": e.message, "statusCode": e.code} for e in result.errors],
            })
        batch["state"] = "Completed"
        batch["numberRecordsProcessed"] = len(results)
        batch["numberRecordsFailed"] = sum(1 for r in results if not r.success)
        return json.dumps(out)

    def _run_query_batch(self, job: dict[str, Any], batch: dict[str, Any], body: bytes) -> str | None:
        try:
            compiled = compile_query(self.org.schema, body.decode("utf-8"), job["operation"] == "queryAll")
        except (QueryError, UnicodeDecodeError) as exc:
            message = exc.message if isinstance(exc, QueryError) else str(exc)
            return self._fail_batch(batch, f"InvalidBatch : Failed to process query: {message}")
        unsupported = _unsupported_query(job, compiled)
        if unsupported:
            return self._fail_batch(batch, f"InvalidBatch : Failed to process query: {unsupported}")
        version = str(job["apiVersion"])
        dated = [c.path for c in compiled.columns if c.field.type in ("date", "datetime")]
        records = [
            _epoch_dates(compiled.json_record(row, version), dated)
            for row in iter_rows(self.org.store.conn(), compiled)
        ]
        result_id = "752" + batch["id"][3:]
        path = self.org.bulk_dir / f"{batch['id']}-{result_id}.json"
        path.write_text(json.dumps(records), encoding="utf-8")
        batch["state"] = "Completed"
        batch["numberRecordsProcessed"] = len(records)
        return json.dumps([result_id])

    @staticmethod
    def _fail_batch(batch: dict[str, Any], message: str) -> None:
        batch["state"] = "Failed"
        batch["stateMessage"] = message
        return None

    def batch_result(self, job_id: str, batch_id: str) -> str:
        batch, _request, result = self._batch(job_id, batch_id)
        if batch["state"] == "Failed":
            raise SfHttpError(400, "InvalidBatch", batch["stateMessage"] or "Batch failed")
        return result or "[]"

    def query_result(self, job_id: str, batch_id: str, result_id: str) -> str:
        self._batch(job_id, batch_id)
        path = self.org.bulk_dir / f"{batch_id}-{result_id}.json"
        if not path.exists():
            raise SfHttpError(400, "InvalidBatch", f"Unable to find result with id: {result_id}")
        return path.read_text(encoding="utf-8")

    def batches(self, job_id: str) -> dict[str, Any]:
        self._job(job_id)
        rows = self.org.store.conn().execute(
            "SELECT info FROM _bulk_batches WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
        return {"batchInfo": [json.loads(r[0]) for r in rows]}


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


@bulk_v1_endpoint
async def jobs(request: Request, org: Org, user: str) -> Response:
    body = await request.body()
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        raise SfHttpError(400, "InvalidJob", "Failed to parse the job description as JSON") from None
    job = await run_in_threadpool(_bulk(request).create_job, user, request.path_params["version"], payload)
    return json_response(job, 201)


@bulk_v1_endpoint
async def job(request: Request, org: Org, user: str) -> Response:
    bulk = _bulk(request)
    if request.method == "GET":
        return json_response(await run_in_threadpool(bulk._job, request.path_params["job_id"]))
    try:
        payload = json.loads(await request.body() or b"null")
    except ValueError:
        raise SfHttpError(400, "InvalidJob", "Failed to parse the request as JSON") from None
    return json_response(await run_in_threadpool(bulk.change_job, request.path_params["job_id"], payload))


@bulk_v1_endpoint
async def batches(request: Request, org: Org, user: str) -> Response:
    bulk = _bulk(request)
    if request.method == "GET":
        return json_response(await run_in_threadpool(bulk.batches, request.path_params["job_id"]))
    body = await request.body()
    batch = await run_in_threadpool(bulk.add_batch, request.path_params["job_id"], body)
    return json_response(batch, 201)


@bulk_v1_endpoint
async def batch(request: Request, org: Org, user: str) -> Response:
    info, _request, _result = await run_in_threadpool(
        _bulk(request)._batch, request.path_params["job_id"], request.path_params["batch_id"]
    )
    return json_response(info)


@bulk_v1_endpoint
async def batch_request(request: Request, org: Org, user: str) -> Response:
    _info, body, _result = await run_in_threadpool(
        _bulk(request)._batch, request.path_params["job_id"], request.path_params["batch_id"]
    )
    return Response(body or "[]", media_type="application/json")


@bulk_v1_endpoint
async def batch_result(request: Request, org: Org, user: str) -> Response:
    text = await run_in_threadpool(
        _bulk(request).batch_result, request.path_params["job_id"], request.path_params["batch_id"]
    )
    return Response(text, media_type="application/json")


@bulk_v1_endpoint
async def query_result(request: Request, org: Org, user: str) -> Response:
    text = await run_in_threadpool(
        _bulk(request).query_result,
        request.path_params["job_id"], request.path_params["batch_id"], request.path_params["result_id"],
    )
    return Response(text, media_type="application/json")


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
