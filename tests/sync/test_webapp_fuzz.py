"""The web app's OpenAPI surface, fuzzed with schemathesis (SPEC §11): no request makes it answer 5xx.

Every operation of ``/openapi.json`` is called with generated parameters and bodies (valid and
not) against the real app under uvicorn, with its own Airflow home and state store. Login-protected
routes get an Airflow JWT, so the fuzzing reaches past the login; callouts are signed with the
webhook secret, so it reaches past the signature check into parsing and storing. The server's log
must hold no traceback either: an exception swallowed into a 4xx would hide a bug as well.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET

from test_webapp import SECRET, sign_hex
from webapp_server import make_token, migrate_airflow_home, start_webapp


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-airflow-home")
    migrate_airflow_home(home)
    app = start_webapp(tmp_path_factory.mktemp("fuzz-webapp"), home,
                       webhook={"conn_type": "http", "extra": {"hmac_secret": SECRET}})
    token = make_token(home)
    app.token = token  # type: ignore[attr-defined]
    yield app
    app.stop()
    assert "Traceback" not in app.log(), app.log()[-5000:]


@pytest.fixture(scope="module")
def web_schema(fuzz_app):
    return schemathesis.openapi.from_url(f"{fuzz_app.url}/openapi.json")


def call(case, fuzz_app) -> None:
    if case.method.upper() == "POST" and case.path == "/events":
        # Signed as Zuora would sign it, so the body is parsed, checked and stored (or refused) for real.
        body = b"" if case.body is NOT_SET else json.dumps(case.body).encode()
        headers = {k: str(v) for k, v in (case.headers or {}).items()}
        headers.update({"Content-Type": "application/json", "X-Zuora-Signature": sign_hex(body)})
        response = requests.post(f"{fuzz_app.url}/events", data=body, headers=headers, timeout=30)
        assert response.status_code < 500, (response.status_code, response.text, body[:500])
        return
    case.call_and_validate(base_url=fuzz_app.url, headers={"Authorization": f"Bearer {fuzz_app.token}"},
                           checks=[not_a_server_error])


def test_no_request_gets_a_server_error(fuzz_app, web_schema):
    # (schemathesis' pytest plugin does not run under pytest 9: its strategies are driven here.)
    operations = [result.ok() for result in web_schema.get_all_operations()]
    assert len(operations) >= 4, [op.label for op in operations]
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            call(case, fuzz_app)

        fuzz()
