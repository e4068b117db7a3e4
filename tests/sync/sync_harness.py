"""Running the sync DAGs against both sandboxes, and checking Salesforce against Zuora record by record.

The expected Salesforce content is computed from the Zuora sandbox's database directly: every
mapped object's rows that the mapping keeps (its ``keep`` rule, not deleted), with every mapped
field and link converted as Salesforce stores it. Salesforce is read back with Bulk API queries.
A qualifying record is either in Salesforce with exactly the expected values, or recorded as
rejected in the state store with Salesforce's reason — never missing silently, never extra.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import io
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

from sandbox.zuora.dataquery_sql import compile_query
from sandbox.zuora.schema import load_schema
from zuora_sync.mapping import ObjectMapping, load_mapping
from zuora_sync.transform import NULL, NUMBER_TYPES, converter

ROOT = Path(__file__).resolve().parents[2]
_STORED_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@dataclass
class Stack:
    """Both sandboxes, the state store and staging, configured through the environment."""

    zuora: Any
    salesforce: Any
    state_db: Path
    staging: Path
    env: dict[str, str]


def airflow_db_migrate(env: dict[str, str]) -> None:
    """``dag.test()`` needs Airflow's metadata database; make it once per AIRFLOW_HOME."""
    marker = Path(env["AIRFLOW_HOME"]) / ".migrated"
    if marker.exists():
        return
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                   timeout=600)
    marker.write_text("ok")


def stack_env(zuora: Any, salesforce: Any, state_db: Path, staging: Path, settings: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_ZUORA_DEFAULT": zuora.env["AIRFLOW_CONN_ZUORA_DEFAULT"],
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": salesforce.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"],
        "REQUESTS_CA_BUNDLE": salesforce.ca_bundle,
        "AIRFLOW_CONN_ZUORA_SYNC_STATE": '{"conn_type": "sqlite", "host": "%s"}' % state_db,
        "AIRFLOW_VAR_ZUORA_SYNC_SETTINGS": settings,
    }


@contextlib.contextmanager
def running_stack(base: Path, *, accounts: int, seed: int, settings: dict | None = None) -> Iterator[dict]:
    """Both sandboxes with the same generated tenant, and this process's environment pointed at them."""
    from conftest import start_salesforce_sandbox, start_zuora_sandbox

    zuora = start_zuora_sandbox(base / "zuora", accounts=accounts, seed=seed)
    salesforce = start_salesforce_sandbox(base / "salesforce", accounts=accounts, seed=seed)
    options = {"staging_url": f"file://{base / 'staging'}", "lock_poll_seconds": 1,
               "zuora_time_zone": "America/Los_Angeles", **(settings or {})}
    values = stack_env(zuora, salesforce, base / "state.db", base / "staging", json.dumps(options))
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    airflow_db_migrate(dict(os.environ))
    try:
        yield {"zuora": zuora, "salesforce": salesforce, "base": base}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        zuora.stop()
        salesforce.stop()


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, *, conf: dict | None = None, logical_date: dt.datetime | None = None) -> str:
    """Run a sync DAG in-process with ``dag.test()``; returns the run's state.

    Task retries are off: a test must see the first failure, not wait for retries to hide it.
    """
    return run_dag_tasks(dag_id, conf=conf, logical_date=logical_date)[0]


def run_dag_tasks(dag_id: str, *, conf: dict | None = None,
                  logical_date: dt.datetime | None = None) -> tuple[str, dict[str, str]]:
    """As :func:`run_dag`, and every task's final state (a run can be green with failed tasks in it:
    only its last task, ``end_session``, decides the run's state)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag = load_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
    kwargs: dict[str, Any] = {"run_conf": conf or {}}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    run = dag.test(**kwargs)
    with create_session() as session:
        tasks = session.query(TaskInstance.task_id, TaskInstance.state).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id).all()
    return str(run.state), {task_id: str(state) for task_id, state in tasks}


# -- expectations --------------------------------------------------------------------------------------


def tenant_rows(zuora_data_dir: Path, sql: str) -> list[dict[str, Any]]:
    compiled = compile_query(sql, load_schema(), tz=dt.timezone.utc)
    with sqlite3.connect(f"file:{zuora_data_dir / 'tenant.sqlite3'}?mode=ro", uri=True) as conn:
        cursor = conn.execute(compiled.sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]


def tenant(stack: dict, sql: str) -> list[dict[str, Any]]:
    """The Zuora tenant's rows for a Data Query ``sql``, read straight from its database."""
    return tenant_rows(stack["zuora"].data_dir, sql)


def expected_records(zuora_data_dir: Path, obj: ObjectMapping, types: dict[str, str], tz: dt.tzinfo) -> dict[str, dict]:
    """key → {Salesforce column: expected cell} for every Zuora row the mapping keeps."""
    columns = obj.columns + obj.second_pass
    keep = obj.keep or "true"
    select = ", ".join(f"{c.expression} AS c{i}" for i, c in enumerate(columns))
    where = f"({keep}) AND NOT {obj.table}.deleted"
    if obj.on_delete == "flag":
        where = f"NOT {obj.table}.deleted"
    sql = f"SELECT {select}, {obj.table}.deleted AS zs_deleted FROM {obj.table} " + " ".join(obj.joins.values())
    sql += f" WHERE {where}"
    expected = {}
    for row in tenant_rows(zuora_data_dir, sql):
        record = {}
        for i, column in enumerate(columns):
            value = row[f"c{i}"]
            sf_type = types.get(column.salesforce, "string")
            if isinstance(value, str) and _STORED_DATETIME.match(value):
                # Stored in UTC; Data Query shows it in the tenant's time zone, so do the same here.
                value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).astimezone(tz) \
                    .strftime("%Y-%m-%d %H:%M:%S")
            record[column.salesforce] = converter(sf_type, tz)(value)
        expected[record[obj.key]] = record
    return expected


def salesforce_records(sf: Any, obj: ObjectMapping, tmp: Path) -> dict[str, dict[str, str]]:
    """key → {column: cell} as Salesforce holds the object's records (Bulk API 2.0 query)."""
    columns = [c.salesforce for c in obj.columns + obj.second_pass]
    if obj.flag:
        columns.append(obj.flag)
    soql = f"SELECT {', '.join(columns)} FROM {obj.salesforce}"
    records = {}
    for page in sf.bulk2.__getattr__(obj.salesforce).query(soql, max_records=200_000, wait=0.1):
        for row in csv.DictReader(io.StringIO(page)):
            key = row[obj.key]
            if key:
                records[key] = row
    return records


def same(expected: str, actual: str, sf_type: str) -> bool:
    expected = "" if expected == NULL else expected
    if expected == actual:
        return True
    if sf_type in NUMBER_TYPES and expected and actual:
        try:
            return Decimal(expected) == Decimal(actual)
        except InvalidOperation:
            return False
    if sf_type == "boolean":
        return (expected or "false") == (actual or "false")
    return False


def compare_object(zuora_data_dir: Path, sf: Any, obj: ObjectMapping, types: dict[str, str], tz: dt.tzinfo,
                   rejected: set[str], tmp: Path, *, lookups: dict[str, tuple[set[str], set[str]]] | None = None
                   ) -> list[str]:
    """Every difference between Zuora's expectation and Salesforce for ``obj``, in words.

    :param lookups: per optional lookup column, the keys of its target object that qualify and
        the keys of those that are rejected. A lookup to a qualifying target is expected set; to a
        rejected one, set or empty (it depends on whether the target was in Salesforce before);
        to anything else, empty.
    """
    expected = expected_records(zuora_data_dir, obj, types, tz)
    either: dict[str, set[str]] = {}
    for column, (qualifying, refused) in (lookups or {}).items():
        for key, record in expected.items():
            value = record.get(column)
            if value in refused:
                either.setdefault(key, set()).add(column)
            elif value not in qualifying:
                record[column] = NULL
    actual = salesforce_records(sf, obj, tmp)
    problems = []
    for key, want in expected.items():
        have = actual.get(key)
        if have is None:
            if key not in rejected:
                problems.append(f"{obj.name} {key}: in Zuora, missing in Salesforce and not recorded as rejected")
            continue
        if key in rejected:
            continue  # written only in part (e.g. its parent was rejected); the rejection says why
        for column, cell in want.items():
            sf_type = types.get(column, "string")
            if column in either.get(key, ()) and have.get(column, "") in ("", cell):
                continue
            if not same(cell, have.get(column, ""), sf_type):
                problems.append(f"{obj.name} {key}: {column} is {have.get(column)!r} in Salesforce, "
                                f"{cell!r} expected")
        if obj.flag and have.get(obj.flag) != "false":
            problems.append(f"{obj.name} {key}: flagged deleted in Salesforce but live in Zuora")
    for key, have in actual.items():
        if key not in expected:
            if obj.flag and have.get(obj.flag) == "true":
                continue  # deleted in Zuora: kept and flagged, as the mapping says
            problems.append(f"{obj.name} {key}: in Salesforce but not (or no longer) qualifying in Zuora")
    return problems


def field_types(sf: Any, obj: ObjectMapping) -> dict[str, str]:
    described = {f["name"]: f["type"] for f in sf.__getattr__(obj.salesforce).describe()["fields"]}
    return {c.salesforce: ("string" if c.is_relationship else described[c.salesforce]) for c in obj.columns + obj.second_pass}


def compare_scope(zuora_data_dir: Path, sf: Any, scope: str, rejected: dict[str, set[str]], tz: dt.tzinfo,
                  tmp: Path) -> list[str]:
    """Every difference between Zuora and Salesforce for the scope's objects.

    An optional lookup (the mapping's ``lookups`` and ``second_pass``) is expected only when its
    target qualifies (the rule of ``docs/operations.md``, "Lookups").
    """
    mapping = load_mapping()
    objects = mapping.scope_objects(scope)
    types = {obj.name: field_types(sf, obj) for obj in objects}
    by_sobject = {obj.salesforce: obj for obj in objects}
    qualifying: dict[str, set[str]] = {}
    problems = []
    for obj in objects:
        described = {(f.get("relationshipName") or "").lower(): f
                     for f in sf.__getattr__(obj.salesforce).describe()["fields"]}
        lookups = {}
        for column in obj.columns + obj.second_pass:
            if not column.optional:
                continue
            target = by_sobject.get(described[column.field.lower()]["referenceTo"][0])
            if target is None or target.on_delete == "flag":
                continue  # not synced by this scope, or kept (flagged) in Salesforce after it left Zuora
            if target.name not in qualifying:
                qualifying[target.name] = set(expected_records(zuora_data_dir, target, types[target.name], tz))
            refused = rejected.get(target.name, set())
            lookups[column.salesforce] = (qualifying[target.name] - refused, refused)
        problems += compare_object(zuora_data_dir, sf, obj, types[obj.name], tz, rejected.get(obj.name, set()), tmp,
                                   lookups=lookups)
    return problems


def environment(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    return env


# -- fault tests: changing Zuora, counting Salesforce, running a session in a child process ---------------


def zuora_call(zuora: Any, method: str, path: str, body: Any) -> Any:
    """One call to the Zuora sandbox's REST API (e.g. ``/v1/action/update``) with a fresh bearer token."""
    import requests

    response = requests.request(method, f"{zuora.url}{path}", json=body, timeout=60,
                                headers={"Authorization": f"Bearer {zuora.token()}"})
    response.raise_for_status()
    return response.json()


def duplicate_external_ids(sf: Any, scope: str) -> list[str]:
    """Every external id held by more than one live Salesforce record of the scope's objects, in words.

    :func:`compare_scope` keys Salesforce's records by external id, so it cannot see a duplicate.
    """
    from collections import Counter

    problems = []
    for obj in load_mapping().scope_objects(scope):
        counts: Counter[str] = Counter()
        soql = f"SELECT {obj.key} FROM {obj.salesforce}"
        for page in sf.bulk2.__getattr__(obj.salesforce).query(soql, max_records=200_000, wait=0.1):
            counts.update(row[obj.key] for row in csv.DictReader(io.StringIO(page)) if row[obj.key])
        problems += [f"{obj.name} {key}: {n} records in Salesforce" for key, n in counts.items() if n > 1]
    return problems


def spawn_dag_run(dag_id: str, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``run_dag(dag_id)`` in a child process (so a test can kill it like a worker); output to ``log_path``.

    The child prints ``RESULT <state>`` when the run ends.
    """
    code = ("import sys; sys.path[:0] = [{tests!r}, {sync!r}]\n"
            "from sync_harness import run_dag\n"
            "print('RESULT', run_dag({dag_id!r}), flush=True)\n").format(
        tests=str(ROOT / "tests"), sync=str(ROOT / "tests" / "sync"), dag_id=dag_id)
    child_env = dict(env or os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "include"), child_env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-c", code], env=child_env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
