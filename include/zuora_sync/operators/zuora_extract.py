"""``ZuoraExtractOperator``: one mapped object, one session's selection → staged files.

The files land on an ``ObjectStoragePath`` (local disk by default, ``s3://`` and the like when
``staging_url`` says so), so whichever worker runs the load can read them. Its outlet, when the DAG
gives it one, is the Zuora object's asset (:mod:`zuora_sync.lineage`); the asset event says what the
session read.
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
from zuora_sync.hashes import HashSource, KeySet, StoredHashes
from zuora_sync.lock_lease import renews_session_lock
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.session import session_plan
from zuora_sync.planning import parse_instant
from zuora_sync.settings import load_settings
from zuora_sync.staging import SALESFORCE_KEYS, StagedObject

PREFLIGHT_TASK = task_ids.PREFLIGHT


class ZuoraExtractOperator(BaseOperator):
    """Extract ``object_name`` for this session from Zuora Data Query into staged files.

    :param object_name: the mapped object (e.g. ``Subscription``); templated.
    :param zuora_conn_id: the Zuora connection.
    :param salesforce_conn_id: the Salesforce connection, read only when the object's stored hashes
        may not describe Salesforce (its owned keys are read then; ``docs/operations.md``).

    Rows are compared with their stored hashes (:mod:`zuora_sync.hashes`): only rows that changed or
    that Salesforce lacks are staged (all of them with the full sync's ``force``, or on demand).

    Asset events of its outlets (the Zuora object) carry ``extra``: ``session_id``,
    ``session_type``, ``mode`` (full, window, accounts), ``dry_run``, the counts ``extracted``,
    ``to_upsert``, ``to_delete``, ``rejected`` (rows that could not be converted), ``unchanged``
    (rows not sent: their hash is unchanged), and for a window its ``window_start`` / ``window_end``.
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
        with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
            keys = self._salesforce_keys(plan, obj, preflight, store, StagedObject(directory), Path(tmp))
            stored = StoredHashes(lambda key, limit: store.stored_hashes(plan.scope, obj.name, from_key=key, limit=limit))
            # An on-demand sync is a repair: its accounts' rows go whatever their hashes say.
            source = HashSource(stored.get, keys.__contains__ if keys is not None else None,
                                force=plan.force or plan.mode == "accounts",
                                touched=keys.touched if keys is not None else None)
            try:
                manifest = extract_object(hook, obj, selection, directory, field_types=field_types, tz=settings.tz,
                                          hashes=source)
            finally:
                store.add_api_calls(plan.session_id, zuora=hook.api_requests)
                if keys is not None:
                    keys.close()
        manifest.hashes = {**(manifest.hashes or {}), "trusted": keys is None,
                           "salesforce_keys": SALESFORCE_KEYS if keys is not None else None}
        StagedObject(directory).write_manifest(manifest)
        compared = manifest.hashes
        if plan.dry_run:
            store.record_counts(plan.session_id, obj.name, extracted=manifest.counts.extracted,
                                created=compared["created"], updated=compared["updated"],
                                unchanged=compared["unchanged"])
        else:  # what is created or updated is counted by the load, once Salesforce has answered
            store.record_counts(plan.session_id, obj.name, extracted=manifest.counts.extracted,
                                unchanged=compared["unchanged"])
        counts = manifest.counts
        window = {"window_start": plan.windows[obj.name][0], "window_end": plan.windows[obj.name][1]} \
            if plan.mode == "window" else {}
        record_event(self, context, {
            "session_id": plan.session_id, "session_type": plan.session_type, "mode": plan.mode,
            "dry_run": plan.dry_run, "extracted": counts.extracted, "to_upsert": counts.upserts,
            "to_delete": counts.deletes, "rejected": counts.rejected, "unchanged": compared["unchanged"], **window})
        return manifest.to_dict()

    def _salesforce_keys(self, plan: Any, obj: Any, preflight: dict[str, Any], store: Any, staged: Any,
                         tmp: Path) -> KeySet | None:
        """Salesforce's owned keys of the object, when its stored hashes may not describe Salesforce
        (the preflight's check, :func:`zuora_sync.hashes.fingerprint_trusted`); None when they do.
        Records changed in Salesforce after the last session's measure are *touched*: sent again.

        The export (the reconciliation's query) is staged too, so the delete task reconciles with
        the same keys. Hashes of records Salesforce lacks are dropped (not in a dry run): they claim
        what is not so, and the rows are sent again.
        """
        if plan.mode == "accounts" or (preflight.get("hashes_trusted") or {}).get(obj.name):
            return None
        loader = clients.salesforce(self.salesforce_conn_id)
        exported = tmp / SALESFORCE_KEYS
        try:
            loader.query_to_csv(f"SELECT Id, {obj.key}, SystemModstamp FROM {obj.salesforce} WHERE {obj.key} != null",
                                exported)
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        staged.create()
        with open(exported, encoding="utf-8") as source, staged.open_for_writing(SALESFORCE_KEYS) as target:
            shutil.copyfileobj(source, target)
        recorded = store.get_fingerprint(plan.scope, obj.name)
        keys = KeySet(exported, tmp, since=(recorded or {}).get("last_modified"))
        if not plan.dry_run:
            lacking = list(keys.missing(store.hashed_keys(plan.scope, obj.name)))
            if lacking:
                store.forget_hashes(plan.scope, obj.name, lacking)
                self.log.info("%d %s record(s) with a stored hash are not in Salesforce (deleted there?): "
                              "they are sent again", len(lacking), obj.salesforce)
        return keys
