"""The DAGs' shapes, built once from the mapping: every sync type's graph, and the cleanup's.

Every sync DAG is the same graph: begin the session (lock, plan) → check the mapping against
Salesforce, and beside it extract every object from Zuora (parents' first) → upsert parents before
children → remove what no longer belongs, in one task, children before parents → end the session
(status, lock). The
real-time DAG puts one task in front: a deferrable sensor that waits until the session is due. The
DAG files under ``dags/`` only say which type, which scope, which schedule and which form.

Lineage: each extract task's outlet is its Zuora object, each load task's its Salesforce object,
the delete task's every Salesforce object of the scope (:mod:`zuora_sync.lineage`), so Airflow's
Assets page shows what the sync reads and writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Param

from zuora_sync import task_ids
from zuora_sync.lineage import salesforce_asset, salesforce_org, zuora_asset, zuora_tenant
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.salesforce_load import SalesforceDeleteOperator, SalesforceUpsertOperator
from zuora_sync.operators.session import (
    SESSION_TASK,
    BeginSyncSessionOperator,
    EndSyncSessionOperator,
    MappingPreflightOperator,
)
from zuora_sync.operators.zuora_extract import PREFLIGHT_TASK, ZuoraExtractOperator

DEFAULT_ARGS = {
    "owner": "zuora-sync",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": True,
}
TAGS = ["zuora", "salesforce", "sync"]


def objects_param(scope: str) -> Param:
    """The trigger form's ``objects`` field: a pick list of the scope's objects (empty: all of them).

    Airflow 3.3's trigger form draws an ``array`` as a multi-select only when the list of choices is
    at the schema's top level, under ``examples`` (or ``enum``, which JSON Schema would apply to the
    whole array); under ``items`` it draws a free-text box, one value a line. So the choices are
    ``examples`` (with ``values_display`` labels naming the Salesforce object), while ``items``
    keeps validating each value. The form sends ``null`` when the list is cleared: that means all.
    """
    mapping = load_mapping()
    names = mapping.scopes[scope]
    labels = {name: f"{name} ({mapping.get(name).salesforce})" for name in names}
    return Param(
        [], type=["array", "null"], items={"type": "string", "enum": names}, uniqueItems=True,
        examples=names, values_display=labels,
        title="Objects", description=f"Objects to sync; empty means all of them ({', '.join(names)}). "
                                     "Parents are loaded before children.",
    )


def dry_run_param() -> Param:
    return Param(False, type="boolean", title="Dry run",
                 description="Extract from Zuora and count per object what would be created, updated, "
                             "unchanged and removed; write nothing to Salesforce.")


def force_param() -> Param:
    """The full sync's ``force``: send every row, whatever its stored hash says (then store fresh hashes)."""
    return Param(False, type="boolean", title="Force: send every record",
                 description="Ignore the stored hashes: send every record to Salesforce, changed or not (it "
                             "overwrites edits made in Salesforce), then store fresh hashes.")


def window_params() -> dict[str, Param]:
    return {
        "window_start": Param(None, type=["null", "string"], format="date-time", title="Window start",
                              description="Sync changes from this time (UTC). Empty: the scheduled interval, or "
                                          "for a manual run the last successful sync."),
        "window_end": Param(None, type=["null", "string"], format="date-time", title="Window end",
                            description="Sync changes up to this time (UTC). Empty: the interval's end, or now."),
    }


def build_sync_dag(dag_id: str, *, session_type: str, scope: str, schedule: Any, doc_md: str,
                   params: dict[str, Param], start_date: dt.datetime | None = None, wait_for_changes: bool = False,
                   **dag_kwargs: Any) -> DAG:
    """A sync DAG of ``session_type`` over the objects of ``scope``.

    :param wait_for_changes: start with a ``wait_for_changes`` task
        (:class:`~zuora_sync.operators.realtime.RealTimeSyncSensor`): the session begins only when
        enough change events have arrived or the maximum time has passed (real-time sync).
    """
    mapping = load_mapping()
    objects = mapping.scope_objects(scope)
    org, tenant = salesforce_org(), zuora_tenant()
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date or dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=TAGS + [scope],
        doc_md=doc_md,
        params=params,
        render_template_as_native_obj=True,
        **dag_kwargs,
    ) as dag:
        begin = BeginSyncSessionOperator(
            task_id=SESSION_TASK, session_type=session_type, scope=scope,
            objects="{{ params.get('objects') }}", dry_run="{{ params.get('dry_run', False) }}",
            force="{{ params.get('force', False) }}",
            window_start="{{ params.get('window_start') }}", window_end="{{ params.get('window_end') }}",
            accounts="{{ params.get('accounts') }}", retries=0,
        )
        preflight = MappingPreflightOperator(task_id=PREFLIGHT_TASK)
        begin >> preflight
        if wait_for_changes:
            from zuora_sync.operators.realtime import WAIT_TASK, RealTimeSyncSensor

            RealTimeSyncSensor(task_id=WAIT_TASK, scope=scope) >> begin
        extracts, loads = {}, {}
        for obj in objects:
            extracts[obj.name] = extract = ZuoraExtractOperator(
                task_id=task_ids.extract(obj.name), object_name=obj.name, outlets=[zuora_asset(obj.table, tenant)])
            loads[obj.name] = SalesforceUpsertOperator(task_id=task_ids.load(obj.name), object_name=obj.name,
                                                       outlets=[salesforce_asset(obj.salesforce, org)])
            # The extract only reads (Zuora, Salesforce's keys): it runs beside the preflight; the load,
            # which writes, waits for both.
            begin >> extract >> loads[obj.name]
            preflight >> loads[obj.name]
        for obj in objects:
            for parent in obj.depends_on:
                # Zuora runs a tenant's Data Query jobs a few at a time, in the order they come: a
                # parent's job goes first, so its rows are ready first (its load runs first).
                extracts[parent] >> extracts[obj.name]
                loads[parent] >> loads[obj.name]
        # One task after every load, children before parents: usually there is little to remove.
        delete = SalesforceDeleteOperator(task_id=task_ids.DELETE_REMOVED,
                                          object_names=[o.name for o in reversed(objects)],
                                          outlets=[salesforce_asset(o.salesforce, org) for o in objects])
        end = EndSyncSessionOperator(task_id=task_ids.END_SESSION, sync_task_ids=[task_ids.DELETE_REMOVED], retries=0)
        list(loads.values()) >> delete >> end
        begin >> end
    return dag


def build_cleanup_dag(dag_id: str, *, doc_md: str, params: dict[str, Param], **dag_kwargs: Any) -> DAG:
    """The 360 Sync Cleanup's graph: begin (lock, counts, lookups at risk, watermarks reset) → each
    scope's objects deleted children first → end (record, unlock). Only the chosen scope's deletes
    do anything; the other scope's skip."""
    from zuora_sync.operators.cleanup import BeginCleanupOperator, CleanupDeleteOperator, EndCleanupOperator

    mapping = load_mapping()
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=TAGS + ["cleanup"],
        doc_md=doc_md,
        params=params,
        render_template_as_native_obj=True,
        **dag_kwargs,
    ) as dag:
        begin = BeginCleanupOperator(
            task_id=task_ids.BEGIN_CLEANUP, scope="{{ params.scope }}", dry_run="{{ params.dry_run }}",
            confirm="{{ params.confirm }}", hard_delete="{{ params.hard_delete }}",
            accept_over_limit="{{ params.accept_over_1m_records }}", retries=0,
        )
        deletes = []
        for scope in mapping.scopes:
            previous = begin
            for obj in reversed(mapping.scope_objects(scope)):  # children before parents
                task = CleanupDeleteOperator(task_id=task_ids.delete(obj.name), object_name=obj.name)
                previous >> task
                previous = task
                deletes.append(task)
        end = EndCleanupOperator(task_id=task_ids.END_CLEANUP, delete_task_ids=[t.task_id for t in deletes],
                                 retries=0)
        deletes >> end
        begin >> end
    return dag
