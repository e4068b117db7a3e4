"""Intake of Zuora callout notifications: ``POST /events`` (``docs/operations.md``, "Real-time
sync").

A callout is accepted only when it proves it comes from Zuora, per the Airflow connection
``zuora_sync_webhook``:

- ``extra.hmac_secret``: the header named by ``extra.signature_header`` (default
  ``X-Zuora-Signature``) carries the HMAC-SHA256 of the exact body bytes keyed with the secret, as
  hex or base64 (Zuora's callout HMAC option offers both; a ``sha256=`` prefix is tolerated);
- ``login``/``password``: HTTP Basic credentials (Zuora's Basic / preemptive Basic option).

With both configured, both must match. Comparisons are constant-time. Without the connection (or
with one that configures neither), every callout is refused with 401 and a log line says what to
create: an unauthenticated callout is never accepted.

Then, in this order, with nothing written unless everything passed:

==========================================  ======  =======================================
callout                                     status  body
==========================================  ======  =======================================
larger than :data:`MAX_BODY_BYTES`          413     ``{"detail": reason}``
not authenticated                           401     ``{"detail": reason}``
not a JSON object, bad fields               400     ``{"detail": reason}``
no ``Zuora-Notification-Id``                400     ``{"detail": reason}``
object not monitored (:mod:`..events`)      200     ``{"status": "ignored", ...}``
notification seen before (a retry, replay)  200     ``{"status": "duplicate", ...}``
new event, stored                           202     ``{"status": "accepted", ...}``
state store or connection unreadable        503     ``{"detail": reason}`` (Zuora retries)
==========================================  ======  =======================================

The notification id an event is stored under is bound to what the signature covers, the body:
the body's own ``notificationId`` (a ``Zuora-Notification-Id`` header must then say the same), or,
when the body carries none, ``sha256:`` and the SHA-256 of the body (:func:`notification_id_of`).
The header alone never names the event: it is not signed, so a captured callout sent again under
new header values is the same notification, a duplicate, not a new event.

An event is one :meth:`StateStore.add_event` call: one ``INSERT ... ON CONFLICT DO NOTHING``
transaction, so a replayed notification stores nothing new and nothing is half-written.

Speed (at least 500 callouts/s on loopback, ``docs/benchmarks.md``): the connection is read at most once per
:data:`CONNECTION_TTL_SECONDS` (so a rotated secret takes effect within that time, without a
metadata-database query per callout), the state store is resolved once per process, and writes to
an SQLite store go through one thread at a time (see :class:`Intake`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zuora_sync.events import event_object, is_monitored
from zuora_sync.webapp.bodies import Refused, parse_json_object, read_body

log = logging.getLogger(__name__)

#: The Airflow connection that says how callouts authenticate.
WEBHOOK_CONN_ID = "zuora_sync_webhook"
DEFAULT_SIGNATURE_HEADER = "X-Zuora-Signature"
#: Zuora callout bodies are a few hundred bytes of ids; anything this large is not one.
MAX_BODY_BYTES = 64 * 1024
#: How long a read of the webhook connection is trusted (a rotated secret applies within this).
CONNECTION_TTL_SECONDS = float(os.environ.get("ZUORA_SYNC_WEBHOOK_CACHE_SECONDS", "30"))
#: Column sizes of ``zuora_sync_event`` (notification_id, event_type).
MAX_NOTIFICATION_ID = 255
MAX_EVENT_TYPE = 128
NOTIFICATION_HEADER = "Zuora-Notification-Id"
#: How the id of a callout whose body names no notification starts: the body's SHA-256 follows.
BODY_HASH_PREFIX = "sha256:"

T = TypeVar("T")


#: A callout answered with an error status and a reason (never containing a secret).
CalloutRefused = Refused


# --------------------------------------------------------------------------------------------
# Authentication


@dataclass(frozen=True)
class WebhookAuth:
    """How callouts authenticate, from the ``zuora_sync_webhook`` connection.

    ``problem`` is set (and every callout refused) when the connection is missing or configures
    no usable method; it is what the log says, never a secret.
    """

    hmac_secret: bytes | None = None
    signature_header: str = DEFAULT_SIGNATURE_HEADER
    basic: tuple[bytes, bytes] | None = None
    problem: str | None = None

    def __repr__(self) -> str:  # never show the secret or the password, even in a debugger
        methods = [m for m, on in (("hmac", self.hmac_secret), ("basic", self.basic)) if on]
        return f"WebhookAuth(methods={methods}, signature_header={self.signature_header!r}, problem={self.problem!r})"

    @classmethod
    def from_connection(cls, conn: Any | None) -> WebhookAuth:
        """Read the connection (``None``: it does not exist)."""
        how = (f"create the Airflow connection {WEBHOOK_CONN_ID!r} with extra.hmac_secret (HMAC-SHA256 "
               f"signature) or login/password (Basic auth)")
        if conn is None:
            return cls(problem=f"the connection {WEBHOOK_CONN_ID!r} does not exist: {how}")
        extra = conn.extra_dejson or {}
        secret = extra.get("hmac_secret")
        header = extra.get("signature_header") or DEFAULT_SIGNATURE_HEADER
        if not isinstance(header, str) or not header.strip():
            return cls(problem=f"{WEBHOOK_CONN_ID}: extra.signature_header must be a header name")
        if secret is not None and (not isinstance(secret, str) or not secret):
            return cls(problem=f"{WEBHOOK_CONN_ID}: extra.hmac_secret must be a non-empty string")
        login, password = conn.login or "", conn.password or ""
        if bool(login) != bool(password):
            return cls(problem=f"{WEBHOOK_CONN_ID}: Basic auth needs both login and password")
        if not secret and not login:
            return cls(problem=f"the connection {WEBHOOK_CONN_ID!r} configures no authentication: {how}")
        return cls(hmac_secret=secret.encode("utf-8") if secret else None, signature_header=header.strip(),
                   basic=(login.encode("utf-8"), password.encode("utf-8")) if login else None)

    def check(self, headers: Any, body: bytes) -> str | None:
        """``None`` when the callout is authentic, else why not (for the 401 answer)."""
        if self.problem is not None:
            return "callouts are not accepted: the receiver's webhook connection is not configured"
        if self.hmac_secret is not None:
            reason = self._check_signature(headers.get(self.signature_header), body)
            if reason:
                return reason
        if self.basic is not None:
            reason = self._check_basic(headers.get("authorization"))
            if reason:
                return reason
        return None

    def _check_signature(self, given: str | None, body: bytes) -> str | None:
        if not given:
            return f"missing signature header {self.signature_header}"
        assert self.hmac_secret is not None
        digest = hmac.new(self.hmac_secret, body, hashlib.sha256).digest()
        value = given.strip()
        if value[:7].lower() == "sha256=":
            value = value[7:]
        # Hex (any case) or base64: compare against both encodings, each in constant time.
        ok = hmac.compare_digest(value.lower().encode("ascii", "replace"), digest.hex().encode("ascii"))
        ok |= hmac.compare_digest(value.encode("ascii", "replace"), base64.b64encode(digest))
        return None if ok else "signature does not match the body"

    def _check_basic(self, header: str | None) -> str | None:
        if not header or header[:6].lower() != "basic ":
            return "missing Basic credentials"
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return "malformed Basic credentials"
        login, sep, password = decoded.partition(b":")
        assert self.basic is not None
        # Both compared, always: no early exit that tells a good login from a bad one.
        ok = hmac.compare_digest(login, self.basic[0]) & hmac.compare_digest(password, self.basic[1])
        return None if (ok and sep) else "wrong Basic credentials"


class TTLCache(Generic[T]):
    """One value from ``loader``, trusted for ``ttl`` seconds (``ttl`` None: for good).

    A failing ``loader`` caches nothing, so the next call tries again.
    """

    def __init__(self, loader: Callable[[], T], ttl: float | None) -> None:
        self._loader = loader
        self._ttl = ttl
        self._value: T | None = None
        self._expires = -1.0
        self._lock = threading.Lock()

    def peek(self) -> T | None:
        """The cached value while it is fresh, else ``None`` (no I/O: safe on the event loop)."""
        if self._value is not None and (self._ttl is None or time.monotonic() < self._expires):
            return self._value
        return None

    def get(self) -> T:
        """The value, loading it when stale (blocking I/O: call from a worker thread)."""
        value = self.peek()
        if value is not None:
            return value
        with self._lock:
            value = self.peek()
            if value is None:
                value = self._loader()
                self._value = value
                self._expires = time.monotonic() + (self._ttl or 0)
            return value

    def clear(self) -> None:
        with self._lock:
            self._value, self._expires = None, -1.0


def load_webhook_auth() -> WebhookAuth:
    """Read ``zuora_sync_webhook`` (env var, secrets backend or Airflow's database)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(WEBHOOK_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    auth = WebhookAuth.from_connection(conn)
    if auth.problem:
        log.error("Refusing every Zuora callout with 401: %s", auth.problem)
    return auth


def load_state_store() -> Any:
    """The state store of the ``zuora_sync_state`` connection (schema migrated on first use)."""
    from zuora_sync.state import StateStore

    return StateStore.from_airflow()


# --------------------------------------------------------------------------------------------
# Intake


def notification_id_of(payload: dict[str, Any], body: bytes, header_id: str | None) -> str:
    """The id a callout is stored under, bound to the signed body (or :class:`CalloutRefused`, 400).

    The body's ``notificationId`` when it has one (the header, when sent, must agree); otherwise
    :data:`BODY_HASH_PREFIX` and the body's SHA-256. Zuora resends a notification with the same
    body, so its retries keep their id; the unsigned header cannot make a replay a new event. (Two
    changes whose callouts have byte-identical bodies are one event: a template that carries
    ``notificationId``, or anything that differs per change, keeps them apart.)
    """
    body_id = payload.get("notificationId")
    if body_id is not None and not isinstance(body_id, str):
        raise CalloutRefused(400, "notificationId must be a string")
    body_id = body_id.strip() if body_id else ""
    header_id = header_id.strip() if header_id else ""
    if not body_id and not header_id:
        raise CalloutRefused(400, f"missing notification id: send the {NOTIFICATION_HEADER} header "
                                  "(or notificationId in the body)")
    if max(len(body_id), len(header_id)) > MAX_NOTIFICATION_ID:
        raise CalloutRefused(400, f"notification id longer than {MAX_NOTIFICATION_ID} characters")
    if body_id:
        if header_id and header_id != body_id:
            raise CalloutRefused(400, f"the {NOTIFICATION_HEADER} header and notificationId in the body differ")
        return body_id
    return BODY_HASH_PREFIX + hashlib.sha256(body).hexdigest()


def parse_callout(body: bytes, header_id: str | None) -> tuple[str, dict[str, Any]]:
    """The notification id and the JSON object of a callout, or :class:`CalloutRefused` (400)."""
    payload = parse_json_object(body)
    notification_id = notification_id_of(payload, body, header_id)
    for key in ("eventType", "baseObject"):
        if key in payload and not isinstance(payload[key], (str, type(None))):
            raise CalloutRefused(400, f"{key} must be a string")
    return notification_id, payload


def event_type_of(payload: dict[str, Any]) -> str:
    """What the store records as the event's type: ``eventType``, else ``<object>Changed``."""
    event_type = payload.get("eventType") or f"{event_object(payload)}Changed"
    return event_type[:MAX_EVENT_TYPE]


class Intake:
    """The callout endpoint's state: the cached webhook auth and state store, and the write gate.

    :param auth_loader: returns the :class:`WebhookAuth` (default: read the Airflow connection).
    :param store_loader: returns the state store (default: ``StateStore.from_airflow()``).
    :param connection_ttl: seconds a read of the connection is trusted.

    SQLite has one writer at a time; many threads queueing on its lock back off in sleeps of up
    to 100 ms (its busy handler), so this process sends SQLite writes through one thread at a
    time instead. Other databases get a few at once.
    """

    def __init__(self, auth_loader: Callable[[], WebhookAuth] = load_webhook_auth,
                 store_loader: Callable[[], Any] = load_state_store,
                 connection_ttl: float = CONNECTION_TTL_SECONDS) -> None:
        self.auth = TTLCache(auth_loader, connection_ttl)
        self.store = TTLCache(store_loader, None)
        self._limiter: anyio.CapacityLimiter | None = None

    def _write_limiter(self, store: Any) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created on the event loop, on first use
            self._limiter = anyio.CapacityLimiter(1 if getattr(store, "dialect", "") == "sqlite" else 8)
        return self._limiter

    async def get_auth(self) -> WebhookAuth:
        auth = self.auth.peek()
        if auth is None:
            try:
                auth = await anyio.to_thread.run_sync(self.auth.get)
            except Exception:
                log.exception("Could not read the Airflow connection %r", WEBHOOK_CONN_ID)
                raise CalloutRefused(503, "the receiver cannot read its webhook configuration now; retry later") \
                    from None
        return auth

    async def get_store(self) -> Any:
        store = self.store.peek()
        if store is None:
            try:
                store = await anyio.to_thread.run_sync(self.store.get)
            except Exception:
                log.exception("Could not open the state store")
                raise CalloutRefused(503, "the receiver cannot reach its state store now; retry later") from None
        return store

    async def receive(self, request: Request) -> tuple[int, dict[str, Any]]:
        """Handle one callout; returns the status code and the JSON answer."""
        body = await read_body(request, MAX_BODY_BYTES)
        auth = await self.get_auth()
        reason = auth.check(request.headers, body)
        if reason is not None:
            log.warning("Zuora callout refused (401) from %s: %s",
                        request.client.host if request.client else "?", reason)
            raise CalloutRefused(401, reason)
        notification_id, payload = parse_callout(body, request.headers.get(NOTIFICATION_HEADER))
        if not is_monitored(payload):
            # Not an Accounts & Related Objects change: it must not count toward a sync, so it
            # is not stored at all (a 2xx, so Zuora does not retry it).
            return 200, {"status": "ignored", "notification_id": notification_id,
                         "reason": f"object {event_object(payload)!r} is not monitored"}
        store = await self.get_store()
        event_type = event_type_of(payload)
        try:
            stored = await anyio.to_thread.run_sync(store.add_event, notification_id, event_type, payload,
                                                    limiter=self._write_limiter(store))
        except Exception:
            log.exception("Could not store Zuora callout %s", notification_id)
            raise CalloutRefused(503, "the event could not be stored now; retry later") from None
        if not stored:
            return 200, {"status": "duplicate", "notification_id": notification_id}
        log.debug("Stored Zuora callout %s (%s)", notification_id, event_type)
        return 202, {"status": "accepted", "notification_id": notification_id}


# --------------------------------------------------------------------------------------------
# The route

#: The request as documented in the OpenAPI schema (Zuora's callout template, ids only).
CALLOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Zuora callout notification built from the event's merge fields.",
    "properties": {
        "notificationId": {"type": "string", "description": "Same as the Zuora-Notification-Id header; without "
                                                            "it, the event is identified by the body's SHA-256"},
        "eventType": {"type": "string", "example": "AccountUpdated"},
        "eventCategory": {"type": "string"},
        "baseObject": {"type": "string", "example": "Account"},
        "changeType": {"type": "string", "enum": ["INSERT", "UPDATE", "DELETE"]},
        "objectId": {"type": "string"},
        "tenantId": {"type": "string"},
        "eventTimestamp": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": True,
}

_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}}
_ANSWER = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["accepted", "duplicate", "ignored"]},
                   "notification_id": {"type": "string"}, "reason": {"type": "string"}}}}}}


def create_router(intake: Intake | None = None) -> APIRouter:
    """The public (signature-checked) callout route. Its :class:`Intake` is ``router.intake``."""
    intake = intake or Intake()
    router = APIRouter(tags=["callouts"])

    @router.post(
        "/events",
        summary="Receive a Zuora callout notification",
        description=("Authenticated per the Airflow connection `zuora_sync_webhook`: an HMAC-SHA256 of the raw "
                     "body (hex or base64) in the header named by `extra.signature_header` (default "
                     "X-Zuora-Signature), or HTTP Basic credentials. Idempotent on the notification id "
                     "(the body's notificationId, which the header must match, or else the body's SHA-256). "
                     f"Bodies over {MAX_BODY_BYTES} bytes are refused."),
        status_code=202,
        responses={
            200: {"description": "Already received (duplicate) or not a monitored object (ignored)", **_ANSWER},
            202: {"description": "Stored: it counts toward the next real-time sync", **_ANSWER},
            400: {"description": "Malformed callout", **_ERROR},
            401: {"description": "Not signed, wrongly signed or wrong credentials", **_ERROR},
            413: {"description": "Body too large", **_ERROR},
            503: {"description": "State store or configuration unreachable: retry", **_ERROR},
        },
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": CALLOUT_SCHEMA}}},
            "parameters": [
                {"name": NOTIFICATION_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "Zuora's idempotency key (stable across retries)"},
                {"name": DEFAULT_SIGNATURE_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "Hex or base64 HMAC-SHA256 of the body (the header name is configurable)"},
            ],
        },
    )
    async def receive_event(request: Request) -> JSONResponse:
        try:
            status, answer = await intake.receive(request)
        except CalloutRefused as refused:
            return JSONResponse({"detail": refused.reason}, status_code=refused.status)
        return JSONResponse(answer, status_code=status)

    router.intake = intake  # type: ignore[attr-defined]
    return router
