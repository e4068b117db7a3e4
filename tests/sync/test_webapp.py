"""The web app over real HTTP: callout intake, its authentication, idempotency and refusals, the
Zuora sandbox's own callouts, the login-protected status and settings, and the plugin inside
Airflow's API app.

The app runs under uvicorn in a subprocess, set up as the Airflow API server runs it
(``_AIRFLOW_PROCESS_CONTEXT=server``, a migrated metadata database of its own), with the
``zuora_sync_webhook`` and ``zuora_sync_state`` connections from environment variables (one test
keeps the webhook connection in the metadata database instead, to show that a rotated secret
applies without a restart). Nothing of ours is mocked; stored events are counted in the state
store's database.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, start_zuora_sandbox

from webapp_server import ADMIN_PASSWORD, WebApp, airflow_env, airflow_python, make_token, migrate_airflow_home, \
    start_webapp
from zuora_sync.state import StateStore

SECRET = "webhook-s3cret-for-tests"


# --------------------------------------------------------------------------------------------
# Servers (tests/webapp_server.py)


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated metadata database (Variables, DAGs, tokens live there)."""
    home = tmp_path_factory.mktemp("airflow-home")
    migrate_airflow_home(home)
    return home


@pytest.fixture(scope="module")
def webapp(tmp_path_factory: pytest.TempPathFactory, airflow_home: Path) -> Iterator[WebApp]:
    """The app with an HMAC-signed webhook connection (env var)."""
    app = start_webapp(tmp_path_factory.mktemp("webapp"), airflow_home,
                       webhook={"conn_type": "http", "extra": {"hmac_secret": SECRET}})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def token(airflow_home: Path) -> str:
    """An Airflow JWT, signed by Airflow's own auth manager with the configured ``jwt_secret``."""
    return make_token(airflow_home)


# --------------------------------------------------------------------------------------------
# Helpers


def sign_hex(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_b64(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def callout(notification_id: str | None = None, *, base_object: str = "Account", event_type: str | None = None,
            **fields: Any) -> tuple[bytes, dict[str, str]]:
    """A callout as the Zuora sandbox builds it: compact JSON, the id in header and body."""
    notification_id = notification_id or uuid.uuid4().hex
    payload = {"notificationId": notification_id, "tenantId": "12345",
               "eventType": event_type or f"{base_object}Updated", "eventCategory": base_object,
               "baseObject": base_object, "changeType": "UPDATE", "objectId": uuid.uuid4().hex,
               "eventTimestamp": "2025-01-31T10:00:00Z", **fields}
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", "Zuora-Notification-Id": notification_id,
                  "Zuora-Request-Id": str(uuid.uuid4())}


def post(app: WebApp, body: bytes, headers: dict[str, str], *, signature: str | None = "hex",
         session: requests.Session | None = None, **kwargs: Any) -> requests.Response:
    headers = dict(headers)
    if signature == "hex":
        headers["X-Zuora-Signature"] = sign_hex(body)
    elif signature == "base64":
        headers["X-Zuora-Signature"] = sign_b64(body)
    elif signature is not None:
        headers["X-Zuora-Signature"] = signature
    return (session or requests).post(app.events_url, data=body, headers=headers, timeout=30, **kwargs)


def stored(app: WebApp) -> dict[str, dict[str, Any]]:
    """Every stored event by notification id (read straight from the state store's database)."""
    if not app.state_db.exists():
        return {}
    with sqlite3.connect(app.state_db) as conn:
        try:
            rows = conn.execute("SELECT notification_id, event_type, payload FROM zuora_sync_event").fetchall()
        except sqlite3.OperationalError:  # not migrated yet: nothing stored
            return {}
    return {n: {"event_type": t, "payload": json.loads(p)} for n, t, p in rows}


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# POST /events


def test_a_signed_callout_is_stored_once_and_a_replay_is_a_duplicate(webapp):
    body, headers = callout(event_type="SubscriptionUpdated", base_object="Subscription")
    notification_id = headers["Zuora-Notification-Id"]
    before = len(stored(webapp))
    first = post(webapp, body, headers)
    assert first.status_code == 202, first.text
    assert first.json() == {"status": "accepted", "notification_id": notification_id}
    # Zuora retries with the same notification id (and a new request id): nothing new is stored.
    for _ in range(3):
        again = post(webapp, body, {**headers, "Zuora-Request-Id": str(uuid.uuid4())})
        assert again.status_code == 200 and again.json() == {"status": "duplicate", "notification_id": notification_id}
    events = stored(webapp)
    assert len(events) == before + 1
    assert events[notification_id]["event_type"] == "SubscriptionUpdated"
    assert events[notification_id]["payload"] == json.loads(body)


def test_base64_and_prefixed_signatures_are_accepted(webapp):
    before = len(stored(webapp))
    body, headers = callout()
    response = post(webapp, body, headers, signature="base64")
    assert response.status_code == 202, response.text
    body, headers = callout()
    response = post(webapp, body, headers, signature="sha256=" + sign_hex(body).upper())
    assert response.status_code == 202, response.text
    assert len(stored(webapp)) == before + 2


def test_unsigned_and_wrongly_signed_callouts_get_401_and_store_nothing(webapp):
    before = stored(webapp)
    body, headers = callout()
    other_body, _ = callout()
    attempts = {
        "unsigned": None,
        "empty signature": "",
        "another secret": sign_hex(body, "not-the-secret"),
        "another body's signature": sign_hex(other_body),
        "truncated": sign_hex(body)[:-2],
        "garbage": "zzzz-not-a-signature-é",
        "base64 of another secret": sign_b64(body, "not-the-secret"),
    }
    for name, signature in attempts.items():
        response = post(webapp, body, headers, signature=signature)
        assert response.status_code == 401, (name, response.text)
        assert SECRET not in response.text
        assert response.json()["detail"]
    # A Basic header does not stand in for the signature this connection asks for.
    response = post(webapp, body, {**headers, "Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
                    signature=None)
    assert response.status_code == 401
    assert stored(webapp) == before
    assert SECRET not in webapp.log()


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not valid JSON"),
    (b"", "empty body"),
    (b"   ", "empty body"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b'"AccountUpdated"', "must be a JSON object"),
    (b'{"notificationId": "n-nan", "baseObject": "Account", "amount": NaN}', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"notificationId": "caf\xe9", "baseObject": "Account"}', "not UTF-8"),
    (b"[" * 50_000 + b"]" * 50_000, None),   # 100 KB: refused for its size (413) before parsing
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (b'{"notificationId": 42, "baseObject": "Account"}', "notificationId must be a string"),
    (b'{"notificationId": "n-1", "baseObject": ["Account"]}', "baseObject must be a string"),
    (b'{"notificationId": "n-2", "baseObject": "Account", "eventType": {"x": 1}}', "eventType must be a string"),
])
def test_malformed_callouts_get_400_with_a_reason_and_store_nothing(webapp, body, reason):
    before = stored(webapp)
    headers = {"Content-Type": "application/json"}
    if b"notificationId" not in body:
        headers["Zuora-Notification-Id"] = uuid.uuid4().hex
    response = post(webapp, body, headers)
    if reason is None:
        assert response.status_code == 413, response.text
    else:
        assert response.status_code == 400, response.text
        assert reason in response.json()["detail"]
    assert stored(webapp) == before


def test_oversized_callouts_are_refused_by_length_and_by_what_arrives(webapp):
    before = stored(webapp)
    body, headers = callout(padding="x" * 70_000)
    response = post(webapp, body, headers)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = requests.post(webapp.events_url, data=chunks(), timeout=30,
                             headers={**headers, "X-Zuora-Signature": sign_hex(body)})
    assert response.status_code == 413, response.text
    # A body just under the limit is fine.
    body, headers = callout(padding="x" * 60_000)
    assert post(webapp, body, headers).status_code == 202
    assert len(stored(webapp)) == len(before) + 1


def test_the_notification_id_comes_from_the_header_or_the_body(webapp):
    before = len(stored(webapp))
    payload = {"eventType": "AccountUpdated", "baseObject": "Account", "objectId": "A-1"}
    body = json.dumps(payload).encode()
    response = post(webapp, body, {"Content-Type": "application/json"})
    assert response.status_code == 400 and "Zuora-Notification-Id" in response.json()["detail"]
    response = post(webapp, body, {"Zuora-Notification-Id": "x" * 256})
    assert response.status_code == 400 and "longer than" in response.json()["detail"]
    in_body = uuid.uuid4().hex
    body = json.dumps({**payload, "notificationId": in_body}).encode()
    response = post(webapp, body, {"Zuora-Notification-Id": "another-" + in_body})
    assert response.status_code == 400 and "differ" in response.json()["detail"]
    assert len(stored(webapp)) == before
    response = post(webapp, body, {})
    assert response.status_code == 202 and response.json()["notification_id"] == in_body
    assert in_body in stored(webapp)


def test_events_of_objects_not_monitored_are_ignored_and_not_stored(webapp):
    before = stored(webapp)
    for body, headers in (callout(base_object="ProductRatePlan"), callout(base_object="CreditMemo"),
                          callout(base_object=None, event_type="OrderCreated"), callout(base_object=None,
                                                                                         event_type=None)):
        response = post(webapp, body, headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ignored" and "not monitored" in response.json()["reason"]
    assert stored(webapp) == before
    # An event named only by its type counts when the object is monitored.
    body, headers = callout(base_object=None, event_type="InvoiceCreated")
    response = post(webapp, body, headers)
    assert response.status_code == 202
    assert stored(webapp)[headers["Zuora-Notification-Id"]]["event_type"] == "InvoiceCreated"


def test_a_thousand_concurrent_callouts_store_exactly_a_thousand_events(webapp):
    before = set(stored(webapp))
    prefix = uuid.uuid4().hex[:8]
    prepared = [callout(f"{prefix}-{i:04d}") for i in range(1000)]
    local = threading.local()

    def send(item: tuple[bytes, dict[str, str]]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return post(webapp, *item, session=session).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        codes = Counter(pool.map(send, prepared))
    elapsed = time.perf_counter() - started
    print(f"\n1,000 concurrent signed callouts (32 clients): {1000 / elapsed:,.0f} callouts/s")
    assert codes == {202: 1000}
    new = set(stored(webapp)) - before
    assert new == {f"{prefix}-{i:04d}" for i in range(1000)}
    # Sent again, all at once: every one a duplicate, nothing stored twice.
    with ThreadPoolExecutor(32) as pool:
        assert Counter(pool.map(send, prepared)) == {200: 1000}
    assert set(stored(webapp)) - before == new


def test_basic_auth_connection(tmp_path, airflow_home):
    app = start_webapp(tmp_path / "basic", airflow_home,
                       webhook={"conn_type": "http", "login": "zuora", "password": "p@ss:word"})
    try:
        def basic(user: str, password: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

        body, headers = callout()
        assert post(app, body, {**headers, **basic("zuora", "p@ss:word")}, signature=None).status_code == 202
        for wrong in (basic("zuora", "nope"), basic("other", "p@ss:word"), basic("zuora", ""),
                      {"Authorization": "Basic !!!"}, {"Authorization": "Bearer p@ss:word"}, {}):
            body, headers = callout()
            response = post(app, body, {**headers, **wrong}, signature="hex")  # a signature does not help
            assert response.status_code == 401, (wrong, response.text)
        assert len(stored(app)) == 1
        assert "p@ss:word" not in app.log()
    finally:
        app.stop()


def test_without_the_connection_every_callout_is_refused_and_a_rotated_secret_applies(tmp_path, airflow_home):
    """The webhook connection in Airflow's database (as the UI keeps it), re-read every second."""
    app = start_webapp(tmp_path / "rotation", airflow_home, webhook=None, ZUORA_SYNC_WEBHOOK_CACHE_SECONDS="1")

    def set_connection(secret: str) -> None:
        airflow_python(app.env, (
            "import json\n"
            "from airflow.models import Connection\n"
            "from airflow.utils.session import create_session\n"
            "with create_session() as session:\n"
            "    session.query(Connection).filter(Connection.conn_id == 'zuora_sync_webhook').delete()\n"
            f"    session.add(Connection(conn_id='zuora_sync_webhook', conn_type='http',\n"
            f"                           extra=json.dumps({{'hmac_secret': {secret!r}}})))\n"))

    try:
        body, headers = callout()
        for signature in ("hex", None):
            response = post(app, body, headers, signature=signature)
            assert response.status_code == 401 and "not configured" in response.json()["detail"]
        assert "create the Airflow connection 'zuora_sync_webhook'" in app.log()
        assert stored(app) == {}

        set_connection("first-secret")
        first = wait_for(lambda: post(app, body, {**headers, "X-Zuora-Signature": sign_hex(body, "first-secret")},
                                      signature=None).status_code == 202, timeout=15)
        assert first, app.log()[-2000:]

        set_connection("second-secret")
        body, headers = callout()
        rotated = wait_for(lambda: post(app, body, {**headers, "X-Zuora-Signature": sign_hex(body, "second-secret")},
                                        signature=None).status_code == 202, timeout=15)
        assert rotated
        body, headers = callout()
        old = post(app, body, {**headers, "X-Zuora-Signature": sign_hex(body, "first-secret")}, signature=None)
        assert old.status_code == 401
        assert len(stored(app)) == 2
        assert "first-secret" not in app.log() and "second-secret" not in app.log()
    finally:
        app.stop()


def test_the_zuora_sandbox_callouts_arrive_and_are_stored_once(tmp_path, webapp):
    sandbox = start_zuora_sandbox(tmp_path / "tenant", callout_url=webapp.events_url, callout_secret=SECRET)
    try:
        auth = {"Authorization": f"Bearer {sandbox.token()}"}

        def action(name: str, type_name: str, *objects: dict[str, Any]) -> list[str]:
            response = requests.post(f"{sandbox.url}/v1/action/{name}", json={"type": type_name, "objects": list(objects)},
                                     headers=auth, timeout=30)
            response.raise_for_status()
            results = response.json()
            assert all(r["Success"] for r in results), results
            return [r["Id"] for r in results]

        (account_id,) = action("create", "Account", {"Name": "Callout Co", "Currency": "USD", "BillCycleDay": 1})
        action("update", "Account", {"Id": account_id, "Notes": "changed once"})
        action("update", "Account", {"Id": account_id, "Notes": "changed twice"})
        (product_id,) = action("create", "Product", {"Name": "Widget", "EffectiveStartDate": "2024-01-01",
                                                      "EffectiveEndDate": "2030-01-01"})
        (plan_id,) = action("create", "ProductRatePlan", {"ProductId": product_id, "Name": "Monthly"})
        wanted = {account_id, product_id, plan_id}

        def delivered() -> list[dict[str, Any]]:
            events = [e for e in sandbox.admin("GET", "events") if e["record_id"] in wanted]
            return events if len(events) == 5 and all(e["delivery"] != "pending" for e in events) else []

        events = wait_for(delivered, timeout=30)
        assert events, sandbox.admin("GET", "events")
        assert all(e["delivery"] == "delivered" and e["attempts"] == 1 for e in events), events
        by_type = Counter(e["event_type"] for e in events)
        assert by_type == {"AccountCreated": 1, "AccountUpdated": 2, "ProductCreated": 1, "ProductRatePlanCreated": 1}
        saved = stored(webapp)
        for event in events:
            if event["event_type"] == "ProductRatePlanCreated":   # not an Accounts & Related Objects change
                assert event["last_status"] == "200" and event["notification_id"] not in saved
            else:
                assert event["last_status"] == "202", event
                assert saved[event["notification_id"]]["event_type"] == event["event_type"]
                assert saved[event["notification_id"]]["payload"]["objectId"] == event["record_id"]
    finally:
        sandbox.stop()


# --------------------------------------------------------------------------------------------
# Status and settings


def test_status_and_settings_require_an_airflow_login(webapp):
    for method, path in (("GET", "/status"), ("GET", "/settings"), ("PUT", "/settings")):
        response = requests.request(method, webapp.url + path, json={"max_events_before_sync": 1}, timeout=10)
        assert response.status_code == 401, (path, response.text)
        response = requests.request(method, webapp.url + path, json={"max_events_before_sync": 1}, timeout=10,
                                    headers={"Authorization": "Bearer not.a.token"})
        assert response.status_code in (401, 403), (path, response.text)
        forged = _forged_token()
        response = requests.request(method, webapp.url + path, json={"max_events_before_sync": 1}, timeout=10,
                                    cookies={"_token": forged})
        assert response.status_code in (401, 403), (path, response.text)
    # The callout endpoint needs no login (its own signature instead).
    body, headers = callout()
    assert post(webapp, body, headers).status_code == 202


def _forged_token() -> str:
    """A well-formed JWT signed with another key."""
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": "admin", "role": "ADMIN", "iat": now, "nbf": now, "exp": now + 600,
                       "aud": "apache-airflow"}, "another-key-" + "y" * 60, algorithm="HS512")


def _put_dags(app: WebApp, paused: dict[str, bool]) -> None:
    """Register the two DAGs in Airflow's database with these paused flags (as the DAG processor would)."""
    airflow_python(app.env, (
        "from airflow.models.dag import DagModel\n"
        "from airflow.models.dagbundle import DagBundleModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        "    if session.get(DagBundleModel, 'tests') is None:\n"
        "        session.add(DagBundleModel(name='tests'))\n"
        "        session.flush()\n"
        f"    for dag_id, paused in {paused!r}.items():\n"
        "        session.merge(DagModel(dag_id=dag_id, bundle_name='tests', is_paused=paused, is_stale=False))\n"))


def test_status_says_mode_pending_events_next_sync_last_session_and_locks(webapp, token):
    bearer = {"Authorization": f"Bearer {token}"}
    put = requests.put(f"{webapp.url}/settings", json={"max_events_before_sync": 500, "max_minutes_between_syncs": 30},
                       headers=bearer, timeout=30)
    assert put.status_code == 200, put.text
    # A real-time session that ended 10 minutes ago, and a cleanup holding the catalog lock.
    url = f"sqlite:///{webapp.state_db}"
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    past = StateStore(url, clock=lambda: ended)
    session_id = past.start_session(session_type="Real-time", scope="accounts", trigger="events", dag_id="zuora_realtime_sync",
                                    run_id="rt-1", window_start=None, window_end=None)
    past.record_counts(session_id, "Account", extracted=3, upserted=3)
    past.finish_session(session_id)
    store = StateStore(url)
    last_id = store.last_event_id()
    if last_id is not None:  # the session consumed what earlier tests sent
        store.mark_events_consumed(last_id, session_id)
    for _ in range(3):
        assert post(webapp, *callout()).status_code == 202
    assert store.try_lock(["catalog"], "zuora_product_catalog_sync/run-9")[0]
    try:
        _put_dags(webapp, {"zuora_incremental_sync": True, "zuora_realtime_sync": False})
        status = requests.get(f"{webapp.url}/status", headers=bearer, timeout=30)
        assert status.status_code == 200, status.text
        body = status.json()
        pending = store.pending_event_count()
        assert pending == 3
        assert body["mode"]["mode"] == "Real-time" and body["mode"]["warning"] is None
        assert body["pending_events"] == pending
        assert body["settings"]["max_events_before_sync"] == 500 and body["settings_source"] == "variable"
        assert body["next_sync"]["threshold"] == 500 and body["next_sync"]["minutes_left"] == 20
        assert body["next_sync"]["message"] == (
            f"{500 - pending} more data change events, or at most 20 minutes, until the next sync")
        assert body["last_session"]["id"] == session_id and body["last_session"]["status"] == "Finished"
        assert body["last_session"]["objects"]["Account"]["upserted"] == 3
        assert body["locks"] == {"catalog": "zuora_product_catalog_sync/run-9"}

        # With the cookie the Airflow UI sets, as a page inside the UI would call it.
        assert requests.get(f"{webapp.url}/status", cookies={"_token": token}, timeout=30).status_code == 200

        _put_dags(webapp, {"zuora_incremental_sync": False, "zuora_realtime_sync": True})
        assert requests.get(f"{webapp.url}/status", headers=bearer, timeout=30).json()["mode"]["mode"] == "Scheduled"
        _put_dags(webapp, {"zuora_incremental_sync": False, "zuora_realtime_sync": False})
        mode = requests.get(f"{webapp.url}/status", headers=bearer, timeout=30).json()["mode"]
        assert mode["mode"] == "Real-time" and "both" in mode["warning"]
        _put_dags(webapp, {"zuora_incremental_sync": True, "zuora_realtime_sync": True})
        assert requests.get(f"{webapp.url}/status", headers=bearer, timeout=30).json()["mode"]["mode"] == "None"
    finally:
        store.release_lock("zuora_product_catalog_sync/run-9")


def test_status_after_a_failed_session_says_when_the_held_events_start_the_next_sync(webapp, token):
    """The trigger holds events back ``BACKOFF_MINUTES`` after a Failure: the status must not say "now".

    Runs after the test above: its session must be the newest (sessions are ordered by time).
    """
    bearer = {"Authorization": f"Bearer {token}"}
    put = requests.put(f"{webapp.url}/settings", json={"max_events_before_sync": 5, "max_minutes_between_syncs": 120},
                       headers=bearer, timeout=30)
    assert put.status_code == 200, put.text
    url = f"sqlite:///{webapp.state_db}"
    now = dt.datetime.now(dt.UTC)
    started, ended = now - dt.timedelta(minutes=6), now - dt.timedelta(minutes=5)
    session_id = StateStore(url, clock=lambda: started).start_session(
        session_type="Real-time", scope="accounts", trigger="events", dag_id="zuora_realtime_sync", run_id="rt-failed",
        window_start=None, window_end=None)
    StateStore(url, clock=lambda: ended).finish_session(session_id, error="tasks did not finish: delete_Account")
    store = StateStore(url)
    if store.last_event_id() is not None:  # earlier tests' events out of the way: only this test's are pending
        store.mark_events_consumed(store.last_event_id(), session_id)
    for _ in range(6):
        assert post(webapp, *callout()).status_code == 202
    body = requests.get(f"{webapp.url}/status", headers=bearer, timeout=30).json()
    assert body["last_session"]["id"] == session_id and body["last_session"]["status"] == "Failure"
    upcoming = body["next_sync"]
    assert body["pending_events"] == 6 and upcoming["events_needed"] == 0
    assert upcoming["due"] is None, upcoming
    assert upcoming["minutes_left"] == 10, upcoming  # 15 minutes after the failed session ended
    assert upcoming["held_until"] == (ended + dt.timedelta(minutes=15)).isoformat()
    assert "starts now" not in upcoming["message"]
    assert upcoming["message"].startswith("6 data change events are waiting, but the last session ended Failure: "
                                          "they start no sync before "), upcoming
    assert upcoming["message"].endswith("; at most 10 minutes until the next sync")


def _token_for(app: WebApp, username: str, role: str) -> str:
    """A JWT for a SimpleAuthManager user of ``role`` named ``username``, signed by Airflow's own auth
    manager (the SimpleAuthManager's users have no email field: a name that is an address is theirs)."""
    return airflow_python(app.env, (
        "from airflow.api_fastapi.app import create_auth_manager\n"
        "from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser\n"
        f"print(create_auth_manager().generate_jwt(SimpleAuthManagerUser(username={username!r}, role={role!r})))\n"))


def _paused(app: WebApp, bearer: dict[str, str]) -> dict[str, bool]:
    """The two DAGs' paused flags in Airflow's database, as the status reads them (DagModel)."""
    dags = requests.get(f"{app.url}/status", headers=bearer, timeout=30).json()["mode"]["dags"]
    return {dag_id: state["paused"] for dag_id, state in dags.items()}


def test_the_sync_mode_is_chosen_on_the_page_by_pausing_and_unpausing_the_two_dags(webapp, token):
    """PUT /mode: None, Scheduled or Real-time; refused while the DAG to pause runs a session; the
    switch to Real-time after a scheduled session says the full sync starts now, and the status says
    it is due now (the real-time trigger's own rule)."""
    bearer = {"Authorization": f"Bearer {token}"}

    def put(body: Any) -> requests.Response:
        return requests.put(f"{webapp.url}/mode", json=body, headers=bearer, timeout=30)

    _put_dags(webapp, {"zuora_incremental_sync": True, "zuora_realtime_sync": True})
    for body, words in (({"mode": "Sometimes"}, "mode: 'Sometimes' is not a sync mode; choose one of "
                                                "['None', 'Scheduled', 'Real-time']"),
                        ({"mode": "None", "also": 1}, "unknown keys ['also']"), ({}, "mode: None is not")):
        refused = put(body)
        assert refused.status_code == 400 and words in refused.json()["detail"], refused.text
    assert _paused(webapp, bearer) == {"zuora_incremental_sync": True, "zuora_realtime_sync": True}

    scheduled = put({"mode": "Scheduled"})
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["mode"]["mode"] == "Scheduled" and scheduled.json()["changed"] == {
        "zuora_incremental_sync": False}
    assert "zuora_incremental_sync runs every 2 hours" in scheduled.json()["message"]
    assert _paused(webapp, bearer) == {"zuora_incremental_sync": False, "zuora_realtime_sync": True}
    audit = airflow_python(webapp.env, (
        "from airflow.models.log import Log\nfrom airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    row = s.query(Log).filter(Log.dag_id == 'zuora_incremental_sync').order_by(Log.id.desc()).first()\n"
        "    print(row.event, row.owner, row.extra)\n"))
    assert audit.startswith("unpaused admin ") and "Scheduled" in audit  # in Airflow's audit log, by whom

    # A scheduled session holds the lock: pausing its DAG now would strand it.
    url = f"sqlite:///{webapp.state_db}"
    store = StateStore(url)
    assert store.try_lock(["accounts"], "zuora_incremental_sync/scheduled__2025")[0]
    try:
        busy = put({"mode": "Real-time"})
        assert busy.status_code == 409 and "zuora_incremental_sync is running a session" in busy.json()["detail"]
        assert _paused(webapp, bearer) == {"zuora_incremental_sync": False, "zuora_realtime_sync": True}
    finally:
        store.release_lock("zuora_incremental_sync/scheduled__2025")
    sid = store.start_session(session_type="Incremental", scope="accounts", trigger="scheduled",
                              dag_id="zuora_incremental_sync", run_id="scheduled__2025", window_start=None,
                              window_end=None)
    store.finish_session(sid)
    if store.last_event_id() is not None:  # earlier tests' events out of the way: only the mode decides
        store.mark_events_consumed(store.last_event_id(), sid)

    realtime = put({"mode": "Real-time"})
    assert realtime.status_code == 200, realtime.text
    assert realtime.json()["message"] == "The sync mode is Real-time. Its first session is a full sync, and it starts now."
    assert _paused(webapp, bearer) == {"zuora_incremental_sync": True, "zuora_realtime_sync": False}
    status = requests.get(f"{webapp.url}/status", headers=bearer, timeout=30).json()
    assert status["mode"]["mode"] == "Real-time"
    assert status["next_sync"]["due"] == "mode_change" and "was not a real-time one" in status["next_sync"]["mode_change"]
    assert put({"mode": "Real-time"}).json()["message"] == "The sync mode is Real-time already."
    assert put({"mode": "None"}).json()["changed"] == {"zuora_realtime_sync": True}
    assert _paused(webapp, bearer) == {"zuora_incremental_sync": True, "zuora_realtime_sync": True}


def test_the_user_who_saves_the_settings_is_added_to_the_recipients_unless_they_opt_out(webapp, token):
    ops = {"Authorization": f"Bearer {_token_for(webapp, 'ops@example.test', 'op')}"}
    admin = {"Authorization": f"Bearer {token}"}
    assert requests.put(f"{webapp.url}/settings", json={"email_recipients": ["billing@example.com"]},
                        headers=admin, timeout=30).status_code == 200
    me = requests.get(f"{webapp.url}/settings", headers=ops, timeout=30).json()["me"]
    assert me == {"name": "ops@example.test", "email": "ops@example.test"}

    saved = requests.put(f"{webapp.url}/settings", json={"max_minutes_between_syncs": 45}, headers=ops, timeout=30)
    assert saved.status_code == 200, saved.text
    assert saved.json()["added_recipient"] == "ops@example.test"
    assert saved.json()["settings"]["email_recipients"] == ["billing@example.com", "ops@example.test"]
    again = requests.put(f"{webapp.url}/settings", json={"max_minutes_between_syncs": 50}, headers=ops, timeout=30)
    assert again.json()["added_recipient"] is None  # there already: not twice
    assert again.json()["settings"]["email_recipients"] == ["billing@example.com", "ops@example.test"]

    opted_out = requests.put(f"{webapp.url}/settings?add_me_to_recipients=false",
                             json={"email_recipients": ["billing@example.com"]}, headers=ops, timeout=30)
    assert opted_out.status_code == 200 and opted_out.json()["added_recipient"] is None
    assert opted_out.json()["settings"]["email_recipients"] == ["billing@example.com"]

    # A user Airflow knows no address of: nothing added, and told so.
    nameless = requests.put(f"{webapp.url}/settings", json={"max_minutes_between_syncs": 120}, headers=admin,
                            timeout=30).json()
    assert nameless["added_recipient"] is None and nameless["settings"]["email_recipients"] == ["billing@example.com"]
    assert nameless["recipient_note"].startswith("Your Airflow user (admin) has no email address")
    assert requests.put(f"{webapp.url}/settings", json={"email_recipients": None}, headers=admin,
                        timeout=30).json()["settings"]["email_recipients"] == []


def test_settings_are_validated_before_they_are_written(webapp, token):
    bearer = {"Authorization": f"Bearer {token}"}
    ok = requests.put(f"{webapp.url}/settings", headers=bearer, timeout=30,
                      json={"max_events_before_sync": 50, "email_notifications": "all_including_zero_records",
                            "email_recipients": "ops@example.com, billing@example.com"})
    assert ok.status_code == 200, ok.text
    settings = ok.json()["settings"]
    assert settings["max_events_before_sync"] == 50
    assert settings["email_recipients"] == ["ops@example.com", "billing@example.com"]

    refused = {
        "max_events_before_sync": (7, "[1, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500]"),
        "email_notifications": ("sometimes", "all_excluding_zero_records"),
        "max_minutes_between_syncs": (0, "at least 1"),
        "email_recipients": (["not-an-address"], "email addresses"),
        "max_events_befor_sync": (10, "unknown settings"),
    }
    for key, (value, allowed) in refused.items():
        response = requests.put(f"{webapp.url}/settings", json={key: value}, headers=bearer, timeout=30)
        assert response.status_code == 400, (key, response.text)
        assert key in response.json()["detail"] and allowed in response.json()["detail"]
    for raw in (b'{"max_events_before_sync": 50', b"[1]", b'"x"'):
        response = requests.put(f"{webapp.url}/settings", data=raw, timeout=30,
                                headers={**bearer, "Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["detail"]
    # Nothing of the refused changes was written.
    current = requests.get(f"{webapp.url}/settings", headers=bearer, timeout=30).json()
    assert current["settings"] == settings and current["source"] == "variable" and current["error"] is None
    assert current["allowed"]["max_events_before_sync"] == [1, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500]
    # null puts a setting back to its default.
    reset = requests.put(f"{webapp.url}/settings", json={"email_notifications": None}, headers=bearer, timeout=30)
    assert reset.status_code == 200 and reset.json()["settings"]["email_notifications"] == current["defaults"][
        "email_notifications"]
    assert reset.json()["settings"]["max_events_before_sync"] == 50
    # The Variable holds only what was set, as JSON that the sync's own reader accepts.
    stored_text = airflow_python(webapp.env, (
        "import json\n"
        "from airflow.models import Variable\n"
        "print(json.dumps(json.loads(Variable.get('zuora_sync_settings'))))\n"))
    written = json.loads(stored_text)
    assert "email_notifications" not in written and "zuora_time_zone" not in written
    assert written["max_events_before_sync"] == 50
    assert written["email_recipients"] == ["ops@example.com", "billing@example.com"]


def test_a_setting_stored_under_its_old_name_keeps_its_meaning_and_is_stored_under_the_new_one(webapp, token):
    """``lock_lease_hours`` became ``lock_lease_seconds``: a Variable written before still works."""
    bearer = {"Authorization": f"Bearer {token}"}
    read = ("import json\nfrom airflow.models import Variable\n"
            "print(json.dumps(json.loads(Variable.get('zuora_sync_settings', default_var='{}'))))\n")
    before = airflow_python(webapp.env, read)

    def store(text: str) -> None:
        airflow_python(webapp.env, f"from airflow.models import Variable\nVariable.set('zuora_sync_settings', {text!r})\n")

    try:
        store(json.dumps({"lock_lease_hours": 2}))
        assert requests.get(f"{webapp.url}/settings", headers=bearer, timeout=30).json()["settings"][
            "lock_lease_seconds"] == 7200
        changed = requests.put(f"{webapp.url}/settings", json={"max_minutes_between_syncs": 30}, headers=bearer,
                               timeout=30)
        assert changed.status_code == 200 and changed.json()["settings"]["lock_lease_seconds"] == 7200, changed.text
        assert json.loads(airflow_python(webapp.env, read)) == {"lock_lease_seconds": 7200,
                                                                 "max_minutes_between_syncs": 30}
        old_name = requests.put(f"{webapp.url}/settings", json={"lock_lease_hours": 1}, headers=bearer, timeout=30)
        assert old_name.status_code == 200 and old_name.json()["settings"]["lock_lease_seconds"] == 3600
        reset = requests.put(f"{webapp.url}/settings", json={"lock_lease_seconds": None}, headers=bearer, timeout=30)
        assert reset.status_code == 200 and reset.json()["settings"]["lock_lease_seconds"] == 6 * 3600
        short = requests.put(f"{webapp.url}/settings", json={"lock_lease_seconds": 1}, headers=bearer, timeout=30)
        assert short.status_code == 400 and "lock_lease_seconds: must be a whole number of at least 3" in short.text
        assert short.json()["allowed"]["lock_lease_seconds"] == {"minimum": 3, "maximum": 604800}
    finally:
        store(before)


def test_the_openapi_schema_documents_every_route(webapp):
    schema = requests.get(f"{webapp.url}/openapi.json", timeout=10).json()
    assert {"/events", "/status", "/settings"} <= set(schema["paths"])
    events = schema["paths"]["/events"]["post"]
    assert {"200", "202", "400", "401", "413"} <= set(events["responses"])
    assert events["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
    assert "security" not in events
    assert schema["paths"]["/status"]["get"]["security"]  # Airflow's OAuth2 bearer scheme


# --------------------------------------------------------------------------------------------
# The plugin


def test_the_plugin_imports_no_web_stack_and_mounts_the_app_in_airflow(airflow_home, tmp_path):
    """Inside Airflow's own API app: the plugin's mount, ``POST /auth/token`` and the UI cookie."""
    state_db = tmp_path / "state.db"
    env = airflow_env(airflow_home, AIRFLOW_CONN_ZUORA_SYNC_STATE=json.dumps({"conn_type": "sqlite", "host": str(state_db)}),
                      AIRFLOW_CONN_ZUORA_SYNC_WEBHOOK=json.dumps({"conn_type": "http", "extra": {"hmac_secret": SECRET}}))
    # Tasks import every plugin (for macros): the web app must not come with it.
    light = airflow_python(env, (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'plugins')!r})\n"
        "import zuora_sync_plugin\n"
        "plugin = zuora_sync_plugin.ZuoraSyncPlugin\n"
        "print(plugin.name, plugin.fastapi_apps[0]['url_prefix'], 'zuora_sync.webapp.app' in sys.modules)\n"))
    assert light == "zuora_sync /zuora-sync False"

    body, headers = callout("through-airflow-1")
    signed = {**headers, "X-Zuora-Signature": sign_hex(body)}
    result = airflow_python(env, (
        "import json\n"
        "from airflow.api_fastapi.app import create_app\n"
        "from fastapi.testclient import TestClient\n"
        "out = {}\n"
        "with TestClient(create_app()) as client:\n"
        f"    out['anonymous'] = client.get('/zuora-sync/status').status_code\n"
        f"    token = client.post('/auth/token', json={{'username': 'admin', 'password': {ADMIN_PASSWORD!r}}})\n"
        "    token = token.json()['access_token']\n"
        "    out['bearer'] = client.get('/zuora-sync/status', headers={'Authorization': 'Bearer ' + token}).status_code\n"
        "    client.cookies.set('_token', token)\n"
        "    out['cookie'] = client.get('/zuora-sync/settings').status_code\n"
        f"    answer = client.post('/zuora-sync/events', content={body!r}, headers={signed!r})\n"
        "    out['event'] = [answer.status_code, answer.json()['status']]\n"
        f"    out['unsigned'] = client.post('/zuora-sync/events', content={body!r}, headers={headers!r}).status_code\n"
        "    plugins = client.get('/api/v2/plugins').json()['plugins']\n"
        "    out['apps'] = [a for p in plugins for a in p['fastapi_apps']]\n"
        "print(json.dumps(out))\n"), timeout=300)
    out = json.loads(result)
    assert out["anonymous"] == 401 and out["bearer"] == 200 and out["cookie"] == 200
    assert out["event"] == [202, "accepted"] and out["unsigned"] == 401
    assert {"url_prefix": "/zuora-sync", "name": "Zuora sync", "app": "zuora_sync.webapp.LazyASGIApp"} in out["apps"]
    assert "through-airflow-1" in {n for (n,) in sqlite3.connect(state_db).execute(
        "SELECT notification_id FROM zuora_sync_event")}
