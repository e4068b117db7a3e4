"""Every DAG imports with no connection or secret present, and carries tags, docs and retries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYNC_DAGS = {"zuora_full_sync", "zuora_incremental_sync", "zuora_on_demand_sync", "zuora_product_catalog_sync",
             "zuora_realtime_sync"}
EXPECTED = SYNC_DAGS | {"zuora_cleanup"}


@pytest.fixture(scope="module")
def dagbag():
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    try:
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        os.environ.update(saved)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_tags_docs_and_retries(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "zuora" in dag.tags
    assert dag.doc_md and len(dag.doc_md) > 100
    assert dag.default_args.get("retries", 0) >= 1
    assert dag.max_active_runs == 1
    ids = {t.task_id for t in dag.tasks}
    if dag_id in SYNC_DAGS:
        assert {"begin_session", "preflight", "end_session"} <= ids
    else:
        assert {"begin_cleanup", "end_cleanup"} <= ids
    for name in dag.params:
        assert dag.params.get_param(name).description, f"{dag_id}: param {name} has no description"


def test_parents_load_before_children_and_delete_after(dagbag):
    dag = dagbag.dags["zuora_full_sync"]
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert "load_CustomerAccount" in upstream["load_Subscription"]
    assert "extract_CustomerAccount" in upstream["extract_Subscription"]  # its Data Query job first
    assert "load_Subscription" in upstream["load_RatePlan"]
    assert {"load_Payment", "load_Invoice"} <= upstream["load_InvoicePayment"]
    # One delete task after every load, children before parents; then the end.
    assert upstream["delete_removed"] == {t.task_id for t in dag.tasks if t.task_id.startswith("load_")}
    assert upstream["end_session"] == {"begin_session", "delete_removed"}
    order = dag.get_task("delete_removed").object_names
    assert order.index("Subscription") < order.index("CustomerAccount")
    assert order.index("RatePlanCharge") < order.index("RatePlan") < order.index("Subscription")
    assert order.index("InvoicePayment") < min(order.index("Payment"), order.index("Invoice"))
    assert sorted(order) == sorted(t.task_id[len("load_"):] for t in dag.tasks if t.task_id.startswith("load_"))


def test_extracts_run_beside_the_preflight_and_loads_wait_for_both(dagbag):
    """An extract only reads (Zuora, Salesforce's keys), so it starts with the session, after its
    parents' extracts only (their Data Query jobs go to Zuora first); nothing is written before the
    preflight has checked the mapping against the org."""
    from zuora_sync.mapping import load_mapping

    mapping = load_mapping()
    for dag_id in SYNC_DAGS:
        dag = dagbag.dags[dag_id]
        for task in dag.tasks:
            if task.task_id.startswith("extract_"):
                obj = task.task_id[len("extract_"):]
                parents = {f"extract_{parent}" for parent in mapping.get(obj).depends_on}
                assert task.upstream_task_ids == {"begin_session"} | parents, (dag_id, task.task_id)
                assert {"preflight", task.task_id} <= dag.get_task(f"load_{obj}").upstream_task_ids, (dag_id, obj)
        assert dag.get_task("preflight").upstream_task_ids == {"begin_session"}


def test_incremental_sync_has_real_windows(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    timetable = dagbag.dags["zuora_incremental_sync"].timetable
    assert isinstance(timetable, CronDataIntervalTimetable) and timetable.expression == "0 */2 * * *"
    assert dagbag.dags["zuora_full_sync"].schedule is None


def test_cleanup_is_manual_only_and_safe_by_default(dagbag):
    dag = dagbag.dags["zuora_cleanup"]
    assert dag.schedule is None
    defaults = {name: dag.params[name] for name in dag.params}
    assert defaults["dry_run"] is True and defaults["confirm"] is False
    assert defaults["hard_delete"] is False and defaults["accept_over_1m_records"] is False
    assert defaults["scope"] in ("accounts_and_related_objects", "product_catalog")


def test_realtime_sync_is_continuous_and_waits_first(dagbag):
    dag = dagbag.dags["zuora_realtime_sync"]
    assert dag.timetable.__class__.__name__ == "ContinuousTimetable"
    wait = dag.get_task("wait_for_changes")
    assert wait.downstream_task_ids == {"begin_session"} and not wait.upstream_task_ids


def test_the_objects_field_is_a_pick_list_in_airflows_trigger_form(dagbag):
    """Airflow 3.3's form draws a multi-select for an array only when its choices are at the top of
    the schema (``examples`` or ``enum``); under ``items`` alone it is a free-text box. Checked in
    Chromium by tests/ui/test_page_browser.py; here, the schema the form receives."""
    from zuora_sync.mapping import load_mapping

    for dag_id in ("zuora_full_sync", "zuora_incremental_sync"):
        schema = dagbag.dags[dag_id].params.get_param("objects").schema
        names = load_mapping().scopes["accounts"]
        assert schema["examples"] == names and schema["items"]["enum"] == names
        assert "array" in schema["type"] and "null" in schema["type"]  # a cleared pick list sends null: all
        assert set(schema["values_display"]) == set(names)
        assert schema["values_display"]["CustomerAccount"] == "CustomerAccount (Zuora__CustomerAccount__c)"
        assert dagbag.dags[dag_id].params.get_param("objects").resolve(None) is None  # accepted: all objects


def test_the_cleanup_form_names_the_scopes_and_warns_about_zuora_quotes(dagbag):
    from zuora_sync.operators.cleanup import CATALOG_WARNING

    dag = dagbag.dags["zuora_cleanup"]
    scope = dag.params.get_param("scope")
    assert scope.schema["values_display"] == {"accounts_and_related_objects": "Accounts & Related Objects",
                                             "product_catalog": "Product Catalog"}
    assert CATALOG_WARNING in scope.description
    assert "Zuora Quotes 3.x" in CATALOG_WARNING and "not safe" in CATALOG_WARNING
    assert "quotes built on the current" in CATALOG_WARNING.lower()
    assert "Zuora Quotes 3.x" in dag.doc_md and "**not safe**" in dag.doc_md


def _incremental_schedule(settings: str) -> tuple[str | None, str]:
    """Parse the incremental DAG's file with ``settings`` as the Variable; (its cron, import errors)."""
    import subprocess
    import sys

    code = ("from airflow.dag_processing.dagbag import DagBag\n"
            f"bag = DagBag(dag_folder={str(ROOT / 'dags' / 'zuora_incremental_sync.py')!r})\n"
            "dag = bag.dags.get('zuora_incremental_sync')\n"
            "print('CRON', dag.timetable.expression if dag else None)\n"
            "print('ERRORS', ' '.join(' '.join(bag.import_errors.values()).split()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"] = settings
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else ""
             for line in result.stdout.splitlines() if line.startswith(("CRON ", "ERRORS"))}
    return (None if lines["CRON"] == "None" else lines["CRON"]), lines["ERRORS"].strip()


def test_a_daily_incremental_schedule_is_a_setting_not_an_edit_of_the_dag():
    assert _incremental_schedule('{"scheduled_sync_frequency": "daily"}') == ("0 0 * * *", "")
    cron, errors = _incremental_schedule('{"scheduled_sync_frequency": "hourly"}')
    assert cron is None
    assert "zuora_sync_settings: scheduled_sync_frequency: 'hourly' is not allowed; choose one of " \
           "['every_2_hours', 'daily']" in errors


@pytest.mark.parametrize("dag_id", sorted(SYNC_DAGS))
def test_lineage_and_session_links(dagbag, dag_id):
    """Extracts update their Zuora object's asset, loads their Salesforce object's, the delete task
    every Salesforce object's of the scope; every task of a session links to it on the Zuora Sync page."""
    from zuora_sync.mapping import load_mapping

    dag = dagbag.dags[dag_id]
    scope = "catalog" if dag_id == "zuora_product_catalog_sync" else "accounts"
    objects = load_mapping().scope_objects(scope)
    for obj in objects:
        outlets = {step: [a.uri for a in dag.get_task(f"{step}_{obj.name}").outlets] for step in ("extract", "load")}
        assert outlets == {"extract": [f"zuora://zuora_default/{obj.table}"],
                           "load": [f"salesforce://salesforce_default/{obj.salesforce}"]}
    assert sorted(a.uri for a in dag.get_task("delete_removed").outlets) == sorted(
        f"salesforce://salesforce_default/{obj.salesforce}" for obj in objects)
    for task in dag.tasks:
        links = [link.name for link in task.operator_extra_links]
        assert links == ([] if task.task_id == "wait_for_changes" else ["Zuora Sync session"]), task.task_id
