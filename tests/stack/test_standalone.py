"""The whole stack as a user runs it: ``python -m sandbox.stack up`` (what ``make up`` does) starts
both sandboxes and ``airflow standalone`` (scheduler, triggerer, API server); a full sync is
triggered through Airflow's REST API and must succeed, and the records must be in Salesforce."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, free_port, read_env_file


@pytest.mark.slow
def test_full_sync_under_airflow_standalone(tmp_path, monkeypatch):
    directory = tmp_path / "stack"
    ports = {"airflow": free_port(), "sf": free_port(), "zuora": free_port()}
    up = subprocess.run(
        [sys.executable, "-m", "sandbox.stack", "up", "--dir", str(directory), "--accounts", "30", "--seed", "4",
         "--airflow-port", str(ports["airflow"]), "--sf-port", str(ports["sf"]), "--zuora-port", str(ports["zuora"])],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "The stack is up." in up.stdout and "login: admin /" in up.stdout
        base = f"http://127.0.0.1:{ports['airflow']}"
        password = json.loads((directory / "airflow" / "passwords.json").read_text())["admin"]
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.patch(f"{base}/api/v2/dags/zuora_full_sync", json={"is_paused": False}, headers=headers,
                              timeout=30).ok
        run = requests.post(f"{base}/api/v2/dags/zuora_full_sync/dagRuns", json={"logical_date": None},
                            headers=headers, timeout=30)
        assert run.ok, run.text
        run_id = run.json()["dag_run_id"]
        deadline = time.monotonic() + 600
        state = None
        while time.monotonic() < deadline:
            state = requests.get(f"{base}/api/v2/dags/zuora_full_sync/dagRuns/{run_id}", headers=headers,
                                 timeout=30).json()["state"]
            if state in ("success", "failed"):
                break
            time.sleep(3)
        assert state == "success", (directory / "airflow.log").read_text()[-5000:]
        sf_env = read_env_file(directory / "salesforce.env")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sf_env["REQUESTS_CA_BUNDLE"])
        from simple_salesforce import Salesforce

        connection = json.loads(sf_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        sf = Salesforce(username=connection["login"], password=connection["password"],
                        security_token=connection["extra"]["security_token"], domain=connection["extra"]["domain"])
        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c")["totalSize"] > 20
        assert sf.query("SELECT COUNT() FROM Zuora__Subscription__c")["totalSize"] > 20
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.stack", "down", "--dir", str(directory)], cwd=ROOT,
                       capture_output=True, timeout=180)
    for name in ("salesforce", "zuora", "airflow"):
        assert not (directory / f"{name}.pid").exists()
