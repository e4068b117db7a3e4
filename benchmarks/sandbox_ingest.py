"""Bulk API 2.0 throughput of the Salesforce sandbox: ingest and query back N customer accounts.

    python -m benchmarks.sandbox_ingest --rows 1000000

Starts a fresh sandbox in a temporary data dir, writes N ``Zuora__CustomerAccount__c`` rows as
CSV, upserts them with unmodified simple-salesforce (``sf.bulk2``), then reads them back with a
Bulk API 2.0 query job. Prints a Markdown table for docs/benchmarks.md. The sandbox is the
"Salesforce" every sync benchmark loads into, so its own speed bounds theirs.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_salesforce_sandbox  # noqa: E402  (the same launcher the tests use)
from sandbox.crm_accounts import crm_account_id  # noqa: E402

ACCOUNTS = 1000
SEED = 11
HEADER = ["Zuora__External_Id__c", "Name", "Zuora__Account__c", "Zuora__AccountNumber__c", "Zuora__Balance__c",
          "Zuora__Status__c", "Zuora__LastInvoiceDate__c"]


def customer_row(index: int, seed: int = SEED, accounts: int = ACCOUNTS) -> list[str]:
    """The ``index``-th generated customer account (deterministic, so tests can check values)."""
    return [
        f"{index:032x}",
        f"Customer {index}",
        crm_account_id(seed, index % accounts),
        f"A{index:08d}",
        f"{index % 100000}.{index % 100:02d}",
        "Active" if index % 7 else "Canceled",
        f"2024-{index % 12 + 1:02d}-{index % 28 + 1:02d}",
    ]


def write_customer_csv(path: Path, rows: int) -> int:
    """Write ``rows`` generated customer accounts to ``path``; returns the file size in bytes."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(customer_row(i) for i in range(rows))
    return path.stat().st_size


def run(rows: int, work: Path) -> dict[str, float]:
    sandbox = start_salesforce_sandbox(work / "org", accounts=ACCOUNTS, seed=SEED)
    os.environ["REQUESTS_CA_BUNDLE"] = sandbox.ca_bundle
    try:
        sf = sandbox.login()
        csv_path = work / "customers.csv"
        size = write_customer_csv(csv_path, rows)
        started = time.perf_counter()
        results = sf.bulk2.Zuora__CustomerAccount__c.upsert(
            csv_file=str(csv_path), external_id_field="Zuora__External_Id__c", wait=0.2
        )
        upsert_seconds = time.perf_counter() - started
        failed = sum(r["numberRecordsFailed"] for r in results)
        server_ms = sum(
            sf.bulk2.Zuora__CustomerAccount__c._client.get_job(r["job_id"], False)["totalProcessingTime"]
            for r in results
        )
        started = time.perf_counter()
        read = 0
        for page in sf.bulk2.Zuora__CustomerAccount__c.query(
            "SELECT Zuora__External_Id__c, Name, Zuora__Account__r.Name, Zuora__Balance__c FROM Zuora__CustomerAccount__c",
            max_records=250_000, wait=0.2,
        ):
            read += page.count("\n") - 1
        query_seconds = time.perf_counter() - started
        rss = psutil.Process(sandbox.process.pid).memory_info().rss
    finally:
        sandbox.stop()
    return {
        "rows": rows, "csv_mb": size / 1e6, "jobs": len(results), "failed": failed,
        "upsert_s": upsert_seconds, "server_s": server_ms / 1000, "query_s": query_seconds, "read": read,
        "sandbox_rss_mb": rss / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sandbox-ingest-") as tmp:
        m = run(args.rows, Path(tmp))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| rows | CSV MB | jobs | upsert wall s (client+server) | server processing s | rows/s (server) "
          "| query back s | rows read | sandbox RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {m['rows']:,} | {m['csv_mb']:.0f} | {m['jobs']} | {m['upsert_s']:.1f} | {m['server_s']:.1f} "
          f"| {m['rows'] / m['server_s']:,.0f} | {m['query_s']:.1f} | {m['read']:,} | {m['sandbox_rss_mb']:.0f} |")
    if m["failed"] or m["read"] != m["rows"]:
        raise SystemExit(f"wrong result: {m['failed']} failed rows, {m['read']} rows read back")


if __name__ == "__main__":
    main()
