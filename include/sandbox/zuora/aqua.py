"""AQuA, Zuora's Aggregate Query API: ``POST /v1/batch-query/``, ``GET``/``DELETE
/v1/batch-query/jobs/{id}``, results by ``GET /v1/file/{file-id}`` (:mod:`sandbox.zuora.files`).

As Zuora documents it ("Post query", "Get job results", "Stateless and stateful modes", "Export
deleted data", "AQuA API error codes" under docs.zuora.com/en/zuora-platform/data/aggregate-query-api-aqua;
zuora-sdk's ``AggregateQueriesApi`` models; singer-io/tap-zuora's AQuA client):

- A job holds up to 50 queries (``zoql`` or ``zoqlexport``, :mod:`sandbox.zuora.zoql_export`); the
  answer is the job ``submitted`` with its batches ``pending``; a background thread runs them in
  order (``executing`` → ``completed``, or ``aborted`` with the batch's ``message``), each into one
  result file (``fileId``, ``recordCount``), CSV or, with ``format`` ``gzip``/``zip``, compressed.
  ``useQueryLabels`` ``true`` gives API names in the header (``Account.Name``), else labels.
- Stateless (``version`` 1.0, or no ``partner``+``project``): every batch is a full load.
- Stateful (``version`` ≥ 1.1 with ``partner`` and ``project``): the first job of a project runs
  each query in full; the next returns the rows created or updated since the previous job started
  (``full: false``), and, when the query asks for ``deleted`` (``{"column", "format": "Boolean" |
  "Numeric"}``), the rows deleted since, flagged in that column (false/0 on full loads, which carry
  no deleted rows). A changed query text or ``deleted`` spec, or 180 idle days, means a full load
  again; ``incrementalTime`` (tenant time) sets the start of an incremental load; ``offset``
  (0-3600 s) ends the window that many seconds before the job starts. The state is kept per
  partner, project and query name, and moves only when a job completes.
- Errors come in AQuA's own body, ``{"errorCode", "message"}``, with HTTP 200: 90002 unknown job,
  90003 a job that cannot be cancelled, 90004 more than 50 queries, 90005 a query that does not
  compile (the job is created ``aborted``; each batch's ``message`` says why), 90012 ``deleted`` in
  stateless mode, 90015 a bad ``incrementalTime``, 90016 no queries. A body that is not a job
  description at all is HTTP 400 ``{"code", "message"}`` (zuora-sdk's ``CommonErrorResponse``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.zuora.background import BackgroundJobs
from sandbox.zuora.files import service as files_service
from sandbox.zuora.store import format_datetime, new_id
from sandbox.zuora.timezone import tenant_time_zone
from sandbox.zuora.zoql import ZoqlFault
from sandbox.zuora.zoql_export import ExportOptions, compile_export, write_export

JOB_KIND = "aqua"
STATE_SETTING = "aqua_state"
MAX_QUERIES = 50
API_VERSION = "91.0"
IDLE_FULL_DAYS = 180  # Zuora: a stateful project idle this long loads in full again
FORMATS = {"CSV": "NONE", "GZIP": "GZIP", "ZIP": "ZIP"}
SYNTAX_ERROR = "There is a syntax error in one of the queries in the AQuA input"
_ABORTED = "The query execution has been aborted."


class AquaError(Exception):
    """A request AQuA refuses: its five-digit code and message (HTTP 200), or ``status`` 400."""

    def __init__(self, code: str, message: str, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _public_batch(batch: dict[str, Any], submitted: bool) -> dict[str, Any]:
    keys = ["apiVersion", "batchId", "batchType", "full", "name", "query", "recordCount", "status"]
    if not submitted:
        keys += ["message", "fileId"]
    info = {key: batch[key] for key in keys if batch.get(key) is not None}
    info["localizedStatus"] = batch["status"]
    if batch.get("deleted"):
        info["deleted"] = batch["deleted"]
    return info


class Aqua(BackgroundJobs):
    """The tenant's AQuA jobs, their stateful projects and the thread that runs them."""

    kind = JOB_KIND
    unfinished = ("submitted", "executing")

    def __init__(self, tenant: Any):
        super().__init__(tenant)
        self.files = files_service(tenant)

    # -- submitting ------------------------------------------------------------------------------

    def submit(self, body: Any) -> dict[str, Any]:
        """Validate a job description and queue it; answers the ``submitted`` job (or an aborted
        one, with ``errorCode`` 90005, when a query does not compile)."""
        if not isinstance(body, dict):
            raise AquaError("400", "The request body must be a JSON object", 400)
        queries = body.get("queries")
        if not isinstance(queries, list) or not queries:
            raise AquaError("90016", "There are no queries included in the AQuA version 1.0 request.")
        if len(queries) > MAX_QUERIES:
            raise AquaError("90004", "Invalid number of queries allowed. A maximum of 50 queries are supported "
                                     "in an AQuA request.")
        fmt = str(body.get("format") or "csv").upper()
        if fmt not in FORMATS:
            raise AquaError("400", "format must be one of csv, gzip, zip", 400)
        if str(body.get("encrypted") or "none").lower() != "none":
            raise AquaError("400", "The sandbox does not encrypt AQuA results; send encrypted none", 400)
        version = str(body.get("version") or "1.0")
        partner, project = body.get("partner"), body.get("project")
        stateful = version != "1.0" and bool(partner) and bool(project)
        offset = body.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 3600:
            raise AquaError("400", "offset must be an integer from 0 to 3600", 400)
        incremental = body.get("incrementalTime")
        since_override = None
        if incremental is not None:
            since_override = self._read_incremental_time(incremental)
        batches = []
        for index, item in enumerate(queries):
            if not isinstance(item, dict) or not isinstance(item.get("query"), str):
                raise AquaError("400", f"queries[{index}] must be an object with a query", 400)
            batch_type = str(item.get("type") or "zoql").lower()
            if batch_type not in ("zoql", "zoqlexport"):
                raise AquaError("400", f"queries[{index}].type must be zoql or zoqlexport", 400)
            deleted = item.get("deleted")
            if deleted is not None:
                if not stateful:
                    raise AquaError("90012", "Stateless AQuA does not support deleted columns.")
                if (not isinstance(deleted, dict) or not deleted.get("column")
                        or str(deleted.get("format", "Boolean")).lower() not in ("boolean", "numeric")):
                    raise AquaError("400", 'deleted must be {"column": name, "format": "Boolean" or "Numeric"}', 400)
                deleted = {"column": str(deleted["column"]), "format": str(deleted.get("format", "Boolean"))}
            batches.append({
                "batchId": new_id(), "name": str(item.get("name") or f"query{index + 1}"), "query": item["query"],
                "batchType": batch_type, "apiVersion": str(item.get("apiVersion") or API_VERSION),
                "deleted": deleted, "status": "pending", "recordCount": 0, "message": "", "full": True,
            })
        job = {
            "id": new_id(), "name": str(body.get("name") or ""), "version": version, "format": fmt,
            "encrypted": "none", "partner": partner, "project": project, "stateful": stateful,
            "useQueryLabels": str(body.get("useQueryLabels", "false")).lower() == "true",
            "dateTimeUtc": str(body.get("dateTimeUtc", "false")).lower() == "true",
            "nullReplacement": str(body.get("nullReplacement") or ""), "offset": offset,
            "sinceOverride": since_override, "notifyUrl": body.get("notifyUrl"), "status": "submitted",
            "startTime": None, "batches": batches, "_created": time.time(),
        }
        tz = tenant_time_zone(self.store)
        faults = []
        for batch in batches:
            try:
                compile_export(self.tenant.schema, batch["query"], tz, joins_allowed=batch["batchType"] == "zoqlexport")
            except ZoqlFault as exc:
                faults.append(exc.message)
                batch.update(status="aborted", message=exc.message)
            batch["full"] = self._window(job, batch, self.store.change_time())[0] is None
        with self._lock:
            if faults:
                job["status"] = "aborted"
                for batch in batches:
                    if batch["status"] == "pending":
                        batch.update(status="aborted", message=_ABORTED)
            self.jobs[job["id"]] = job
            self._save(job)
        if faults:
            return {**self.public(job, submitted=True), "errorCode": "90005", "message": SYNTAX_ERROR}
        self.worker.submit(job["id"])
        return self.public(job, submitted=True)

    def _read_incremental_time(self, value: Any) -> str:
        """``incrementalTime`` (``YYYY-MM-DD HH:MM:SS``, tenant time) as a stored UTC time."""
        try:
            local = dt.datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise AquaError("90015", "The incremental timestamp is invalid.") from None
        return format_datetime(local.replace(tzinfo=tenant_time_zone(self.store)))

    # -- reading ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise AquaError("90002", "Invalid Job Id.")
        return job

    def public(self, job: dict[str, Any], submitted: bool = False) -> dict[str, Any]:
        """The job as the API shows it: ``submitted`` is the POST answer's shape, else GET's."""
        with self._lock:
            info: dict[str, Any] = {
                "batches": [_public_batch(b, submitted) for b in job["batches"]],
                "encrypted": job["encrypted"], "format": job["format"], "id": job["id"], "name": job["name"],
                "status": job["status"], "localizedStatus": job["status"], "useLastCompletedJobQueries": False,
                "version": job["version"], "offset": job["offset"],
            }
            for key in ("partner", "project", "notifyUrl"):
                if job.get(key):
                    info[key] = job[key]
            if not submitted and job.get("startTime"):
                info["startTime"] = job["startTime"]
            return info

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE``: stop a job that has not finished (it ends ``aborted``)."""
        job = self.jobs.get(job_id)
        with self._lock:
            if job is None or job["status"] not in ("submitted", "executing"):
                raise AquaError("90003", "Invalid Job Id for job cancellation.")
            job["status"] = "aborted"
            for batch in job["batches"]:
                if batch["status"] in ("pending", "executing"):
                    batch.update(status="aborted", message=_ABORTED)
            self._save(job)
        return job

    # -- running ---------------------------------------------------------------------------------

    def _state(self, job: dict[str, Any]) -> dict[str, Any]:
        states = self.store.get_setting(STATE_SETTING, {}) or {}
        return states.get(f"{job['partner']}|{job['project']}", {})

    def _window(self, job: dict[str, Any], batch: dict[str, Any], now: str) -> tuple[str | None, str]:
        """``(since, until)`` of a batch: ``since`` is ``None`` for a full load."""
        until = format_datetime(dt.datetime.fromisoformat(now) - dt.timedelta(seconds=job["offset"]))
        if not job["stateful"]:
            return None, until
        if job.get("sinceOverride"):
            return job["sinceOverride"], until
        previous = self._state(job).get(batch["name"])
        if (previous is None or previous["query"] != batch["query"] or previous["deleted"] != batch["deleted"]
                or dt.datetime.fromisoformat(now) - dt.datetime.fromisoformat(previous["watermark"])
                > dt.timedelta(days=IDLE_FULL_DAYS)):
            return None, until
        return previous["watermark"], until

    def _run(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job["status"] not in ("submitted", "executing"):
            return
        tz = tenant_time_zone(self.store)
        now = self.store.change_time()  # the clock UpdatedDate is stamped with
        with self._lock:
            job["status"] = "executing"
            job["startTime"] = dt.datetime.fromisoformat(now).replace(tzinfo=dt.timezone.utc).astimezone(tz).strftime(
                "%Y-%m-%d %H:%M:%S")
            self._save(job)
        windows = {}
        for batch in job["batches"]:
            if job["status"] != "executing":
                return  # cancelled
            self.worker.check()
            since, until = self._window(job, batch, now)
            windows[batch["name"]] = until
            with self._lock:
                batch.update(status="executing", full=since is None)
                self._save(job)
            options = ExportOptions(
                api_names=job["useQueryLabels"], date_time_utc=job["dateTimeUtc"],
                null_replacement=job["nullReplacement"], compression=FORMATS[job["format"]],
                deleted=(batch["deleted"]["column"], batch["deleted"]["format"]) if batch["deleted"] else None,
            )
            file_id, path = self.files.new(options.compression)
            try:
                query = compile_export(self.tenant.schema, batch["query"], tz, batch["batchType"] == "zoqlexport")
                count = write_export(self.store.conn(), query, path, tz, options,
                                     window=None if since is None else (since, until), check=self.worker.check)
            except ZoqlFault as exc:
                path.unlink(missing_ok=True)
                self._abort(job, batch, exc.message)
                return
            with self._lock:
                batch.update(status="completed", fileId=file_id, recordCount=count, message="")
                self._save(job)
        with self._lock:
            if job["status"] != "executing":
                return
            job["status"] = "completed"
            self._save(job)
        if job["stateful"]:
            self._advance(job, windows)

    def _advance(self, job: dict[str, Any], windows: dict[str, str]) -> None:
        """Remember where each query of a completed stateful job left off."""
        with self.store.write():
            states = self.store.get_setting(STATE_SETTING, {}) or {}
            project = states.setdefault(f"{job['partner']}|{job['project']}", {})
            for batch in job["batches"]:
                project[batch["name"]] = {"query": batch["query"], "deleted": batch["deleted"],
                                          "watermark": windows[batch["name"]]}
            self.store.set_setting(STATE_SETTING, states)

    def _abort(self, job: dict[str, Any], batch: dict[str, Any], message: str) -> None:
        with self._lock:
            batch.update(status="aborted", message=message)
            job["status"] = "aborted"
            for other in job["batches"]:
                if other["status"] in ("pending", "executing"):
                    other.update(status="aborted", message=_ABORTED)
            self._save(job)

    def _fail(self, job_id: str, message: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            running = next((b for b in job["batches"] if b["status"] in ("pending", "executing")), job["batches"][0])
            self._abort(job, running, message)


# -- HTTP ------------------------------------------------------------------------------------------


def service(tenant: Any) -> Aqua:
    existing = getattr(tenant, "aqua", None)
    if existing is None:
        existing = tenant.aqua = Aqua(tenant)
    return existing


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


def _error(exc: AquaError) -> Response:
    if exc.status == 400:
        return _json({"code": 400, "message": exc.message}, 400)
    return _json({"errorCode": exc.code, "message": exc.message})


async def submit_endpoint(request: Request) -> Response:
    aqua = service(request.app.state.tenant)
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    try:
        return _json(await run_in_threadpool(aqua.submit, body))
    except AquaError as exc:
        return _error(exc)


async def job_endpoint(request: Request) -> Response:
    aqua = service(request.app.state.tenant)
    try:
        if request.method == "DELETE":
            job = await run_in_threadpool(aqua.cancel, request.path_params["job_id"])
        else:
            job = aqua.get(request.path_params["job_id"])
    except AquaError as exc:
        return _error(exc)
    return _json(aqua.public(job))


def routes() -> list[Route]:
    return [
        Route("/v1/batch-query", submit_endpoint, methods=["POST"]),  # the middleware drops the trailing slash
        Route("/v1/batch-query/jobs/{job_id}", job_endpoint, methods=["GET", "DELETE"]),
    ]


def start(tenant: Any) -> None:
    service(tenant).start()


def stop(tenant: Any) -> None:
    existing = getattr(tenant, "aqua", None)
    if existing is not None:
        existing.stop()
