"""The web app probed as an attacker and a careless user would (issue 12), over real HTTP.

One app under uvicorn (``webapp_server``), set up as the Airflow API server runs it, with the
SimpleAuthManager and one user of each of its roles (Viewer, User, Op, Admin) whose tokens come
from its own login; callouts signed with the webhook secret. Covered: authorization by Airflow
role on every route; a captured callout replayed under other notification ids; settings typed,
bounded and their body capped; out-of-range filters; and the probes that held when the issue was
filed (SQL injection, path traversal, markup in data, secrets in the log), kept as regressions.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_webapp import SECRET, callout, post, sign_hex, stored
from webapp_server import USERS, WebApp, airflow_python, make_tokens, migrate_airflow_home, start_webapp

from zuora_sync.state import StateStore

#: A rejected record: customer data that only some roles may read.
CUSTOMER_ROW = {"Name": "Acme Customer Ltd", "Zuora__BillToWorkEmail__c": "ceo@acme.example"}
ROLES = ("viewer", "user", "op", "admin")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("security-airflow-home")
    migrate_airflow_home(home)
    return home


@pytest.fixture(scope="module")
def webapp(tmp_path_factory: pytest.TempPathFactory, airflow_home: Path) -> Iterator[WebApp]:
    app = start_webapp(tmp_path_factory.mktemp("security-webapp"), airflow_home,
                       webhook={"conn_type": "http", "extra": {"hmac_secret": SECRET}})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def tokens(airflow_home: Path) -> dict[str, str]:
    """A JWT per user, from the SimpleAuthManager's own login."""
    return make_tokens(airflow_home)


@pytest.fixture(scope="module")
def session_id(webapp: WebApp) -> int:
    """A full sync session with one rejected record."""
    store = StateStore(webapp.state_url)
    sid = store.start_session(session_type="Full", scope="accounts", trigger="manual", dag_id="zuora_full_sync",
                              run_id="manual__security", window_start=None, window_end=None)
    store.add_rejected(sid, "CustomerAccount", [("8a8a0000secret01", "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                                 "Bill-to email is not allowed", CUSTOMER_ROW)])
    store.finish_session(sid)
    return sid


def call(app: WebApp, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, app.url + path, headers={**headers, **kwargs.pop("headers", {})},
                            timeout=60, **kwargs)


def variable_text(app: WebApp) -> str:
    """The stored ``zuora_sync_settings`` Variable, as Airflow reads it ('' when unset)."""
    return airflow_python(app.env, (
        "from airflow.models import Variable\n"
        "print(repr(Variable.get('zuora_sync_settings', default_var='')))\n"))


# --------------------------------------------------------------------------------------------
# 1. Authorization by Airflow role


def test_each_role_gets_what_airflows_auth_manager_grants_it(webapp, tokens, session_id):
    """Viewer: reads status and history, but no settings change and no rejected records (customer
    data); User: also the rejected records; Op and Admin: also the settings."""
    assert set(tokens) == set(USERS) == set(ROLES)
    reads = ["/status", "/settings", "/sessions", f"/sessions/{session_id}", "/pending-events", "/api-usage?days=2"]
    rejected = [f"/sessions/{session_id}/rejected", f"/sessions/{session_id}/rejected.csv"]
    expected_put = {"viewer": 403, "user": 403, "op": 200, "admin": 200}
    expected_rejected = {"viewer": 403, "user": 200, "op": 200, "admin": 200}
    for role in ROLES:
        token = tokens[role]
        for path in reads:
            answer = call(webapp, "GET", path, token)
            assert answer.status_code == 200, (role, path, answer.status_code, answer.text[:300])
        for path in rejected:
            answer = call(webapp, "GET", path, token)
            assert answer.status_code == expected_rejected[role], (role, path, answer.status_code, answer.text[:300])
            if answer.status_code == 403:
                assert answer.json() == {"detail": "Forbidden"}
                assert "Acme" not in answer.text and "8a8a0000secret01" not in answer.text
            else:
                assert "Acme Customer Ltd" in answer.text
        settings = call(webapp, "GET", "/settings", token).json()
        assert settings["can_edit"] is (expected_put[role] == 200), role
        assert settings["can_change_mode"] is (role != "viewer"), role
        # The sync mode: pausing the two DAGs needs edit access to them (User and above). The DAGs are
        # not loaded in this Airflow, so an allowed user hears that instead (nothing paused).
        mode = call(webapp, "PUT", "/mode", token, json={"mode": "Real-time"})
        if role == "viewer":
            assert (mode.status_code, mode.json()) == (403, {"detail": "Forbidden"}), mode.text
        else:
            assert mode.status_code == 409 and "is not loaded in Airflow" in mode.json()["detail"], (role, mode.text)
        page = call(webapp, "GET", "/ui/", token)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), role

    before = variable_text(webapp)
    for role in ("viewer", "user"):
        refused = call(webapp, "PUT", "/settings", tokens[role], json={"max_events_before_sync": 1,
                                                                       "email_recipients": ["attacker@evil.example"]})
        assert refused.status_code == 403, (role, refused.text)
        assert "zuora_sync_settings" in refused.json()["detail"]
    assert variable_text(webapp) == before, "a refused change wrote nothing"
    for n, role in enumerate(("op", "admin"), start=1):
        changed = call(webapp, "PUT", "/settings", tokens[role], json={"max_events_before_sync": [5, 20][n - 1]})
        assert changed.status_code == 200, (role, changed.text)
        assert changed.json()["settings"]["max_events_before_sync"] == [5, 20][n - 1]
    # Without a login at all: 401, as before.
    assert call(webapp, "GET", f"/sessions/{session_id}/rejected.csv").status_code == 401
    assert call(webapp, "PUT", "/settings", json={"max_events_before_sync": 1}).status_code == 401
    assert call(webapp, "PUT", "/mode", json={"mode": "None"}).status_code == 401


def test_the_rejected_records_check_names_the_sessions_dag_not_one_from_the_query(webapp, tokens, session_id):
    """A ``dag_id`` in the query string does not choose which DAG's permissions are checked."""
    answer = call(webapp, "GET", f"/sessions/{session_id}/rejected?dag_id=anything", tokens["viewer"])
    assert answer.status_code == 403
    assert call(webapp, "GET", f"/sessions/{session_id}/rejected?dag_id=~", tokens["user"]).status_code == 200


# --------------------------------------------------------------------------------------------
# 2. Callouts: a replay is not a new event


def test_a_replayed_callout_under_other_notification_ids_is_one_event(webapp):
    """The id of a body that names no notification is bound to the body (its SHA-256), not to the
    unsigned header: the same signed body sent again under other header ids is a duplicate."""
    payload = {"eventType": "AccountUpdated", "baseObject": "Account", "objectId": uuid.uuid4().hex,
               "changeType": "UPDATE"}
    body = json.dumps(payload, separators=(",", ":")).encode()
    before = set(stored(webapp))
    first = post(webapp, body, {"Content-Type": "application/json", "Zuora-Notification-Id": "captured-1"})
    assert first.status_code == 202, first.text
    notification_id = first.json()["notification_id"]
    assert notification_id.startswith("sha256:") and len(notification_id) == 7 + 64
    for replayed_id in ("captured-2", "captured-3", uuid.uuid4().hex):
        again = post(webapp, body, {"Content-Type": "application/json", "Zuora-Notification-Id": replayed_id})
        assert again.status_code == 200, again.text
        assert again.json() == {"status": "duplicate", "notification_id": notification_id}
    assert set(stored(webapp)) - before == {notification_id}
    # A body that names its notification keeps that id; a header that says otherwise is refused.
    named, headers = callout()
    assert post(webapp, named, headers).status_code == 202
    refused = post(webapp, named, {**headers, "Zuora-Notification-Id": "another-id"})
    assert refused.status_code == 400 and "differ" in refused.json()["detail"]


# --------------------------------------------------------------------------------------------
# 3. Settings: typed, bounded, capped


BAD_SETTINGS = [
    ({"max_minutes_between_syncs": 10**10}, "at most 10080"),
    ({"max_minutes_between_syncs": 10081}, "at most 10080"),
    ({"lookback_minutes": 10**30}, "at most"),
    ({"salesforce_api_reserve": 10**30}, "at most"),
    ({"retention_days": 10**30}, "at most"),
    ({"lock_poll_seconds": 10**30}, "at most"),
    ({"trigger_poll_seconds": 10**30}, "at most"),
    ({"cleanup_record_limit": 10**30}, "at most"),
    ({"lookback_minutes": -1}, "at least 0"),
    ({"trigger_poll_seconds": 2.5}, "whole number"),
    ({"retention_days": "90"}, "whole number"),
    ({"staging_url": 123}, "not a URL"),
    ({"staging_url": ["s3://bucket"]}, "not a URL"),
    ({"staging_url": "relative/dir"}, "not a URL"),
    ({"staging_url": "s3://bucket/x\nother"}, "not a URL"),
    ({"max_events_before_sync": True}, "is not allowed"),
    ({"max_events_before_sync": 10.0}, "is not allowed"),
    ({"max_events_before_sync": "10"}, "is not allowed"),
    ({"email_notifications": ["none"]}, "is not allowed"),
    ({"event_source": 1}, "is not allowed"),
    ({"keep_staged_files": "yes"}, "is not allowed"),
    ({"keep_staged_files": 1}, "is not allowed"),
    ({"email_recipients": ["ops@example.com\r\nBcc: attacker@evil.example"]}, "not an email address"),
    ({"email_recipients": ["ops@example.com, attacker@evil.example"]}, "not an email address"),
    ({"email_recipients": ["team: ops@example.com;"]}, "not an email address"),
    ({"email_recipients": ["a@"]}, "not an email address"),
    ({"email_recipients": [42]}, "not an email address"),
    ({"email_recipients": {"to": "ops@example.com"}}, "a list of at most 100"),
    ({"email_recipients": ["ops@example.com"] * 101}, "a list of at most 100"),
    ({"zuora_time_zone": 123}, "not an IANA time zone"),
    ({"zuora_time_zone": "Europe"}, "not an IANA time zone"),        # a directory of the zone database
    ({"zuora_time_zone": "A" * 300}, "not an IANA time zone"),
    ({"zuora_time_zone": "../../etc/passwd"}, "not an IANA time zone"),
    ({"lock_lease_hours": 10**30}, "at most 168"),
]


def test_settings_are_typed_and_bounded_and_nothing_gives_a_500(webapp, tokens):
    token = tokens["admin"]
    before = variable_text(webapp)
    for change, reason in BAD_SETTINGS:
        answer = call(webapp, "PUT", "/settings", token, json=change)
        assert answer.status_code == 400, (change, answer.status_code, answer.text[:300])
        key = next(iter(change))
        assert answer.json()["detail"].startswith(key + ":") and reason in answer.json()["detail"], (change, answer.text)
        assert answer.json()["allowed"]["max_minutes_between_syncs"] == {"minimum": 1, "maximum": 10080}
    assert variable_text(webapp) == before, "nothing refused was written"
    # The bounds themselves, and the address forms RFC 5322 allows, are accepted.
    good = {"max_minutes_between_syncs": 10080, "lookback_minutes": 0, "staging_url": "s3://bucket/zuora-sync",
            "email_recipients": ["ops@example.com", "Billing Team <billing@example.com>"],
            "zuora_time_zone": "Europe/Paris"}
    answer = call(webapp, "PUT", "/settings", token, json=good)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()["settings"][k] for k in good} == good
    reset = call(webapp, "PUT", "/settings", token, json=dict.fromkeys(good))
    assert reset.status_code == 200 and reset.json()["settings"]["staging_url"] is None


def test_the_settings_body_is_capped_and_must_be_one_json_object(webapp, tokens):
    headers = {"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "application/json"}
    big = json.dumps({"email_recipients": ["ops@example.com"] * 5000}).encode()   # ~100 KB
    answer = requests.put(f"{webapp.url}/settings", data=big, headers=headers, timeout=30)
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    answer = requests.put(f"{webapp.url}/settings", data=chunks(), headers=headers, timeout=30)
    assert answer.status_code == 413, answer.text
    for raw, reason in ((b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
                        (b'{"max_events_before_sync": NaN}', "not valid JSON"),
                        (b'{"lookback_minutes": ' + b"9" * 5000 + b"}", "not valid JSON"),
                        (b"\xff{}", "not UTF-8"), (b"", "empty body"), (b"[]", "must be a JSON object")):
        answer = requests.put(f"{webapp.url}/settings", data=raw, headers=headers, timeout=30)
        assert answer.status_code == 400 and reason in answer.json()["detail"], (raw[:40], answer.text[:300])


# --------------------------------------------------------------------------------------------
# 4. Filters: out-of-range dates are a 400, not an OverflowError


@pytest.mark.parametrize("params", [
    {"until": "9999-12-31"},
    {"until": "9999-12-31T23:59:59-01:00"},
    {"since": "0001-01-01T00:00:00+01:00"},
    {"since": "0001-01-01T00:30:00+05:00", "until": "9999-12-31"},
])
def test_out_of_range_dates_in_the_history_filter_are_a_400_with_a_message(webapp, tokens, params):
    answer = call(webapp, "GET", "/sessions", tokens["viewer"], params=params)
    assert answer.status_code == 400, answer.text
    assert "out of range" in answer.json()["detail"] and next(iter(params)) in answer.json()["detail"]


def test_the_widest_dates_that_fit_still_filter(webapp, tokens, session_id):
    answer = call(webapp, "GET", "/sessions", tokens["viewer"], params={"since": "0001-01-01", "until": "9999-12-30"})
    assert answer.status_code == 200 and session_id in [s["id"] for s in answer.json()["sessions"]]


@pytest.mark.parametrize("tz", ["Europe", "A" * 300, "../etc", "\x00"])
def test_a_time_zone_that_is_not_one_is_a_400(webapp, tokens, tz):
    answer = call(webapp, "GET", "/api-usage", tokens["viewer"], params={"tz": tz})
    assert answer.status_code == 400 and "not an IANA time zone" in answer.json()["detail"], answer.text


# --------------------------------------------------------------------------------------------
# The probes that held, kept as regressions


def test_sql_in_filters_ids_and_callouts_is_data_not_sql(webapp, tokens, session_id):
    token = tokens["viewer"]
    for params in ({"type": "Full' OR '1'='1"}, {"status": "Finished'; DROP TABLE zuora_sync_session;--"},
                   {"since": "2025-01-01' OR 1=1--"}):
        answer = call(webapp, "GET", "/sessions", token, params=params)
        assert answer.status_code == 400, (params, answer.text)
    assert call(webapp, "GET", "/sessions/1%20OR%201=1", token).status_code == 400
    assert call(webapp, "GET", "/sessions", token, params={"limit": "1; DELETE FROM zuora_sync_event"}).status_code == 400
    # A notification id full of SQL is stored as it is, once.
    evil = "x'); DELETE FROM zuora_sync_event; --"
    body, headers = callout(evil)
    assert post(webapp, body, headers).status_code == 202
    assert post(webapp, body, headers).json()["status"] == "duplicate"
    with sqlite3.connect(webapp.state_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM zuora_sync_event WHERE notification_id = ?", (evil,)).fetchone() == (1,)
    assert call(webapp, "GET", f"/sessions/{session_id}", token).status_code == 200  # the tables are intact


def test_no_path_reaches_a_file_outside_the_pages_assets(webapp, tokens):
    token = tokens["viewer"]
    for name in ("..%2Fapp.py", "..%2F..%2Fsettings.py", "%2e%2e%2fapp.py", "..%5Capp.py", "index.html",
                 "page.js%00.css", "static%2Fpage.js"):
        answer = call(webapp, "GET", f"/ui/assets/{name}", token)
        assert answer.status_code == 404, (name, answer.status_code)
        assert "import" not in answer.text


def test_markup_in_the_data_is_served_as_json_and_the_page_renders_text_only(webapp, tokens):
    script = "<script>alert(document.cookie)</script>"
    body, headers = callout(f"xss-{uuid.uuid4().hex[:6]}", eventType=script)
    assert post(webapp, body, headers).status_code == 202
    answer = call(webapp, "GET", "/pending-events", tokens["viewer"], params={"limit": 500})
    assert answer.headers["content-type"] == "application/json"
    assert script in [e["event_type"] for e in answer.json()["events"]]
    # The page's script puts data into the document as text only, under a same-origin-only policy.
    source = (Path(__file__).resolve().parents[2] / "include/zuora_sync/webapp/static/page.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    page = call(webapp, "GET", "/ui/", tokens["viewer"])
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_no_secret_or_token_reaches_the_log(webapp, tokens):
    # Refusals and changes are logged; what proves a caller never is.
    body, headers = callout()
    post(webapp, body, headers, signature=sign_hex(body, "a-guessed-secret"))
    call(webapp, "PUT", "/settings", tokens["viewer"], json={"max_events_before_sync": 1})
    call(webapp, "PUT", "/settings", tokens["admin"], json={"max_events_before_sync": 10})
    log = webapp.log()
    assert "max_events_before_sync" in log  # the change was logged (by name) ...
    for secret in (SECRET, "a-guessed-secret", *tokens.values(), *(password for _, password in USERS.values())):
        assert secret not in log  # ... and nothing that grants access


def test_the_session_view_carries_no_rejected_row(webapp, tokens, session_id):
    """What a Viewer can read of a session (counts, details) holds no customer data."""
    answer = call(webapp, "GET", f"/sessions/{session_id}", tokens["viewer"])
    assert answer.status_code == 200 and answer.json()["rejected"] == 1
    assert "Acme" not in answer.text and "ceo@acme" not in answer.text
    assert dt.datetime.fromisoformat(answer.json()["started_at"].replace("Z", "+00:00")).tzinfo is not None
