"""Result files of exports and AQuA batches: written under the data dir, downloaded by id.

Zuora hands out a file id for each export (``FileId``) and AQuA batch (``fileId``, or ``segments``);
``GET /v1/files/{file-id}`` (zuora-sdk's ``FilesApi.get_files``) and AQuA's ``GET /v1/file/{file-id}``
return the file with the bearer token, as CSV, gzip or zip. Ids are 32 hex characters; a file's
extension says what it holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sandbox.zuora.store import new_id

_ID = re.compile(r"^[0-9a-f]{32}$")
MEDIA_TYPES = {".csv": "text/csv", ".gz": "application/x-gzip", ".zip": "application/zip"}
EXTENSIONS = {"NONE": ".csv", "GZIP": ".csv.gz", "ZIP": ".zip"}


class Files:
    """The tenant's export and AQuA result files."""

    def __init__(self, tenant: Any):
        self.directory = Path(tenant.files_dir) / "exports"
        self.directory.mkdir(parents=True, exist_ok=True)

    def new(self, compression: str) -> tuple[str, Path]:
        """A fresh file id and the path to write it to (``compression``: NONE, GZIP or ZIP)."""
        file_id = new_id()
        return file_id, self.directory / f"{file_id}{EXTENSIONS[compression]}"

    def find(self, file_id: str) -> Path | None:
        if not _ID.match(file_id):
            return None
        for extension in EXTENSIONS.values():
            path = self.directory / f"{file_id}{extension}"
            if path.is_file():
                return path
        return None


def service(tenant: Any) -> Files:
    existing = getattr(tenant, "export_files", None)
    if existing is None:
        existing = tenant.export_files = Files(tenant)
    return existing


async def file_endpoint(request: Request) -> Response:
    from sandbox.zuora.app import error_body, json_response  # the app imports this module

    path = service(request.app.state.tenant).find(request.path_params["file_id"])
    if path is None:
        body = error_body(404, 50000040, f"File {request.path_params['file_id']} is not found")
        return json_response(body, 404)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], filename=path.name)


def routes() -> list[Route]:
    return [
        Route("/v1/files/{file_id}", file_endpoint, methods=["GET"]),
        Route("/v1/file/{file_id}", file_endpoint, methods=["GET"]),
    ]
