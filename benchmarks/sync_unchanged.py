"""A full sync twice on an unchanged tenant: what the second one writes and what it costs (issue 14).

    python -m benchmarks.sync_unchanged --accounts 10000

Starts both sandboxes with the same generated tenant, runs ``zuora_full_sync`` with ``dag.test()``
in a child process, then again without changing anything, and prints for each run: seconds, rows
written (Salesforce accepted: upserted + deleted), rows sent and refused again (rejected rows are
retried every session, SPEC §4), the session's created / updated / unchanged / removed counts, and
the Salesforce API requests two ways — as the session recorded them and as the Salesforce sandbox
counted them (its daily-usage counter, read through its admin API before and after each run, which
counts every request of every client). Target (issue 14): the second run writes 0 rows and uses
at most 10% of the first's Salesforce API requests.

The second run's requests are split into what the retried rejections cost (their Bulk jobs, from
the task log's "Bulk API 2.0 upsert … N API requests" lines) and the rest. Prints Markdown rows for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "sync"))

from conftest import start_salesforce_sandbox, start_zuora_sandbox  # noqa: E402
from benchmarks.sync_full import SEED, last_session, run_dag_child, sync_env  # noqa: E402

_BULK_LINE = re.compile(r"Bulk API 2\.0 upsert of (\S+): job \S+, (\d+) processed, (\d+) failed, .*?, (\d+) API requests")


def retry_jobs(log_path: Path) -> tuple[int, int]:
    """(Bulk upsert jobs in which every row failed, their API requests), from the sync's log."""
    jobs = requests = 0
    seen = set()
    for line in log_path.read_text().splitlines():
        match = _BULK_LINE.search(line)
        if match and match.group(0) not in seen:   # dag.test() logs each line twice (task log and stdout)
            seen.add(match.group(0))
            if int(match.group(2)) == int(match.group(3)):
                jobs += 1
                requests += int(match.group(4))
    return jobs, requests


def measure(accounts: int, work: Path) -> list[dict]:
    zuora = start_zuora_sandbox(work / "zuora", accounts=accounts, seed=SEED)
    salesforce = start_salesforce_sandbox(work / "salesforce", accounts=accounts, seed=SEED)
    runs = []
    try:
        env = sync_env(zuora, salesforce, work)
        for index in (1, 2):
            before = salesforce.admin("GET", "limits")["used"]
            log_path = work / f"sync-{index}.log"
            seconds, _ = run_dag_child("zuora_full_sync", env, log_path)
            counted = salesforce.admin("GET", "limits")["used"] - before
            session = last_session(work)
            totals = session["totals"]
            jobs, job_requests = retry_jobs(log_path)
            runs.append({"run": index, "seconds": seconds, "status": session["status"],
                         "extracted": totals["extracted"], "written": totals["upserted"] + totals["deleted"],
                         "refused": totals["failed"], "created": totals["created"], "updated": totals["updated"],
                         "unchanged": totals["unchanged"], "removed": totals["removed"],
                         "sf_session": session["api_calls"]["salesforce"], "sf_sandbox": counted,
                         "refused_jobs": jobs, "refused_job_requests": job_requests})
    finally:
        zuora.stop()
        salesforce.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="zuora-sync-unchanged-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = measure(args.accounts, work)
    first, second = runs
    today = dt.date.today().isoformat()
    print(f"\n{args.accounts:,} accounts, seed {SEED}, {time.perf_counter() - started:.0f} s in all; work dir {work}\n")
    print("| date | accounts | run | status | s | Zuora records | written | refused (retried) | created | updated "
          "| unchanged | removed | SF requests (session) | SF requests (sandbox) | of which retried rejections |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {today} | {args.accounts:,} | {r['run']} | {r['status']} | {r['seconds']:.1f} | {r['extracted']:,} "
              f"| {r['written']:,} | {r['refused']:,} | {r['created']:,} | {r['updated']:,} | {r['unchanged']:,} "
              f"| {r['removed']:,} | {r['sf_session']:,} | {r['sf_sandbox']:,} "
              f"| {r['refused_job_requests']:,} ({r['refused_jobs']} jobs) |")
    share = second["sf_sandbox"] / first["sf_sandbox"] if first["sf_sandbox"] else float("inf")
    rest = second["sf_sandbox"] - second["refused_job_requests"]
    print(f"\nSecond run: {second['written']:,} rows written; {second['sf_sandbox']:,} Salesforce requests = "
          f"{share:.1%} of the first's {first['sf_sandbox']:,} (target ≤ 10%); without the retried rejections' "
          f"Bulk jobs: {rest:,} = {rest / first['sf_sandbox']:.1%}")


if __name__ == "__main__":
    main()
