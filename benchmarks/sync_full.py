"""A full sync of a generated tenant, measured: records/s, peak memory, API requests per 10,000 records.

    python -m benchmarks.sync_full --accounts 1000 --accounts 10000

For each size: start both sandboxes with the same generated tenant, run ``zuora_full_sync`` with
``dag.test()`` in a child process (so its peak RSS is the sync's own: every task runs in it), then
read the session's counts and API requests from the state store. Then the same Salesforce-ready rows
(the sync's staged ``upsert-*.csv`` files, parents before children) are uploaded twice more, each
time into a fresh Salesforce sandbox seeded as the sync's was (the tenant's standard Accounts only):

* straight through simple-salesforce Bulk API 2.0 (``bulk2.<Object>.upsert(csv_file=…)``), the
  limit: SPEC §10 asks the sync for ≥ 0.8× its rate;
* through the Airflow provider's ``SalesforceBulkOperator`` (Bulk API 1.0, JSON, ``batch_size``
  ``"auto"``: simple-salesforce's largest batches within Bulk 1.0's 10,000 records and 10,000,000
  characters), as a user of the provider would: the CSV rows as a list of dicts, relationship columns
  as nested objects, ``#N/A`` as null, empty cells left out; SPEC §10 asks for ≥ 5× its rate.
  Only the operator's ``execute`` is timed (it logs in, creates the job, posts the batches, polls,
  closes); reading and converting the CSV files is not. It runs in a child process with its own
  ``AIRFLOW_HOME`` and ``AIRFLOW_CONN_SALESFORCE_DEFAULT``.

The staged chunks of an object are joined into files of at most 90 MB for the baselines (not
timed), so each baseline uploads an object in as few jobs as it can, whatever chunk size the sync
uses. After each baseline the fresh org's own processing time is read from its database (Bulk 2.0
jobs' and Bulk 1.0 batches' ``totalProcessingTime``: the same Bulk worker runs both).

The sync is timed twice: the ``dag.test()`` call end to end (parsing the DAGs and starting
``dag.test``'s in-process execution API included) and the session as its history records it
(``begin_session`` to ``end_session``). ``--keep-logs DIR`` keeps each ``dag.test()`` log; the
seconds of each task are printed from it.

All three rates count the same rows: staged rows that Salesforce accepted ("written"; the sync's
upserted plus deleted), over the seconds of the sync or of the upload. Prints Markdown rows for
docs/benchmarks.md, and per object what each baseline loaded and which errors Salesforce gave.
"""

from __future__ import annotations

import argparse
import collections
import csv
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
EXT = "Zuora__External_Id__c"
NULL = "#N/A"  # Bulk API 2.0 CSV: set the field to null
#: simple-salesforce's own sizing: at most 10,000 records and 10,000,000 characters a batch (Bulk
#: API 1.0's limits). The provider's default of 10,000 records makes batches of the wider objects
#: larger than 10,000,000 characters of JSON, which Salesforce (and, since issue 17, the sandbox)
#: fails; "auto" is what a user of the provider passes then, and the fastest that works.
BULK1_BATCH_SIZE = "auto"
_CHILD = """
import sys, time
sys.path.insert(0, {tests!r}); sys.path.insert(0, {sync!r})
from sync_harness import run_dag
{prelude}
started = time.perf_counter()
state = run_dag({dag_id!r})
print("RESULT", state, time.perf_counter() - started)
"""


def task_seconds(log_text: str) -> dict[str, float]:
    """Each task's seconds from a ``dag.test()`` log: the tasks run one after another, so a task
    took the time from the previous task's end to its own (the first: from the run's creation)."""
    import re

    seconds: dict[str, float] = {}
    previous = None
    for line in log_text.splitlines():
        stamp = line.split(" ", 1)[0]
        if previous is None and "Created dag run." in line:
            previous = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        ended = re.search(r"\[DAG TEST\] end task task_id=(\S+)", line)
        if ended and previous is not None:
            moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            seconds[ended[1]] = (moment - previous).total_seconds()
            previous = moment
    return seconds


def sync_env(zuora, salesforce, work: Path, settings: dict | None = None) -> dict[str, str]:
    """The environment a sync DAG runs in against these sandboxes (state store and staging under
    ``work``; ``settings``: more of the ``zuora_sync_settings`` Variable); Airflow's metadata
    database is migrated once here."""
    # The staged files are kept: the baselines upload the rows the sync staged (staged_objects).
    settings = json.dumps({"staging_url": f"file://{work / 'staging'}", "lock_poll_seconds": 1,
                           "keep_staged_files": True, **(settings or {})})
    env = dict(os.environ)
    env.update(stack_env(zuora, salesforce, work / "state.db", work / "staging", settings))
    env.setdefault("AIRFLOW_HOME", str(work / "airflow"))
    env.update({"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "PYTHONPATH": str(ROOT / "include")})
    airflow_db_migrate(env)
    return env


def run_dag_child(dag_id: str, env: dict[str, str], output: Path, prelude: str = "") -> tuple[float, float]:
    """Run ``dag_id`` with ``dag.test()`` in a child process (every task runs there, one after
    another): its seconds and its peak RSS in MB. The child's log goes to ``output``; ``prelude``
    is Python the child runs first (e.g. instrumentation that prints to that log)."""
    with open(output, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests"), sync=str(ROOT / "tests" / "sync"),
                                                 dag_id=dag_id, prelude=prelude)],
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
        raise SystemExit(f"{dag_id} did not succeed:\n{text[-5000:]}")
    return float(result[0].split()[2]), peak / 1e6


def last_session(work: Path) -> dict:
    """The state store's newest session, with its counts and API requests."""
    from zuora_sync.state import StateStore

    store = StateStore(f"sqlite:///{work / 'state.db'}")
    return store.get_session(store.list_sessions(limit=1)[0]["id"])


def run_size(accounts: int, work: Path, keep_logs: Path | None = None) -> dict:
    zuora = start_zuora_sandbox(work / "zuora", accounts=accounts, seed=SEED)
    salesforce = start_salesforce_sandbox(work / "salesforce", accounts=accounts, seed=SEED)
    try:
        env = sync_env(zuora, salesforce, work)
        output = work / "sync.log"
        try:
            seconds, peak_mb = run_dag_child("zuora_full_sync", env, output)
        finally:
            if keep_logs is not None and output.exists():
                keep_logs.mkdir(parents=True, exist_ok=True)
                (keep_logs / f"sync-{accounts}.log").write_text(output.read_text())
        text = output.read_text()
        os.environ.update({k: env[k] for k in ("AIRFLOW_CONN_ZUORA_SYNC_STATE",)})
        session = last_session(work)
        session_seconds = (_instant(session["ended_at"]) - _instant(session["started_at"])).total_seconds()
        totals, calls = session["totals"], session["api_calls"]
        records = totals["extracted"]
        objects = merged(staged_objects(work / "staging"), work / "merged")
        bulk2 = upload_baseline(objects, work, accounts)
        operator = upload_bulk_operator(objects, work, accounts, env)
    finally:
        zuora.stop()
        salesforce.stop()
    written = totals["upserted"] + totals["deleted"]
    written_rate = written / seconds
    session_rate = written / session_seconds
    bulk2_rate = bulk2["loaded"] / bulk2["seconds"]
    operator_rate = operator["loaded"] / operator["seconds"]
    ratio = lambda a, b: a / b if b else float("inf")  # noqa: E731
    return {
        "accounts": accounts, "records": records, "written": written, "upserted": totals["upserted"],
        "deleted": totals["deleted"], "rejected": totals["failed"], "seconds": seconds, "rate": records / seconds,
        "written_rate": written_rate, "bulk2": bulk2, "bulk2_rate": bulk2_rate, "operator": operator,
        "operator_rate": operator_rate, "vs_bulk2": ratio(written_rate, bulk2_rate),
        "vs_operator": ratio(written_rate, operator_rate), "peak_mb": peak_mb,
        "session_seconds": session_seconds, "session_rate": session_rate,
        "session_vs_bulk2": ratio(session_rate, bulk2_rate), "session_vs_operator": ratio(session_rate, operator_rate),
        "tasks": task_seconds(text),
        "zuora_per_10k": calls["zuora"] / records * 10_000, "sf_per_10k": calls["salesforce"] / records * 10_000,
        "zuora_calls": calls["zuora"], "sf_calls": calls["salesforce"], "status": session["status"],
    }


def _instant(value) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def merged(objects: list[tuple[str, str, list[str]]], directory: Path) -> list[tuple[str, str, list[str]]]:
    """The staged chunks of each object joined into files of at most 90 MB, as the sync staged them
    before it uploaded chunk by chunk: the baselines upload each object in as few requests as
    they can (one Bulk 2.0 job per file), whatever chunk size the sync chose. Not timed."""
    from zuora_sync.staging import MAX_FILE_BYTES

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, sobject, files in objects:
        joined: list[str] = []
        handle, size = None, 0
        for path in files:
            with open(path, encoding="utf-8", newline="") as source:
                header = source.readline()
                for line in source:
                    if handle is None or size + len(line.encode()) > MAX_FILE_BYTES:
                        if handle is not None:
                            handle.close()
                        joined.append(str(directory / f"{name}-{len(joined):04d}.csv"))
                        handle = open(joined[-1], "w", encoding="utf-8", newline="")
                        handle.write(header)
                        size = len(header.encode())
                    handle.write(line)
                    size += len(line.encode())
        if handle is not None:
            handle.close()
        out.append((name, sobject, joined))
    return out


def server_rates(data_dir: Path) -> dict:
    """What the fresh org's Bulk worker itself spent: rows and ``totalProcessingTime`` of its Bulk
    API 2.0 ingest jobs and of its Bulk API 1.0 batches (the same worker runs both), read from the
    sandbox's own database once the upload is done."""
    import sqlite3

    with sqlite3.connect(data_dir / "org.sqlite3") as db:
        v2 = db.execute("SELECT COALESCE(SUM(json_extract(info, '$.numberRecordsProcessed')), 0), "
                        "COALESCE(SUM(json_extract(info, '$.totalProcessingTime')), 0), COUNT(*) FROM _bulk_jobs "
                        "WHERE api = 'v2ingest'").fetchone()
        v1 = db.execute("SELECT COALESCE(SUM(json_extract(info, '$.numberRecordsProcessed')), 0), "
                        "COALESCE(SUM(json_extract(info, '$.totalProcessingTime')), 0), COUNT(*) "
                        "FROM _bulk_batches").fetchone()
    rows, ms, count = (v2 if v2[2] else v1)
    return {"rows": rows, "processing_seconds": ms / 1000, "units": count,
            "rows_per_second": rows / (ms / 1000) if ms else 0.0}


def staged_objects(staging: Path) -> list[tuple[str, str, list[str]]]:
    """(object, Salesforce object, its upsert files) of every staged object, parents before children.

    The order is the mapping's load order (the one the sync itself uses), not the files' names:
    sorted by name, ``InvoicePayment`` would come before ``Payment`` and ``RatePlan`` before
    ``Subscription``, and those children would fail for want of their parents.
    """
    from zuora_sync.mapping import load_mapping

    mapping = load_mapping()
    found: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted(staging.rglob("upsert-*.csv")):
        found[path.parent.name].append(str(path))
    order = [name for names in mapping.scopes.values() for name in names]
    unknown = sorted(set(found) - set(order))
    if unknown:
        raise SystemExit(f"staged objects the mapping does not know: {unknown}")
    return [(name, mapping.get(name).salesforce, found[name]) for name in order if name in found]


def csv_rows(path: str) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def error_code(message: str) -> str:
    """``INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:…`` → ``INVALID_CROSS_REFERENCE_KEY``."""
    return message.split(":", 1)[0].strip() or "(no code)"


def fresh_org(data_dir: Path, accounts: int):
    """A Salesforce sandbox as the sync found its own: the tenant's standard Accounts, nothing else.

    Without those Accounts (``accounts=0``) every customer account fails on its master-detail
    ``Zuora__Account__c`` (INVALID_CROSS_REFERENCE_KEY) and every child on its missing parent
    (INVALID_FIELD): a baseline would time Salesforce rejecting every row, not writing any.
    """
    return start_salesforce_sandbox(data_dir, accounts=accounts, seed=SEED)


def upload_baseline(objects: list[tuple[str, str, list[str]]], work: Path, accounts: int) -> dict:
    """Upsert the staged CSVs straight through simple-salesforce Bulk API 2.0 into a fresh org.

    Only the upsert calls are timed; their failed-records files are read afterwards, for the report.
    """
    fresh = fresh_org(work / "baseline", accounts)
    try:
        os.environ["REQUESTS_CA_BUNDLE"] = fresh.ca_bundle
        sf = fresh.login()
        seconds = 0.0
        per_object: dict[str, dict] = {}
        for name, sobject, files in objects:
            bulk = sf.bulk2.__getattr__(sobject)
            rows = loaded = failed = 0
            spent = 0.0
            jobs = []
            for path in files:
                started = time.perf_counter()
                jobs += bulk.upsert(csv_file=path, external_id_field=EXT, wait=0.2)
                spent += time.perf_counter() - started
                rows += csv_rows(path)
            errors: collections.Counter = collections.Counter()
            for job in jobs:
                loaded += job["numberRecordsProcessed"] - job["numberRecordsFailed"]
                failed += job["numberRecordsFailed"]
                if job["numberRecordsFailed"]:
                    for row in csv.DictReader(bulk.get_failed_records(job["job_id"]).splitlines()):
                        errors[error_code(row["sf__Error"])] += 1
            seconds += spent
            per_object[name] = {"sobject": sobject, "rows": rows, "loaded": loaded, "failed": failed,
                                "errors": dict(errors), "seconds": spent}
        return {**summarize(seconds, per_object), "server": server_rates(work / "baseline")}
    finally:
        fresh.stop()


def summarize(seconds: float, per_object: dict[str, dict]) -> dict:
    return {"seconds": seconds, "objects": per_object,
            "rows": sum(o["rows"] for o in per_object.values()),
            "loaded": sum(o["loaded"] for o in per_object.values()),
            "failed": sum(o["failed"] for o in per_object.values())}


def upload_bulk_operator(objects: list[tuple[str, str, list[str]]], work: Path, accounts: int,
                         env: dict[str, str]) -> dict:
    """Upsert the staged rows through the provider's ``SalesforceBulkOperator`` into a fresh org.

    Runs in a child process configured as the sync was (its ``AIRFLOW_HOME``), with
    ``salesforce_default`` pointing at the fresh org; see ``bulk_operator_child``.
    """
    fresh = fresh_org(work / "operator", accounts)
    try:
        spec = work / "operator.json"
        spec.write_text(json.dumps(objects))
        child_env = dict(env)
        child_env.update({"AIRFLOW_CONN_SALESFORCE_DEFAULT": fresh.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"],
                          "REQUESTS_CA_BUNDLE": fresh.ca_bundle})
        done = subprocess.run([sys.executable, "-m", "benchmarks.sync_full", "--bulk-operator-child", str(spec)],
                              env=child_env, cwd=ROOT, capture_output=True, text=True)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not result:
            raise SystemExit(
                f"the SalesforceBulkOperator baseline failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return {**json.loads(result[-1][len("RESULT "):]), "server": server_rates(work / "operator")}
    finally:
        fresh.stop()


def bulk1_records(path: str) -> list[dict]:
    """A staged Bulk API 2.0 CSV file as the records Bulk API 1.0 JSON takes.

    ``Rel__r.Ext__c`` columns become nested ``{"Rel__r": {"Ext__c": value}}`` objects; ``#N/A``
    (Bulk 2.0's null) becomes JSON null, and for a relationship column the lookup field itself
    (``Rel__c``) is set to null; empty cells (leave the field alone) are left out.
    """
    records = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            record: dict = {}
            for column, value in row.items():
                if value == "":
                    continue
                relationship, dot, key = column.partition(".")
                if not dot:
                    record[column] = None if value == NULL else value
                elif value == NULL:
                    lookup = relationship[:-3] + "__c" if relationship.endswith("__r") else relationship + "Id"
                    record[lookup] = None
                else:
                    record.setdefault(relationship, {})[key] = value
            records.append(record)
    return records


def bulk_operator_child(spec: str) -> None:
    """In the child process: one ``SalesforceBulkOperator`` upsert per object; prints ``RESULT {json}``."""
    from airflow.providers.salesforce.operators.bulk import SalesforceBulkOperator

    seconds = 0.0
    per_object: dict[str, dict] = {}
    for name, sobject, files in json.loads(Path(spec).read_text()):
        payload = [record for path in files for record in bulk1_records(path)]  # not timed
        operator = SalesforceBulkOperator(
            task_id=f"upsert_{name}", operation="upsert", object_name=sobject, payload=payload,
            external_id_field=EXT, batch_size=BULK1_BATCH_SIZE,
        )
        started = time.perf_counter()
        results = operator.execute(context={}) or []
        spent = time.perf_counter() - started
        seconds += spent
        if len(results) != len(payload):
            raise SystemExit(f"{sobject}: {len(results)} results for {len(payload)} records")
        errors: collections.Counter = collections.Counter()
        for result in results:
            if not result["success"]:
                errors.update(e.get("statusCode") or "(no code)" for e in result["errors"] or [{}])
        loaded = sum(1 for r in results if r["success"])
        per_object[name] = {"sobject": sobject, "rows": len(payload), "loaded": loaded,
                            "failed": len(payload) - loaded, "errors": dict(errors), "seconds": spent}
    print("RESULT " + json.dumps(summarize(seconds, per_object)))


def errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{code} {count:,}" for code, count in sorted(errors.items())) or "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, action="append", help="tenant sizes (repeatable)")
    parser.add_argument("--bulk-operator-child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--keep-logs", metavar="DIR", type=Path, help="keep each dag.test() log in DIR")
    args = parser.parse_args()
    if args.bulk_operator_child:
        bulk_operator_child(args.bulk_operator_child)
        return
    rows = []
    for accounts in args.accounts or [1000, 10000]:
        with tempfile.TemporaryDirectory(prefix="sync-full-") as tmp:
            rows.append(run_size(accounts, Path(tmp), args.keep_logs))
    today = dt.date.today().isoformat()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| date | accounts | Zuora records | written to SF | rejected | dag.test() s | session s | written/s (session) "
          "| raw Bulk 2.0 rows/s | SalesforceBulkOperator rows/s | sync ÷ Bulk 2.0 (dag.test / session) "
          "| sync ÷ BulkOperator (dag.test / session) | peak RSS MB | Zuora req / 10k | SF req / 10k | status |")
    print("|---" * 16 + "|")
    for m in rows:
        print(f"| {today} | {m['accounts']:,} | {m['records']:,} | {m['written']:,} | {m['rejected']:,} "
              f"| {m['seconds']:.1f} | {m['session_seconds']:.1f} | {m['session_rate']:,.0f} | {m['bulk2_rate']:,.0f} "
              f"| {m['operator_rate']:,.0f} | {m['vs_bulk2']:.2f}× / {m['session_vs_bulk2']:.2f}× "
              f"| {m['vs_operator']:.2f}× / {m['session_vs_operator']:.2f}× | {m['peak_mb']:.0f} "
              f"| {m['zuora_per_10k']:.1f} ({m['zuora_calls']}) | {m['sf_per_10k']:.1f} ({m['sf_calls']}) | {m['status']} |")
    for m in rows:
        b2, op = m["bulk2"]["server"], m["operator"]["server"]
        print(f"\naccounts {m['accounts']:,}: the sandbox's Bulk worker: Bulk 2.0 {b2['rows']:,} rows in "
              f"{b2['processing_seconds']:.1f} s ({b2['units']} jobs, {b2['rows_per_second']:,.0f} rows/s); Bulk 1.0 "
              f"{op['rows']:,} rows in {op['processing_seconds']:.1f} s ({op['units']} batches, "
              f"{op['rows_per_second']:,.0f} rows/s)")
        print("tasks (s): " + ", ".join(f"{task} {sec:.1f}" for task, sec in m["tasks"].items()))
    for m in rows:
        b2, op = m["bulk2"], m["operator"]
        print(f"\naccounts {m['accounts']:,}: the sync upserted {m['upserted']:,} and deleted {m['deleted']:,}; "
              f"Bulk 2.0 loaded {b2['loaded']:,} of {b2['rows']:,} staged rows in {b2['seconds']:.1f} s; "
              f"SalesforceBulkOperator loaded {op['loaded']:,} of {op['rows']:,} in {op['seconds']:.1f} s")
        print("| object | Salesforce object | staged rows | Bulk 2.0 loaded | Bulk 2.0 s | Bulk 2.0 errors "
              "| BulkOperator loaded | BulkOperator s | BulkOperator errors |")
        print("|---" * 9 + "|")
        for name, b in b2["objects"].items():
            o = op["objects"][name]
            print(f"| {name} | {b['sobject']} | {b['rows']:,} | {b['loaded']:,} | {b['seconds']:.1f} "
                  f"| {errors_text(b['errors'])} | {o['loaded']:,} | {o['seconds']:.1f} | {errors_text(o['errors'])} |")
        if not b2["loaded"] == op["loaded"] == m["upserted"]:
            print(f"WARNING: not the same rows: the sync upserted {m['upserted']:,}, Bulk 2.0 loaded "
                  f"{b2['loaded']:,}, SalesforceBulkOperator loaded {op['loaded']:,}")


if __name__ == "__main__":
    main()
