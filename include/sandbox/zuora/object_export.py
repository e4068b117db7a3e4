"""The export object: ``POST /v1/object/export``, ``GET /v1/object/export/{id}``; the file by
``GET /v1/files/{file-id}`` (:mod:`sandbox.zuora.files`).

As Zuora's API reference ("CRUD: Create an export", "CRUD: Retrieve an export") and
singer-io/tap-zuora's REST client use it:

- ``POST`` ``{"Format": "csv", "Query": "<Export ZOQL>", "Name", "Zip"}`` answers ``{"Success":
  true, "Id"}``; the query is compiled at once (:mod:`sandbox.zuora.zoql_export`), so an unknown
  object or field, or a syntax error, is HTTP 400 in the object API's error shape,
  ``{"Success": false, "Errors": [{"Code": "INVALID_VALUE", "Message"}]}`` (tap-zuora tells an
  unavailable object by that code); a missing ``Query`` is ``MISSING_REQUIRED_VALUE``.
- A background thread runs the export: ``Status`` ``Pending`` → ``Processing`` → ``Completed``
  (``FileId``, ``Size`` = rows) or ``Failed`` (``StatusReason``). The CSV's header is
  ``Object.Field``; ``Zip: true`` zips it.
- ``GET`` of an unknown export is HTTP 404 ``{"records": [], "size": 0, "done": true}``, the object
  API's "no data" answer (zuora-sdk's ``ProxyNoDataResponse``). Datetimes are shown in the tenant's
  time zone, as the object API shows them.
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
from sandbox.zuora.store import new_id
from sandbox.zuora.timezone import tenant_time_zone
from sandbox.zuora.zoql import ZoqlFault
from sandbox.zuora.zoql_export import ExportOptions, compile_export, write_export

JOB_KIND = "export"
NO_DATA = {"records": [], "size": 0, "done": True}


class ExportError(Exception):
    """A refused request: the object API's error code and message (HTTP 400)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ObjectExports(BackgroundJobs):
    """The tenant's export objects and the thread that runs them."""

    kind = JOB_KIND
    id_key, status_key = "Id", "Status"
    unfinished = ("Pending", "Processing")

    def __init__(self, tenant: Any):
        super().__init__(tenant)
        self.files = files_service(tenant)

    def _save(self, export: dict[str, Any]) -> None:
        export["UpdatedDate"] = self.store.change_time()
        super()._save(export)

    def create(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise ExportError("INVALID_VALUE", "The request body must be a JSON object")
        query = body.get("Query")
        if not isinstance(query, str) or not query.strip():
            raise ExportError("MISSING_REQUIRED_VALUE", "Query is required")
        fmt = str(body.get("Format") or "csv").lower()
        if fmt != "csv":
            raise ExportError("INVALID_VALUE", f"Format {body.get('Format')} is not supported by the sandbox; use csv")
        if body.get("Encrypted"):
            raise ExportError("INVALID_VALUE", "The sandbox does not encrypt exports; send Encrypted false")
        try:
            compile_export(self.tenant.schema, query, tenant_time_zone(self.store))
        except ZoqlFault as exc:
            raise ExportError("INVALID_VALUE", exc.message) from None
        now = self.store.change_time()
        user = self.tenant.config.user_id
        export = {
            "Id": new_id(), "Name": str(body.get("Name") or ""), "Format": "csv", "Query": query,
            "Zip": bool(body.get("Zip", False)), "Encrypted": False, "Status": "Pending",
            "CreatedById": user, "CreatedDate": now, "UpdatedById": user, "UpdatedDate": now, "_created": time.time(),
        }
        with self._lock:
            self.jobs[export["Id"]] = export
            self._save(export)
        self.worker.submit(export["Id"])
        return export["Id"]

    def public(self, export_id: str) -> dict[str, Any] | None:
        export = self.jobs.get(export_id)
        if export is None:
            return None
        tz = tenant_time_zone(self.store)
        with self._lock:
            info = {k: v for k, v in export.items() if not k.startswith("_")}
        for key in ("CreatedDate", "UpdatedDate"):
            moment = dt.datetime.fromisoformat(info[key]).replace(tzinfo=dt.timezone.utc).astimezone(tz)
            info[key] = moment.isoformat(timespec="milliseconds")
        return info

    def _run(self, export_id: str) -> None:
        export = self.jobs.get(export_id)
        if export is None or export["Status"] not in ("Pending", "Processing"):
            return
        with self._lock:
            export["Status"] = "Processing"
            self._save(export)
        tz = tenant_time_zone(self.store)
        options = ExportOptions(api_names=True, compression="ZIP" if export["Zip"] else "NONE")
        file_id, path = self.files.new(options.compression)
        try:
            query = compile_export(self.tenant.schema, export["Query"], tz)
            count = write_export(self.store.conn(), query, path, tz, options, check=self.worker.check)
        except ZoqlFault as exc:
            path.unlink(missing_ok=True)
            self._fail(export_id, exc.message)
            return
        with self._lock:
            export.update(Status="Completed", FileId=file_id, Size=count)
            self._save(export)

    def _fail(self, export_id: str, message: str) -> None:
        export = self.jobs.get(export_id)
        if export is not None:
            with self._lock:
                export.update(Status="Failed", StatusReason=message)
                self._save(export)


# -- HTTP ------------------------------------------------------------------------------------------


def service(tenant: Any) -> ObjectExports:
    existing = getattr(tenant, "object_exports", None)
    if existing is None:
        existing = tenant.object_exports = ObjectExports(tenant)
    return existing


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8")


async def create_endpoint(request: Request) -> Response:
    exports = service(request.app.state.tenant)
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    try:
        export_id = await run_in_threadpool(exports.create, body)
    except ExportError as exc:
        return _json({"Success": False, "Errors": [{"Code": exc.code, "Message": exc.message}]}, 400)
    return _json({"Success": True, "Id": export_id})


async def get_endpoint(request: Request) -> Response:
    info = service(request.app.state.tenant).public(request.path_params["export_id"])
    return _json(NO_DATA, 404) if info is None else _json(info)


def routes() -> list[Route]:
    return [
        Route("/v1/object/export", create_endpoint, methods=["POST"]),
        Route("/v1/object/export/{export_id}", get_endpoint, methods=["GET"]),
    ]


def start(tenant: Any) -> None:
    service(tenant).start()


def stop(tenant: Any) -> None:
    existing = getattr(tenant, "object_exports", None)
    if existing is not None:
        existing.stop()
