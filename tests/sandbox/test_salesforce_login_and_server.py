"""Logging in to the Salesforce sandbox, and the sandbox as a server process.

Every test talks HTTPS to a real sandbox process with the clients the sync uses unmodified
(simple-salesforce, requests, Airflow's ``SalesforceHook``), so they fail when a wire detail those
clients depend on breaks: the SOAP and OAuth login shapes, session expiry and re-login, the
connection that the env file hands Airflow, persistence across restarts, the generated CA, and the
one-line startup failures with their exit codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import (
    ROOT,
    SalesforceSandbox,
    free_port,
    launch_salesforce_sandbox,
    sandbox_command,
    start_salesforce_sandbox,
)
from sandbox.crm_accounts import crm_account_id, crm_account_name
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
)

API = "59.0"
SESSION_EXPIRED_BODY = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def soap_envelope(username: str, password: str) -> str:
    """The partner ``login`` request simple-salesforce sends (reference §1.2)."""
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
        "<env:Header><urn:CallOptions><urn:client>simple-salesforce</urn:client>"
        "<urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></env:Header>"
        '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{username}</n1:username><n1:password>{password}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )


def soap_post(sandbox: SalesforceSandbox, body: str) -> requests.Response:
    return requests.post(
        f"{sandbox.url}/login.salesforce.com/services/Soap/u/{API}",
        data=body.encode(),
        headers={"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"},
        verify=sandbox.ca_bundle,
        timeout=30,
    )


def token_post(sandbox: SalesforceSandbox, form: dict, **kwargs) -> requests.Response:
    return requests.post(
        f"{sandbox.url}/login.salesforce.com/services/oauth2/token", data=form, verify=sandbox.ca_bundle,
        timeout=30, **kwargs,
    )


def rest_get(sandbox: SalesforceSandbox, path: str, session_id: str, **kwargs) -> requests.Response:
    return requests.get(
        f"{sandbox.url}/services/data/v{API}/{path}", headers={"Authorization": f"Bearer {session_id}"},
        verify=sandbox.ca_bundle, timeout=30, **kwargs,
    )


def direct(sandbox: SalesforceSandbox, session_id: str) -> Salesforce:
    """A client that only holds a session id, as a task handed a token would (no re-login)."""
    return Salesforce(instance_url=sandbox.url, session_id=session_id, version=API)


def count_accounts(sf: Salesforce) -> int:
    return sf.query("SELECT COUNT() FROM Account")["totalSize"]


# -- SOAP login ---------------------------------------------------------------------------------


def test_soap_login_points_the_client_at_the_sandbox(sf_sandbox: SalesforceSandbox):
    sf = sf_sandbox.login()
    assert sf.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert sf.session_id.startswith("00D")
    first = crm_account_id(7, 0)
    result = sf.query(f"SELECT Id, Name FROM Account WHERE Id = '{first}'")
    assert result["totalSize"] == 1
    assert result["records"][0]["Name"] == crm_account_name(7, 0)


def test_soap_login_username_is_case_insensitive(sf_sandbox: SalesforceSandbox):
    sf = Salesforce(
        username=sf_sandbox.username.upper(), password=sf_sandbox.password,
        security_token=sf_sandbox.security_token, domain=sf_sandbox.domain,
    )
    assert count_accounts(sf) >= 50


@pytest.mark.parametrize("wrong", ["password", "security_token", "username"])
def test_soap_login_with_a_wrong_credential_fails(sf_sandbox: SalesforceSandbox, wrong: str):
    credentials = {
        "username": sf_sandbox.username, "password": sf_sandbox.password,
        "security_token": sf_sandbox.security_token,
    }
    credentials[wrong] = "x" + credentials[wrong]
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(domain=sf_sandbox.domain, **credentials)
    assert caught.value.code == "INVALID_LOGIN"
    assert "Invalid username, password, security token" in caught.value.auth_message


def test_soap_login_without_the_token_fails(sf_sandbox: SalesforceSandbox):
    # The password alone is not enough for SOAP (only OAuth may omit the token).
    response = soap_post(sf_sandbox, soap_envelope(sf_sandbox.username, sf_sandbox.password))
    assert response.status_code == 500


def test_bad_soap_login_is_an_http_500_login_fault(sf_sandbox: SalesforceSandbox):
    response = soap_post(sf_sandbox, soap_envelope(sf_sandbox.username, "nope"))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/xml")
    body = response.text
    assert "<soapenv:Fault>" in body
    assert 'xmlns:sf="urn:fault.partner.soap.sforce.com"' in body
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in body
    assert re.search(r"<sf:exceptionMessage>Invalid username, password, security token; or user locked out\.", body)
    assert "<sessionId>" not in body


def test_unparseable_soap_login_is_a_fault_not_a_crash(sf_sandbox: SalesforceSandbox):
    response = soap_post(sf_sandbox, "<env:Envelope><not-closed>")
    assert response.status_code == 500
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in response.text


def test_soap_login_response_shape(sf_sandbox: SalesforceSandbox):
    token = sf_sandbox.security_token
    response = soap_post(sf_sandbox, soap_envelope(sf_sandbox.username, sf_sandbox.password + token))
    assert response.status_code == 200
    body = response.text
    # simple-salesforce cuts these literal, unprefixed tags out of the text.
    server_url = re.search(r"<serverUrl>([^<]+)</serverUrl>", body).group(1)
    session_id = re.search(r"<sessionId>([^<]+)</sessionId>", body).group(1)
    assert server_url.startswith(f"https://127.0.0.1:{sf_sandbox.port}/services/Soap/u/{API}/00D")
    assert "-api" not in server_url
    assert rest_get(sf_sandbox, "limits", session_id).status_code == 200


# -- OAuth 2.0 ----------------------------------------------------------------------------------


def consumer(sandbox: SalesforceSandbox) -> tuple[str, str]:
    return sandbox.env["SALESFORCE_SANDBOX_CONSUMER_KEY"], sandbox.env["SALESFORCE_SANDBOX_CONSUMER_SECRET"]


def test_oauth_password_grant_through_simple_salesforce(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    sf = Salesforce(
        username=sf_sandbox.username, password=sf_sandbox.password, consumer_key=key, consumer_secret=secret,
        domain=sf_sandbox.domain,
    )
    assert sf.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert count_accounts(sf) >= 50


def test_oauth_client_credentials_grant_through_simple_salesforce(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    sf = Salesforce(consumer_key=key, consumer_secret=secret, domain=sf_sandbox.domain)
    assert sf.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert count_accounts(sf) >= 50


def test_oauth_wrong_secret_is_invalid_client(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(
            username=sf_sandbox.username, password=sf_sandbox.password, consumer_key=key,
            consumer_secret=secret + "0", domain=sf_sandbox.domain,
        )
    assert caught.value.code == "invalid_client"
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(consumer_key=key, consumer_secret="0" + secret, domain=sf_sandbox.domain)
    assert caught.value.code == "invalid_client"


def test_oauth_wrong_password_is_invalid_grant(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(
            username=sf_sandbox.username, password="wrong", consumer_key=key, consumer_secret=secret,
            domain=sf_sandbox.domain,
        )
    assert caught.value.code == "invalid_grant"
    assert caught.value.auth_message == "authentication failure"


def test_oauth_unknown_client_id(sf_sandbox: SalesforceSandbox):
    _key, secret = consumer(sf_sandbox)
    response = token_post(sf_sandbox, {
        "grant_type": "password", "client_id": "3MVGnope", "client_secret": secret,
        "username": sf_sandbox.username, "password": sf_sandbox.password,
    })
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_id"


def test_oauth_unknown_grant_type(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    response = token_post(sf_sandbox, {"grant_type": "authorization_code", "client_id": key, "client_secret": secret})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert response.json()["error_description"]


def test_oauth_token_response_fields(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    before = int(time.time() * 1000)
    response = token_post(sf_sandbox, {
        "grant_type": "password", "client_id": key, "client_secret": secret,
        "username": sf_sandbox.username, "password": sf_sandbox.password + sf_sandbox.security_token,
    })
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    token = response.json()
    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"} <= token.keys()
    assert token["instance_url"] == sf_sandbox.url
    assert token["token_type"] == "Bearer"
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+/id/00D\w{15}/005\w{15}", token["id"])
    # issued_at is milliseconds since the epoch, as a string.
    assert before - 5000 <= int(token["issued_at"]) <= int(time.time() * 1000) + 5000
    # The signature is HMAC-SHA256 over id + issued_at with the client secret.
    expected = hmac.new(secret.encode(), (token["id"] + token["issued_at"]).encode(), hashlib.sha256).digest()
    assert base64.b64decode(token["signature"]) == expected
    assert rest_get(sf_sandbox, "limits", token["access_token"]).status_code == 200


def test_oauth_client_credentials_in_a_basic_header(sf_sandbox: SalesforceSandbox):
    key, secret = consumer(sf_sandbox)
    response = token_post(sf_sandbox, {"grant_type": "client_credentials"}, auth=(key, secret))
    assert response.status_code == 200
    assert rest_get(sf_sandbox, "limits", response.json()["access_token"]).status_code == 200


# -- sessions -----------------------------------------------------------------------------------


def test_expired_session_gets_invalid_session_id(sf_sandbox: SalesforceSandbox):
    sf = sf_sandbox.login()
    stale = sf.session_id
    assert rest_get(sf_sandbox, "limits", stale).status_code == 200
    assert sf_sandbox.admin("POST", "sessions/expire")["expired"] >= 1
    response = rest_get(sf_sandbox, "query", stale, params={"q": "SELECT Id FROM Account"})
    assert response.status_code == 401
    assert response.json() == SESSION_EXPIRED_BODY


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer not-a-session", "Basic abc"])
def test_missing_or_bogus_bearer_token_is_401(sf_sandbox: SalesforceSandbox, header: str | None):
    headers = {"Authorization": header} if header is not None else {}
    response = requests.get(
        f"{sf_sandbox.url}/services/data/v{API}/limits", headers=headers, verify=sf_sandbox.ca_bundle, timeout=30
    )
    assert response.status_code == 401
    assert response.json() == SESSION_EXPIRED_BODY


def test_login_client_logs_in_again_after_expiry(sf_sandbox: SalesforceSandbox):
    sf = sf_sandbox.login()
    stale = sf.session_id
    sf_sandbox.admin("POST", "sessions/expire")
    assert count_accounts(sf) >= 50
    assert sf.session_id != stale
    # sObject calls go through SFType, which refreshes on its own.
    assert sf.Account.get(crm_account_id(7, 1))["Name"] == crm_account_name(7, 1)


def test_direct_client_raises_expired_session(sf_sandbox: SalesforceSandbox):
    stale = sf_sandbox.login().session_id
    client = direct(sf_sandbox, stale)
    assert client.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert count_accounts(client) >= 50
    sf_sandbox.admin("POST", "sessions/expire")
    with pytest.raises(SalesforceExpiredSession) as caught:
        client.query("SELECT Id FROM Account")
    assert caught.value.status == 401
    assert caught.value.content == SESSION_EXPIRED_BODY


def test_bulk_v1_bad_session_is_400_invalid_session_id(sf_sandbox: SalesforceSandbox):
    response = requests.post(
        f"{sf_sandbox.url}/services/async/{API}/job",
        json={"operation": "insert", "object": "Account", "contentType": "JSON"},
        headers={"X-SFDC-Session": "00Dbogus!session"},
        verify=sf_sandbox.ca_bundle, timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["exceptionCode"] == "InvalidSessionId"
    assert response.json()["exceptionMessage"]


# -- Airflow ------------------------------------------------------------------------------------


@pytest.fixture
def airflow_hook(sf_sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch):
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sf_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    return SalesforceHook()


def test_env_file_connection_is_a_soap_login(sf_sandbox: SalesforceSandbox):
    connection = json.loads(sf_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    assert connection["conn_type"] == "salesforce"
    assert connection["login"] == sf_sandbox.username
    assert connection["password"] == sf_sandbox.password
    # Airflow's hook only picks SOAP login when a security token is set.
    assert connection["extra"] == {"security_token": sf_sandbox.security_token, "domain": sf_sandbox.domain,
                                   "poll_interval": 0.05}


def test_airflow_hook_logs_in(airflow_hook, sf_sandbox: SalesforceSandbox):
    conn = airflow_hook.get_conn()
    assert conn.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    status, message = airflow_hook.test_connection()
    assert (status, message) == (True, "Connection successfully tested")


def test_airflow_hook_make_query_returns_the_seeded_accounts(airflow_hook):
    result = airflow_hook.make_query("SELECT Id, Name FROM Account")
    assert result["done"] is True
    names = {record["Id"]: record["Name"] for record in result["records"]}
    assert len(names) == result["totalSize"]
    for i in range(50):
        assert names[crm_account_id(7, i)] == crm_account_name(7, i)


def test_airflow_hook_describe_and_fields(airflow_hook):
    description = airflow_hook.describe_object("Zuora__CustomerAccount__c")
    assert description["name"] == "Zuora__CustomerAccount__c"
    assert description["custom"] is True
    fields = airflow_hook.get_available_fields("Zuora__CustomerAccount__c")
    assert fields == [field["name"] for field in description["fields"]]
    assert {"Id", "Name", "Zuora__External_Id__c", "Zuora__Account__c"} <= set(fields)


def test_airflow_hook_with_a_wrong_password_fails_its_connection_test(
    sf_sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
):
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    connection = json.loads(sf_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    connection["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(connection))
    status, message = SalesforceHook().test_connection()
    assert status is False
    assert "INVALID_LOGIN" in message


# -- health, versions, unknown paths --------------------------------------------------------------


def test_health(sf_sandbox: SalesforceSandbox):
    response = requests.get(f"{sf_sandbox.url}/health", verify=sf_sandbox.ca_bundle, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["org_id"].startswith("00D")


def test_versions_need_no_session(sf_sandbox: SalesforceSandbox):
    response = requests.get(f"{sf_sandbox.url}/services/data", verify=sf_sandbox.ca_bundle, timeout=30)
    assert response.status_code == 200
    versions = {entry["version"]: entry["url"] for entry in response.json()}
    assert versions[API] == f"/services/data/v{API}"
    assert "52.0" in versions
    # A trailing slash is the same resource.
    again = requests.get(f"{sf_sandbox.url}/services/data/", verify=sf_sandbox.ca_bundle, timeout=30)
    assert again.json() == response.json()


@pytest.mark.parametrize("path", ["nothing-here", "sobjects/Account/describe/extra/bits", "jobs/nope/x/y"])
def test_unknown_rest_paths_are_404_not_found(sf_sandbox: SalesforceSandbox, path: str):
    session_id = sf_sandbox.login().session_id
    response = rest_get(sf_sandbox, path, session_id)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, list) and body[0]["errorCode"] == "NOT_FOUND"
    assert body[0]["message"]


def test_unknown_api_version_is_404(sf_sandbox: SalesforceSandbox):
    session_id = sf_sandbox.login().session_id
    response = requests.get(
        f"{sf_sandbox.url}/services/data/vbanana/limits", headers={"Authorization": f"Bearer {session_id}"},
        verify=sf_sandbox.ca_bundle, timeout=30,
    )
    assert response.status_code == 404
    assert response.json()[0]["errorCode"] == "NOT_FOUND"


def test_wrong_method_is_405_json(sf_sandbox: SalesforceSandbox):
    session_id = sf_sandbox.login().session_id
    response = requests.delete(
        f"{sf_sandbox.url}/services/data/v{API}/query", headers={"Authorization": f"Bearer {session_id}"},
        verify=sf_sandbox.ca_bundle, timeout=30,
    )
    assert response.status_code == 405
    assert response.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_rest_answers_carry_limit_info(sf_sandbox: SalesforceSandbox):
    sf = sf_sandbox.login()
    sf.query("SELECT Id FROM Account LIMIT 1")
    first = sf.api_usage["api-usage"]
    sf.query("SELECT Id FROM Account LIMIT 1")
    second = sf.api_usage["api-usage"]
    assert first.total == 100_000
    assert second.used == first.used + 1


# -- the server process --------------------------------------------------------------------------


# XML, shell and JSON special characters: the SOAP body, the env file and the Airflow URI-less
# connection must all carry it intact.
AWKWARD_PASSWORD = """p&ss<w>rd "q" 'x' $HOME;"""


def test_data_and_sessions_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    data_dir = tmp_path / "org"
    port = free_port()
    sandbox = start_salesforce_sandbox(data_dir, port=port, accounts=5, seed=3, password=AWKWARD_PASSWORD)
    try:
        assert stat.S_IMODE(sandbox.env_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "tls" / "server-key.pem").stat().st_mode) == 0o600
        sf = Salesforce(
            username=sandbox.username, password=sandbox.password, security_token=sandbox.security_token,
            domain=sandbox.domain, session=_session(sandbox),
        )
        created = sf.Account.create({"Name": "Survives Restart"})
        assert created["success"] is True
        session_id = sf.session_id
        assert _count(sandbox, session_id) == 6
        ca_before = (data_dir / "tls" / "ca.pem").read_bytes()
        # The env file alone is enough for Airflow, awkward password included.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.env["REQUESTS_CA_BUNDLE"])
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        ids = {r["Id"] for r in SalesforceHook().make_query("SELECT Id FROM Account")["records"]}
        assert ids == {crm_account_id(3, i) for i in range(5)} | {created["id"]}
    finally:
        started = time.monotonic()
        sandbox.stop()
    # ``sf`` still holds an idle keep-alive connection; the stop must not wait for it.
    assert time.monotonic() - started < 10
    assert sandbox.process.returncode == 0

    sandbox = start_salesforce_sandbox(data_dir, port=port, accounts=5, seed=3, password=AWKWARD_PASSWORD)
    try:
        # Same CA, so clients holding the old bundle keep trusting the sandbox.
        assert (data_dir / "tls" / "ca.pem").read_bytes() == ca_before
        client = Salesforce(instance_url=sandbox.url, session_id=session_id, session=_session(sandbox))
        record = client.Account.get(created["id"])
        assert record["Name"] == "Survives Restart"
        # Seeding again created nothing: 5 seeded Accounts and the one made above.
        assert _count(sandbox, session_id) == 6
        found = client.query("SELECT Id FROM Account WHERE Name = 'Survives Restart'")
        assert [r["Id"] for r in found["records"]] == [created["id"]]
    finally:
        sandbox.stop()


def _session(sandbox: SalesforceSandbox) -> requests.Session:
    """A requests session trusting only this sandbox's bundle (the process-wide one is another sandbox's)."""
    session = requests.Session()
    session.verify = sandbox.ca_bundle
    session.trust_env = False
    return session


def _count(sandbox: SalesforceSandbox, session_id: str) -> int:
    response = rest_get(sandbox, "query", session_id, params={"q": "SELECT COUNT() FROM Account"})
    response.raise_for_status()
    return response.json()["totalSize"]


def test_generated_credentials_are_written_and_kept(tmp_path: Path):
    data_dir = tmp_path / "org"
    env_file = tmp_path / "generated.env"
    port = free_port()
    args = ["salesforce", "--port", str(port), "--data-dir", str(data_dir), "--env-file", str(env_file)]
    sandbox = _start_plain(args, data_dir, env_file, port)
    try:
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        connection = json.loads(sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        consumer_key = sandbox.env["SALESFORCE_SANDBOX_CONSUMER_KEY"]
        username, password = connection["login"], connection["password"]
        token = connection["extra"]["security_token"]
        assert username and len(password) >= 12 and len(token) >= 12
        sf = Salesforce(username=username, password=password, security_token=token,
                        domain=connection["extra"]["domain"], session=_session(sandbox))
        assert sf.sf_instance == f"127.0.0.1:{port}"
        assert _count(sandbox, sf.session_id) == 0
        with pytest.raises(SalesforceAuthenticationFailed):
            Salesforce(username=username, password=password, security_token=token + "x",
                       domain=connection["extra"]["domain"], session=_session(sandbox))
    finally:
        sandbox.stop()
    assert sandbox.process.returncode == 0
    # A restart without flags keeps the generated credentials rather than making new ones.
    sandbox = _start_plain(args, data_dir, env_file, port)
    try:
        assert json.loads(sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"]) == connection
        assert sandbox.env["SALESFORCE_SANDBOX_CONSUMER_KEY"] == consumer_key
    finally:
        sandbox.stop()


def _start_plain(args: list[str], data_dir: Path, env_file: Path, port: int) -> SalesforceSandbox:
    """Start a sandbox with exactly ``args`` (no credentials) and wait until it is healthy."""
    env_file.unlink(missing_ok=True)
    return launch_salesforce_sandbox(args, data_dir, env_file, port)


def test_generated_ca_is_needed_to_verify(sf_sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch):
    ok = requests.get(f"{sf_sandbox.url}/health", verify=sf_sandbox.ca_bundle, timeout=30)
    assert ok.json()["status"] == "ok"
    # The CA on its own also verifies the server certificate (it names 127.0.0.1).
    ca = Path(sf_sandbox.ca_bundle).with_name("ca.pem")
    assert requests.get(f"{sf_sandbox.url}/health", verify=str(ca), timeout=30).ok
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{sf_sandbox.url}/health", verify=True, timeout=30)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        sandbox_command(*args), check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_port_in_use_exits_3(sf_sandbox: SalesforceSandbox, tmp_path: Path):
    data_dir = tmp_path / "other"
    result = _run("salesforce", "--port", str(sf_sandbox.port), "--data-dir", str(data_dir))
    assert result.returncode == 3
    line = _one_error_line(result)
    assert re.match(rf"error: port {sf_sandbox.port} .*is already in use", line)
    assert result.stdout == ""
    # Nothing was written for the sandbox that did not start.
    assert not data_dir.exists()


def test_data_dir_that_is_a_file_exits_4(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("I am a file")
    result = _run("salesforce", "--port", str(free_port()), "--data-dir", str(not_a_dir))
    assert result.returncode == 4
    assert "data dir" in _one_error_line(result)
    assert not_a_dir.read_text() == "I am a file"


def test_data_dir_holding_a_corrupt_database_exits_4(tmp_path: Path):
    data_dir = tmp_path / "org"
    data_dir.mkdir()
    (data_dir / "org.sqlite3").write_bytes(b"this is not a database" * 100)
    result = _run("salesforce", "--port", str(free_port()), "--data-dir", str(data_dir))
    assert result.returncode == 4
    assert "database" in _one_error_line(result)


def test_second_sandbox_on_the_same_data_dir_exits_4(sf_sandbox: SalesforceSandbox):
    result = _run("salesforce", "--port", str(free_port()), "--data-dir", str(sf_sandbox.data_dir))
    assert result.returncode == 4
    line = _one_error_line(result)
    assert "in use by another sandbox" in line
    assert f"pid {sf_sandbox.process.pid}" in line
    # The running sandbox is unaffected.
    assert count_accounts(sf_sandbox.login()) >= 50


def test_bad_arguments_exit_2(tmp_path: Path):
    result = _run("salesforce", "--port", "70000", "--data-dir", str(tmp_path / "org"))
    assert result.returncode == 2
    assert not (tmp_path / "org").exists()


def test_env_file_that_is_a_directory_exits_2(tmp_path: Path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    result = _run("salesforce", "--port", str(free_port()), "--data-dir", str(tmp_path / "org"),
                  "--env-file", str(env_dir))
    assert result.returncode == 2
    assert "env file" in _one_error_line(result)
    # No half-written copy of the secrets is left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "org"]


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path):
    import signal
    import threading

    sandbox = start_salesforce_sandbox(tmp_path / "org", accounts=3, seed=5)
    try:
        session = _session(sandbox)
        sid = sandbox.login(session=session).session_id
        sandbox.admin("POST", "faults", {"kind": "slow", "path": "/query", "delay_seconds": 1.5})
        answers: list[requests.Response] = []
        worker = threading.Thread(target=lambda: answers.append(session.get(
            f"{sandbox.url}/services/data/v{API}/query", params={"q": "SELECT Id FROM Account"},
            headers={"Authorization": f"Bearer {sid}"}, timeout=30,
        )))
        worker.start()
        time.sleep(0.5)
        started = time.monotonic()
        sandbox.process.send_signal(signal.SIGTERM)
        worker.join(30)
        sandbox.process.wait(30)
        # The slow answer still arrives whole, and the stop waits for it but no longer.
        assert answers and answers[0].status_code == 200
        assert answers[0].json()["totalSize"] == 3
        assert time.monotonic() - started < 8
        assert sandbox.process.returncode == 0
    finally:
        sandbox.stop()
