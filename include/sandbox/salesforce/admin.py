"""The sandbox's admin API under ``/__admin``: faults, sessions, limits, schema, reset.

It is how tests and demos steer the org: make the next requests fail, expire every session, set
the daily API allowance, add custom fields, or start over with an empty org. It listens on the
same loopback address as the API and needs no login; it never returns credentials.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.salesforce.faults import FaultSpecError
from sandbox.salesforce.schema import SchemaError
from sandbox.salesforce.store import quote
from sandbox.salesforce.transport import json_response, org_of


async def _json_body(request: Request):
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        return None


def _bad(message: str) -> Response:
    return json_response({"error": message}, 400)


async def faults(request: Request) -> Response:
    org = org_of(request)
    if request.method == "GET":
        return json_response(org.faults.describe())
    if request.method == "DELETE":
        org.faults.clear()
        return json_response(org.faults.describe())
    body = await _json_body(request)
    specs = body if isinstance(body, list) else [body]
    if not all(isinstance(s, dict) for s in specs):
        return _bad("send a fault description (a JSON object) or a list of them")
    try:
        added = [org.faults.add(spec) for spec in specs]
    except FaultSpecError as exc:
        return _bad(str(exc))
    return json_response(added if isinstance(body, list) else added[0], 201)


async def expire_sessions(request: Request) -> Response:
    count = await run_in_threadpool(org_of(request).sessions.expire_all)
    return json_response({"expired": count})


async def limits(request: Request) -> Response:
    org = org_of(request)
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _bad("send {\"daily_api_requests\": N, \"used\": M} (either key optional)")
        try:
            org.usage.set(daily_max=body.get("daily_api_requests"), used=body.get("used"))
        except (TypeError, ValueError):
            return _bad("daily_api_requests and used must be integers")
    used, maximum = org.usage.snapshot()
    return json_response({"daily_api_requests": maximum, "used": used, "remaining": max(maximum - used, 0)})


async def schema(request: Request) -> Response:
    org = org_of(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("objects"), dict):
        return _bad("send a schema document: {\"objects\": {\"Name__c\": {...}}} in the schema.yaml format")
    try:
        await run_in_threadpool(org.add_schema, body)
    except SchemaError as exc:
        return _bad(str(exc))
    return json_response({"objects": sorted(org.schema.objects)}, 201)


async def reset(request: Request) -> Response:
    await run_in_threadpool(org_of(request).reset)
    request.app.state.bulk2.jobs.clear()
    return json_response({"reset": True})


async def counts(request: Request) -> Response:
    """Live and recycle-bin record counts per object (a quick look without SOQL)."""
    org = org_of(request)

    def count() -> dict:
        conn = org.store.conn()
        out = {}
        for name in org.schema.objects:
            live, deleted = conn.execute(
                f"SELECT COALESCE(SUM(IsDeleted = 0), 0), COALESCE(SUM(IsDeleted = 1), 0) FROM {quote(name)}"
            ).fetchone()
            out[name] = {"live": live, "deleted": deleted}
        return out

    return json_response(await run_in_threadpool(count))


def routes() -> list[Route]:
    return [
        Route("/__admin/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/__admin/sessions/expire", expire_sessions, methods=["POST"]),
        Route("/__admin/limits", limits, methods=["GET", "POST"]),
        Route("/__admin/schema", schema, methods=["POST"]),
        Route("/__admin/reset", reset, methods=["POST"]),
        Route("/__admin/counts", counts, methods=["GET"]),
    ]
