"""The sync DAGs end to end with ``dag.test()`` against both sandboxes. After every step,
Salesforce is compared with Zuora record by record: every mapped field, every link, every filter
rule; whatever qualifies but is missing must be recorded as rejected, with Salesforce's reason."""

from __future__ import annotations

import datetime as dt
import json
import os
from zoneinfo import ZoneInfo

import pytest

from conftest import start_salesforce_sandbox, start_zuora_sandbox
from sync_harness import airflow_db_migrate, compare_scope, run_dag, stack_env

ACCOUNTS = 40
SEED = 21
TZ = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    zuora = start_zuora_sandbox(base / "zuora", accounts=ACCOUNTS, seed=SEED)
    salesforce = start_salesforce_sandbox(base / "salesforce", accounts=ACCOUNTS, seed=SEED)
    settings = json.dumps({"staging_url": f"file://{base / 'staging'}", "lock_poll_seconds": 1,
                           "zuora_time_zone": "America/Los_Angeles"})
    values = stack_env(zuora, salesforce, base / "state.db", base / "staging", settings)
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


def rejected_keys() -> dict[str, set[str]]:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    from zuora_sync.mapping import load_mapping

    return {o.name: set(store.open_rejected_ids(o.scope, o.name)) for o in load_mapping().objects.values()}


def check(stack, scope: str = "accounts") -> None:
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), scope, rejected_keys(), TZ,
                             stack["base"])
    assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems)} problems" if len(problems) > 40 else "")


def last_session() -> dict:
    from zuora_sync.state import StateStore

    store = StateStore.from_airflow()
    return store.get_session(store.list_sessions(limit=1)[0]["id"])


def test_full_sync(stack):
    assert run_dag("zuora_full_sync") == "success"
    session = last_session()
    assert session["session_type"] == "Full"
    assert session["status"] == "Finished with Errors"  # the tenant's deliberately invalid CRM Ids
    check(stack)
