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
    assert "load_Subscription" in upstream["load_RatePlan"]
    assert {"load_Payment", "load_Invoice"} <= upstream["load_InvoicePayment"]
    assert "delete_Subscription" in upstream["delete_CustomerAccount"]  # children's deletes first
    assert "delete_InvoicePayment" in upstream["delete_Payment"]


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


@pytest.mark.parametrize("dag_id", sorted(SYNC_DAGS))
def test_lineage_and_session_links(dagbag, dag_id):
    """Extracts update their Zuora object's asset, loads and deletes their Salesforce object's; every
    task of a session links to it on the Zuora Sync page."""
    from zuora_sync.mapping import load_mapping

    dag = dagbag.dags[dag_id]
    scope = "catalog" if dag_id == "zuora_product_catalog_sync" else "accounts"
    for obj in load_mapping().scope_objects(scope):
        outlets = {step: [a.uri for a in dag.get_task(f"{step}_{obj.name}").outlets]
                   for step in ("extract", "load", "delete")}
        assert outlets == {"extract": [f"zuora://zuora_default/{obj.table}"],
                           "load": [f"salesforce://salesforce_default/{obj.salesforce}"],
                           "delete": [f"salesforce://salesforce_default/{obj.salesforce}"]}
    for task in dag.tasks:
        links = [link.name for link in task.operator_extra_links]
        assert links == ([] if task.task_id == "wait_for_changes" else ["Zuora Sync session"]), task.task_id
