"""ZuoraHook against a real Zuora sandbox process: OAuth, retries, Data Query, ZOQL, secrecy.

Every test speaks real HTTP to ``zuora-sync-sandbox zuora`` started on a free port with a small
generated tenant; faults come from the sandbox's admin API, and results are checked against a
read-only look at the tenant's own SQLite file. A tiny recording server (at the end) checks what
goes over the wire where the sandbox cannot tell: the token request's headers, the entity header,
no bearer token on the presigned download.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import sqlite3
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest
from conftest import ZuoraSandbox, start_zuora_sandbox
from zuora_sync.hooks.zuora import DataQueryFailed, ZuoraApiError, ZuoraHook

ACCOUNT_COLUMNS = ("id", "accountnumber", "name", "status", "crmid", "parentid", "balance", "billcycleday",
                   "autopay", "updateddate")
PACIFIC = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> ZuoraSandbox:
    sandbox = start_zuora_sandbox(tmp_path_factory.mktemp("zuora-hook") / "tenant", accounts=50)
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def zuora_conn(sandbox, monkeypatch):
    """``zuora_default`` points at the sandbox; faults are cleared after each test."""
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", sandbox.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    yield
    sandbox.admin("DELETE", "faults")
    sandbox.admin("DELETE", "dataquery")


def fast_hook(**kwargs) -> ZuoraHook:
    """A hook with short waits, so retry tests take fractions of a second."""
    options = {"backoff_base": 0.05, "backoff_max": 0.5, "poll_interval": 0.05, "max_poll_interval": 0.5, **kwargs}
    return ZuoraHook(**options)


def tenant_db(sandbox: ZuoraSandbox) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{sandbox.data_dir / 'tenant.sqlite3'}?mode=ro", uri=True)


def live_rows(sandbox: ZuoraSandbox, table: str, columns: tuple[str, ...]) -> dict[str, dict]:
    with tenant_db(sandbox) as db:
        rows = db.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE deleted = 0").fetchall()
    return {row[0]: dict(zip(columns, row)) for row in rows}


def token_count(sandbox: ZuoraSandbox) -> int:
    """Tokens the sandbox has issued so far (it keeps them in its store until they expire)."""
    with tenant_db(sandbox) as db:
        return db.execute("SELECT COUNT(*) FROM _oauth_tokens").fetchone()[0]


def live_tokens(sandbox: ZuoraSandbox) -> set[str]:
    """The tokens the sandbox would accept now (expired ones are purged when the next is issued)."""
    with tenant_db(sandbox) as db:
        return {row[0] for row in db.execute("SELECT token FROM _oauth_tokens WHERE expires > ?", (time.time(),))}


def as_shown(stored: str | None) -> str | None:
    """A stored UTC timestamp as Data Query shows it: in the tenant's (Pacific) time zone."""
    if stored is None:
        return None
    moment = dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC).astimezone(PACIFIC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# -- Data Query -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["GZIP", "NONE"])
def test_data_query_yields_the_tenants_rows(sandbox, compression):
    hook = fast_hook()
    rows = list(hook.data_query(f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM account", compression=compression))

    expected = live_rows(sandbox, "account", ACCOUNT_COLUMNS)
    assert len(rows) == len(expected) == 50
    got = {row["id"]: row for row in rows}
    assert got.keys() == expected.keys()
    for record_id, want in expected.items():
        row = got[record_id]
        assert set(row) == set(ACCOUNT_COLUMNS)
        for column in ("accountnumber", "name", "status", "crmid", "parentid", "billcycleday"):
            assert row[column] == want[column], (record_id, column)
        assert row["balance"] == Decimal(repr(want["balance"]))  # decimals arrive exact, as Decimal
        assert row["autopay"] is bool(want["autopay"])
        assert row["updateddate"] == as_shown(want["updateddate"])


def test_data_query_streams_a_bigger_table_and_deleted_rows(sandbox):
    hook = fast_hook()
    ids = [row["id"] for row in hook.data_query("SELECT id FROM rateplancharge")]
    assert sorted(ids) == sorted(live_rows(sandbox, "rateplancharge", ("id",)))
    assert len(ids) > 200

    payment = next(iter(live_rows(sandbox, "payment", ("id",))))
    answer = hook.request("POST", "/v1/action/delete", json={"type": "Payment", "ids": [payment]}).json()
    assert answer[0]["success"] is True

    assert [row["id"] for row in hook.data_query("SELECT id FROM payment", read_deleted=True)] == [payment]
    assert payment not in {row["id"] for row in hook.data_query("SELECT id FROM payment")}
    flagged = {row["id"]: row["deleted"] for row in hook.data_query("SELECT id, deleted FROM payment")}
    assert flagged[payment] is True and sum(flagged.values()) == 1


def test_one_data_query_costs_a_handful_of_requests(sandbox):
    hook = ZuoraHook()  # the default polling: 0.5 s, then doubling
    rows = sum(1 for _ in hook.data_query("SELECT * FROM rateplancharge"))
    assert rows == len(live_rows(sandbox, "rateplancharge", ("id",)))
    # token + submit + polls + download: at most 3 polls for a job that takes well under a second
    assert 4 <= hook.api_requests <= 6, hook.api_requests


def test_the_pieces_compose_and_an_expired_result_url_is_renewed(sandbox):
    sandbox.admin("POST", "dataquery", {"url_ttl_seconds": 1})
    hook = fast_hook()
    job_id = hook.submit_data_query("SELECT id FROM account", compression="NONE")
    job = hook.wait_for_data_query(job_id)
    assert job["queryStatus"] == "completed" and job["outputRows"] == 50
    time.sleep(2.2)  # the presigned URL (1 s, second resolution) has expired: S3 answers 403
    sandbox.admin("POST", "dataquery", {"url_ttl_seconds": 3600})  # the renewed URL lasts
    before = hook.api_requests
    rows = list(hook.stream_data_query(job))
    assert len(rows) == 50
    assert hook.api_requests - before == 3  # refused download, fresh job, download


def test_a_failed_job_raises_with_zuoras_message(sandbox):
    sandbox.admin("POST", "dataquery", {"fail_next": "Query exceeded the maximum time allowed"})
    with pytest.raises(DataQueryFailed) as caught:
        list(fast_hook().data_query("SELECT id FROM account"))
    error = caught.value
    assert error.query_status == "failed" and error.job_id
    assert "Query exceeded the maximum time allowed" in str(error) and error.job_id in str(error)


def test_bad_sql_fails_the_job_with_trinos_words():
    with pytest.raises(DataQueryFailed, match=r"line 1:\d+: .*nosuchcolumn"):
        list(fast_hook().data_query("SELECT nosuchcolumn FROM account"))


@pytest.mark.parametrize("compression", ["GZIP", "NONE"])
def test_a_truncated_result_file_raises(sandbox, compression):
    sandbox.admin("POST", "dataquery", {"truncate_next": True})
    rows: list[dict] = []
    with pytest.raises(DataQueryFailed) as caught:
        rows.extend(fast_hook().data_query("SELECT id, name, notes FROM account", compression=compression))
    assert len(rows) < 50
    assert caught.value.job_id and caught.value.query_status == "completed"
    assert "truncated" in str(caught.value) or "incomplete" in str(caught.value) or "not JSON" in str(caught.value)
    # The next run (what the task's retry does) gets the whole result.
    assert len(list(fast_hook().data_query("SELECT id FROM account", compression=compression))) == 50


def test_submit_refuses_a_compression_that_cannot_stream():
    hook = fast_hook()
    with pytest.raises(ValueError, match="ZIP"):
        hook.submit_data_query("SELECT id FROM account", compression="ZIP")
    assert hook.api_requests == 0


# -- OAuth ------------------------------------------------------------------------------------------------


def test_no_network_until_used(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ZUORA_DEFAULT")
    hook = ZuoraHook("no_such_connection")
    assert hook.api_requests == 0 and hook.conn_type == "zuora" and hook.default_conn_name == "zuora_default"


def test_the_token_is_fetched_once_and_reused(sandbox):
    tokens = token_count(sandbox)
    hook = fast_hook()
    for _ in range(3):
        assert list(hook.zoql("select Id from Product"))
    assert token_count(sandbox) == tokens + 1
    assert hook.api_requests == 4  # one token, three queries


def test_reauthenticates_after_every_token_expired(sandbox):
    hook = fast_hook()
    list(hook.zoql("select Id from Product"))
    old = live_tokens(sandbox)
    sandbox.admin("POST", "tokens/expire")
    assert live_tokens(sandbox) == set()
    before = hook.api_requests
    assert list(hook.zoql("select Id from Product"))
    new = live_tokens(sandbox)
    assert len(new) == 1 and not new & old
    assert hook.api_requests - before == 3  # 401, new token, the retried query


def test_reauthenticates_after_a_token_expiry_fault_mid_data_query(sandbox):
    hook = fast_hook()
    sandbox.admin("POST", "faults", {"kind": "token_expiry", "path": "^/query/jobs/", "count": 1})
    assert len(list(hook.data_query("SELECT id FROM account"))) == 50
    assert sandbox.admin("GET", "faults") == []


def test_a_second_401_in_a_row_is_an_error(sandbox):
    sandbox.admin("POST", "faults", {"kind": "token_expiry", "path": "^/v1/action/query$", "count": 2})
    with pytest.raises(ZuoraApiError) as caught:
        list(fast_hook().zoql("select Id from Product"))
    assert caught.value.status == 401 and caught.value.message == "Authentication error"


def test_bad_credentials_fail_clearly(sandbox, monkeypatch):
    conn = json.loads(sandbox.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    conn["password"] = "definitely-Wrong-Secret-42"
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", json.dumps(conn))
    hook = fast_hook()
    with pytest.raises(ZuoraApiError) as caught:
        hook.request("GET", "/query/jobs")
    assert caught.value.status == 401 and "Invalid client id or client secret" in str(caught.value)
    assert "definitely-Wrong-Secret-42" not in str(caught.value)
    assert hook.api_requests == 1  # a refused token is not retried
    ok, message = fast_hook().test_connection()
    assert not ok and "401" in message and "definitely-Wrong-Secret-42" not in message


def test_test_connection(sandbox):
    ok, message = ZuoraHook().test_connection()
    assert ok and sandbox.url in message


# -- the Zuora connection type (Admin -> Connections) ------------------------------------------------------


def test_the_zuora_connection_type_is_registered():
    """Airflow's providers manager finds the type through the package's entry point, and the API
    server's connection form metadata (what the UI's form is built from) has its fields."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "zuora-sync" in manager.providers
    hook = manager.hooks["zuora"]
    assert (hook.hook_class_name, hook.hook_name, hook.connection_id_attribute_name, hook.connection_testable) == (
        "zuora_sync.hooks.zuora.ZuoraHook", "Zuora", "zuora_conn_id", True)
    form = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "zuora")
    assert form.hook_name == "Zuora"
    assert form.standard_fields.host.title == "REST base URL" and form.standard_fields.port.hidden
    assert form.standard_fields.login.title == "OAuth client ID"
    assert form.standard_fields.password.title == "OAuth client secret"
    assert set(form.extra_fields) == {"entity_id", "timeout", "poll_interval"}


def test_the_connection_forms_test_button(sandbox, monkeypatch):
    """What ``POST /api/v2/connections/test`` (the form's Test button) does: a ``Connection`` of type
    zuora, exported as a URI under a transient id, tested through the hook its type names."""
    from airflow.models.connection import Connection

    stored = json.loads(sandbox.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    assert stored["conn_type"] == "zuora"  # the sandbox writes the new type

    def test(password: str) -> tuple[bool, str]:
        conn = Connection(conn_id="transient_zuora_test", conn_type="zuora", host=stored["host"],
                          login=stored["login"], password=password, extra=json.dumps(stored["extra"]))
        monkeypatch.setenv("AIRFLOW_CONN_TRANSIENT_ZUORA_TEST", conn.get_uri())
        return conn.test_connection()

    ok, message = test(stored["password"])
    assert ok and message == f"Connected to Zuora at {sandbox.url}"
    wrong = "definitely-Wrong-Secret-42/+="
    ok, message = test(wrong)
    assert not ok
    assert message.startswith(f"Zuora at {sandbox.url}: Zuora API error 401"), message
    assert "Invalid client id or client secret" in message and wrong not in message


# -- retries ----------------------------------------------------------------------------------------------


def test_rate_limit_waits_for_retry_after(sandbox):
    sandbox.admin("POST", "faults", {"kind": "rate_limit", "path": "^/v1/action/query$", "count": 1,
                                     "retry_after": 1})
    hook = fast_hook()
    started = time.monotonic()
    assert list(hook.zoql("select Id from Product"))
    assert time.monotonic() - started >= 1.0
    assert hook.api_requests == 3  # token, 429, retry


def test_a_retry_after_beyond_the_limit_raises_at_once(sandbox):
    sandbox.admin("POST", "faults", {"kind": "concurrency_limit", "path": "^/v1/action/query$", "count": 1})
    started = time.monotonic()
    with pytest.raises(ZuoraApiError) as caught:
        list(fast_hook(max_retry_after=30).zoql("select Id from Product"))
    assert time.monotonic() - started < 5
    assert caught.value.status == 429 and caught.value.code == 50000070 and "Retry-After 120" in str(caught.value)


def test_server_errors_are_retried(sandbox):
    sandbox.admin("POST", "faults", [
        {"kind": "status", "status": 503, "path": "^/query/jobs$", "count": 2},
        {"kind": "status", "status": 500, "path": "^/query/jobs/", "count": 1},
        {"kind": "status", "status": 502, "path": "^/oauth/token$", "count": 1},
    ])
    hook = fast_hook()
    assert len(list(hook.data_query("SELECT id FROM account"))) == 50
    assert sandbox.admin("GET", "faults") == []


def test_dropped_connections_are_retried(sandbox):
    sandbox.admin("POST", "faults", [
        {"kind": "drop", "path": "^/v1/action/query$", "count": 1},
        {"kind": "drop", "path": "^/files/dataquery/", "count": 1},
    ])
    hook = fast_hook()
    assert list(hook.zoql("select Id from Product"))
    assert len(list(hook.data_query("SELECT id FROM account"))) == 50
    assert sandbox.admin("GET", "faults") == []


def test_a_slow_answer_times_out_and_is_retried(sandbox):
    sandbox.admin("POST", "faults", {"kind": "slow", "delay_seconds": 3, "path": "^/v1/action/query$", "count": 1})
    hook = fast_hook(timeout=1)
    started = time.monotonic()
    assert list(hook.zoql("select Id from Product"))
    assert 1 <= time.monotonic() - started < 3


def test_retries_give_up_after_max_retries(sandbox):
    sandbox.admin("POST", "faults", {"kind": "status", "status": 500, "error_code": 50000000,
                                     "message": "Internal failure", "path": "^/v1/action/query$", "count": None})
    hook = fast_hook(max_retries=2)
    with pytest.raises(ZuoraApiError) as caught:
        list(hook.zoql("select Id from Product"))
    error = caught.value
    assert (error.status, error.code, error.message.split(" (")[0]) == (500, 50000000, "Internal failure")
    assert "3 attempts" in str(error) and "/v1/action/query" in str(error)
    assert hook.api_requests == 4  # token + 3 attempts


# -- errors and ZOQL --------------------------------------------------------------------------------------


def test_client_errors_raise_with_zuoras_code_and_message():
    hook = fast_hook()
    with pytest.raises(ZuoraApiError) as caught:  # ZOQL's {"FaultCode", "FaultMessage"}
        list(hook.zoql("select Id, Nope from Account"))
    assert caught.value.status == 400 and caught.value.code == "INVALID_FIELD"
    assert "invalid field for query: Account.Nope" in str(caught.value)

    with pytest.raises(ZuoraApiError) as caught:  # Data Query's {"code", "message"}
        hook.request("POST", "/query/jobs", json={"query": "SELECT 1", "outputFormat": "XML", "compression": "NONE",
                                                  "output": {"target": "S3"}})
    assert caught.value.status == 400 and "outputFormat" in caught.value.message

    with pytest.raises(ZuoraApiError) as caught:  # {"success": false, "reasons": [...]}
        hook.request("GET", "/v1/nothing-here")
    assert caught.value.status == 404 and caught.value.code == 50000040
    requests_before = hook.api_requests
    with pytest.raises(ZuoraApiError):
        hook.request("GET", "/v1/nothing-here")
    assert hook.api_requests == requests_before + 1  # 4xx are not retried


def test_a_200_with_success_false_is_an_error(sandbox):
    with pytest.raises(ZuoraApiError) as caught:
        fast_hook().request("PUT", "/v1/accounts/NO-SUCH-ACCOUNT", json={"name": "x"})
    assert caught.value.status == 200 and caught.value.code is not None and caught.value.message


def test_zoql_pages_with_query_more(sandbox):
    hook = fast_hook()
    expected = live_rows(sandbox, "rateplancharge", ("id", "name"))
    records = list(hook.zoql("select Id, Name from RatePlanCharge", batch_size=50))
    assert {r["Id"]: r["Name"] for r in records} == {k: v["name"] for k, v in expected.items()}
    assert hook.api_requests == 1 + -(-len(expected) // 50)  # token + one request per page


def test_zoql_pages_past_2000_records(tmp_path, monkeypatch):
    bigger = start_zuora_sandbox(tmp_path / "bigger", accounts=400)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", bigger.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
        expected = live_rows(bigger, "rateplancharge", ("id",))
        assert len(expected) > 2000
        hook = fast_hook()
        ids = [r["Id"] for r in hook.zoql("select Id from RatePlanCharge")]
        assert sorted(ids) == sorted(expected)
        assert hook.api_requests == 1 + -(-len(expected) // 2000)
        assert sorted(r["Id"] for r in hook.zoql("select Id from RatePlanCharge", batch_size=700)) == sorted(expected)
    finally:
        bigger.stop()


# -- secrets ----------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_errors_or_logs(sandbox, monkeypatch, caplog, capfd):
    secret = sandbox.client_secret
    caplog.set_level("DEBUG")  # urllib3 too: its debug lines name every URL it fetches
    errors: list[str] = []
    tokens: set[str] = set()
    hook = fast_hook()
    list(hook.data_query("SELECT id FROM account"))
    tokens |= live_tokens(sandbox)
    sandbox.admin("POST", "faults", [
        {"kind": "rate_limit", "path": "^/v1/action/query$", "count": 1, "retry_after": 0},
        {"kind": "token_expiry", "path": "^/query/jobs$", "count": 1},
    ])
    list(hook.zoql("select Id from Product"))
    list(hook.data_query("SELECT id FROM account"))
    tokens |= live_tokens(sandbox)
    for action in (
        lambda: list(hook.zoql("select Nope from Account")),
        lambda: list(hook.data_query("SELECT nope FROM account")),
        lambda: (sandbox.admin("POST", "dataquery", {"truncate_next": True}),
                 list(hook.data_query("SELECT id FROM account"))),
    ):
        with pytest.raises(ZuoraApiError) as caught:
            action()
        errors += [str(caught.value), repr(caught.value), caught.value.message]

    conn = json.loads(sandbox.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    conn["password"] = secret + "x"
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", json.dumps(conn))
    with pytest.raises(ZuoraApiError) as caught:
        fast_hook().request("GET", "/query/jobs")
    errors += [str(caught.value), repr(caught.value)]
    errors.append(fast_hook().test_connection()[1])

    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "Data Query job" in logged and "completed: 50 rows" in logged  # the hook does log
    assert len(tokens) >= 2  # this hook's two, and those of earlier tests still live
    for text in [logged, *errors]:
        assert secret not in text
        assert not any(token in text for token in tokens)
        assert not re.search(r"X-Amz-(Signature|Credential)=(?!\*\*\*)", text)  # only ever "=***"


# -- on the wire ------------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers like Zuora (token, one API path, one result file) and records every request."""

    seen: ClassVar[list[dict]] = []

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
        return body

    def do_POST(self):
        self._record()
        self._answer(200, json.dumps({"access_token": "tok-123", "token_type": "bearer", "expires_in": 3599}).encode())

    def do_GET(self):
        self._record()
        if self.path.startswith("/file"):
            lines = b'{"id": "a"}\n{"id": "b"}\n'
            data = gzip.compress(lines[:12]) + gzip.compress(lines[12:])  # two gzip members, as S3 may serve
            self._answer(200, data, "application/octet-stream")
        else:
            self._answer(200, b'{"ok": true}')


def test_what_goes_over_the_wire(monkeypatch):
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", json.dumps({
            "conn_type": "zuora", "host": f"{base}/v1/", "login": "client-1", "password": "secret-1",
            "extra": {"entity_id": "entity-9", "timeout": 5}}))
        hook = ZuoraHook()
        assert hook.request("GET", "/v1/ping").json() == {"ok": True}
        # A result file on another host (S3): no token, no entity header.
        other = base.replace("127.0.0.1", "localhost")
        job = {"id": "job-1", "queryStatus": "completed", "compression": "GZIP", "outputRows": 2,
               "dataFile": f"{other}/file/x.jsonl.gz?X-Amz-Signature=sig"}
        assert list(hook.stream_data_query(job)) == [{"id": "a"}, {"id": "b"}]
    finally:
        server.shutdown()
        server.server_close()

    token, api, download = _Recorder.seen
    assert (token["method"], token["path"]) == ("POST", "/oauth/token")
    assert "Authorization" not in token["headers"]
    assert token["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert token["body"] == b"client_id=client-1&client_secret=secret-1&grant_type=client_credentials"
    assert api["path"] == "/v1/ping"
    assert api["headers"]["Authorization"] == "Bearer tok-123"
    assert api["headers"]["Zuora-Entity-Ids"] == "entity-9"
    assert download["path"].startswith("/file/x.jsonl.gz?")
    assert "Authorization" not in download["headers"] and "Zuora-Entity-Ids" not in download["headers"]
    assert hook.api_requests == 3
