"""The Salesforce sandbox's ASGI application: routes, login endpoints and the request middleware.

The middleware does what applies to every request before routing: it maps the login URLs that
simple-salesforce builds (``https://{domain}.salesforce.com/services/...``, with ``domain`` set to
``host:port/login``) onto ``/services/...``, drops trailing slashes, applies injected faults, and
stamps REST responses with ``Sforce-Limit-Info``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.request_faults import drop_connection
from sandbox.salesforce import admin, bulk1, bulk1_wire, bulk2, identity, rest
from sandbox.salesforce.auth import (
    AuthError,
    OAuthError,
    oauth_token,
    soap_fault,
    soap_login,
    soap_login_response,
)
from sandbox.salesforce.bulk_worker import BulkWorker
from sandbox.salesforce.org import Org
from sandbox.salesforce.transport import json_response

_LOGIN_PREFIX = re.compile(r"^/[^/]*\.salesforce\.com(?=/services/)")


def _base_url(request: Request) -> str:
    """Where the client reached us; login answers point it back to the same place."""
    return f"https://{request.headers.get('host') or request.url.netloc}"


async def soap_login_endpoint(request: Request) -> Response:
    org: Org = request.app.state.org
    body = await request.body()
    try:
        session_id = await run_in_threadpool(soap_login, org.config, org.sessions, body)
    except AuthError as exc:
        return Response(soap_fault(exc.code, exc.message), status_code=500, media_type="text/xml;charset=UTF-8")
    payload = soap_login_response(org.config, session_id, _base_url(request), request.path_params["version"])
    return Response(payload, media_type="text/xml;charset=UTF-8")


async def oauth_token_endpoint(request: Request) -> Response:
    org: Org = request.app.state.org
    form = {key: str(value) for key, value in (await request.form()).items()}
    try:
        token = await run_in_threadpool(
            oauth_token, org.config, org.sessions, form, request.headers.get("authorization"), _base_url(request)
        )
    except OAuthError as exc:
        return json_response({"error": exc.error, "error_description": exc.description}, exc.status)
    return json_response(token)


async def health(request: Request) -> Response:
    org: Org = request.app.state.org
    return json_response({"status": "ok", "service": "salesforce-sandbox", "org_id": org.config.org_id})


class SandboxMiddleware:
    """Path normalisation, fault injection and the ``Sforce-Limit-Info`` header."""

    def __init__(self, app: Any, org: Org):
        self.app = app
        self.org = org

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _LOGIN_PREFIX.sub("", scope["path"])
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path != scope["path"]:
            scope = dict(scope, path=path, raw_path=path.encode())
        if path.startswith("/services/"):
            fault = self.org.faults.requests.take(scope["method"], path)
            if fault is not None:
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay_seconds)
                elif fault.kind == "drop":
                    drop_connection(send)
                    return
                else:
                    await _send_fault(send, fault, scope if path.startswith("/services/async/") else None)
                    return
        if not path.startswith("/services/data/"):
            await self.app(scope, receive, send)
            return
        usage = self.org.usage

        async def send_with_limit_info(message: dict) -> None:
            if message["type"] == "http.response.start":
                used, maximum = usage.snapshot()
                headers = list(message.get("headers", []))
                headers.append((b"sforce-limit-info", f"api-usage={used}/{maximum}".encode()))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_limit_info)


async def _send_fault(send: Any, fault, bulk_v1_scope: dict | None) -> None:
    """An injected error, in REST's shape or (``bulk_v1_scope``: the request) Bulk API 1.0's."""
    if bulk_v1_scope is not None:
        headers_in = {k.decode().lower(): v.decode() for k, v in bulk_v1_scope.get("headers", [])}
        fmt = bulk1_wire.wire_format(headers_in.get("content-type", ""), headers_in.get("accept", ""), None)
        code = "InvalidSessionId" if fault.error_code == "INVALID_SESSION_ID" else fault.error_code
        body = bulk1_wire.error_document(code, fault.message, fmt).encode()
        status = 400 if fault.error_code == "INVALID_SESSION_ID" else fault.status
        content_type = bulk1_wire.MEDIA_TYPES[fmt].encode() + b";charset=UTF-8"
    else:
        body = json.dumps([{"message": fault.message, "errorCode": fault.error_code}]).encode()
        status = fault.status
        content_type = b"application/json;charset=UTF-8"
    headers = [(b"content-type", content_type)]
    if fault.retry_after is not None:
        headers.append((b"retry-after", str(fault.retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    message = f"HTTP Method '{request.method}' not allowed. Allowed are {getattr(exc, 'headers', {}).get('Allow', '')}"
    return json_response([{"errorCode": "METHOD_NOT_ALLOWED", "message": message}], 405)


def create_app(org: Org) -> Any:
    """The ASGI app serving ``org``; the Bulk worker starts with the app and stops with it."""
    worker = BulkWorker()
    bulk2_jobs = bulk2.Bulk2(org, worker)
    bulk1_jobs = bulk1.Bulk1(org, worker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            org.usage.flush()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/services/Soap/u/{version}", soap_login_endpoint, methods=["POST"]),
        Route("/services/oauth2/token", oauth_token_endpoint, methods=["POST"]),
        *identity.routes(),
        *rest.routes(),
        *bulk2.routes(),
        *bulk1.routes(),
        *admin.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.org = org
    app.state.bulk2 = bulk2_jobs
    app.state.bulk1 = bulk1_jobs
    return SandboxMiddleware(app, org)
