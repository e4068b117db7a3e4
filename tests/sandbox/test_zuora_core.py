"""The Zuora sandbox's core, through Zuora's own ``zuora-sdk`` and raw HTTP: OAuth tokens and their
expiry, authentication errors, rate and concurrency limits with Zuora's headers, injected faults,
and how the server process starts and refuses to start."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests
import zuora_sdk
from zuora_sdk.api.o_auth_api import OAuthApi

from conftest import ZuoraSandbox, free_port, sandbox_command, start_zuora_sandbox


@pytest.fixture(scope="module")
def zuora(tmp_path_factory) -> ZuoraSandbox:
    sandbox = start_zuora_sandbox(tmp_path_factory.mktemp("zuora-core") / "tenant")
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _clean(zuora: ZuoraSandbox):
    yield
    zuora.admin("DELETE", "faults")
    zuora.admin("POST", "limits", {"per_minute": None, "concurrency": None})


def api(zuora: ZuoraSandbox, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{zuora.url}{path}", headers=headers, timeout=30, **kwargs)


def test_sdk_create_token_parses_into_its_model(zuora):
    client = zuora_sdk.ApiClient(zuora_sdk.Configuration(host=zuora.url))
    token = OAuthApi(client).create_token(
        client_id=zuora.client_id, client_secret=zuora.client_secret, grant_type="client_credentials"
    )
    assert len(token.access_token) == 32 and token.token_type == "bearer"
    assert 3500 <= token.expires_in <= 3600
    assert "tenant." in token.scope and token.jti
    assert len(zuora.client_id) == 36  # Zuora client ids are UUIDs, and the SDK checks the length


def test_bad_client_credentials_are_refused(zuora):
    response = requests.post(f"{zuora.url}/oauth/token", timeout=30, data={
        "client_id": zuora.client_id, "client_secret": "wrong", "grant_type": "client_credentials"})
    assert response.status_code == 401 and "message" in response.json()
    response = requests.post(f"{zuora.url}/oauth/token", timeout=30, data={
        "client_id": zuora.client_id, "client_secret": zuora.client_secret, "grant_type": "password"})
    assert response.status_code == 401


def test_api_calls_need_a_live_bearer_token(zuora):
    assert api(zuora, "/query/jobs").status_code == 401
    assert api(zuora, "/query/jobs").json() == {"message": "Authentication error"}
    assert api(zuora, "/query/jobs", token="0" * 32).status_code == 401
    token = zuora.token()
    assert api(zuora, "/query/jobs", token=token).status_code != 401
    assert zuora.admin("POST", "tokens/expire")["expired"] >= 1
    assert api(zuora, "/query/jobs", token=token).status_code == 401
    assert api(zuora, "/query/jobs", token=zuora.token()).status_code != 401


def test_token_expiry_fault_expires_the_token_a_client_holds(zuora):
    token = zuora.token()
    zuora.admin("POST", "faults", {"kind": "token_expiry", "path": "^/query/jobs$"})
    response = api(zuora, "/query/jobs", token=token)
    assert response.status_code == 401 and response.json() == {"message": "Authentication error"}
    assert api(zuora, "/query/jobs", token=token).status_code == 401  # stays expired
    assert api(zuora, "/query/jobs", token=zuora.token()).status_code == 200


def test_rate_limit_answers_429_with_zuora_headers_and_body(zuora):
    token = zuora.token()
    zuora.admin("POST", "limits", {"per_minute": 3})
    answers = [api(zuora, "/query/jobs", token=token) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"].startswith("3")
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    refused = answers[3]
    assert int(refused.headers["Retry-After"]) > 0 and refused.headers["RateLimit-Remaining"] == "0"
    reason = refused.json()["reasons"][0]
    assert reason["code"] == 70 and "API Rate limit exceeded for the minute" in reason["message"]


def test_concurrency_limit_answers_429_with_retry_after(zuora):
    token = zuora.token()
    zuora.admin("POST", "limits", {"concurrency": 1})
    zuora.admin("POST", "faults", {"kind": "slow", "delay_seconds": 1.5, "path": "^/query/jobs$", "count": 1})
    slow = {}
    thread = threading.Thread(target=lambda: slow.setdefault("r", api(zuora, "/query/jobs", token=token)))
    thread.start()
    time.sleep(0.5)
    second = api(zuora, "/query/jobs", token=token)  # the slow request still holds the only slot
    thread.join()
    assert slow["r"].status_code == 200
    refused = second
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "120"
    assert refused.json()["reasons"][0]["code"] == 50000070
    assert refused.headers["Concurrency-Limit-Limit"] == "1"


def test_injected_errors_drops_and_rate_limit_preset(zuora):
    token = zuora.token()
    zuora.admin("POST", "faults", {"kind": "status", "status": 500, "error_code": 50000000,
                                   "message": "Operation failed due to an unknown error.", "path": "^/query/jobs$"})
    failed = api(zuora, "/query/jobs", token=token)
    assert failed.status_code == 500
    assert failed.json() == {"success": False, "reasons": [
        {"code": 50000000, "message": "Operation failed due to an unknown error."}]}
    zuora.admin("POST", "faults", {"kind": "rate_limit", "path": "^/query/jobs$", "retry_after": 3})
    limited = api(zuora, "/query/jobs", token=token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.json()["reasons"][0]["code"] == 70
    zuora.admin("POST", "faults", {"kind": "drop", "path": "^/query/jobs$"})
    with pytest.raises(requests.exceptions.ConnectionError):
        api(zuora, "/query/jobs", token=token)
    assert api(zuora, "/query/jobs", token=token).status_code == 200


def test_bad_fault_descriptions_are_refused(zuora):
    response = requests.post(f"{zuora.url}/__admin/faults", json={"kind": "meteor"}, timeout=30)
    assert response.status_code == 400 and "unknown fault kind" in response.json()["error"]
    response = requests.post(f"{zuora.url}/__admin/faults", json={"kind": "status", "colour": "red"}, timeout=30)
    assert response.status_code == 400 and "unknown fault attributes" in response.json()["error"]


def test_health_and_not_found_shapes(zuora):
    assert requests.get(f"{zuora.url}/health", timeout=30).json()["status"] == "ok"
    missing = api(zuora, "/v1/nothing-here", token=zuora.token())
    assert missing.status_code == 404 and missing.json()["success"] is False


def test_port_taken_and_unusable_data_dir(tmp_path, zuora):
    taken = subprocess.run(sandbox_command("zuora", "--port", str(zuora.port), "--data-dir", str(tmp_path / "d")),
                           capture_output=True, text=True, timeout=60)
    assert taken.returncode == 3 and "already in use" in taken.stderr
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    unusable = subprocess.run(sandbox_command("zuora", "--port", str(free_port()), "--data-dir", str(a_file)),
                              capture_output=True, text=True, timeout=60)
    assert unusable.returncode == 4 and "cannot use data dir" in unusable.stderr


def test_credentials_and_tokens_survive_a_restart(tmp_path):
    data_dir = tmp_path / "tenant"
    first = start_zuora_sandbox(data_dir)
    token = first.token()
    client_id = first.client_id
    first.stop()
    second = start_zuora_sandbox(data_dir, port=first.port)
    try:
        assert second.client_id == client_id
        assert api(second, "/query/jobs", token=token).status_code == 200
        assert (second.env_file.stat().st_mode & 0o777) == 0o600
    finally:
        second.stop()


def test_time_zone_setting(zuora):
    assert zuora.admin("GET", "time-zone") == {"time_zone": "America/Los_Angeles"}  # Zuora system time
    assert zuora.admin("POST", "time-zone", {"time_zone": "Europe/Paris"}) == {"time_zone": "Europe/Paris"}
    bad = requests.post(f"{zuora.url}/__admin/time-zone", json={"time_zone": "Mars/Olympus"}, timeout=30)
    assert bad.status_code == 400 and "unknown time zone" in bad.json()["error"]
    zuora.admin("POST", "time-zone", {"time_zone": "America/Los_Angeles"})
