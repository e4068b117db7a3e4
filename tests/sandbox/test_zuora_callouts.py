"""Callout notifications from the Zuora sandbox to a real local HTTP receiver: one signed POST per
change with a stable ``Zuora-Notification-Id``, retries on the statuses Zuora retries (with a new
``Zuora-Request-Id`` each time), no retry on the others, delivery state in ``/__admin/events``, and
a burst of changes delivered promptly and in order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from conftest import ZuoraSandbox, start_zuora_sandbox
from zuora_sdk.models import (
    ProxyActioncreateRequest,
    ProxyActiondeleteRequest,
    ProxyActionupdateRequest,
    ZObjectUpdate,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's pydantic usage

SECRET = "callout-s3cret"
RETRY_SECONDS = 1.0


class Receiver:
    """An HTTP server that records callouts and answers by plan: per event type, the status of each
    attempt (``"drop"`` closes the connection unanswered); 200 once the plan runs out."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.plans: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the sender's session expects
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with receiver.lock:
                    attempt = sum(c["notification_id"] == self.headers["Zuora-Notification-Id"]
                                  for c in receiver.calls)
                    plan = receiver.plans.get(body["eventType"], [])
                    answer = plan[attempt] if attempt < len(plan) else 200
                    receiver.calls.append({
                        "at": time.monotonic(), "body": body, "raw": raw, "answer": answer,
                        "path": self.path, "content_type": self.headers["Content-Type"],
                        "notification_id": self.headers["Zuora-Notification-Id"],
                        "request_id": self.headers["Zuora-Request-Id"],
                        "signature": self.headers.get("X-Zuora-Signature"),
                    })
                if answer == "drop":
                    self.close_connection = True
                    return
                payload = b'{"ok":true}'
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/zuora-sync/events"

    def for_object(self, object_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["body"]["objectId"] == object_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.plans.update({
        "ProductCreated": [500, 200],                 # retried once, then delivered
        "ProductUpdated": ["drop", 200],              # no answer at all counts as retryable
        "ProductRatePlanCreated": [400],              # not retryable: failed at once
        "InvoiceCreated": [503, 503, 503],            # retried until attempts run out
    })
    yield server
    server.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ZuoraSandbox]:
    data_dir = tmp_path_factory.mktemp("zuora-callouts") / "tenant"
    zuora = start_zuora_sandbox(data_dir, callout_url=receiver.url, callout_secret=SECRET)
    try:
        zuora.admin("POST", "callouts", {"retry_interval_seconds": RETRY_SECONDS, "max_attempts": 3})
        yield zuora
    finally:
        zuora.stop()


@pytest.fixture(scope="module")
def actions(sandbox: ZuoraSandbox):
    return sandbox.sdk_client().actions_api()


def create(actions, type_name: str, *objects: dict[str, Any]) -> list[str]:
    results = actions.action_post_create(ProxyActioncreateRequest(type=type_name, objects=list(objects)))
    assert all(r.success for r in results), [r.errors for r in results]
    return [r.id for r in results]


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def event_of(sandbox: ZuoraSandbox, record_id: str, event_type: str) -> dict[str, Any]:
    (event,) = [e for e in sandbox.admin("GET", "events") if e["record_id"] == record_id and e["event_type"] == event_type]
    return event


def settled(sandbox: ZuoraSandbox, record_id: str, event_type: str) -> dict[str, Any] | None:
    event = event_of(sandbox, record_id, event_type)
    return event if event["delivery"] != "pending" else None


def account(actions, name: str = "Callout Co") -> str:
    (account_id,) = create(actions, "Account", {"Name": name, "Currency": "USD", "BillCycleDay": 1})
    return account_id


def test_each_change_is_posted_signed_with_its_notification_id(sandbox, actions, receiver):
    account_id = account(actions)
    calls = wait_for(lambda: receiver.for_object(account_id), timeout=5)
    assert len(calls) == 1
    (call,) = calls
    body = call["body"]
    event = wait_for(lambda: settled(sandbox, account_id, "AccountCreated"))
    assert event["delivery"] == "delivered" and event["attempts"] == 1 and event["last_status"] == "200"
    assert call["notification_id"] == body["notificationId"] == event["notification_id"]
    assert body == {
        "notificationId": event["notification_id"], "tenantId": body["tenantId"], "eventType": "AccountCreated",
        "eventCategory": "Account", "baseObject": "Account", "changeType": "INSERT", "objectId": account_id,
        "eventTimestamp": event["created"].replace(" ", "T") + "Z",
    }
    assert body["tenantId"] == requests.get(f"{sandbox.url}/health", timeout=10).json()["tenant_id"]
    assert call["signature"] == hmac.new(SECRET.encode(), call["raw"], hashlib.sha256).hexdigest()
    assert call["content_type"] == "application/json" and call["path"] == "/zuora-sync/events"
    assert len(call["request_id"]) == 36

    # An update and a delete are notified too, each with its own notification id.
    actions.action_postupdate(ProxyActionupdateRequest(type="Account", objects=[
        ZObjectUpdate.from_dict({"Id": account_id, "Notes": "changed"})]))
    actions.action_post_delete(ProxyActiondeleteRequest(type="Account", ids=[account_id]))
    calls = wait_for(lambda: len(receiver.for_object(account_id)) == 3 and receiver.for_object(account_id), timeout=5)
    assert [(c["body"]["eventType"], c["body"]["changeType"]) for c in calls] == [
        ("AccountCreated", "INSERT"), ("AccountUpdated", "UPDATE"), ("AccountDeleted", "DELETE")]
    assert len({c["notification_id"] for c in calls}) == 3


def test_retryable_answers_are_retried_with_the_same_notification_id(sandbox, actions, receiver):
    (product_id,) = create(actions, "Product", {"Name": "Retry me", "EffectiveStartDate": "2024-01-01",
                                               "EffectiveEndDate": "2030-01-01"})
    # A later change is not held back while the product's callout waits for its retry.
    later = account(actions, "Behind the retry")
    wait_for(lambda: receiver.for_object(later), timeout=5)
    assert len(receiver.for_object(product_id)) == 1
    actions.action_postupdate(ProxyActionupdateRequest(type="Product", objects=[
        ZObjectUpdate.from_dict({"Id": product_id, "Description": "dropped once"})]))

    created = wait_for(lambda: settled(sandbox, product_id, "ProductCreated"))
    updated = wait_for(lambda: settled(sandbox, product_id, "ProductUpdated"))
    for event, first_answer in ((created, 500), (updated, "drop")):
        assert event["delivery"] == "delivered" and event["attempts"] == 2 and event["last_status"] == "200"
        tries = [c for c in receiver.for_object(product_id) if c["notification_id"] == event["notification_id"]]
        assert [c["answer"] for c in tries] == [first_answer, 200]
        assert tries[0]["request_id"] != tries[1]["request_id"]
        assert tries[1]["at"] - tries[0]["at"] >= RETRY_SECONDS * 0.9
        assert tries[0]["raw"] == tries[1]["raw"]  # the same notification, byte for byte


def test_other_answers_fail_at_once_and_retries_run_out(sandbox, actions, receiver):
    (product_id,) = create(actions, "Product", {"Name": "Catalog", "EffectiveStartDate": "2024-01-01",
                                               "EffectiveEndDate": "2030-01-01"})
    (plan_id,) = create(actions, "ProductRatePlan", {"ProductId": product_id, "Name": "Refused"})
    (invoice_id,) = create(actions, "Invoice", {"AccountId": account(actions), "InvoiceDate": "2024-05-01"})

    refused = wait_for(lambda: settled(sandbox, plan_id, "ProductRatePlanCreated"))
    assert refused["delivery"] == "failed" and refused["attempts"] == 1 and refused["last_status"] == "400"
    exhausted = wait_for(lambda: settled(sandbox, invoice_id, "InvoiceCreated"))
    assert exhausted["delivery"] == "failed" and exhausted["attempts"] == 3 and exhausted["last_status"] == "503"
    assert [c["answer"] for c in receiver.for_object(invoice_id)] == [503, 503, 503]
    time.sleep(RETRY_SECONDS * 1.5)
    assert [c["answer"] for c in receiver.for_object(plan_id)] == [400]  # a 400 is never retried


def test_a_burst_of_changes_is_delivered_promptly_and_in_order(sandbox, actions, receiver):
    account_id = account(actions, "Burst")
    contact_ids: list[str] = []
    started = time.monotonic()
    for batch in range(8):
        contact_ids += create(actions, "Contact", *({"AccountId": account_id, "FirstName": "Burst",
                                                     "LastName": f"{batch}-{i}"} for i in range(50)))
    wanted = set(contact_ids)

    def arrived() -> list[dict[str, Any]]:
        with receiver.lock:
            got = [c for c in receiver.calls if c["body"]["objectId"] in wanted]
        return got if len(got) >= len(wanted) else []

    calls = wait_for(arrived, timeout=30)
    elapsed = time.monotonic() - started
    assert len(calls) == 400 and {c["body"]["objectId"] for c in calls} == wanted
    assert elapsed < 10, f"400 callouts took {elapsed:.1f} s"
    assert len({c["notification_id"] for c in calls}) == 400
    # First attempts go out in the order of the change events.
    seq_of = {e["notification_id"]: e["seq"] for e in sandbox.admin("GET", "events")}
    seqs = [seq_of[c["notification_id"]] for c in calls]
    assert seqs == sorted(seqs)

    def recorded() -> list[dict[str, Any]]:
        events = [e for e in sandbox.admin("GET", "events") if e["record_id"] in wanted]
        return events if all(e["delivery"] == "delivered" for e in events) else []

    assert len(wait_for(recorded, timeout=10)) == 400


def test_admin_settings(sandbox):
    settings = sandbox.admin("GET", "callouts")
    assert settings["callout_url_set"] is True and settings["signed"] is True
    assert settings["retry_interval_seconds"] == RETRY_SECONDS and settings["max_attempts"] == 3
    assert settings["timeout_seconds"] == 25 and settings["events"]["delivered"] >= 1
    for bad in ({"max_attempts": 6}, {"retry_interval_seconds": 0}, {"retry_interval_seconds": "soon"}, {"x": 1}):
        response = requests.post(f"{sandbox.url}/__admin/callouts", json=bad, timeout=10)
        assert response.status_code == 400, bad
    assert SECRET not in json.dumps(settings)


def test_without_a_url_events_wait_and_go_out_after_a_restart_with_one(tmp_path, receiver):
    data_dir = tmp_path / "tenant"
    quiet = start_zuora_sandbox(data_dir)
    try:
        account_id = account(quiet.sdk_client().actions_api(), "Waiting")
        time.sleep(0.5)
        event = event_of(quiet, account_id, "AccountCreated")
        assert event["delivery"] == "pending" and event["attempts"] == 0
        assert quiet.admin("GET", "callouts")["callout_url_set"] is False
    finally:
        quiet.stop()
    assert receiver.for_object(account_id) == []
    loud = start_zuora_sandbox(data_dir, callout_url=receiver.url)
    try:
        (call,) = wait_for(lambda: receiver.for_object(account_id), timeout=5)
        assert call["notification_id"] == event["notification_id"] and call["signature"] is None
        assert wait_for(lambda: settled(loud, account_id, "AccountCreated"))["delivery"] == "delivered"
    finally:
        loud.stop()
