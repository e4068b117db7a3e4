"""Fault injection through the sandbox's admin API, seen through real clients: HTTP errors with
Retry-After, dropped connections, slow answers, expired sessions, locked rows and rejection rules."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sandbox.crm_accounts import crm_account_id

SEED = 7


def test_http_error_fault_hits_the_next_matching_requests_only(sf, sf_sandbox):
    sf_sandbox.admin("POST", "faults", {"kind": "status", "status": 503, "count": 2, "retry_after": 7,
                                        "path": "/query", "method": "GET"})
    url = f"https://{sf.sf_instance}/services/data/v59.0/query"
    first = requests.get(url, params={"q": "SELECT Id FROM Account LIMIT 1"}, headers=sf.headers, timeout=30)
    assert first.status_code == 503 and first.headers["Retry-After"] == "7"
    assert first.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    # Other paths are untouched while the fault waits for its second request.
    assert sf.Account.describe()["name"] == "Account"
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert caught.value.status == 503
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 50
    assert sf_sandbox.admin("GET", "faults")["request_faults"] == []


def test_custom_error_bodies_and_status_codes(sf, sf_sandbox):
    sf_sandbox.admin("POST", "faults", {"kind": "status", "status": 500, "error_code": "UNKNOWN_EXCEPTION",
                                        "message": "An unexpected error occurred.", "path": "/jobs/ingest$",
                                        "method": "POST"})
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.bulk2.Account.insert(records=[{"Name": "never"}], wait=0.05)
    assert caught.value.status == 500
    assert caught.value.content == [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]


def test_dropped_connection(sf, sf_sandbox):
    sf_sandbox.admin("POST", "faults", {"kind": "drop", "path": "/sobjects/Account$", "method": "POST"})
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Account.create({"Name": "lost"})
    assert sf.Account.create({"Name": "kept"})["success"] is True


def test_slow_answers(sf, sf_sandbox):
    sf_sandbox.admin("POST", "faults", {"kind": "slow", "delay_seconds": 1.0, "path": "/limits"})
    started = time.monotonic()
    sf.limits()
    assert time.monotonic() - started >= 1.0
    with pytest.raises(requests.exceptions.Timeout):
        sf_sandbox.admin("POST", "faults", {"kind": "slow", "delay_seconds": 2.0, "path": "/limits"})
        requests.get(f"https://{sf.sf_instance}/services/data/v59.0/limits", headers=sf.headers, timeout=0.5)


def test_invalid_session_fault_makes_simple_salesforce_log_in_again(sf, sf_sandbox):
    old_session = sf.session_id
    sf_sandbox.admin("POST", "faults", {"kind": "invalid_session", "path": "/query"})
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 50
    assert sf.session_id != old_session


def test_expired_sessions_are_refused_until_a_new_login(sf, sf_sandbox):
    stale = sf.session_id
    assert sf_sandbox.admin("POST", "sessions/expire")["expired"] >= 1
    response = requests.get(f"https://{sf.sf_instance}/services/data/v59.0/limits",
                            headers={"Authorization": f"Bearer {stale}"}, timeout=30)
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 50  # re-logs in


def test_unable_to_lock_row_once_then_success(sf, sf_sandbox, unique):
    created = sf.Account.create({"Name": f"Locked {unique}"})["id"]
    sf_sandbox.admin("POST", "faults", {"kind": "lock_row", "object": "Account", "field": "Id", "value": created})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.update(created, {"Industry": "Energy"})
    error = caught.value.content[0]
    assert error["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert error["message"] == f"unable to obtain exclusive access to this record or 1 records: {created}"
    assert sf.Account.update(created, {"Industry": "Energy"}) == 204


def test_rejection_rule_fails_matching_bulk_rows_until_removed(sf, sf_sandbox, unique):
    sf_sandbox.admin("POST", "faults", {
        "kind": "record_error", "object": "Zuora__CustomerAccount__c", "field": "Zuora__Status__c",
        "value": "Suspended", "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "message": "Suspended accounts are not allowed",
    })
    rows = [
        {"Zuora__External_Id__c": f"{unique}-{status}", "Name": status, "Zuora__Status__c": status,
         "Zuora__Account__c": crm_account_id(SEED, 3)}
        for status in ("Active", "Suspended")
    ]
    result = sf.bulk2.Zuora__CustomerAccount__c.upsert(records=rows, external_id_field="Zuora__External_Id__c",
                                                        wait=0.05)
    assert result[0]["numberRecordsFailed"] == 1
    failed = list(csv.DictReader(io.StringIO(
        sf.bulk2.Zuora__CustomerAccount__c.get_failed_records(result[0]["job_id"]))))
    assert failed[0]["sf__Error"] == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION:Suspended accounts are not allowed:Zuora__Status__c --"
    )
    sf_sandbox.admin("DELETE", "faults")
    retry = sf.bulk2.Zuora__CustomerAccount__c.upsert(records=rows, external_id_field="Zuora__External_Id__c",
                                                       wait=0.05)
    assert retry[0]["numberRecordsFailed"] == 0


def test_bad_fault_descriptions_are_refused(sf_sandbox):
    response = requests.post(f"{sf_sandbox.url}/__admin/faults", json={"kind": "meteor"},
                             verify=sf_sandbox.ca_bundle, timeout=30)
    assert response.status_code == 400 and "unknown fault kind" in response.json()["error"]
    response = requests.post(f"{sf_sandbox.url}/__admin/faults", json={"kind": "lock_row", "object": "Account"},
                             verify=sf_sandbox.ca_bundle, timeout=30)
    assert response.status_code == 400 and "needs 'field'" in response.json()["error"]
