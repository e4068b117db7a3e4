"""Real-time sync as a user runs it, under ``airflow standalone`` (``python -m sandbox.stack up``).

The Zuora sandbox sends its callouts, signed, to ``/zuora-sync/events`` on the Airflow API server
(the plugin's web app). With ``zuora_realtime_sync`` unpaused:

1. the first session runs at once and is a full sync (no full sync yet);
2. the next run waits in its deferrable sensor; ``GET /zuora-sync/status`` says how far away the
   next sync is; N changes in Zuora arrive as N callouts and start a real-time session by itself,
   which brings Salesforce level with Zuora, record by record;
3. with fewer changes than the threshold, the session starts when the (short) maximum time has
   passed since the last one ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import ROOT, free_port, read_env_file

sys.path.insert(0, str(ROOT / "tests" / "sync"))
from sync_harness import compare_scope  # noqa: E402

DAG = "zuora_realtime_sync"
ACCOUNTS = 30
SEED = 6


class Airflow:
    """The stack's Airflow REST API and the sync's web app, logged in as the admin."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", headers=self.headers, timeout=60, **kwargs)

    def runs(self) -> list[dict]:
        answer = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns", params={"order_by": "run_after", "limit": 50})
        answer.raise_for_status()
        return answer.json()["dag_runs"]

    def task_state(self, run_id: str, task_id: str) -> str | None:
        answer = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")
        return answer.json().get("state") if answer.ok else None

    def xcom(self, run_id: str, task_id: str) -> dict:
        answer = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                  "return_value", params={"deserialize": True})
        answer.raise_for_status()
        value = answer.json()["value"]
        return json.loads(value) if isinstance(value, str) else value


def wait_for(what: str, check, timeout: float, log) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{log()}")


def finished_run(airflow: Airflow, index: int, timeout: float, log) -> dict:
    """The ``index``-th run (0-based, in creation order), once it has ended; it must have succeeded."""
    def ended():
        runs = airflow.runs()
        return runs[index] if len(runs) > index and runs[index]["state"] in ("success", "failed") else None

    run = wait_for(f"run {index + 1} of {DAG} ending", ended, timeout, log)
    assert run["state"] == "success", log()
    return run


def waiting_run(airflow: Airflow, index: int, log) -> dict:
    """The ``index``-th run once its sensor is deferred (waiting in the triggerer)."""
    def deferred():
        runs = airflow.runs()
        if len(runs) > index and airflow.task_state(runs[index]["dag_run_id"], "wait_for_changes") == "deferred":
            return runs[index]
        return None

    return wait_for(f"run {index + 1} waiting for changes", deferred, 180, log)


@pytest.mark.slow
def test_callouts_start_real_time_sessions_under_airflow_standalone(tmp_path, monkeypatch):
    directory = tmp_path / "stack"
    ports = {"airflow": free_port(), "sf": free_port(), "zuora": free_port()}
    up = subprocess.run(
        [sys.executable, "-m", "sandbox.stack", "up", "--dir", str(directory), "--accounts", str(ACCOUNTS),
         "--seed", str(SEED), "--airflow-port", str(ports["airflow"]), "--sf-port", str(ports["sf"]),
         "--zuora-port", str(ports["zuora"])],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )

    def log() -> str:
        return (directory / "airflow.log").read_text(errors="replace")[-6000:]

    try:
        assert up.returncode == 0, up.stdout + up.stderr
        password = json.loads((directory / "airflow" / "passwords.json").read_text())["admin"]
        airflow = Airflow(f"http://127.0.0.1:{ports['airflow']}", password)
        zuora_env = read_env_file(directory / "zuora.env")
        zuora_url = zuora_env["ZUORA_SANDBOX_URL"]
        zuora_conn = json.loads(zuora_env["AIRFLOW_CONN_ZUORA_DEFAULT"])
        zuora_token = requests.post(f"{zuora_url}/oauth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": zuora_conn["login"],
            "client_secret": zuora_conn["password"]}).json()["access_token"]
        # A failed delivery is retried in seconds, not Zuora's 30 minutes.
        requests.post(f"{zuora_url}/__admin/callouts", json={"retry_interval_seconds": 2}, timeout=30).raise_for_status()

        # Settings through the web app: a wrong value is refused with the allowed ones.
        refused = airflow.call("PUT", "/zuora-sync/settings", json={"max_events_before_sync": 7})
        assert refused.status_code == 400 and 5 in refused.json()["allowed"]["max_events_before_sync"]
        saved = airflow.call("PUT", "/zuora-sync/settings", json={
            "max_events_before_sync": 5, "max_minutes_between_syncs": 600, "trigger_poll_seconds": 2})
        assert saved.status_code == 200, saved.text

        # 1. Unpaused: the first session runs at once, as a full sync.
        assert airflow.call("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False}).ok
        first = finished_run(airflow, 0, 600, log)
        assert airflow.xcom(first["dag_run_id"], "begin_session")["session_type"] == "Full"

        # 2. The next run waits; five changes in Zuora start it.
        second = waiting_run(airflow, 1, log)
        status = airflow.call("GET", "/zuora-sync/status").json()
        assert status["mode"]["mode"] == "Real-time"
        assert status["pending_events"] == 0
        assert status["next_sync"]["message"].startswith("5 more data change events, or at most "), status
        accounts = requests.post(f"{zuora_url}/v1/action/query", timeout=30,
                                 headers={"Authorization": f"Bearer {zuora_token}"},
                                 json={"queryString": "select Id, Name from Account where Status = 'Active'"}
                                 ).json()["records"][:5]
        for n, account in enumerate(accounts[:4]):
            answer = requests.post(f"{zuora_url}/v1/action/update", timeout=30,
                                   headers={"Authorization": f"Bearer {zuora_token}"},
                                   json={"type": "Account", "objects": [{"Id": account["Id"],
                                                                         "Name": f"Real-time rename {n}"}]})
            assert answer.ok and answer.json()[0]["Success"], answer.text
        # Four of five: the status counts down, the session does not start.
        wait_for("four callouts stored", lambda: airflow.call("GET", "/zuora-sync/status").json()[
            "pending_events"] == 4, 60, log)
        assert airflow.call("GET", "/zuora-sync/status").json()["next_sync"]["message"].startswith(
            "1 more data change event, or at most "), "the status should count down"
        assert airflow.task_state(second["dag_run_id"], "wait_for_changes") == "deferred"
        requests.post(f"{zuora_url}/v1/action/update", timeout=30, headers={"Authorization": f"Bearer {zuora_token}"},
                      json={"type": "Account", "objects": [{"Id": accounts[4]["Id"], "Name": "Real-time rename 4"}]}
                      ).raise_for_status()
        finished_run(airflow, 1, 600, log)
        fired = airflow.xcom(second["dag_run_id"], "wait_for_changes")
        assert fired["reason"] == "events" and fired["pending_events"] >= 5
        assert airflow.xcom(second["dag_run_id"], "begin_session")["session_type"] == "Real-time"

        from zuora_sync.state import StateStore

        store = StateStore(f"sqlite:///{directory / 'airflow' / 'zuora_sync' / 'state.db'}")
        assert store.pending_event_count() == 0, "the session consumes the events it started with"
        sf_env = read_env_file(directory / "salesforce.env")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sf_env["REQUESTS_CA_BUNDLE"])
        from simple_salesforce import Salesforce

        from zuora_sync.mapping import load_mapping

        connection = json.loads(sf_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        sf = Salesforce(username=connection["login"], password=connection["password"],
                        security_token=connection["extra"]["security_token"], domain=connection["extra"]["domain"])
        # Accounts without a valid CRM Id are not in Salesforce (rejected): the others carry the new names.
        renamed = sf.query("SELECT Zuora__External_Id__c FROM Zuora__CustomerAccount__c "
                           "WHERE Name LIKE 'Real-time rename %'")["records"]
        assert renamed
        rejected = {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}
        problems = compare_scope(directory / "zuora", sf, "accounts", rejected, ZoneInfo("America/Los_Angeles"),
                                 tmp_path)
        assert not problems, "\n".join(problems[:40])

        # 3. Fewer changes than the threshold: the maximum time (1 minute here) starts the session.
        third = waiting_run(airflow, 2, log)
        assert airflow.call("PUT", "/zuora-sync/settings", json={"max_minutes_between_syncs": 1}).ok
        requests.post(f"{zuora_url}/v1/action/update", timeout=30, headers={"Authorization": f"Bearer {zuora_token}"},
                      json={"type": "Account", "objects": [{"Id": renamed[0]["Zuora__External_Id__c"],
                                                           "Name": "Renamed once more"}]}
                      ).raise_for_status()
        finished_run(airflow, 2, 400, log)
        fired = airflow.xcom(third["dag_run_id"], "wait_for_changes")
        assert fired["reason"] == "max_time" and fired["pending_events"] == 1, fired
        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name = 'Renamed once more'")[
            "totalSize"] == 1
        problems = compare_scope(directory / "zuora", sf, "accounts", rejected, ZoneInfo("America/Los_Angeles"),
                                 tmp_path)
        assert not problems, "\n".join(problems[:40])
        airflow.call("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": True})
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.stack", "down", "--dir", str(directory)], cwd=ROOT,
                       capture_output=True, timeout=180)
