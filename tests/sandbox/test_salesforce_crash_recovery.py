"""A sandbox killed in the middle of a Bulk 2.0 job, or with Bulk 1.0 batches queued and running, resumes
them after a restart, applying every row once."""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import time

import requests

from conftest import ROOT, start_salesforce_sandbox

sys.path.insert(0, str(ROOT))
from benchmarks.sandbox_ingest import ACCOUNTS, SEED, write_customer_csv  # noqa: E402

ROWS = 150_000


def job_info(sf, job_id: str) -> dict:
    url = f"https://{sf.sf_instance}/services/data/v59.0/jobs/ingest/{job_id}"
    return requests.get(url, headers={"Authorization": f"Bearer {sf.session_id}"}, timeout=30).json()


def test_killed_mid_job_resumes_without_losing_or_repeating_rows(tmp_path, monkeypatch):
    data_dir = tmp_path / "org"
    sandbox = start_salesforce_sandbox(data_dir, accounts=ACCOUNTS, seed=SEED)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
    sf = sandbox.login()
    csv_path = tmp_path / "customers.csv"
    write_customer_csv(csv_path, ROWS)
    client = sf.bulk2.Zuora__CustomerAccount__c._client
    job = client.create_job("insert")
    client.upload_job_data(job["id"], csv_path.read_text())
    client.close_job(job["id"])
    deadline = time.monotonic() + 60
    while True:
        info = job_info(sf, job["id"])
        if info["state"] == "InProgress" and info["numberRecordsProcessed"] > 0:
            break
        assert info["state"] != "JobComplete", "the job finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(sandbox.process.pid, signal.SIGKILL)
    sandbox.process.wait()

    restarted = start_salesforce_sandbox(data_dir, port=sandbox.port, accounts=ACCOUNTS, seed=SEED)
    try:
        deadline = time.monotonic() + 120
        while (info := job_info(sf, job["id"]))["state"] != "JobComplete":
            assert info["state"] == "InProgress" and time.monotonic() < deadline
            time.sleep(0.2)
        assert info["numberRecordsProcessed"] == ROWS and info["numberRecordsFailed"] == 0
        # An insert applied twice would duplicate records (and fail on the unique external id).
        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c")["totalSize"] == ROWS
        successful = list(csv.DictReader(io.StringIO(client.get_ingest_results(job["id"], "successfulResults"))))
        assert len(successful) == ROWS
        assert len({row["sf__Id"] for row in successful}) == ROWS
    finally:
        restarted.stop()


def test_killed_with_bulk_v1_batches_queued_and_running_processes_each_once(tmp_path, monkeypatch):
    """Bulk API 1.0 batches commit with their records: after a kill, the running and the queued
    batch both run at the next start, and each record is written once."""
    data_dir = tmp_path / "org"
    sandbox = start_salesforce_sandbox(data_dir)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
    sf = sandbox.login()
    sandbox.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 60})  # in memory: gone after the kill
    base = f"https://{sf.sf_instance}/services/async/59.0/job"
    headers = {"X-SFDC-Session": sf.session_id, "Content-Type": "application/json"}
    job = requests.post(base, headers=headers, timeout=30,
                        json={"operation": "insert", "object": "Account", "contentType": "JSON"}).json()
    batches = [
        requests.post(f"{base}/{job['id']}/batch", headers=headers, timeout=30,
                      json=[{"Name": f"Crash {b}-{i}"} for i in range(50)]).json()["id"]
        for b in range(2)
    ]

    def state(batch_id: str) -> str:
        return requests.get(f"{base}/{job['id']}/batch/{batch_id}", headers=headers, timeout=30).json()["state"]

    deadline = time.monotonic() + 30
    while state(batches[0]) != "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert state(batches[1]) == "Queued"
    os.kill(sandbox.process.pid, signal.SIGKILL)
    sandbox.process.wait()

    restarted = start_salesforce_sandbox(data_dir, port=sandbox.port)
    try:
        deadline = time.monotonic() + 60
        while any(state(b) != "Completed" for b in batches):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sf.query("SELECT COUNT() FROM Account WHERE Name LIKE 'Crash %'")["totalSize"] == 100
        results = [requests.get(f"{base}/{job['id']}/batch/{b}/result", headers=headers, timeout=30).json() for b in batches]
        assert [len(r) for r in results] == [50, 50] and all(x["success"] for r in results for x in r)
    finally:
        restarted.stop()
