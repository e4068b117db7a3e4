"""The production shape with one and with two Celery workers: the sync's wall times.

    python -m benchmarks.celery_workers                    # 2,000 accounts; 1×2, 2×2 and 1×4 slots
    python -m benchmarks.celery_workers --shape 1x2 --shape 2x2 --accounts 2000

For each shape (workers × task slots per worker, ``[celery] worker_concurrency``),
``tests/production/celery_stack.py`` starts docker-compose.yaml's services as local processes, as
the test ``tests/production/`` does (PostgreSQL, Redis, the API server, scheduler, dag-processor,
triggerer, the workers, both sandboxes with the same generated tenant, staging on the shared
``file://`` volume). Then, one after another: ``zuora_full_sync``; a rename of 200 accounts in
Zuora; ``zuora_incremental_sync``. Each run's wall time is Airflow's (the DAG run's start to end),
with the session's API requests from the state store, how many tasks each worker ran and the
largest memory (RSS) each worker's process tree reached. Printed as Markdown rows for
docs/deployment.md.

All services share this machine's cores, so a second worker adds task slots, not CPU: the figures
say what the Celery hand-offs cost and whether a sync's parallel tasks were waiting for a slot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tests" / "sync", ROOT / "tests"):
    sys.path.insert(0, str(path))

from production.celery_stack import CeleryStack  # noqa: E402
from sync_harness import zuora_call  # noqa: E402

RENAMED = 200


def wall(stack: CeleryStack, dag_id: str, run_id: str) -> float:
    stack.wait_for(f"{dag_id} ending", lambda: stack.airflow.run_state(dag_id, run_id) in ("success", "failed"),
                   900, every=1)
    run = stack.airflow.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
    if run["state"] != "success":
        raise SystemExit(f"{dag_id} {run_id} ended {run['state']}\n{stack.tails()}")
    start, end = (dt.datetime.fromisoformat(run[k]) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def per_worker(stack: CeleryStack, dag_id: str, run_id: str) -> str:
    tis = stack.airflow.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                             params={"limit": 100}).json()["task_instances"]
    counts: dict[str, int] = {}
    for ti in tis:
        counts[ti["hostname"]] = counts.get(ti["hostname"], 0) + 1
    return " / ".join(str(counts[name]) for name in sorted(counts))


def session_requests(stack: CeleryStack, dag_id: str, run_id: str) -> tuple[int, int, int]:
    """(records written, Zuora requests, Salesforce requests) of the run's session."""
    store = stack.state_store()
    for row in store.list_sessions(limit=20):
        if row["dag_id"] == dag_id and row["run_id"] == run_id:
            totals, calls = row["totals"], row["api_calls"]
            return totals.get("upserted", 0) + totals.get("deleted", 0), calls["zuora"], calls["salesforce"]
    return 0, 0, 0


class PeakMemory(threading.Thread):
    """The largest RSS each worker's process tree (Celery, its pool, supervisors, tasks) reached."""

    def __init__(self, stack: CeleryStack):
        super().__init__(daemon=True)
        self.stack, self.peak, self.done = stack, {}, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.wait(0.5):
            for name in self.stack.worker_names():
                total = 0
                for pid in self.stack.services[name].pids():
                    try:
                        total += psutil.Process(pid).memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                self.peak[name] = max(self.peak.get(name, 0), total)


def measure(workers: int, slots: int, accounts: int, work: Path) -> dict:
    stack = CeleryStack(work, workers=workers, accounts=accounts,
                        overrides={"AIRFLOW__CELERY__WORKER_CONCURRENCY": str(slots)})
    started = time.monotonic()
    stack.start()
    up = time.monotonic() - started
    memory = PeakMemory(stack)
    memory.start()
    try:
        airflow = stack.airflow
        result = {"workers": workers, "slots": slots, "accounts": accounts, "up": up}
        for dag_id in ("zuora_full_sync", "zuora_incremental_sync"):
            if dag_id == "zuora_incremental_sync":
                accounts_ = zuora_call(stack.zuora, "POST", "/v1/action/query", {
                    "queryString": "select Id from Account where Status = 'Active'"})["records"][:RENAMED]
                for start in range(0, len(accounts_), 50):
                    zuora_call(stack.zuora, "POST", "/v1/action/update", {"type": "Account", "objects": [
                        {"Id": a["Id"], "Name": f"Benchmark rename {start + n}"}
                        for n, a in enumerate(accounts_[start:start + 50])]})
            airflow.set_paused(dag_id, False)
            run_id = airflow.trigger(dag_id)
            result[dag_id] = wall(stack, dag_id, run_id)
            result[f"{dag_id} tasks"] = per_worker(stack, dag_id, run_id)
            result[f"{dag_id} requests"] = session_requests(stack, dag_id, run_id)
            airflow.set_paused(dag_id, True)
        result["peak MB"] = " / ".join(f"{memory.peak[name] / 2**20:.0f}" for name in sorted(memory.peak))
        return result
    finally:
        memory.done.set()
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--shape", action="append", help="WORKERSxSLOTS, e.g. 2x2 (repeatable)")
    args = parser.parse_args(argv)
    shapes = [tuple(int(n) for n in s.lower().split("x")) for s in (args.shape or ["1x2", "2x2", "1x4"])]
    print(f"# {platform.machine()}, Python {platform.python_version()}, {dt.date.today()}", flush=True)
    print("| date | accounts | workers × slots | stack up s | full sync s | tasks per worker | "
          "incremental s (200 renamed) | tasks per worker | SF requests (full / incremental) | "
          "peak RSS per worker MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for workers, slots in shapes:
        with tempfile.TemporaryDirectory(prefix="celery-bench-") as tmp:
            r = measure(workers, slots, args.accounts, Path(tmp) / "stack")
        full, inc = "zuora_full_sync", "zuora_incremental_sync"
        print(f"| {dt.date.today()} | {args.accounts:,} | {workers} × {slots} | {r['up']:.0f} | {r[full]:.1f} | "
              f"{r[full + ' tasks']} | {r[inc]:.1f} | {r[inc + ' tasks']} | "
              f"{r[full + ' requests'][2]} / {r[inc + ' requests'][2]} | {r['peak MB']} |", flush=True)


if __name__ == "__main__":
    main()
