"""The Zuora Sync page's server side over real HTTP: the page and its assets, the data endpoints
(sync history with filters and paging, one session, rejected records as JSON and CSV, pending
events, API usage with the Salesforce allowance), and the login they all need.

The web app runs under uvicorn in a subprocess, set up as the Airflow API server runs it (see
``webapp_server``); its state store (an SQLite file, then a PostgreSQL database) is filled through ``StateStore``
with a clock of its own, and its ``salesforce_default`` connection points at a Salesforce sandbox
process (for the allowance). One test runs the page inside Airflow's own API app, as the plugin
mounts it. Nothing of ours is mocked.
"""

from __future__ import annotations

import re

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from webapp_server import ADMIN_PASSWORD, WebApp, airflow_env, airflow_python, make_token, migrate_airflow_home, \
    start_webapp

from zuora_sync.state import StateStore
from zuora_sync.webapp.services import AllowanceCache
from zuora_sync.webapp.views import csv_cell, usage_per_day

UTC = dt.UTC
#: "Now" for the sessions the ``history`` fixture records (set again when it runs, not at import:
#: a whole test session may pass between the two).
NOW = dt.datetime.now(UTC).replace(microsecond=0)
DATA_ENDPOINTS = ("/sessions", "/sessions/1", "/sessions/1/rejected", "/sessions/1/rejected.csv",
                  "/pending-events", "/api-usage", "/ui/assets/page.js", "/ui/assets/page.css")


# --------------------------------------------------------------------------------------------
# Fixtures: Airflow home, the web app with a Salesforce sandbox, a filled state store


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow-home")
    migrate_airflow_home(home)
    return home


@pytest.fixture(scope="module")
def token(airflow_home: Path) -> str:
    return make_token(airflow_home)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def webapp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, airflow_home: Path,
           salesforce_sandbox) -> Iterator[WebApp]:
    """The web app, its state store an SQLite file or a database on a real PostgreSQL server."""
    connection = salesforce_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"]
    state_url = request.getfixturevalue("postgres_server").new_database() if request.param == "postgresql" else None
    app = start_webapp(tmp_path_factory.mktemp("page-webapp"), airflow_home, state_url,
                       AIRFLOW_CONN_SALESFORCE_DEFAULT=connection,
                       REQUESTS_CA_BUNDLE=salesforce_sandbox.ca_bundle)
    yield app
    app.stop()


def store_at(app: WebApp, when: dt.datetime) -> StateStore:
    """A store of the web app's database whose clock says ``when``."""
    return StateStore(app.state_url, clock=lambda: when)


def add_session(app: WebApp, *, started: dt.datetime, session_type: str = "Incremental", scope: str = "accounts",
                status: str = "ok", minutes: float = 3, counts: dict[str, dict[str, int]] | None = None,
                api: tuple[int, int] = (0, 0), rejected: dict[str, list[tuple]] | None = None,
                dag_id: str = "zuora_incremental_sync", run_id: str | None = None, trigger: str = "schedule") -> int:
    """Record a session as the sync does: start, counts, API requests, rejected rows, finish."""
    begun = store_at(app, started)
    session_id = begun.start_session(session_type=session_type, scope=scope, trigger=trigger, dag_id=dag_id,
                                     run_id=run_id or f"scheduled__{started.isoformat()}",
                                     window_start=started - dt.timedelta(hours=2), window_end=started)
    for obj, values in (counts or {}).items():
        begun.record_counts(session_id, obj, **values)
    begun.add_api_calls(session_id, zuora=api[0], salesforce=api[1])
    for obj, rows in (rejected or {}).items():
        begun.add_rejected(session_id, obj, rows)
    if status == "running":
        return session_id
    ended = store_at(app, started + dt.timedelta(minutes=minutes))
    ended.finish_session(session_id, error="boom: Zuora said 500" if status == "failure" else None,
                         stopped=status == "stopped")
    return session_id


TRICKY_ROWS = [
    ("8a8aa1b2c3d4e5f60001", "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id",
     {"Zuora__External_Id__c": "8a8aa1b2c3d4e5f60001", "Zuora__Account__c": "001000000000BAD"}),
    ("8a8aa1b2c3d4e5f60002", "STRING_TOO_LONG", 'Name: data value too large: "Acme, Inc. \u2014 \u00e9t\u00e9"\nline two',
     {"Name": "Acme, Inc. \u2014 \u00e9t\u00e9", "Zuora__External_Id__c": "8a8aa1b2c3d4e5f60002"}),
    ("=HYPERLINK(\"http://evil\")", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "-2 is not allowed",
     {"Zuora__External_Id__c": "=HYPERLINK(\"http://evil\")"}),
]


@pytest.fixture(scope="module")
def history(webapp: WebApp) -> dict[str, Any]:
    """Sessions over ten days: types, statuses, counts, API requests, rejected records; and events."""
    global NOW
    NOW = dt.datetime.now(UTC).replace(microsecond=0)
    day = lambda n, hour=9: (NOW - dt.timedelta(days=n)).replace(hour=hour, minute=0, second=0)  # noqa: E731
    ids = {}
    ids["full"] = add_session(webapp, started=day(9), session_type="Full", dag_id="zuora_full_sync",
                              run_id="manual__2025-01-01T00:00:00+00:00", trigger="DagRunType.MANUAL",
                              counts={"CustomerAccount": {"extracted": 30, "upserted": 27, "failed": 3, "created": 20,
                                                          "updated": 7, "unchanged": 0, "removed": 2},
                                      "Subscription": {"extracted": 40, "upserted": 12, "created": 2, "updated": 10,
                                                       "unchanged": 28}},
                              api=(12, 34), rejected={"CustomerAccount": TRICKY_ROWS})
    ids["inc1"] = add_session(webapp, started=day(7), counts={"CustomerAccount": {"extracted": 5, "upserted": 5}}, api=(4, 6))
    ids["inc2"] = add_session(webapp, started=day(7, 15), counts={"CustomerAccount": {"extracted": 2, "upserted": 1,
                                                                             "deleted": 1}}, api=(3, 5))
    ids["failure"] = add_session(webapp, started=day(5), status="failure", api=(1, 0))
    ids["catalog"] = add_session(webapp, started=day(4), session_type="Product Catalog", scope="catalog",
                                 dag_id="zuora_product_catalog_sync", counts={"Product": {"extracted": 9, "upserted": 9}},
                                 api=(2, 3))
    ids["cleanup"] = add_session(webapp, started=day(3), session_type="Sync Clean-up", scope="cleanup",
                                 dag_id="zuora_cleanup", counts={"CustomerAccount": {"deleted": 27}}, api=(0, 8))
    ids["realtime"] = add_session(webapp, started=day(1), session_type="Real-time", trigger="events",
                                  dag_id="zuora_realtime_sync", counts={"CustomerAccount": {"extracted": 3, "upserted": 3}},
                                  api=(2, 4))
    ids["stopped"] = add_session(webapp, started=NOW - dt.timedelta(minutes=30), status="stopped", api=(0, 1))
    ids["running"] = add_session(webapp, started=NOW - dt.timedelta(minutes=2), status="running",
                                 session_type="On-demand", dag_id="zuora_on_demand_sync", run_id="manual/with space#1")
    # Events: one consumed by the real-time session, then three pending, received at different times.
    events = StateStore(webapp.state_url)
    store_at(webapp, NOW - dt.timedelta(hours=3)).add_event("evt-old", "SubscriptionCreated", {"baseObject": "Subscription"})
    events.mark_events_consumed(events.last_event_id(), ids["realtime"])
    for n, minutes_ago in enumerate((30, 5, 12)):
        store_at(webapp, NOW - dt.timedelta(minutes=minutes_ago)).add_event(
            f"evt-{n}", "AccountUpdated", {"notificationId": f"evt-{n}", "baseObject": "Account", "objectId": f"A-{n}",
                                           "changeType": "UPDATE", "eventTimestamp": "2025-01-31T10:00:00Z",
                                           "secretish": "not shown"})
    return ids


def get(app: WebApp, path: str, token: str, **kwargs: Any) -> requests.Response:
    return requests.get(app.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs)


# --------------------------------------------------------------------------------------------
# The login


def _forged_token() -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": "admin", "role": "ADMIN", "iat": now, "nbf": now, "exp": now + 600,
                       "aud": "apache-airflow"}, "another-key-" + "y" * 60, algorithm="HS512")


def test_without_a_login_the_page_redirects_to_the_login_and_the_data_answers_401(webapp, history):
    response = requests.get(webapp.url + "/ui/?tab=history", allow_redirects=False, timeout=30)
    assert response.status_code == 307, response.text
    location = response.headers["location"]
    assert location.startswith("/auth/login?") and "next=%2Fui%2F%3Ftab%3Dhistory" in location, location
    # A forged or expired cookie is no login either.
    forged = requests.get(webapp.url + "/ui/", cookies={"_token": _forged_token()}, allow_redirects=False, timeout=30)
    assert forged.status_code == 307 and forged.headers["location"].startswith("/auth/login")
    for path in DATA_ENDPOINTS:
        anonymous = requests.get(webapp.url + path, timeout=30)
        assert anonymous.status_code == 401, (path, anonymous.status_code, anonymous.text[:200])
        assert "session" not in anonymous.text.lower() or "detail" in anonymous.json()
        bad = requests.get(webapp.url + path, cookies={"_token": _forged_token()}, timeout=30)
        assert bad.status_code in (401, 403), (path, bad.status_code)
        bearer = requests.get(webapp.url + path, headers={"Authorization": "Bearer not.a.token"}, timeout=30)
        assert bearer.status_code in (401, 403), (path, bearer.status_code)


def test_the_page_and_its_assets_are_served_from_the_package_with_a_login(webapp, token):
    page = requests.get(webapp.url + "/ui/", cookies={"_token": token}, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="assets/page.js"></script>' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'self'" in policy
    static = Path(__file__).resolve().parents[2] / "include/zuora_sync/webapp/static"
    modules = sorted(p.name for p in static.glob("*.js"))
    assert len(modules) > 1  # page.js imports the others, relative to it
    imported = {m for name in modules for m in re.findall(r'from "\./([a-z]+\.js)"|import "\./([a-z]+\.js)"',
                                                       (static / name).read_text()) for m in m if m}
    assert imported <= set(modules) and imported | {"page.js"} == set(modules)  # each module served is used
    for name, media in [(m, "text/javascript") for m in modules] + [("page.css", "text/css"), ("icon.svg", "image/svg+xml")]:
        asset = requests.get(f"{webapp.url}/ui/assets/{name}", cookies={"_token": token}, timeout=30)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media), name
        assert asset.content == (Path(__file__).resolve().parents[2] / "include/zuora_sync/webapp/static" / name).read_bytes()
        again = requests.get(f"{webapp.url}/ui/assets/{name}", cookies={"_token": token}, timeout=30,
                             headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and not again.content
    assert requests.get(f"{webapp.url}/ui/assets/..%2Fapp.py", cookies={"_token": token}, timeout=30).status_code == 404
    assert requests.get(f"{webapp.url}/ui/assets/index.html", cookies={"_token": token}, timeout=30).status_code == 404
    bare = requests.get(webapp.url + "/ui", cookies={"_token": token}, allow_redirects=False, timeout=30)
    assert bare.status_code == 307 and bare.headers["location"] == "/ui/"


# --------------------------------------------------------------------------------------------
# Sync history


def ids_of(answer: requests.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()["sessions"]]


def test_sessions_newest_first_with_counts_api_requests_and_the_dag_run(webapp, token, history):
    answer = get(webapp, "/sessions", token)
    body = answer.json()
    order = ["running", "stopped", "realtime", "cleanup", "catalog", "failure", "inc2", "inc1", "full"]
    assert ids_of(answer) == [history[name] for name in order]
    assert body["total"] == 9 and body["limit"] == 25 and body["offset"] == 0
    assert "Sync Clean-up" in body["statuses"] and "Finished with Errors" in body["statuses"]
    sessions = {s["id"]: s for s in body["sessions"]}
    full = sessions[history["full"]]
    # The sync records the run type's str(); the page says it in words.
    assert full["type"] == "Full" and full["trigger"] == "manual" and full["status"] == "Finished with Errors"
    assert sessions[history["realtime"]]["trigger"] == "events"
    # Rows compared with their hashes: created, updated, unchanged (not sent), removed (issue 14).
    assert full["objects"]["CustomerAccount"] == {"extracted": 30, "upserted": 27, "deleted": 0, "failed": 3,
                                                  "created": 20, "updated": 7, "unchanged": 0, "removed": 2}
    assert full["totals"] == {"extracted": 70, "upserted": 39, "deleted": 0, "failed": 3,
                              "created": 22, "updated": 17, "unchanged": 28, "removed": 2}
    assert full["rejected"] == 3 and full["api_calls"] == {"zuora": 12, "salesforce": 34}
    assert full["duration_seconds"] == 180.0 and full["ended_at"].endswith("Z")
    assert full["dag_run_path"] == "dags/zuora_full_sync/runs/manual__2025-01-01T00%3A00%3A00%2B00%3A00"
    running = sessions[history["running"]]
    assert running["status"] == "Running" and running["ended_at"] is None and 100 <= running["duration_seconds"] <= 400
    assert running["dag_run_path"] == "dags/zuora_on_demand_sync/runs/manual%2Fwith%20space%231"
    cleanup = sessions[history["cleanup"]]
    assert cleanup["display_status"] == "Sync Clean-up" and cleanup["status"] == "Finished"
    assert sessions[history["failure"]]["error"] == "boom: Zuora said 500"
    assert "details" not in full  # the list stays light


def test_sessions_filtered_by_date_type_and_status_and_paged(webapp, token, history):
    day = lambda n: (NOW - dt.timedelta(days=n)).date().isoformat()  # noqa: E731
    # Dates: ``until`` is a whole day.
    assert ids_of(get(webapp, "/sessions", token, params={"since": day(7), "until": day(5)})) == [
        history["failure"], history["inc2"], history["inc1"]]
    # An instant with an offset.
    since = ((NOW - dt.timedelta(days=4)).replace(hour=8, minute=0, second=0)   # an hour before the catalog's
             .astimezone(ZoneInfo("America/Los_Angeles")).isoformat())
    assert history["catalog"] in ids_of(get(webapp, "/sessions", token, params={"since": since}))
    assert history["failure"] not in ids_of(get(webapp, "/sessions", token, params={"since": since}))
    # Types (repeatable) and statuses.
    assert ids_of(get(webapp, "/sessions", token, params={"type": "Incremental"})) == [
        history["stopped"], history["failure"], history["inc2"], history["inc1"]]
    assert ids_of(get(webapp, "/sessions", token, params=[("type", "Full"), ("type", "Real-time")])) == [
        history["realtime"], history["full"]]
    assert ids_of(get(webapp, "/sessions", token, params={"status": "Failure"})) == [history["failure"]]
    assert ids_of(get(webapp, "/sessions", token, params={"status": "Finished with Errors"})) == [history["full"]]
    finished = ids_of(get(webapp, "/sessions", token, params={"status": "Finished"}))
    assert history["cleanup"] not in finished and history["inc1"] in finished   # a cleanup shows as Sync Clean-up
    assert ids_of(get(webapp, "/sessions", token, params={"status": "Sync Clean-up"})) == [history["cleanup"]]
    assert ids_of(get(webapp, "/sessions", token, params={"status": "Sync Clean-up", "type": "Full"})) == []
    assert ids_of(get(webapp, "/sessions", token, params={"status": "Finished", "type": "Incremental",
                                                         "since": day(7), "until": day(7)})) == [
        history["inc2"], history["inc1"]]
    # Paging: page and total agree.
    first = get(webapp, "/sessions", token, params={"limit": 4}).json()
    second = get(webapp, "/sessions", token, params={"limit": 4, "offset": 4}).json()
    third = get(webapp, "/sessions", token, params={"limit": 4, "offset": 8}).json()
    assert first["total"] == second["total"] == third["total"] == 9
    pages = [s["id"] for page in (first, second, third) for s in page["sessions"]]
    assert pages == ids_of(get(webapp, "/sessions", token)) and len(third["sessions"]) == 1


@pytest.mark.parametrize("params, reason, allowed_key", [
    ({"type": "Weekly"}, "not a session type", "type"),
    ({"status": "Done"}, "not a session status", "status"),
    ({"since": "yesterday"}, "not an ISO 8601 date", None),
    ({"until": "2025-13-01"}, "not an ISO 8601 date", None),
])
def test_wrong_filters_are_refused_with_a_reason(webapp, token, history, params, reason, allowed_key):
    answer = get(webapp, "/sessions", token, params=params)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["detail"]
    if allowed_key:
        assert answer.json()["allowed"][allowed_key]
    assert get(webapp, "/sessions", token, params={"limit": 0}).status_code == 400
    assert get(webapp, "/sessions", token, params={"limit": 501}).status_code == 400


def test_one_session_with_its_counts_and_details(webapp, token, history):
    store = StateStore(webapp.state_url)
    store.add_details(history["cleanup"], records_to_remove={"CustomerAccount": 27}, lookups_at_risk=[])
    answer = get(webapp, f"/sessions/{history['cleanup']}", token)
    assert answer.status_code == 200
    body = answer.json()
    assert body["details"] == {"records_to_remove": {"CustomerAccount": 27}, "lookups_at_risk": []}
    assert body["objects"] == {"CustomerAccount": {"extracted": 0, "upserted": 0, "deleted": 27, "failed": 0,
                                                   "created": 0, "updated": 0, "unchanged": 0, "removed": 0}}
    assert body["api_calls"] == {"zuora": 0, "salesforce": 8} and body["display_status"] == "Sync Clean-up"
    assert get(webapp, "/sessions/999999", token).status_code == 404
    assert get(webapp, "/sessions/999999/rejected", token).status_code == 404
    assert get(webapp, "/sessions/999999/rejected.csv", token).status_code == 404
    assert get(webapp, "/sessions/not-a-number", token).status_code == 400


# --------------------------------------------------------------------------------------------
# Rejected records


def test_rejected_records_as_json_pages(webapp, token, history):
    stored = list(StateStore(webapp.state_url).rejected_for_session(history["full"]))
    answer = get(webapp, f"/sessions/{history['full']}/rejected", token, params={"limit": 2})
    body = answer.json()
    assert body["total"] == 3 and len(body["rows"]) == 2
    rest = get(webapp, f"/sessions/{history['full']}/rejected", token, params={"limit": 2, "offset": 2}).json()
    rows = body["rows"] + rest["rows"]
    assert [r["external_id"] for r in rows] == [r["external_id"] for r in stored]
    assert [(r["error_code"], r["message"]) for r in rows] == [(r["error_code"], r["message"]) for r in stored]
    assert rows[0]["object"] == "CustomerAccount" and rows[0]["salesforce_object"] == "Zuora__CustomerAccount__c"
    assert rows[0]["record"] == TRICKY_ROWS[0][3] and rows[0]["resolved_at"] is None
    assert get(webapp, f"/sessions/{history['inc1']}/rejected", token).json() == {
        "session_id": history["inc1"], "total": 0, "limit": 50, "offset": 0, "rows": []}


def test_rejected_records_download_as_csv(webapp, token, history):
    store = StateStore(webapp.state_url)
    store.resolve_rejected("CustomerAccount", ["8a8aa1b2c3d4e5f60001"], history["inc1"])
    answer = get(webapp, f"/sessions/{history['full']}/rejected.csv", token)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="zuora-sync-session-{history["full"]}-rejected.csv"')
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8"), newline="")))
    stored = list(store.rejected_for_session(history["full"]))
    assert len(rows) == len(stored) == 3
    assert list(rows[0]) == ["session_id", "object", "salesforce_object", "external_id", "error_code", "message",
                             "rejected_at", "resolved_at", "resolved_by_session", "record"]
    for row, record in zip(rows, stored, strict=True):
        assert row["session_id"] == str(history["full"]) and row["object"] == "CustomerAccount"
        assert row["salesforce_object"] == "Zuora__CustomerAccount__c"
        assert row["external_id"] == csv_cell(record["external_id"])
        assert row["error_code"] == record["error_code"]
        assert row["message"] == csv_cell(record["message"])
        assert json.loads(row["record"]) == record["row"]
    # Commas, quotes, a newline and non-ASCII text survive; a cell that a spreadsheet would run as
    # a formula does not start with "=" (or "-") any more.
    assert rows[1]["message"] == TRICKY_ROWS[1][2]
    assert rows[2]["external_id"] == "'" + TRICKY_ROWS[2][0] and rows[2]["message"] == "'-2 is not allowed"
    assert rows[0]["resolved_by_session"] == str(history["inc1"]) and rows[0]["resolved_at"].endswith("Z")
    assert rows[1]["resolved_at"] == ""
    empty = get(webapp, f"/sessions/{history['inc1']}/rejected.csv", token)
    assert empty.status_code == 200 and empty.text.strip() == ",".join(rows[0].keys())


def test_a_large_rejected_download_streams_every_row(webapp, token):
    rows = [(f"Z{n:06d}", "REQUIRED_FIELD_MISSING", f"Required fields are missing: [Name], row {n}", {"n": n})
            for n in range(2500)]
    session_id = add_session(webapp, started=NOW - dt.timedelta(days=40), rejected={"Subscription": rows})
    answer = get(webapp, f"/sessions/{session_id}/rejected.csv", token)
    parsed = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    assert [r["external_id"] for r in parsed] == [r[0] for r in rows]
    assert parsed[-1]["message"] == "Required fields are missing: [Name], row 2499"
    assert parsed[0]["salesforce_object"] == "Zuora__Subscription__c"


# --------------------------------------------------------------------------------------------
# Pending events and API usage


def test_pending_events_newest_first(webapp, token, history):
    answer = get(webapp, "/pending-events", token)
    body = answer.json()
    assert body["total"] == 3
    assert [e["notification_id"] for e in body["events"]] == ["evt-1", "evt-2", "evt-0"]   # 5, 12, 30 minutes ago
    first = body["events"][0]
    assert first == {"id": first["id"], "notification_id": "evt-1", "event_type": "AccountUpdated", "object": "Account",
                     "object_id": "A-1", "change_type": "UPDATE", "event_timestamp": "2025-01-31T10:00:00Z",
                     "received_at": first["received_at"]}
    assert "not shown" not in answer.text
    page = get(webapp, "/pending-events", token, params={"limit": 1, "offset": 1}).json()
    assert [e["notification_id"] for e in page["events"]] == ["evt-2"] and page["total"] == 3


def test_api_usage_per_day_and_the_salesforce_allowance(webapp, token, history, salesforce_sandbox):
    salesforce_sandbox.admin("POST", "limits", {"daily_api_requests": 15000, "used": 1234})
    try:
        answer = get(webapp, "/api-usage", token, params={"days": 12, "tz": "UTC"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["timezone"] == "UTC" and len(body["days"]) == 12
        assert body["days"][-1]["date"] == NOW.date().isoformat()
        per_day = {d["date"]: d for d in body["days"]}
        # Every session above started at 09:00 or 15:00 UTC on its day (the running one: now).
        first = NOW.date() - dt.timedelta(days=11)
        sessions, _ = StateStore(webapp.state_url).search_sessions(
            limit=100, since=dt.datetime(first.year, first.month, first.day, tzinfo=UTC))
        expected: dict[str, list[int]] = {}
        for s in sessions:
            totals = expected.setdefault(s["started_at"].date().isoformat(), [0, 0, 0])
            totals[0] += s["api_calls"]["salesforce"]
            totals[1] += s["api_calls"]["zuora"]
            totals[2] += 1
        for date, (salesforce, zuora, count) in expected.items():
            assert (per_day[date]["salesforce"], per_day[date]["zuora"], per_day[date]["sessions"]) == (
                salesforce, zuora, count), date
        full_day = (NOW - dt.timedelta(days=9)).date().isoformat()
        assert per_day[full_day]["salesforce"] == 34
        assert sum(d["sessions"] for d in body["days"]) == len(sessions) == 9
        # The allowance, read from the org's /limits (which counts that read too).
        assert body["allowance_error"] is None, body
        allowance = body["allowance"]
        assert allowance["max"] == 15000 and allowance["used"] == 1235 and allowance["remaining"] == 15000 - 1235
        assert salesforce_sandbox.admin("GET", "limits")["used"] == 1235
        assert body["reserve"] == 500
        # Read again within ten minutes: the cached value, no further API request.
        assert get(webapp, "/api-usage", token).json()["allowance"] == allowance
        assert salesforce_sandbox.admin("GET", "limits")["used"] == 1235
    finally:
        salesforce_sandbox.admin("POST", "limits", {"daily_api_requests": 100_000, "used": 0})
    assert get(webapp, "/api-usage", token, params={"tz": "Mars/Olympus"}).status_code == 400
    assert get(webapp, "/api-usage", token, params={"days": 0}).status_code == 400


def test_api_usage_days_follow_the_viewers_time_zone():
    tz = ZoneInfo("Pacific/Auckland")    # UTC+12/13: 20:00 UTC is the next day there
    today = dt.datetime(2025, 1, 10, 12, tzinfo=tz).date()
    rows = [{"started_at": dt.datetime(2025, 1, 8, 20, tzinfo=UTC), "salesforce": 5, "zuora": 1},
            {"started_at": dt.datetime(2025, 1, 9, 1, tzinfo=UTC), "salesforce": 7, "zuora": 2},
            {"started_at": dt.datetime(2024, 12, 1, tzinfo=UTC), "salesforce": 100, "zuora": 100}]
    days = usage_per_day(rows, 3, tz, today)
    assert days == [{"date": "2025-01-08", "salesforce": 0, "zuora": 0, "sessions": 0},
                    {"date": "2025-01-09", "salesforce": 12, "zuora": 3, "sessions": 2},
                    {"date": "2025-01-10", "salesforce": 0, "zuora": 0, "sessions": 0}]


def test_the_allowance_is_read_at_most_once_per_period_and_a_slow_read_does_not_hold_the_page():
    import threading

    clock = [0.0]
    calls = []
    release = threading.Event()

    def reader() -> dict[str, Any]:
        calls.append(clock[0])
        if len(calls) == 2:
            raise RuntimeError("connection refused")
        if len(calls) == 3:
            release.wait(10)
        return {"max": 100, "remaining": 90 - len(calls), "used": 10 + len(calls)}

    cache = AllowanceCache(reader, ttl=600, retry=60, wait=0.3, clock=lambda: clock[0])
    first = cache.get()
    assert first["allowance"]["max"] == 100 and first["allowance"]["used"] == 11 and first["allowance_error"] is None
    clock[0] = 599
    assert cache.get()["allowance"]["used"] == 11 and len(calls) == 1
    clock[0] = 601                       # stale: read again; this read fails
    failed = cache.get()
    assert len(calls) == 2 and failed["allowance"]["used"] == 11 and "could not be read" in failed["allowance_error"]
    clock[0] = 640                       # within the retry pause: no read
    assert "could not be read" in cache.get()["allowance_error"] and len(calls) == 2
    clock[0] = 662                       # a slow read: the request answers after `wait`, with what is known
    started = time.monotonic()
    slow = cache.get()
    assert time.monotonic() - started < 3 and len(calls) == 3 and slow["allowance"]["used"] == 11
    release.set()
    deadline = time.monotonic() + 5
    while cache.get()["allowance"]["used"] != 13 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get()["allowance"]["used"] == 13 and cache.get()["allowance_error"] is None


def test_without_a_salesforce_connection_the_usage_says_why_the_allowance_is_missing(tmp_path, airflow_home, token):
    app = start_webapp(tmp_path / "no-salesforce", airflow_home)
    try:
        answer = requests.get(app.url + "/api-usage", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["allowance"] is None and "could not be read" in body["allowance_error"]
        assert all(d["salesforce"] == 0 for d in body["days"])
    finally:
        app.stop()


# --------------------------------------------------------------------------------------------
# Inside Airflow's API app


def test_the_plugin_shows_the_page_in_airflows_navigation(airflow_home, tmp_path):
    """Airflow's own app: the external view is listed, the page redirects to Airflow's login and,
    logged in (the UI's cookie), is served with its assets and data under /zuora-sync."""
    env = airflow_env(airflow_home, AIRFLOW_CONN_ZUORA_SYNC_STATE=json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "state.db")}))
    result = airflow_python(env, (
        "import json\n"
        "from airflow.api_fastapi.app import create_app\n"
        "from fastapi.testclient import TestClient\n"
        "out = {}\n"
        "with TestClient(create_app()) as client:\n"
        "    anonymous = client.get('/zuora-sync/ui/', follow_redirects=False)\n"
        "    out['anonymous'] = [anonymous.status_code, anonymous.headers.get('location')]\n"
        "    out['anonymous_data'] = client.get('/zuora-sync/sessions').status_code\n"
        f"    token = client.post('/auth/token', json={{'username': 'admin', 'password': {ADMIN_PASSWORD!r}}})\n"
        "    client.cookies.set('_token', token.json()['access_token'])\n"
        "    page = client.get('/zuora-sync/ui/')\n"
        "    out['page'] = [page.status_code, 'assets/page.js' in page.text]\n"
        "    out['icon'] = client.get('/zuora-sync/ui/assets/icon.svg').status_code\n"
        "    out['sessions'] = client.get('/zuora-sync/sessions').json()['total']\n"
        "    plugins = client.get('/api/v2/plugins').json()['plugins']\n"
        "    out['views'] = [v for p in plugins for v in p['external_views']]\n"
        "print(json.dumps(out))\n"), timeout=300)
    out = json.loads(result)
    assert out["anonymous"] == [307, "/auth/login?next=%2Fzuora-sync%2Fui%2F"], out
    assert out["anonymous_data"] == 401
    assert out["page"] == [200, True] and out["icon"] == 200 and out["sessions"] == 0
    assert {"name": "Zuora Sync", "href": "zuora-sync/ui/", "url_route": "zuora-sync", "destination": "nav",
            "nav_top_level": True, "icon": "zuora-sync/ui/assets/icon.svg", "category": None,
            "icon_dark_mode": None} in out["views"], out["views"]
