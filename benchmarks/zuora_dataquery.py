"""Data Query over a generated tenant: start the Zuora sandbox with N accounts, query every subscription.

    python -m benchmarks.zuora_dataquery --accounts 100000

Starts ``zuora-sync-sandbox zuora --accounts N`` in a temporary data dir (which generates the
tenant and builds its indexes), then submits ``SELECT * FROM subscription`` through Zuora's own
``zuora-sdk`` in JSON Lines and in gzipped CSV, waits for each job and downloads its result file.
Prints a Markdown table row for docs/benchmarks.md. A full sync extracts every object this way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests
from zuora_sdk.models import SubmitDataQueryRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_zuora_sandbox  # noqa: E402  (the same launcher the tests use)


def query(api, text: str, fmt: str, compression: str) -> tuple[float, int, int]:
    """Seconds from submit to downloaded file, output rows, downloaded bytes."""
    started = time.perf_counter()
    job = api.post_data_query_job(SubmitDataQueryRequest(
        query=text, output_format=fmt, compression=compression, output={"target": "S3"})).data
    while job.query_status not in ("completed", "failed", "cancelled"):
        time.sleep(0.2)
        job = api.get_data_query_job(job.id).data
    if job.query_status != "completed":
        raise SystemExit(f"the query job ended {job.query_status}: {job.additional_properties.get('errorMessage')}")
    size = 0
    with requests.get(job.data_file, stream=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
    return time.perf_counter() - started, job.output_rows, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zuora-dataquery-") as tmp:
        started = time.perf_counter()
        sandbox = start_zuora_sandbox(Path(tmp) / "tenant", accounts=args.accounts, seed=args.seed)
        start_seconds = time.perf_counter() - started
        try:
            api = sandbox.sdk_client().data_queries_api()
            json_s, rows, json_bytes = query(api, "SELECT * FROM subscription", "JSON", "NONE")
            csv_s, csv_rows, gz_bytes = query(api, "SELECT * FROM subscription", "CSV", "GZIP")
        finally:
            sandbox.stop()
    assert rows == csv_rows
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| date | accounts | sandbox start incl. generation s | subscriptions | JSON Lines s | rows/s | MB "
          "| CSV+GZIP s | rows/s | MB |")
    print("|---" * 10 + "|")
    print(f"| {dt.date.today().isoformat()} | {args.accounts:,} | {start_seconds:.1f} | {rows:,} | {json_s:.1f} "
          f"| {rows / json_s:,.0f} | {json_bytes / 1e6:.0f} | {csv_s:.1f} | {rows / csv_s:,.0f} | {gz_bytes / 1e6:.0f} |")


if __name__ == "__main__":
    main()
