"""``ZuoraExtractOperator``: one mapped object, one session's selection → staged files.

The files land on an ``ObjectStoragePath`` (local disk by default, ``s3://`` and the like when
``staging_url`` says so), so whichever worker runs the load can read them. Its outlet, when the DAG
gives it one, is the Zuora object's asset (:mod:`zuora_sync.lineage`); the asset event says what the
session read.
"""

from __future__ import annotations

from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import BaseOperator, ObjectStoragePath

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.lineage import record_event
from zuora_sync.links import SyncSessionLink
from zuora_sync.lock_lease import renews_session_lock
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.session import session_plan
from zuora_sync.planning import parse_instant
from zuora_sync.settings import load_settings

PREFLIGHT_TASK = task_ids.PREFLIGHT


class ZuoraExtractOperator(BaseOperator):
    """Extract ``object_name`` for this session from Zuora Data Query into staged files.

    :param object_name: the mapped object (e.g. ``Subscription``); templated.
    :param zuora_conn_id: the Zuora connection.

    Asset events of its outlets (the Zuora object) carry ``extra``: ``session_id``,
    ``session_type``, ``mode`` (full, window, accounts), ``dry_run``, the counts ``extracted``,
    ``to_upsert``, ``to_delete``, ``rejected`` (rows that could not be converted), and for a
    window its ``window_start`` / ``window_end``.
    """

    template_fields: Sequence[str] = ("object_name",)
    ui_color = "#e0ecff"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, object_name: str, zuora_conn_id: str = "zuora_default",
                 state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.object_name = object_name
        self.zuora_conn_id = zuora_conn_id
        self.state_conn_id = state_conn_id

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.extract import Selection, extract_object
        from zuora_sync.state import StateStore

        plan = session_plan(context)
        if self.object_name not in plan.objects:
            raise AirflowSkipException(f"{self.object_name} is not part of this session")
        settings = load_settings()
        mapping = load_mapping()
        obj = mapping.get(self.object_name)
        store = StateStore.from_airflow(self.state_conn_id)
        if plan.mode == "window":
            start, end = parse_instant(plan.windows[obj.name][0]), parse_instant(plan.windows[obj.name][1])
            retry = store.open_rejected_ids(plan.scope, obj.name)
            # Rows whose related record is rejected, or was fixed since this window began, are read
            # again so their lookup to it is written once it is in Salesforce.
            related = {alias: store.open_rejected_ids(plan.scope, target.name, resolved_since=start)
                       for alias, target in mapping.related(obj).items()}
            related = {alias: keys for alias, keys in related.items() if keys}
            if retry:
                self.log.info("Extracting again all %d %s record(s) Salesforce rejected before", len(retry), obj.name)
            for alias, keys in related.items():
                self.log.info("Extracting again the %s rows of %d %s record(s) rejected or fixed lately (%s)",
                              obj.name, len(keys), mapping.related(obj)[alias].name, alias)
            selection = Selection("window", start, end, retry_keys=retry, related_keys=related)
        elif plan.mode == "accounts":
            selection = Selection("accounts", account_keys=plan.accounts)
        else:
            selection = Selection("full")
        preflight = context["ti"].xcom_pull(task_ids=PREFLIGHT_TASK) or {}
        field_types = (preflight.get("types") or {}).get(obj.name, {})
        directory = ObjectStoragePath(f"{plan.staging}/{obj.name}")
        hook = clients.zuora(self.zuora_conn_id)
        try:
            manifest = extract_object(hook, obj, selection, directory, field_types=field_types, tz=settings.tz)
        finally:
            store.add_api_calls(plan.session_id, zuora=hook.api_requests)
        store.record_counts(plan.session_id, obj.name, extracted=manifest.counts.extracted)
        counts = manifest.counts
        window = {"window_start": plan.windows[obj.name][0], "window_end": plan.windows[obj.name][1]} \
            if plan.mode == "window" else {}
        record_event(self, context, {
            "session_id": plan.session_id, "session_type": plan.session_type, "mode": plan.mode,
            "dry_run": plan.dry_run, "extracted": counts.extracted, "to_upsert": counts.upserts,
            "to_delete": counts.deletes, "rejected": counts.rejected, **window})
        return manifest.to_dict()
