"""Callout notifications: every change event in ``_events`` is POSTed to the tenant's callout URL.

Real-time sync is driven by Zuora callouts (``docs/operations.md``, "Real-time sync"), so the sandbox sends one for every data change,
the way a Zuora tenant with data-change custom events and a callout notification on each would
(reference §2.5). A background thread per tenant delivers them; nothing else here keeps state but
the ``_events`` table (attempts, next_attempt, delivery, last_status), so a restart resumes.

Request: ``POST <callout URL>`` with headers ``Content-Type: application/json``,
``Zuora-Notification-Id`` (the event's id, the same on every retry: the receiver's idempotency
key), ``Zuora-Request-Id`` (new for every attempt) and, when a secret is set, ``X-Zuora-Signature``:
the lower-case hex HMAC-SHA256 of the exact body bytes, keyed with the secret. The body is compact
JSON, built like a Zuora callout template from the event's merge fields (ids only; the receiver
calls back for details)::

    {"notificationId": "<as the header>", "tenantId": "12345",
     "eventType": "AccountUpdated",          # the custom event type (schema.yaml, per object and change)
     "eventCategory": "Account",             # the object's label, Zuora's event category
     "baseObject": "Account",                # the object, as in Zuora's event triggers
     "changeType": "UPDATE",                 # INSERT | UPDATE | DELETE, as in trigger conditions
     "objectId": "<the record's Id>",        # {{DataSource.<Object>.Id}}
     "eventTimestamp": "2025-01-31T10:00:00Z"}   # when the change happened, UTC

Delivery follows Zuora's callout settings: a 25 s timeout; success is any 2xx; only 1xx, 403,
408, 429, 5xx and no answer at all (connection refused or dropped, timeout: Zuora's "negative
code") are retried, every ``retry_interval_seconds`` (Zuora's default 30 minutes) up to
``max_attempts`` attempts (default 3, at most 5); anything else fails at once. Redirects are not
followed. ``last_status`` keeps the HTTP status, or ``-1 <reason>`` without an answer. Events go
out in ``seq`` order on their first attempt; one waiting for a retry never holds back later ones.
Delivery is at least once: a crash between sending and recording means a resend with the same
``Zuora-Notification-Id``. Without a callout URL nothing is sent and events stay ``pending``.

``GET /__admin/callouts`` shows the settings and counts; ``POST /__admin/callouts``
``{"retry_interval_seconds": 1, "max_attempts": 3}`` changes them (kept in the data dir), so tests
can watch retries in seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 25
DEFAULT_RETRY_INTERVAL_SECONDS = 30 * 60
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_LIMIT = 5
MAX_RETRY_INTERVAL_SECONDS = 1440 * 60
POLL_SECONDS = 0.1  # also catches events written by code that does not call wake()
BATCH = 500
FLUSH_EVERY = 100  # results recorded per write transaction, at most
FLUSH_SECONDS = 0.5
_SETTINGS_KEY = "callouts"

_EVENT_COLUMNS = ("seq, notification_id, event_type, object, record_id, change_type, created, attempts, next_attempt, "
                  "delivery")


def retryable(status: int) -> bool:
    """Whether Zuora retries a callout answered with ``status`` (-1: no answer)."""
    return status < 0 or 100 <= status < 200 or status in (403, 408, 429) or 500 <= status < 600


def sign(secret: str, body: bytes) -> str:
    """The ``X-Zuora-Signature`` value: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Event:
    seq: int
    notification_id: str
    event_type: str
    object: str
    record_id: str
    change_type: str
    created: str
    attempts: int
    next_attempt: float
    delivery: str


class CalloutSender:
    """The tenant's callout delivery thread."""

    def __init__(self, tenant: Any):
        self.tenant = tenant
        self.store = tenant.store
        stored = self.store.get_setting(_SETTINGS_KEY) or {}
        self.retry_interval = float(stored.get("retry_interval_seconds", DEFAULT_RETRY_INTERVAL_SECONDS))
        self.max_attempts = int(stored.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._high_water = 0  # every event up to here has had its first attempt (or waits for a retry)
        self._results: list[tuple] = []
        self._last_flush = time.monotonic()

    # control ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.tenant.callout_url and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zuora-callouts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._session.close()

    def wake(self) -> None:
        self._wakeup.set()

    def configure(self, retry_interval: float, max_attempts: int) -> None:
        self.retry_interval, self.max_attempts = retry_interval, max_attempts
        self.store.set_setting(_SETTINGS_KEY, {"retry_interval_seconds": retry_interval, "max_attempts": max_attempts})
        self.wake()

    # the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        self._start_scan()
        while not self._stop.is_set():
            try:
                # Clear first: a wake that arrives while the batch is read is seen on the next turn.
                self._wakeup.clear()
                events, more = self._due()
                for event in events:
                    if self._stop.is_set():
                        break
                    self._deliver(event)
                    self._maybe_flush()
                self._flush()
                if not events and not more:
                    self._wakeup.wait(POLL_SECONDS)
            except Exception:  # a broken database or receiver must not end delivery for good
                log.exception("callout delivery failed; retrying shortly")
                self._results.clear()
                self._start_scan()  # results may be lost: look at every pending event again
                self._stop.wait(1)

    def _start_scan(self) -> None:
        """Start below the oldest pending event, so a long delivered history is not read again."""
        oldest = self.store.conn().execute("SELECT MIN(seq) FROM _events WHERE delivery = 'pending'").fetchone()[0]
        self._high_water = oldest - 1 if oldest is not None else self._last_seq()

    def _last_seq(self) -> int:
        return self.store.conn().execute("SELECT COALESCE(MAX(seq), 0) FROM _events").fetchone()[0]

    def _due(self) -> tuple[list[Event], bool]:
        """Due events in seq order (new ones past the high-water mark, and retries whose time has
        come), and whether more new events may be waiting right away."""
        conn = self.store.conn()
        now = time.time()
        # New events: a primary-key range, cheap however large the table grows.
        fresh = [Event(*row) for row in conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM _events WHERE seq > ? ORDER BY seq LIMIT ?", (self._high_water, BATCH))]
        if fresh:
            self._high_water = fresh[-1].seq
        # Retries (and retries scheduled before a restart): the (delivery, next_attempt) index.
        again = [Event(*row) for row in conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM _events WHERE delivery = 'pending' AND next_attempt > 0 "
            "AND next_attempt <= ? AND seq <= ? ORDER BY seq LIMIT ?", (now, self._high_water, BATCH))]
        due = {e.seq: e for e in again}
        due.update((e.seq, e) for e in fresh if e.delivery == "pending" and e.next_attempt <= now)
        return [due[seq] for seq in sorted(due)], len(fresh) == BATCH

    def body(self, event: Event) -> bytes:
        obj = self.tenant.schema.get(event.object)
        payload = {
            "notificationId": event.notification_id,
            "tenantId": self.tenant.config.tenant_id,
            "eventType": event.event_type,
            "eventCategory": obj.label if obj is not None else event.object,
            "baseObject": event.object,
            "changeType": event.change_type,
            "objectId": event.record_id,
            "eventTimestamp": event.created.replace(" ", "T") + "Z",
        }
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")

    def _deliver(self, event: Event) -> None:
        url = self.tenant.callout_url
        body = self.body(event)
        headers = {
            "Content-Type": "application/json",
            "Zuora-Notification-Id": event.notification_id,
            "Zuora-Request-Id": str(uuid.uuid4()),
        }
        if self.tenant.callout_secret:
            headers["X-Zuora-Signature"] = sign(self.tenant.callout_secret, body)
        try:
            response = self._session.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS,
                                          allow_redirects=False)
            status, note = response.status_code, str(response.status_code)
            response.close()
        except requests.RequestException as exc:
            status, note = -1, f"-1 {type(exc).__name__}"
        attempts = event.attempts + 1
        if 200 <= status < 300:
            outcome, next_attempt = "delivered", 0.0
        elif retryable(status) and attempts < self.max_attempts:
            outcome, next_attempt = "pending", time.time() + self.retry_interval
        else:
            outcome, next_attempt = "failed", 0.0
        self._results.append((attempts, next_attempt, outcome, note, event.seq))

    def _maybe_flush(self) -> None:
        if len(self._results) >= FLUSH_EVERY or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        """Record delivery results, many per write transaction (the write lock is shared with the API)."""
        self._last_flush = time.monotonic()
        if not self._results:
            return
        with self.store.write() as conn:
            conn.executemany("UPDATE _events SET attempts = ?, next_attempt = ?, delivery = ?, last_status = ? "
                             "WHERE seq = ?", self._results)
        self._results.clear()


def _sender(tenant: Any) -> CalloutSender:
    sender = getattr(tenant, "callout_sender", None)
    if sender is None:
        sender = tenant.callout_sender = CalloutSender(tenant)
    return sender


def start(tenant: Any) -> None:
    _sender(tenant).start()


def stop(tenant: Any) -> None:
    sender = getattr(tenant, "callout_sender", None)
    if sender is not None:
        sender.stop()


def wake(tenant: Any) -> None:
    """Tell the sender new events were committed (it also polls, so this only saves latency)."""
    sender = getattr(tenant, "callout_sender", None)
    if sender is not None:
        sender.wake()


# -- admin ---------------------------------------------------------------------------------------------

def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


async def admin_callouts(request: Request) -> Response:
    tenant = request.app.state.tenant
    sender = _sender(tenant)
    if request.method == "POST":
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) - {"retry_interval_seconds", "max_attempts"}:
            return _json({"error": "send {\"retry_interval_seconds\": S, \"max_attempts\": N}"}, 400)
        interval = body.get("retry_interval_seconds", sender.retry_interval)
        attempts = body.get("max_attempts", sender.max_attempts)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or \
                not 0 < interval <= MAX_RETRY_INTERVAL_SECONDS:
            return _json({"error": f"retry_interval_seconds must be a number in (0, {MAX_RETRY_INTERVAL_SECONDS}]"}, 400)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
            return _json({"error": f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}"}, 400)
        await run_in_threadpool(sender.configure, float(interval), attempts)

    def counts() -> dict[str, int]:
        rows = tenant.store.conn().execute("SELECT delivery, COUNT(*) FROM _events GROUP BY delivery").fetchall()
        return {"pending": 0, "delivered": 0, "failed": 0, **dict(rows)}

    return _json({
        "callout_url_set": bool(tenant.callout_url),
        "signed": bool(tenant.callout_secret),
        "retry_interval_seconds": sender.retry_interval,
        "max_attempts": sender.max_attempts,
        "timeout_seconds": TIMEOUT_SECONDS,
        "events": await run_in_threadpool(counts),
    })


def routes() -> list[Route]:
    return [Route("/__admin/callouts", admin_callouts, methods=["GET", "POST"])]
