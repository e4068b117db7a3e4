"""A full sync under a real executor with parallel task slots, side by side with the baselines.

    python -m benchmarks.sync_standalone --accounts 10000

``benchmarks.sync_full`` runs the DAG with ``dag.test()``: every task one after another in one
process. This runs it as a user does: ``python -m sandbox.stack up`` (what ``make up`` does: both
sandboxes with a generated tenant and ``airflow standalone``: LocalExecutor, ``[core] parallelism``
4, SQLite), the run triggered through Airflow's REST API, so extracts run side by side and a child's
load starts as soon as its parent's load and its own extract are done. Each task is its own process
(a supervisor and a task runner), as under every real executor.

Timed: the DAG run as Airflow records it (its ``start_date`` to ``end_date``, scheduling between
tasks included) and the session as its history records it (``begin_session`` to ``end_session``).
Then the stack is stopped, and the sync's staged rows are uploaded into fresh orgs, straight
through Bulk API 2.0 and through ``SalesforceBulkOperator``, exactly as ``benchmarks.sync_full``
does (its functions). Prints a Markdown row, each task's seconds and start (from the run's start),
and the run's critical path: the chain of tasks that set its length, and how much of it the
operators' ``execute`` took, the rest being Airflow's own per-task cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "stack"))
sys.path.insert(0, str(ROOT / "tests"))

import standalone  # noqa: E402  (tests/stack/standalone.py: the stack as the tests start it)
from benchmarks import sync_full  # noqa: E402

DAG_ID = "zuora_full_sync"


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def run(accounts: int, work: Path) -> dict:
    standalone.ACCOUNTS, standalone.SEED = accounts, sync_full.SEED  # the baselines' orgs are seeded alike
    stack_dir = work / "stack"
    stack = standalone.start(stack_dir)
    try:
        airflow = stack.airflow
        # The baselines upload the rows the sync staged: keep them past the session's end.
        saved = airflow.call("PUT", "/zuora-sync/settings", json={"keep_staged_files": True})
        if saved.status_code != 200:
            raise SystemExit(f"could not set keep_staged_files: {saved.status_code} {saved.text}")
        airflow.set_paused(DAG_ID, False)
        run_id = airflow.trigger(DAG_ID)
        state = stack.wait_for_run(DAG_ID, run_id, timeout=7200)
        airflow.set_paused(DAG_ID, True)
        if state != "success":
            raise SystemExit(f"the full sync ended {state}:\n{stack.log()}")
        dag_run = airflow.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
        started = _instant(dag_run["start_date"])
        run_seconds = (_instant(dag_run["end_date"]) - started).total_seconds()
        tis = airflow.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
                           params={"limit": 100}).json()["task_instances"]
        tasks = sorted(((ti["task_id"], (_instant(ti["start_date"]) - started).total_seconds(), ti["duration"] or 0.0)
                        for ti in tis if ti["start_date"]), key=lambda t: t[1])
        upstream: dict[str, set[str]] = {}
        for task in airflow.call("GET", f"/api/v2/dags/{DAG_ID}/tasks").json()["tasks"]:
            for child in task["downstream_task_ids"]:
                upstream.setdefault(child, set()).add(task["task_id"])
        path = critical_path(tis, upstream, stack_dir / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}",
                             started)
        store = stack.state_store()
        session = store.get_session(store.list_sessions(limit=1)[0]["id"])
    finally:
        standalone.stop(stack_dir)
    session_seconds = (sync_full._instant(session["ended_at"]) -
                       sync_full._instant(session["started_at"])).total_seconds()
    totals, calls = session["totals"], session["api_calls"]
    objects = sync_full.merged(sync_full.staged_objects(stack_dir / "airflow" / "zuora_sync" / "staging"),
                               work / "merged")
    env = dict(os.environ)
    env.update({"AIRFLOW_HOME": str(work / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "True", "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "PYTHONPATH": str(ROOT / "include")})
    sync_full.airflow_db_migrate(env)
    bulk2 = sync_full.upload_baseline(objects, work, accounts)
    operator = sync_full.upload_bulk_operator(objects, work, accounts, env)
    written = totals["upserted"] + totals["deleted"]
    bulk2_rate, operator_rate = bulk2["loaded"] / bulk2["seconds"], operator["loaded"] / operator["seconds"]
    return {"accounts": accounts, "records": totals["extracted"], "written": written, "rejected": totals["failed"],
            "run_seconds": run_seconds, "session_seconds": session_seconds, "status": session["status"],
            "run_rate": written / run_seconds, "session_rate": written / session_seconds,
            "bulk2": bulk2, "operator": operator, "bulk2_rate": bulk2_rate, "operator_rate": operator_rate,
            "sf_calls": calls["salesforce"], "zuora_calls": calls["zuora"], "tasks": tasks, "path": path}


def executed(log: Path) -> tuple[dt.datetime, dt.datetime] | None:
    """When the operator's ``execute`` began and ended, from a task's log (JSON lines): the end of
    Airflow's "Pre Execute" group (the task runner's start-up: the DAG file parsed) and the start
    of its "Post Execute" group (the XCom push, the state sent)."""
    import json

    began = ended = None
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event, stamp = str(record.get("event")), record.get("timestamp")
        if event == "::endgroup::" and began is None and stamp:
            began = _instant(stamp)
        elif event == "::group::Post Execute" and stamp:
            ended = _instant(stamp)
    return (began, ended) if began and ended else None


def critical_path(tis: list[dict], upstream: dict[str, set[str]], logs: Path, started: dt.datetime) -> dict:
    """The chain of tasks that set the run's length, from its last task back, each one's upstream
    task that ended last; and how its seconds split: in the operators' ``execute`` (the sync's own
    work) and the rest (Airflow's: the scheduler's and executor's hops between tasks, each task
    process's start-up, DAG parse and teardown)."""
    by_id = {ti["task_id"]: ti for ti in tis if ti["start_date"] and ti["end_date"]}
    task = max(by_id.values(), key=lambda ti: ti["end_date"])["task_id"]
    chain = []
    while task:
        chain.append(task)
        before = [by_id[t] for t in upstream.get(task, ()) if t in by_id]
        task = max(before, key=lambda ti: ti["end_date"])["task_id"] if before else None
    chain.reverse()
    own = 0.0
    for task_id in chain:
        window = executed(logs / f"task_id={task_id}" / "attempt=1.log")
        own += (window[1] - window[0]).total_seconds() if window else 0.0
    end = _instant(by_id[chain[-1]]["end_date"])
    total = (end - started).total_seconds()
    return {"tasks": chain, "seconds": total, "execute": own, "airflow": total - own}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, action="append", help="tenant sizes (repeatable)")
    args = parser.parse_args()
    rows = []
    for accounts in args.accounts or [10000]:
        with tempfile.TemporaryDirectory(prefix="sync-standalone-") as tmp:
            rows.append(run(accounts, Path(tmp)))
    today = time.strftime("%Y-%m-%d")
    print("| date | accounts | Zuora records | written to SF | rejected | run s | session s | written/s (run / session) "
          "| raw Bulk 2.0 rows/s | SalesforceBulkOperator rows/s | sync ÷ Bulk 2.0 (run / session) "
          "| sync ÷ BulkOperator (run / session) | SF req / 10k | status |")
    print("|---" * 14 + "|")
    for m in rows:
        print(f"| {today} | {m['accounts']:,} | {m['records']:,} | {m['written']:,} | {m['rejected']:,} "
              f"| {m['run_seconds']:.1f} | {m['session_seconds']:.1f} | {m['run_rate']:,.0f} / {m['session_rate']:,.0f} "
              f"| {m['bulk2_rate']:,.0f} | {m['operator_rate']:,.0f} "
              f"| {m['run_rate'] / m['bulk2_rate']:.2f}× / {m['session_rate'] / m['bulk2_rate']:.2f}× "
              f"| {m['run_rate'] / m['operator_rate']:.2f}× / {m['session_rate'] / m['operator_rate']:.2f}× "
              f"| {m['sf_calls'] / m['records'] * 10_000:.1f} ({m['sf_calls']}) | {m['status']} |")
    for m in rows:
        b2, op = m["bulk2"], m["operator"]
        print(f"\naccounts {m['accounts']:,}: Bulk 2.0 loaded {b2['loaded']:,} of {b2['rows']:,} in {b2['seconds']:.1f} s "
              f"(server {b2['server']['rows_per_second']:,.0f} rows/s); SalesforceBulkOperator {op['loaded']:,} in "
              f"{op['seconds']:.1f} s (server {op['server']['rows_per_second']:,.0f} rows/s)")
        print("tasks (start s, took s): " + ", ".join(f"{t} {s:.1f}+{d:.1f}" for t, s, d in m["tasks"]))
        path = m["path"]
        print(f"critical path: {len(path['tasks'])} tasks, {path['seconds']:.1f} s from the run's start: "
              f"{path['execute']:.1f} s in the operators' execute, {path['airflow']:.1f} s Airflow's (hops between "
              f"tasks, task start-up and teardown): {' → '.join(path['tasks'])}")


if __name__ == "__main__":
    main()
