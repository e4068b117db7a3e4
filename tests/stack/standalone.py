"""The whole stack as a user runs it, shared by the tests under ``tests/stack/``.

``python -m sandbox.stack up`` (what ``make up`` does) starts both sandboxes (a generated tenant of
:data:`ACCOUNTS` accounts, seed :data:`SEED`) and ``airflow standalone`` (scheduler, dag-processor,
triggerer, API server with the sync's web app). Starting it takes a minute or more and ~1.8 GB, so
one instance serves every test of the package (``tests/stack/conftest.py``); each test leaves the
DAGs it unpaused paused again and makes no assumption about what ran before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from conftest import ROOT, free_port, read_env_file

ACCOUNTS = 30
SEED = 6
#: Where the stack keeps the sync's state store (under its AIRFLOW_HOME).
STATE_DB = Path("airflow") / "zuora_sync" / "state.db"


class Airflow:
    """The stack's Airflow REST API and the sync's web app, logged in as the admin."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kwargs)

    def runs(self, dag_id: str, **params: Any) -> list[dict]:
        """The DAG's runs in creation order (at most 100)."""
        answer = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "run_after", "limit": 100,
                                                                             **params})
        answer.raise_for_status()
        return answer.json()["dag_runs"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """A manual run (no logical date); its run id."""
        answer = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        answer.raise_for_status()
        return answer.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json().get("state")

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        answer = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return answer.json().get("state") if answer.ok else None

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log of one try, as the UI shows it (the worker's and the triggerer's lines)."""
        answer = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                           params={"full_content": True}, headers={"Accept": "application/json"})
        answer.raise_for_status()
        content = answer.json()["content"]
        return "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content)

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        answer = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                  "return_value", params={"deserialize": True})
        answer.raise_for_status()
        value = answer.json()["value"]
        return json.loads(value) if isinstance(value, str) else value


@dataclass
class Standalone:
    """A running stack: where it lives, how to reach Airflow, both sandboxes and the state store."""

    directory: Path
    up_output: str
    airflow: Airflow
    zuora_url: str
    zuora_connection: dict
    salesforce_env: dict[str, str]
    _zuora_token: str | None = field(default=None, repr=False)

    def log(self) -> str:
        """The tail of Airflow's log, for failure messages."""
        return (self.directory / "airflow.log").read_text(errors="replace")[-6000:]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, every: float = 2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{self.log()}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """The run's final state (``success`` or ``failed``)."""
        return self.wait_for(f"{dag_id} run {run_id} ending",
                             lambda: (state := self.airflow.run_state(dag_id, run_id)) in ("success", "failed")
                             and state, timeout, every=3)

    def wait_idle(self, dag_id: str) -> None:
        """Wait until every run of the DAG has ended."""
        self.wait_for(f"every {dag_id} run ending", lambda: all(
            r["state"] in ("success", "failed") for r in self.airflow.runs(dag_id)), 900, every=3)

    def pause_when_idle(self, dag_id: str) -> None:
        """Pause the DAG once none of its runs is left: a paused DAG's running session would keep its lock."""
        self.wait_idle(dag_id)
        self.airflow.set_paused(dag_id, True)

    # -- backfills ------------------------------------------------------------------------------

    def create_backfill(self, dag_id: str, create: Callable[[], Any], attempts: int = 5) -> None:
        """Create a backfill with ``create`` (the CLI or the REST API), again if SQLite said "database
        is locked": the stack's metadata database is one SQLite file the scheduler writes all the
        time, and Airflow then leaves the half-made backfill behind (cancelled here, or no new one
        may start). Create it while the DAG is paused: less for the scheduler to write meanwhile."""
        output = ""
        for attempt in range(attempts):
            result = create()
            if isinstance(result, subprocess.CompletedProcess):
                ok, output = result.returncode == 0, result.stdout + result.stderr
            else:
                ok, output = result.status_code == 200, result.text
            if ok:
                return
            assert "database is locked" in output.lower(), output[-3000:]
            answer = self.airflow.call("GET", "/api/v2/backfills", params={"dag_id": dag_id, "limit": 50})
            for orphan in answer.json()["backfills"]:
                if orphan["completed_at"] is None:
                    self.airflow.call("PUT", f"/api/v2/backfills/{orphan['id']}/cancel")
            time.sleep(2 + attempt * 3)
        pytest.fail(f"the backfill could not be created in {attempts} attempts: {output[-3000:]}")

    def finish_backfill(self, dag_id: str, logical_dates: set) -> list[dict]:
        """The DAG's newest backfill once Airflow marks it complete: the backfill runs of
        ``logical_dates`` (a backfill that reprocesses completed runs clears and reruns them)."""
        import datetime as dt

        def completed():
            answer = self.airflow.call("GET", "/api/v2/backfills", params={"dag_id": dag_id, "limit": 50})
            answer.raise_for_status()
            newest = max(answer.json()["backfills"], key=lambda b: b["id"])
            return newest if newest["completed_at"] else None

        self.wait_for(f"the backfill of {dag_id} completing", completed, 1200, every=5)
        return [run for run in self.airflow.runs(dag_id, run_type="backfill")
                if dt.datetime.fromisoformat(run["logical_date"]) in logical_dates]

    # -- Zuora ----------------------------------------------------------------------------------

    def zuora(self, method: str, path: str, body: Any = None, *, token: bool = True) -> Any:
        """One call to the Zuora sandbox (its REST API with a bearer token, or its ``/__admin``)."""
        headers = {"Authorization": f"Bearer {self.zuora_token()}"} if token else {}
        answer = requests.request(method, f"{self.zuora_url}{path}", json=body, headers=headers, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def zuora_token(self) -> str:
        if self._zuora_token is None:
            self._zuora_token = requests.post(f"{self.zuora_url}/oauth/token", timeout=30, data={
                "grant_type": "client_credentials", "client_id": self.zuora_connection["login"],
                "client_secret": self.zuora_connection["password"]}).json()["access_token"]
        return self._zuora_token

    @property
    def zuora_data_dir(self) -> Path:
        return self.directory / "zuora"

    # -- Salesforce and the state store -----------------------------------------------------------

    def salesforce(self):
        """A simple-salesforce client logged in to the Salesforce sandbox."""
        from simple_salesforce import Salesforce

        connection = json.loads(self.salesforce_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        return Salesforce(username=connection["login"], password=connection["password"],
                          security_token=connection["extra"]["security_token"], domain=connection["extra"]["domain"])

    def state_store(self):
        from zuora_sync.state import StateStore

        return StateStore(f"sqlite:///{self.directory / STATE_DB}")

    # -- the Airflow CLI, as an operator types it --------------------------------------------------

    def airflow_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``airflow <args>`` with the stack's environment (``<dir>/airflow.env``, what ``make up`` prints)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "_AIRFLOW_PROCESS_CONTEXT"}
        env.update(read_env_file(self.directory / "airflow.env"))
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)


def start(directory: Path) -> Standalone:
    """``python -m sandbox.stack up`` in ``directory`` on free ports; fails the test if it does not come up."""
    ports = {"airflow": free_port(), "sf": free_port(), "zuora": free_port(), "mail": free_port(),
             "mail_web": free_port(), "worker_log": free_port(), "trigger_log": free_port()}
    up = subprocess.run(
        [sys.executable, "-m", "sandbox.stack", "up", "--dir", str(directory), "--accounts", str(ACCOUNTS),
         "--seed", str(SEED), "--airflow-port", str(ports["airflow"]), "--sf-port", str(ports["sf"]),
         "--zuora-port", str(ports["zuora"]), "--mail-port", str(ports["mail"]),
         "--mail-web-port", str(ports["mail_web"]), "--worker-log-port", str(ports["worker_log"]),
         "--trigger-log-port", str(ports["trigger_log"])],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    if up.returncode != 0:
        stop(directory)
        pytest.fail(f"the stack did not come up:\n{up.stdout}\n{up.stderr}")
    password = json.loads((directory / "airflow" / "passwords.json").read_text())["admin"]
    zuora_env = read_env_file(directory / "zuora.env")
    return Standalone(directory, up.stdout, Airflow(f"http://127.0.0.1:{ports['airflow']}", password),
                      zuora_env["ZUORA_SANDBOX_URL"], json.loads(zuora_env["AIRFLOW_CONN_ZUORA_DEFAULT"]),
                      read_env_file(directory / "salesforce.env"))


def stop(directory: Path) -> subprocess.CompletedProcess:
    """``python -m sandbox.stack down`` (what ``make down`` does)."""
    return subprocess.run([sys.executable, "-m", "sandbox.stack", "down", "--dir", str(directory)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
