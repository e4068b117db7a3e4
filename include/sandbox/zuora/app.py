"""The Zuora sandbox's ASGI application: routes, the token endpoint and the request middleware.

The middleware applies what holds for every request: injected faults, the optional rate and
concurrency limits with Zuora's headers and 429 bodies, and bearer-token checks on the API paths.
Feature modules contribute routes (and background workers started with the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.request_faults import drop_connection
from sandbox.zuora import actions, admin, aqua, callouts, dataquery, files, object_export, resources, zoql
from sandbox.zuora.auth import AuthFailed
from sandbox.zuora.tenant import Tenant

# object_export before resources: /v1/object/export/{id} is not the object API's /v1/object/{object}/{id}.
FEATURES = (dataquery, zoql, actions, object_export, resources, aqua, files, callouts, admin)
_OPEN_PATHS = ("/health", "/oauth/token", "/__admin/", "/files/")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json; charset=utf-8", headers=headers)


def error_body(status: int, code: Any, message: str) -> dict[str, Any]:
    """Zuora's error shapes: 401 is ``{"message"}``, the rest ``{"success": false, "reasons": [...]}``."""
    if status == 401:
        return {"message": message}
    return {"success": False, "reasons": [{"code": code, "message": message}]}


async def token_endpoint(request: Request) -> Response:
    tenant: Tenant = request.app.state.tenant
    form = await request.form()
    try:
        token = tenant.tokens.issue(str(form.get("client_id") or ""), str(form.get("client_secret") or ""),
                                    str(form.get("grant_type") or ""))
    except AuthFailed as exc:
        return json_response({"message": str(exc)}, 401)
    return json_response(token)


async def health(request: Request) -> Response:
    tenant: Tenant = request.app.state.tenant
    return json_response({"status": "ok", "service": "zuora-sandbox", "tenant_id": tenant.config.tenant_id})


class RateLimiter:
    """Zuora-style request-rate and concurrency limits; off until configured (admin API)."""

    def __init__(self) -> None:
        self.per_minute: int | None = None
        self.concurrency: int | None = None
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.in_flight = 0

    def configure(self, per_minute: int | None, concurrency: int | None) -> None:
        with self._lock:
            self.per_minute, self.concurrency = per_minute, concurrency
            self._recent.clear()

    def admit(self) -> tuple[Response | None, dict[str, str]]:
        """An immediate 429 answer, or ``None`` and the headers to add to the real answer."""
        now = time.monotonic()
        headers: dict[str, str] = {}
        with self._lock:
            if self.concurrency is not None:
                headers["Concurrency-Limit-Type"] = "Default"
                headers["Concurrency-Limit-Limit"] = str(self.concurrency)
                headers["Concurrency-Limit-Remaining"] = str(max(self.concurrency - self.in_flight - 1, 0))
                if self.in_flight >= self.concurrency:
                    body = error_body(429, 50000070, "The number of concurrent requests exceeds the limit")
                    return json_response(body, 429, {**headers, "Retry-After": "120"}), headers
            if self.per_minute is not None:
                while self._recent and now - self._recent[0] >= 60:
                    self._recent.popleft()
                reset = int(60 - (now - self._recent[0])) + 1 if self._recent else 60
                headers["RateLimit-Limit"] = f"{self.per_minute}, {self.per_minute};w=60"
                headers["RateLimit-Reset"] = str(reset)
                if len(self._recent) >= self.per_minute:
                    headers["RateLimit-Remaining"] = "0"
                    body = error_body(429, 70, f"API Rate limit exceeded for the minute, retry after {reset} seconds")
                    return json_response(body, 429, {**headers, "Retry-After": str(reset)}), headers
                self._recent.append(now)
                headers["RateLimit-Remaining"] = str(self.per_minute - len(self._recent))
            self.in_flight += 1
        return None, headers

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1


class TenantMiddleware:
    """Faults, limits and bearer tokens, before any route runs."""

    def __init__(self, app: Any, tenant: Tenant, limiter: RateLimiter):
        self.app = app
        self.tenant = tenant
        self.limiter = limiter

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
            scope = dict(scope, path=path, raw_path=path.encode())
        if path.startswith(("/__admin/", "/health")):
            await self.app(scope, receive, send)
            return
        guarded = not path.startswith(_OPEN_PATHS)
        if guarded:
            header = dict(scope["headers"]).get(b"authorization", b"").decode()
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not self.tenant.tokens.valid(token.strip()):
                await json_response({"message": "Authentication error"}, 401)(scope, receive, send)
                return
            refusal, limit_headers = self.limiter.admit()
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        else:
            limit_headers = {}
        encoded = [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start" and encoded:
                message = dict(message, headers=list(message.get("headers", [])) + encoded)
            await send(message)

        try:
            # Faults come after admission: a slow answer holds its concurrency slot, as a real one would.
            fault = self.tenant.faults.take(scope["method"], path)
            if fault is None:
                await self.app(scope, receive, send_with_headers)
            elif fault.kind == "drop":
                drop_connection(send)
            elif fault.kind == "slow":
                await asyncio.sleep(fault.delay_seconds)
                await self.app(scope, receive, send_with_headers)
            else:
                if fault.preset == "token_expiry":
                    self.tenant.tokens.expire_all()
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                response = json_response(error_body(fault.status, fault.error_code, fault.message), fault.status, headers)
                await response(scope, receive, send_with_headers)
        finally:
            if guarded:
                self.limiter.release()


def create_app(tenant: Tenant) -> Any:
    """The ASGI app serving ``tenant``; background workers start and stop with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        for feature in FEATURES:
            start = getattr(feature, "start", None)
            if start is not None:
                start(tenant)
        try:
            yield
        finally:
            for feature in reversed(FEATURES):
                stop = getattr(feature, "stop", None)
                if stop is not None:
                    stop(tenant)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/oauth/token", token_endpoint, methods=["POST"]),
    ]
    for feature in FEATURES:
        routes += feature.routes()
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.tenant = tenant
    limiter = RateLimiter()
    app.state.limiter = limiter
    return TenantMiddleware(app, tenant, limiter)


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response(error_body(404, 50000040, f"Cannot find resource: {request.url.path}"), 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return json_response(error_body(405, 50000005, f"Method {request.method} is not allowed"), 405)
