"""A full sync of a generated tenant, measured: records/s, peak memory, API requests per 10,000 records.

    python -m benchmarks.sync_full --accounts 1000 --accounts 10000

For each size: start both sandboxes with the same generated tenant, run ``zuora_full_sync`` with
``dag.test()`` in a child process (so its peak RSS is the sync's own: every task runs in it), then
read the session's counts and API requests from the state store. As the limit to compare with, the
same Salesforce-ready rows (the sync's staged CSV files) are uploaded again, straight through
simple-salesforce Bulk API 2.0, into a fresh Salesforce sandbox (SPEC §10 asks for ≥ 0.8× that).
Prints Markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "sync"))

from conftest import start_salesforce_sandbox, start_zuora_sandbox  # noqa: E402
from sync_harness import airflow_db_migrate, stack_env  # noqa: E402

SEED = 3
_CHILD = """
import sys, time
sys.path.insert(0, {tests!r}); sys.path.insert(0, {sync!r})
from sync_harness import run_dag
started = time.perf_counter()
state = run_dag("zuora_full_sync")
print("RESULT", state, time.perf_counter() - started)
"""


def run_size(accounts: int, work: Path) -> dict:
    zuora = start_zuora_sandbox(work / "zuora", accounts=accounts, seed=SEED)
    salesforce = start_salesforce_sandbox(work / "salesforce", accounts=accounts, seed=SEED)
    try:
        settings = json.dumps({"staging_url": f"file://{work / 'staging'}", "lock_poll_seconds": 1})
        env = dict(os.environ)
        env.update(stack_env(zuora, salesforce, work / "state.db", work / "staging", settings))
        env.setdefault("AIRFLOW_HOME", str(work / "airflow"))
        env.update({"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
                    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "PYTHONPATH": str(ROOT / "include")})
        airflow_db_migrate(env)
        output = work / "sync.log"
        with open(output, "w") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests"), sync=str(ROOT / "tests" / "sync"))],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            peak = 0
            watched = psutil.Process(child.pid)
            while child.poll() is None:  # the sync's own peak RSS: every task runs in this process
                try:
                    peak = max(peak, watched.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.1)
        text = output.read_text()
        result = [line for line in text.splitlines() if line.startswith("RESULT")]
        if not result or result[0].split()[1] != "success":
            raise SystemExit(f"the full sync did not succeed:\n{text[-5000:]}")
        seconds = float(result[0].split()[2])
        peak_mb = peak / 1e6
        os.environ.update({k: env[k] for k in ("AIRFLOW_CONN_ZUORA_SYNC_STATE",)})
        from zuora_sync.state import StateStore

        store = StateStore(f"sqlite:///{work / 'state.db'}")
        session = store.get_session(store.list_sessions(limit=1)[0]["id"])
        totals, calls = session["totals"], session["api_calls"]
        records = totals["extracted"]
        staged = sorted((work / "staging").rglob("upsert-*.csv"))
        baseline_s = upload_baseline(staged, work)
        staged_rows = sum(sum(1 for _ in open(p, encoding="utf-8")) - 1 for p in staged)
    finally:
        zuora.stop()
        salesforce.stop()
    return {
        "accounts": accounts, "records": records, "written": totals["upserted"] + totals["deleted"],
        "rejected": totals["failed"], "seconds": seconds, "rate": records / seconds,
        "baseline_rate": staged_rows / baseline_s if baseline_s else 0.0, "peak_mb": peak_mb,
        "zuora_per_10k": calls["zuora"] / records * 10_000, "sf_per_10k": calls["salesforce"] / records * 10_000,
        "zuora_calls": calls["zuora"], "sf_calls": calls["salesforce"], "status": session["status"],
    }


def upload_baseline(files: list[Path], work: Path) -> float:
    """Seconds to upsert the staged CSVs straight through simple-salesforce into a fresh org."""
    fresh = start_salesforce_sandbox(work / "baseline", accounts=0, seed=SEED)
    try:
        os.environ["REQUESTS_CA_BUNDLE"] = fresh.ca_bundle
        sf = fresh.login()
        started = time.perf_counter()
        for path in files:
            sobject = {"CustomerAccount": "Zuora__CustomerAccount__c", "Subscription": "Zuora__Subscription__c",
                       "RatePlan": "Zuora__SubscriptionRatePlan__c", "RatePlanCharge": "Zuora__SubscriptionProductCharge__c",
                       "Invoice": "Zuora__ZInvoice__c", "Payment": "Zuora__Payment__c",
                       "InvoicePayment": "Zuora__PaymentInvoice__c"}.get(path.parent.name)
            if sobject:
                sf.bulk2.__getattr__(sobject).upsert(csv_file=str(path), external_id_field="Zuora__External_Id__c", wait=0.2)
        return time.perf_counter() - started
    finally:
        fresh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, action="append", help="tenant sizes (repeatable)")
    args = parser.parse_args()
    rows = []
    for accounts in args.accounts or [1000, 10000]:
        with tempfile.TemporaryDirectory(prefix="sync-full-") as tmp:
            rows.append(run_size(accounts, Path(tmp)))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| date | accounts | Zuora records | written to SF | rejected | full sync s | records/s | raw Bulk 2.0 upload rows/s "
          "| peak RSS MB | Zuora req / 10k | SF req / 10k | status |")
    print("|---" * 12 + "|")
    for m in rows:
        print(f"| {dt.date.today().isoformat()} | {m['accounts']:,} | {m['records']:,} | {m['written']:,} | {m['rejected']:,} "
              f"| {m['seconds']:.1f} | {m['rate']:,.0f} | {m['baseline_rate']:,.0f} | {m['peak_mb']:.0f} "
              f"| {m['zuora_per_10k']:.1f} ({m['zuora_calls']}) | {m['sf_per_10k']:.1f} ({m['sf_calls']}) | {m['status']} |")


if __name__ == "__main__":
    main()
