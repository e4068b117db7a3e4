"""Incremental sync cost against the number of changes: does it follow the changes, not the tenant?

    python -m benchmarks.sync_incremental --accounts 10000 --changes 100 --changes 10 --changes 0

Starts both sandboxes with the same generated tenant (as ``benchmarks.sync_full`` does) and runs
``zuora_full_sync`` once, then for each ``--changes N``: renames N synced customer accounts in
Zuora through the Zuora sandbox's API (``POST /v1/action/update``, 50 accounts a request, as
``zuora-sdk``'s ``ActionsApi`` sends them; an update bumps the account's ``UpdatedDate``, so the
incremental window sees it), runs ``zuora_incremental_sync`` (a manual run: from each object's
watermark to now, less ``--lookback-minutes``; 0 by default here, so that a run does not read the
previous run's changes again, which the sync's default look-back of 5 minutes does to runs made
minutes apart) with ``dag.test()`` in a child
process, and reports:

* wall seconds of the run, the session's Zuora and Salesforce API requests (the sync's own
  counts, in the state store), rows extracted and rows written (upserted + removed) per object;
* the work the session made on each side, listed from the sandboxes afterwards: Zuora Data Query
  jobs (and the rows each returned), Salesforce Bulk API 2.0 ingest jobs (object, operation,
  rows) and query jobs. A job that exists whatever the number of changes is the session's fixed
  cost (the floor); the rest follows the changes;
* whether every renamed account arrived: all of them are read back from Salesforce
  (``Zuora__CustomerAccount__c.Name`` by external id, through simple-salesforce) and compared.

The accounts renamed are synced ones (an account with a ``Zuora__CustomerAccount__c`` record after
the full sync), each run's different from the others'. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import random
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import requests

from benchmarks.sync_full import SEED, last_session, run_dag_child, start_salesforce_sandbox, start_zuora_sandbox, sync_env

EXT = "Zuora__External_Id__c"
BATCH = 50  # zObjects per generic action: Zuora's limit

#: Run in the ``dag.test()`` child before the DAG: counts every HTTP request the sync sends (through
#: ``requests``, which both simple-salesforce and the Zuora hook use) by host, task, method and path
#: (ids replaced by ``{id}``), and prints them as ``REQUESTS [...]`` when the child exits. Only a
#: breakdown for the report: the session's own counts (the state store's) are the figures.
COUNT_REQUESTS = """
import atexit, collections, json, re
from urllib.parse import urlsplit
import requests
_counts = collections.Counter()
_send = requests.Session.send
_ID = re.compile(r"/(?=[^/]*[0-9])[A-Za-z0-9_.-]{15,}(?=/|$)")
def _task():
    try:
        from airflow.sdk import get_current_context
        return get_current_context()["ti"].task_id
    except Exception:
        return "?"
def _counting_send(self, request, **kwargs):
    url = urlsplit(request.url)
    _counts[(url.netloc, _task(), request.method, _ID.sub("/{id}", url.path))] += 1
    return _send(self, request, **kwargs)
requests.Session.send = _counting_send
atexit.register(lambda: print("REQUESTS " + json.dumps([[*k, v] for k, v in _counts.items()]), flush=True))
"""


class Zuora:
    """The Zuora sandbox's REST API with an OAuth token, as a client of the tenant uses it."""

    def __init__(self, sandbox) -> None:
        from conftest import read_env_file

        env = read_env_file(sandbox.env_file)
        self.base = env["ZUORA_SANDBOX_URL"]
        conn = json.loads(env["AIRFLOW_CONN_ZUORA_DEFAULT"])
        token = requests.post(f"{self.base}/oauth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": conn["login"], "client_secret": conn["password"]}
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def rename(self, names: dict[str, str]) -> None:
        """Rename accounts (Id → new name), 50 a request; every SaveResult must be a success."""
        items = list(names.items())
        for start in range(0, len(items), BATCH):
            objects = [{"Id": i, "Name": n} for i, n in items[start:start + BATCH]]
            response = requests.post(f"{self.base}/v1/action/update", timeout=60, headers=self.headers,
                                     json={"type": "Account", "objects": objects})
            response.raise_for_status()
            failed = [r for r in response.json() if not r.get("Success")]
            if failed:
                raise SystemExit(f"Zuora refused account updates: {failed[:3]}")

    def query_jobs(self) -> dict[str, dict]:
        """Data Query jobs, id → job (the sandbox lists them newest first)."""
        response = requests.get(f"{self.base}/query/jobs", params={"pageSize": 1000}, timeout=60,
                                headers=self.headers)
        response.raise_for_status()
        return {job["id"]: job for job in response.json()["data"]}


def table_of(query: str) -> str:
    """The first table a Data Query statement reads (``… FROM account …`` → ``account``)."""
    found = re.search(r"\bfrom\s+([a-z_]+)", query, re.IGNORECASE)
    return found.group(1).lower() if found else "?"


def salesforce_jobs(sf) -> dict[str, set[str]]:
    return {kind: {job["id"] for job in sf.restful(f"jobs/{kind}")["records"]} for kind in ("ingest", "query")}


def new_work(zuora: Zuora, sf, before_dq: dict[str, dict], before_sf: dict[str, set[str]]) -> dict:
    """The Data Query, ingest and query jobs created since the ``before_*`` listings."""
    dq = [job for job_id, job in zuora.query_jobs().items() if job_id not in before_dq]
    ingest, query = [], []
    for kind, out in (("ingest", ingest), ("query", query)):
        for job in sf.restful(f"jobs/{kind}")["records"]:
            if job["id"] not in before_sf[kind]:
                out.append(sf.restful(f"jobs/{kind}/{job['id']}"))
    return {
        "dq": sorted((table_of(j.get("query", "")), int(j.get("outputRows") or 0)) for j in dq),
        "ingest": sorted((j["object"], j["operation"], int(j.get("numberRecordsProcessed") or 0)) for j in ingest),
        "query": sorted(j["object"] for j in query),
    }


def counted_requests(log: Path, zuora_netloc: str) -> list[tuple[str, str, str, str, int]]:
    """(side, task, method, path, requests) from a child's ``REQUESTS`` line."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("REQUESTS ")]
    if not lines:
        return []
    return [("zuora" if netloc == zuora_netloc else "salesforce", task, method, path, count)
            for netloc, task, method, path, count in json.loads(lines[-1][len("REQUESTS "):])]


def arrived(sf, expected: dict[str, str]) -> int:
    """How many of the renamed accounts Salesforce has with the new name (read back by external id)."""
    found = 0
    ids = list(expected)
    for start in range(0, len(ids), 200):
        chunk = ids[start:start + 200]
        quoted = ",".join(f"'{i}'" for i in chunk)
        for record in sf.query_all(f"SELECT {EXT}, Name FROM Zuora__CustomerAccount__c "
                                   f"WHERE {EXT} IN ({quoted})")["records"]:
            found += record["Name"] == expected[record[EXT]]
    return found


def session_summary(work: Path, seconds: float) -> dict:
    session = last_session(work)
    totals = session["totals"]
    per_object = {name: {"extracted": c.get("extracted", 0), "written": c.get("upserted", 0) + c.get("deleted", 0)}
                  for name, c in session["objects"].items()}
    return {"seconds": seconds, "type": session["session_type"], "status": session["status"],
            "extracted": totals["extracted"], "written": totals["upserted"] + totals["deleted"],
            "upserted": totals["upserted"], "deleted": totals["deleted"], "rejected": totals["failed"],
            "zuora": session["api_calls"]["zuora"], "salesforce": session["api_calls"]["salesforce"],
            "objects": per_object}


def measure(accounts: int, changes: list[int], lookback_minutes: int, work: Path) -> dict:
    zuora_sb = start_zuora_sandbox(work / "zuora", accounts=accounts, seed=SEED)
    salesforce_sb = start_salesforce_sandbox(work / "salesforce", accounts=accounts, seed=SEED)
    try:
        env = sync_env(zuora_sb, salesforce_sb, work, {"lookback_minutes": lookback_minutes})
        os.environ.update({k: env[k] for k in ("AIRFLOW_CONN_ZUORA_SYNC_STATE",)})
        os.environ["REQUESTS_CA_BUNDLE"] = salesforce_sb.ca_bundle
        zuora, sf = Zuora(zuora_sb), salesforce_sb.login()

        before_dq, before_sf = zuora.query_jobs(), salesforce_jobs(sf)
        seconds, _peak = run_dag_child("zuora_full_sync", env, work / "full.log")
        full = session_summary(work, seconds)
        full["work"] = new_work(zuora, sf, before_dq, before_sf)

        synced = sorted(r[EXT] for r in sf.query_all(f"SELECT {EXT} FROM Zuora__CustomerAccount__c")["records"])
        chosen = random.Random(SEED).sample(synced, sum(changes))
        runs = []
        for n, count in enumerate(changes):
            picked, chosen = chosen[:count], chosen[count:]
            names = {account_id: f"Incremental bench {n} {i}" for i, account_id in enumerate(picked)}
            zuora.rename(names)
            before_dq, before_sf = zuora.query_jobs(), salesforce_jobs(sf)
            load = os.getloadavg()[0]
            log = work / f"incremental-{n}.log"
            seconds, _peak = run_dag_child("zuora_incremental_sync", env, log, prelude=COUNT_REQUESTS)
            run = session_summary(work, seconds)
            run.update({"changes": count, "load": load, "work": new_work(zuora, sf, before_dq, before_sf),
                        "arrived": arrived(sf, names) if names else 0,
                        "requests": counted_requests(log, urlsplit(zuora.base).netloc)})
            runs.append(run)
        return {"accounts": accounts, "full": full, "runs": runs}
    finally:
        zuora_sb.stop()
        salesforce_sb.stop()


def work_text(work: dict) -> str:
    dq = collections.Counter(table for table, _rows in work["dq"])
    ingest = collections.Counter(f"{obj} {op}" for obj, op, _rows in work["ingest"])
    return (f"{len(work['dq'])} Data Query jobs ({', '.join(f'{t} {c}' for t, c in sorted(dq.items()))}); "
            f"{len(work['ingest'])} ingest jobs ({', '.join(f'{k} {c}' for k, c in sorted(ingest.items())) or '–'}); "
            f"{len(work['query'])} query jobs ({', '.join(sorted(set(work['query']))) or '–'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--changes", type=int, action="append", help="accounts renamed before a run (repeatable)")
    parser.add_argument("--lookback-minutes", type=int, default=0,
                        help="the setting lookback_minutes (default here 0; the sync's default is 5, which makes "
                             "runs minutes apart read the previous run's changes again)")
    args = parser.parse_args()
    changes = args.changes if args.changes is not None else [100, 10, 0]
    with tempfile.TemporaryDirectory(prefix="sync-incremental-") as tmp:
        result = measure(args.accounts, changes, args.lookback_minutes, Path(tmp))
    today = dt.date.today().isoformat()
    full = result["full"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{result['accounts']:,} accounts; lookback_minutes {args.lookback_minutes}")
    print(f"full sync first: {full['seconds']:.1f} s, {full['extracted']:,} extracted, {full['written']:,} written, "
          f"Zuora {full['zuora']} / Salesforce {full['salesforce']} requests; {work_text(full['work'])}\n")
    print("| date | accounts | changed in Zuora | load avg (1 min) | incremental s | Zuora req | SF req "
          "| Zuora rows extracted | rows written to SF | rejected | changed records in SF | Data Query jobs "
          "| ingest jobs | query jobs | status |")
    print("|---" * 15 + "|")
    for r in result["runs"]:
        arrived_text = f"{r['arrived']} of {r['changes']}" if r["changes"] else "–"
        print(f"| {today} | {result['accounts']:,} | {r['changes']} | {r['load']:.2f} | {r['seconds']:.1f} "
              f"| {r['zuora']} | {r['salesforce']} | {r['extracted']:,} | {r['written']:,} | {r['rejected']:,} "
              f"| {arrived_text} | {len(r['work']['dq'])} | {len(r['work']['ingest'])} | {len(r['work']['query'])} "
              f"| {r['status']} |")
    for r in result["runs"]:
        print(f"\n{r['changes']} changed: {work_text(r['work'])}")
        print("| object | extracted | written |")
        print("|---|---|---|")
        for name, c in r["objects"].items():
            print(f"| {name} | {c['extracted']:,} | {c['written']:,} |")
        print("Data Query jobs (table, rows): " + ", ".join(f"{t} {rows}" for t, rows in r["work"]["dq"]))
        print("ingest jobs (object, operation, rows): "
              + (", ".join(f"{o} {op} {rows}" for o, op, rows in r["work"]["ingest"]) or "none"))
        requests_table(r["requests"])


def requests_table(counted: list[tuple[str, str, str, str, int]]) -> None:
    """The requests the run's child sent, by side and endpoint, then by side and task."""
    if not counted:
        print("(no request counts: the child printed none)")
        return
    by_endpoint = collections.Counter()
    by_task = collections.Counter()
    for side, task, method, path, count in counted:
        by_endpoint[(side, f"{method} {path}")] += count
        by_task[(side, task)] += count
    for title, counter in (("endpoint", by_endpoint), ("task", by_task)):
        print(f"\n| side | {title} | requests |")
        print("|---|---|---|")
        for (side, what), count in sorted(counter.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
            print(f"| {side} | {what} | {count} |")


if __name__ == "__main__":
    main()
