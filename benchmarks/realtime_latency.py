"""Real-time latency under ``airflow standalone``: from the callout that reaches the threshold to the
session's first Salesforce write (SPEC §10: at most the trigger's poll interval plus 10 s).

    python -m benchmarks.realtime_latency --rounds 3 --threshold 5 --poll-seconds 2

Starts the whole stack (``python -m sandbox.stack up``: both sandboxes, a generated tenant,
``airflow standalone`` with the plugin; the Zuora sandbox's callouts go, signed, to
``/zuora-sync/events``), sets the real-time settings through ``PUT /zuora-sync/settings``,
unpauses ``zuora_realtime_sync`` and lets its first (full) session finish. Then, each round:
``threshold`` account renames in Zuora, one after another; the callouts arrive; the waiting
sensor's trigger fires; the session runs. Measured per round, on one clock (this machine's):

* **event**: when the state store received the callout that reached the threshold;
* **fired**: when the trigger fired (its payload's ``fired_at``);
* **begin**: when ``begin_session`` started (Airflow's task instance);
* **first write**: when Salesforce created the session's first Bulk API 2.0 ingest job.

Also per round, from Airflow's task instances, where the time between the trigger firing and the
first write went, for each task on the way (``begin_session``, then ``preflight`` and
``extract_CustomerAccount`` side by side, ``load_CustomerAccount``): the end of the last task it
waits for → queued (the scheduler), queued → started (a free executor slot, the worker's start-up) and its run time. The machine's load average is read at each
round's event.

Prints a Markdown row per round for docs/benchmarks.md, then p50, p90 and max over the rounds
(p90 by the nearest-rank method: with 20 rounds, the 18th smallest).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, read_env_file  # noqa: E402

DAG = "zuora_realtime_sync"


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))


class Stack:
    def __init__(self, directory: Path, accounts: int) -> None:
        self.directory = directory
        self.ports = {"airflow": free_port(), "sf": free_port(), "zuora": free_port()}
        self.accounts = accounts

    def up(self) -> None:
        subprocess.run([sys.executable, "-m", "sandbox.stack", "up", "--dir", str(self.directory), "--accounts",
                        str(self.accounts), "--seed", "9", "--airflow-port", str(self.ports["airflow"]),
                        "--sf-port", str(self.ports["sf"]), "--zuora-port", str(self.ports["zuora"])],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=900)
        self.base = f"http://127.0.0.1:{self.ports['airflow']}"
        password = json.loads((self.directory / "airflow" / "passwords.json").read_text())["admin"]
        token = requests.post(f"{self.base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        zuora_env = read_env_file(self.directory / "zuora.env")
        self.zuora = zuora_env["ZUORA_SANDBOX_URL"]
        conn = json.loads(zuora_env["AIRFLOW_CONN_ZUORA_DEFAULT"])
        self.zuora_token = requests.post(f"{self.zuora}/oauth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": conn["login"], "client_secret": conn["password"]}
        ).json()["access_token"]
        sf_env = read_env_file(self.directory / "salesforce.env")
        os.environ["REQUESTS_CA_BUNDLE"] = sf_env["REQUESTS_CA_BUNDLE"]
        from simple_salesforce import Salesforce

        c = json.loads(sf_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        self.sf = Salesforce(username=c["login"], password=c["password"], security_token=c["extra"]["security_token"],
                             domain=c["extra"]["domain"])

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "sandbox.stack", "down", "--dir", str(self.directory)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, timeout=180)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.base}{path}", headers=self.headers, timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def runs(self) -> list[dict]:
        return self.api("GET", f"/api/v2/dags/{DAG}/dagRuns", params={"order_by": "run_after", "limit": 100}
                        ).json()["dag_runs"]

    def wait_run(self, index: int, state: str | None = None, task_state: str | None = None,
                 timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if len(runs) > index:
                run = runs[index]
                if state and run["state"] == state:
                    return run
                if run["state"] == "failed":
                    raise SystemExit(f"run {run['dag_run_id']} failed; see {self.directory / 'airflow.log'}")
                if task_state and self.task(run["dag_run_id"], "wait_for_changes").get("state") == task_state:
                    return run
            time.sleep(1)
        raise SystemExit(f"run {index + 1} did not reach {state or task_state} in {timeout:.0f} s")

    def task(self, run_id: str, task_id: str) -> dict:
        response = requests.get(f"{self.base}/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}",
                                headers=self.headers, timeout=30)
        return response.json() if response.ok else {}

    def xcom(self, run_id: str, task_id: str) -> dict:
        value = self.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                "return_value", params={"deserialize": True}).json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    def rename(self, account_id: str, name: str) -> None:
        requests.post(f"{self.zuora}/v1/action/update", timeout=30,
                      headers={"Authorization": f"Bearer {self.zuora_token}"},
                      json={"type": "Account", "objects": [{"Id": account_id, "Name": name}]}).raise_for_status()

    def task_instances(self, run_id: str) -> dict[str, dict]:
        body = self.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def ingest_jobs(self) -> list[dict]:
        return self.sf.restful("jobs/ingest")["records"]


def measure(rounds: int, threshold: int, poll_seconds: int, accounts: int, keep: str | None = None) -> list[dict]:
    from sqlalchemy import select

    from zuora_sync.state import StateStore
    from zuora_sync.state.models import ChangeEvent

    with tempfile.TemporaryDirectory(prefix="realtime-latency-") as tmp:
        stack = Stack(Path(keep or tmp) / "stack", accounts)
        try:
            stack.up()
            stack.api("PUT", "/zuora-sync/settings", json={
                "max_events_before_sync": threshold, "max_minutes_between_syncs": 600,
                "trigger_poll_seconds": poll_seconds})
            stack.api("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False})
            stack.wait_run(0, state="success", timeout=900)  # the mode-change full sync
            store = StateStore(f"sqlite:///{stack.directory / 'airflow' / 'zuora_sync' / 'state.db'}")
            ids = [r["Id"] for r in requests.post(
                f"{stack.zuora}/v1/action/query", timeout=30, headers={"Authorization": f"Bearer {stack.zuora_token}"},
                json={"queryString": "select Id from Account where Status = 'Active'"}).json()["records"]]
            results = []
            for n in range(rounds):
                run = stack.wait_run(n + 1, task_state="deferred")
                jobs_before = {job["id"] for job in stack.ingest_jobs()}
                for i in range(threshold):
                    if i == threshold - 1:
                        load_at_event = os.getloadavg()[0]
                    stack.rename(ids[(n * threshold + i) % len(ids)], f"Latency round {n} change {i}")
                stack.wait_run(n + 1, state="success")
                # The event that reached the threshold: the Nth one the round's session consumed.
                session_id = store.list_sessions(limit=1)[0]["id"]
                with store._read() as conn:  # noqa: SLF001 (a read the store has no method for)
                    received = conn.execute(select(ChangeEvent.received_at)
                                            .where(ChangeEvent.consumed_session_id == session_id)
                                            .order_by(ChangeEvent.id)).scalars().all()
                event = received[threshold - 1]
                fired = _time(stack.xcom(run["dag_run_id"], "wait_for_changes")["fired_at"])
                tis = stack.task_instances(run["dag_run_id"])
                begin = _time(tis["begin_session"]["start_date"])
                new_jobs = [job for job in stack.ingest_jobs() if job["id"] not in jobs_before]
                first_write = min(_time(job["createdDate"]) for job in new_jobs)
                results.append({"round": n + 1, "event": event, "fired": (fired - event).total_seconds(),
                                "begin": (begin - event).total_seconds(),
                                "first_write": (first_write - event).total_seconds(),
                                "load": load_at_event, "steps": steps(tis, fired, first_write)})
            return results
        finally:
            stack.down()


#: The tasks on the way to the session's first Salesforce write, in order.
PATH_TASKS = ("begin_session", "preflight", "extract_CustomerAccount", "load_CustomerAccount")
#: Each one's upstream tasks among them: the preflight and the extracts both follow begin_session.
UPSTREAM = {"begin_session": (), "preflight": ("begin_session",), "extract_CustomerAccount": ("begin_session",),
            "load_CustomerAccount": ("preflight", "extract_CustomerAccount")}


def steps(tis: dict[str, dict], fired: dt.datetime, first_write: dt.datetime) -> dict[str, float]:
    """Seconds of each step from the trigger firing to the first write.

    For each task on the way: ``queue:<task>`` (the last of its upstream tasks' ends, or the trigger
    firing, → the scheduler queueing it), ``start:<task>`` (queued → started: a free executor slot
    and the worker's start-up) and ``run:<task>`` (its run time; for the load, start → its first
    Bulk job).
    """
    out: dict[str, float] = {}
    ends: dict[str, dt.datetime] = {}
    for task_id in PATH_TASKS:
        ti = tis[task_id]
        queued, start = _time(ti["queued_when"]), _time(ti["start_date"])
        ends[task_id] = first_write if task_id == PATH_TASKS[-1] else _time(ti["end_date"])
        after = max((ends[u] for u in UPSTREAM[task_id]), default=fired)
        out[f"queue:{task_id}"] = (queued - after).total_seconds()
        out[f"start:{task_id}"] = (start - queued).total_seconds()
        out[f"run:{task_id}"] = (ends[task_id] - start).total_seconds()
    return out


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=5)
    parser.add_argument("--poll-seconds", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--keep", metavar="DIR", help="put the stack in DIR and keep it (task logs) after it stops")
    args = parser.parse_args()
    results = measure(args.rounds, args.threshold, args.poll_seconds, args.accounts, args.keep)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"airflow standalone (LocalExecutor, parallelism 4); threshold {args.threshold}, poll every "
          f"{args.poll_seconds:g} s; target: first write ≤ {args.poll_seconds + 10:g} s after the event")
    print("| round | load avg (1 min) | event → trigger fired (s) | event → begin_session started (s) "
          "| event → first Salesforce write (s) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['round']} | {r['load']:.2f} | {r['fired']:.1f} | {r['begin']:.1f} | {r['first_write']:.1f} |")
    for label, p in (("p50", 50), ("p90", 90), ("max", 100)):
        print(f"| {label} | | {percentile([r['fired'] for r in results], p):.1f} "
              f"| {percentile([r['begin'] for r in results], p):.1f} "
              f"| {percentile([r['first_write'] for r in results], p):.1f} |")
    target = args.poll_seconds + 10
    p90 = percentile([r["first_write"] for r in results], 90)
    print(f"\np90 first write {p90:.1f} s: target ≤ {target:g} s {'met' if p90 <= target else 'MISSED'}; "
          f"{sum(r['first_write'] > target for r in results)} of {len(results)} rounds over it")
    names = list(results[0]["steps"])
    print("\nfired → first write, step by step (s): queue = the end of the last task it waits for (or the firing) → queued; "
          "start = queued → started; run = started → ended (the load: → its first Bulk job)")
    print("| round | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in results:
        print(f"| {r['round']} | " + " | ".join(f"{r['steps'][k]:.1f}" for k in names) + " |")
    for label, p in (("p50", 50), ("p90", 90), ("max", 100)):
        print(f"| {label} | " + " | ".join(f"{percentile([r['steps'][k] for r in results], p):.1f}" for k in names)
              + " |")


if __name__ == "__main__":
    main()
