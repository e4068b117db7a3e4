"""The web app's OpenAPI surface, fuzzed with schemathesis (SPEC §11): no request makes it answer 5xx.

Every operation of ``/openapi.json`` is called with generated parameters and bodies, both ones the
schema allows and ones it does not (schemathesis' positive and negative modes), against the real app
under uvicorn, with its own Airflow home and state store. Login-protected routes get an Airflow JWT
of an Admin, so the fuzzing reaches past the login and the permission checks; callouts are signed
with the webhook secret, so it reaches past the signature check into parsing and storing. The
settings and the history's filters, where bad input once gave 500s (issue 12), are also fuzzed with
values of any JSON type and size, and dates across the whole calendar with any UTC offset. The
server's log must hold no traceback either: an exception swallowed into a 4xx would hide a bug as well.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import fields

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET

from test_webapp import SECRET, sign_hex
from webapp_server import make_token, migrate_airflow_home, start_webapp
from zuora_sync.settings import RENAMED, Settings

EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


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


def bearer(fuzz_app) -> dict[str, str]:
    return {"Authorization": f"Bearer {fuzz_app.token}"}


def call(case, fuzz_app) -> None:
    if case.method.upper() == "POST" and case.path == "/events":
        # Signed as Zuora would sign it, so the body is parsed, checked and stored (or refused) for real.
        if case.body is NOT_SET:
            body = b""
        elif isinstance(case.body, (bytes, bytearray)):  # negative mode: not even JSON
            body = bytes(case.body)
        else:
            body = json.dumps(case.body).encode()
        headers = {k: str(v) for k, v in (case.headers or {}).items()}
        headers.update({"Content-Type": "application/json", "X-Zuora-Signature": sign_hex(body)})
        response = requests.post(f"{fuzz_app.url}/events", data=body, headers=headers, timeout=30)
        assert response.status_code < 500, (response.status_code, response.text, body[:500])
        return
    case.call_and_validate(base_url=fuzz_app.url, headers=bearer(fuzz_app), checks=[not_a_server_error])


def test_no_request_gets_a_server_error(fuzz_app, web_schema):
    # (schemathesis' pytest plugin does not run under pytest 9: its strategies are driven here.)
    operations = [result.ok() for result in web_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"PUT /settings", "GET /sessions", "GET /api-usage", "POST /events"} <= labels, labels
    # The settings body is described setting by setting, so generated bodies reach the validation.
    put = next(op for op in operations if op.label == "PUT /settings")
    assert "max_minutes_between_syncs" in json.dumps(put.definition.raw["requestBody"])
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def fuzz(case):
                call(case, fuzz_app)

            fuzz()


#: Any JSON value, of any size: what a careless user or an attacker may put in a setting.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**40, max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
SETTING_NAMES = [f.name for f in fields(Settings)] + list(RENAMED)


def test_settings_of_any_type_and_size_get_no_server_error(fuzz_app):
    @given(change=st.dictionaries(st.sampled_from(SETTING_NAMES), JSON_VALUES, min_size=1, max_size=3))
    @FUZZ
    def fuzz(change):
        response = requests.put(f"{fuzz_app.url}/settings", json=change, headers=bearer(fuzz_app), timeout=30)
        assert response.status_code in (200, 400), (response.status_code, response.text[:500], change)

    fuzz()


#: Dates and instants across the whole calendar with any offset, its first and last days drawn often:
#: there a date's end of day, or an instant moved to UTC, leaves what Python can represent.
EDGE_DAYS = st.dates(max_value=dt.date(1, 1, 7)) | st.dates(min_value=dt.date(9999, 12, 25)) | st.dates()
OFFSETS = st.timezones() | st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59),
                                                                 max_value=dt.timedelta(hours=23, minutes=59)))
INSTANTS = (EDGE_DAYS.map(dt.date.isoformat)
            | st.builds(lambda day, time, tz: dt.datetime.combine(day, time, tz).isoformat(), EDGE_DAYS, st.times(),
                        st.none() | OFFSETS)
            | st.text(max_size=40))


def test_history_filters_and_time_zones_of_any_value_get_no_server_error(fuzz_app):
    @given(since=st.none() | INSTANTS, until=st.none() | INSTANTS,
           tz=st.none() | st.timezone_keys() | st.text(max_size=300), days=st.integers(-5, 400))
    @FUZZ
    def fuzz(since, until, tz, days):
        history = requests.get(f"{fuzz_app.url}/sessions", params={"since": since, "until": until},
                               headers=bearer(fuzz_app), timeout=30)
        assert history.status_code in (200, 400), (history.status_code, history.text[:500], since, until)
        usage = requests.get(f"{fuzz_app.url}/api-usage", params={"tz": tz, "days": days},
                             headers=bearer(fuzz_app), timeout=30)
        assert usage.status_code in (200, 400), (usage.status_code, usage.text[:500], tz, days)

    fuzz()
