"""``ZuoraExtractOperator``: one mapped object, one session's selection → a Data Query job under way.

The task decides which rows the session reads (the selection: a window plus the rows to retry,
everything, or chosen accounts), keeps it in the object's staging directory (an
``ObjectStoragePath``: local disk by default, ``s3://`` and the like when ``staging_url`` says so,
so whichever worker runs the load can read it) and submits the selection's first Data Query job,
without waiting for it: Zuora runs the job while other objects load. The load task
(:class:`~zuora_sync.operators.salesforce_load.SalesforceUpsertOperator`) reads the job's rows,
stages and uploads them chunk by chunk (``docs/architecture.md``, "A sync session").

Its outlet, when the DAG gives it one, is the Zuora object's asset (:mod:`zuora_sync.lineage`); the
asset event says what the session reads (the counts of what it read are on the load's event).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import BaseOperator, ObjectStoragePath

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.lineage import record_event
from zuora_sync.links import SyncSessionLink
from zuora_sync.lock_lease import renews_session_lock
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.session import EMPTY_KEY, HASHES_KEY, SESSION_TASK, session_plan
from zuora_sync.planning import parse_instant
from zuora_sync.staging import SALESFORCE_KEYS, StagedObject

PREFLIGHT_TASK = task_ids.PREFLIGHT


class ZuoraExtractOperator(BaseOperator):
    """Choose ``object_name``'s rows for this session and submit their first Data Query job.

    :param object_name: the mapped object (e.g. ``Subscription``); templated.
    :param zuora_conn_id: the Zuora connection.
    :param salesforce_conn_id: the Salesforce connection, read only when the object's stored hashes
        may not describe Salesforce (its owned keys are read then; ``docs/operations.md``).

    The load compares the rows with their stored hashes (:mod:`zuora_sync.hashes`) as it reads
    them: only rows that changed or that Salesforce lacks are staged (all of them with the full
    sync's ``force``, or on demand). When the begin task found the stored hashes may no longer
    describe Salesforce, this task reads Salesforce's owned keys and stages them
    (``salesforce-keys.csv``) for the load's comparison and a full sync's reconciliation; where it
    counted none, the empty list, without a query.

    Its XCom: ``object``, ``directory`` (the staging directory, holding ``selection.json``),
    ``mode``, ``data_query_job`` (the submitted job's id) and ``hashes`` (``trusted``, and
    ``salesforce_keys``: the staged keys' file name or None), for the load task.

    Asset events of its outlets (the Zuora object) carry ``extra``: ``session_id``,
    ``session_type``, ``mode`` (full, window, accounts), ``dry_run``, ``data_query_job``,
    ``hashes_trusted`` (false: Salesforce's keys were read and staged), and for a window its
    ``window_start`` / ``window_end``. The counts of what was read (``extracted``, ``to_upsert``,
    ``to_delete``, ``unchanged``) are on the load's event, which reads the rows.
    """

    template_fields: Sequence[str] = ("object_name",)
    ui_color = "#e0ecff"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, object_name: str, zuora_conn_id: str = "zuora_default",
                 state_conn_id: str = "zuora_sync_state", salesforce_conn_id: str = "salesforce_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.object_name = object_name
        self.zuora_conn_id = zuora_conn_id
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.extract import Selection, submit_selection
        from zuora_sync.state import StateStore

        plan = session_plan(context)
        if self.object_name not in plan.objects:
            raise AirflowSkipException(f"{self.object_name} is not part of this session")
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
        directory = ObjectStoragePath(f"{plan.staging}/{obj.name}")
        staged = StagedObject(directory)
        staged.create()
        staged.write_selection(selection)
        hook = clients.zuora(self.zuora_conn_id)
        try:
            job = submit_selection(hook, obj, selection)
        finally:
            store.add_api_calls(plan.session_id, zuora=hook.api_requests)
        self.log.info("Submitted Data Query job %s for %s (%s); %s reads its rows", job, obj.name, selection.mode,
                      task_ids.load(obj.name))
        # While Zuora runs the job: Salesforce's keys, when the stored hashes may not describe it.
        trusted = plan.mode == "accounts" or bool(
            (context["ti"].xcom_pull(task_ids=SESSION_TASK, key=HASHES_KEY) or {}).get(obj.name))
        keys = None
        if not trusted and obj.name in (context["ti"].xcom_pull(task_ids=SESSION_TASK, key=EMPTY_KEY) or []):
            # Counted seconds ago in one composite batch: a Bulk query job would read no row.
            keys = stage_no_salesforce_keys(obj, staged)
            self.log.info("%s: Salesforce holds no owned record (the begin task counted them); nothing to read",
                          obj.salesforce)
        elif not trusted:
            try:
                keys = stage_salesforce_keys(plan, obj, store, staged, self.salesforce_conn_id)
            except Exception as exc:  # noqa: BLE001 - the load reads them, once the preflight has passed
                # This task runs beside the preflight: a mapping that does not fit the org (say, an
                # object the org lacks) fails there, and its loads never run.
                self.log.warning("Could not read %s's keys in Salesforce (%s); the load reads them", obj.salesforce,
                                 exc)
            else:
                self.log.info("%s: the stored hashes may not describe Salesforce; its owned keys are staged for the "
                              "load and the reconciliation", obj.salesforce)
        hashes = {"trusted": trusted, "salesforce_keys": keys}
        window = {"window_start": plan.windows[obj.name][0], "window_end": plan.windows[obj.name][1]} \
            if plan.mode == "window" else {}
        record_event(self, context, {
            "session_id": plan.session_id, "session_type": plan.session_type, "mode": plan.mode,
            "dry_run": plan.dry_run, "data_query_job": job, "hashes_trusted": trusted, **window})
        return {"object": obj.name, "directory": str(directory), "mode": selection.mode, "data_query_job": job,
                "hashes": hashes}


def _key_columns(obj: Any) -> tuple[str, str, str]:
    """The columns of the staged owned keys, in order."""
    return ("Id", obj.key, "SystemModstamp")


def stage_no_salesforce_keys(obj: Any, staged: StagedObject) -> str:
    """Stage the owned keys of an object Salesforce holds none of: the header a Bulk API 2.0 query
    answers with and no row (what :func:`stage_salesforce_keys` would stage, without its job)."""
    with staged.open_for_writing(SALESFORCE_KEYS) as target:
        target.write(",".join(f'"{column}"' for column in _key_columns(obj)) + "\n")
    return SALESFORCE_KEYS


def stage_salesforce_keys(plan: Any, obj: Any, store: Any, staged: StagedObject, salesforce_conn_id: str) -> str:
    """Stage Salesforce's owned keys of the object (``Id,<key>,SystemModstamp``) for when its stored
    hashes may not describe Salesforce (the begin task's check,
    :func:`zuora_sync.hashes.fingerprint_trusted`); returns the staged file's name.

    The load's hash filter reads them (:class:`zuora_sync.hashes.KeySet`: a record Salesforce
    lacks is created again, one changed there since the last session is sent again, the
    hashes of records Salesforce lacks are dropped), and a full sync's delete task reconciles
    with the same keys. The extract stages them while Zuora runs its job; the load, if the extract
    could not.
    """
    loader = clients.salesforce(salesforce_conn_id)
    with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
        exported = Path(tmp) / SALESFORCE_KEYS
        try:
            loader.query_to_csv(f"SELECT {', '.join(_key_columns(obj))} FROM {obj.salesforce} "
                                f"WHERE {obj.key} != null", exported)
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        with open(exported, encoding="utf-8") as source, staged.open_for_writing(SALESFORCE_KEYS) as target:
            shutil.copyfileobj(source, target)
    return SALESFORCE_KEYS
