"""The whole stack as a user runs it: ``python -m sandbox.stack up`` (what ``make up`` does) starts
both sandboxes and ``airflow standalone`` (scheduler, triggerer, API server); a full sync is
triggered through Airflow's REST API and must succeed, and the records must be in Salesforce.
``make down`` stopping everything is checked when the shared stack stops (``conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_full_sync_under_airflow_standalone(standalone):
    assert "The stack is up." in standalone.up_output and "login: admin /" in standalone.up_output
    airflow = standalone.airflow
    airflow.set_paused("zuora_full_sync", False)
    run_id = airflow.trigger("zuora_full_sync")
    assert standalone.wait_for_run("zuora_full_sync", run_id) == "success", standalone.log()
    sf = standalone.salesforce()
    assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c")["totalSize"] > 20
    assert sf.query("SELECT COUNT() FROM Zuora__Subscription__c")["totalSize"] > 20
