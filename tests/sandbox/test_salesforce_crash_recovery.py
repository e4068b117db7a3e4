"""A sandbox killed in the middle of a Bulk job resumes it after a restart, applying every row once."""

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
