"""The Zuora sandbox's admin API under ``/__admin``: faults, tokens, limits, events, counts, clock.

Tests and demos steer the tenant here: make the next requests fail, expire every token, turn on
rate and concurrency limits, set the tenant's time zone, date the next changes in the past, read
the change events. It needs no login and never returns secrets.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.request_faults import FaultSpecError
from sandbox.sqlite_store import quote
from sandbox.zuora.store import CLOCK_OFFSET_SETTING
from sandbox.zuora.timezone import set_time_zone, tenant_time_zone


def _json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


async def _body(request: Request):
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        return None


async def faults(request: Request) -> Response:
    tenant = request.app.state.tenant
    if request.method == "GET":
        return _json(tenant.faults.describe())
    if request.method == "DELETE":
        tenant.faults.clear()
        return _json([])
    body = await _body(request)
    specs = body if isinstance(body, list) else [body]
    if not all(isinstance(s, dict) for s in specs):
        return _json({"error": "send a fault description (a JSON object) or a list of them"}, 400)
    try:
        added = [tenant.faults.add((spec := dict(s)).pop("kind", None), spec) for s in specs]
    except (FaultSpecError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json(added if isinstance(body, list) else added[0], 201)


async def expire_tokens(request: Request) -> Response:
    return _json({"expired": await run_in_threadpool(request.app.state.tenant.tokens.expire_all)})


async def limits(request: Request) -> Response:
    limiter = request.app.state.limiter
    if request.method == "POST":
        body = await _body(request)
        if not isinstance(body, dict):
            return _json({"error": "send {\"per_minute\": N, \"concurrency\": M} (null turns a limit off)"}, 400)
        limiter.configure(body.get("per_minute"), body.get("concurrency"))
    return _json({"per_minute": limiter.per_minute, "concurrency": limiter.concurrency})


async def events(request: Request) -> Response:
    """Change events with their callout delivery state, oldest first (``?after=<seq>``)."""
    tenant = request.app.state.tenant
    after = int(request.query_params.get("after", 0))
    rows = tenant.store.conn().execute(
        "SELECT seq, notification_id, event_type, object, record_id, change_type, created, attempts, delivery, "
        "last_status FROM _events WHERE seq > ? ORDER BY seq LIMIT 10000", (after,)
    ).fetchall()
    keys = ("seq", "notification_id", "event_type", "object", "record_id", "change_type", "created", "attempts",
            "delivery", "last_status")
    return _json([dict(zip(keys, row)) for row in rows])


async def counts(request: Request) -> Response:
    tenant = request.app.state.tenant

    def count() -> dict:
        conn = tenant.store.conn()
        return {
            obj.name: dict(zip(("live", "deleted"), conn.execute(
                f"SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0) FROM {quote(obj.table)}"
            ).fetchone()))
            for obj in tenant.schema.objects.values()
        }

    return _json(await run_in_threadpool(count))


async def time_zone(request: Request) -> Response:
    """The tenant's time zone, in which ZOQL and Data Query show datetimes (``{"time_zone": "UTC"}``)."""
    store = request.app.state.tenant.store
    if request.method == "POST":
        body = await _body(request)
        try:
            set_time_zone(store, str((body or {}).get("time_zone")))
        except ValueError as exc:
            return _json({"error": f"{exc}; give an IANA name such as UTC or America/Los_Angeles"}, 400)
    return _json({"time_zone": str(tenant_time_zone(store))})


async def clock(request: Request) -> Response:
    """The clock that stamps changes made through the API: ``{"offset_seconds": -86400}`` dates
    them a day in the past (UpdatedDate, CreatedDate, their events and callouts); 0 is the wall clock."""
    store = request.app.state.tenant.store
    if request.method == "POST":
        body = await _body(request)
        offset = (body or {}).get("offset_seconds") if isinstance(body, dict) else None
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            return _json({"error": 'give {"offset_seconds": N}, a number of seconds (negative: the past)'}, 400)
        await run_in_threadpool(store.set_setting, CLOCK_OFFSET_SETTING, offset)
    offset = await run_in_threadpool(store.get_setting, CLOCK_OFFSET_SETTING, 0)
    return _json({"offset_seconds": offset, "change_time": await run_in_threadpool(store.change_time)})


def routes() -> list[Route]:
    return [
        Route("/__admin/clock", clock, methods=["GET", "POST"]),
        Route("/__admin/time-zone", time_zone, methods=["GET", "POST"]),
        Route("/__admin/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/__admin/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/__admin/limits", limits, methods=["GET", "POST"]),
        Route("/__admin/events", events, methods=["GET"]),
        Route("/__admin/counts", counts, methods=["GET"]),
    ]
