"""Writing staged files to Salesforce with Bulk API 2.0: upserts, then deletes (children first).

``SalesforceUpsertOperator`` upserts an object's staged rows (and then its second-pass links) and
stores every row Salesforce rejected, with its code and message, for the next session to retry.
``SalesforceDeleteOperator`` removes the rows that left Zuora or no longer qualify — for a full
sync, every Salesforce record of the object whose Zuora source is gone (reconciliation) — or flags
them, and only then moves the object's watermark: a change counts as synced once it is safely in
Salesforce. Both stop cleanly, without failing the run, when the Salesforce API budget runs low.

Their outlet, when the DAG gives them one, is the Salesforce object's asset
(:mod:`zuora_sync.lineage`): each task that sent something to Salesforce leaves an asset event
whose ``extra`` has the session and the counts; a dry run, or a delete task after its load stopped,
sends nothing and leaves no event.
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import BaseOperator, ObjectStoragePath

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.lineage import no_event, record_event
from zuora_sync.links import SyncSessionLink
from zuora_sync.lock_lease import renews_session_lock
from zuora_sync.lookups import Lookup, upsert_keeping_records
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.session import session_plan
from zuora_sync.operators.zuora_extract import PREFLIGHT_TASK
from zuora_sync.planning import parse_instant
from zuora_sync.reconcile import advanced_watermark, orphans
from zuora_sync.settings import load_settings
from zuora_sync.staging import Manifest, StagedObject, local_copy

_ID_CHUNK = 50_000


class _ObjectTask(BaseOperator):
    """What both write tasks share: the plan, the object, its staged files, the clients."""

    template_fields: Sequence[str] = ("object_name",)
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, object_name: str, salesforce_conn_id: str = "salesforce_default",
                 state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")  # an unselected parent (skipped) must not skip its children
        super().__init__(**kwargs)
        self.object_name = object_name
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id

    def _setup(self, context: Any):
        from zuora_sync.state import StateStore

        plan = session_plan(context)
        if self.object_name not in plan.objects:
            raise AirflowSkipException(f"{self.object_name} is not part of this session")
        manifest = Manifest.from_dict(context["ti"].xcom_pull(task_ids=task_ids.extract(self.object_name)))
        settings = load_settings()
        loader = clients.salesforce(self.salesforce_conn_id, settings=settings)
        store = StateStore.from_airflow(self.state_conn_id)
        staged = StagedObject(ObjectStoragePath(manifest.directory))
        return plan, load_mapping().get(self.object_name), manifest, staged, loader, store


def _without_keys(source: Path, keys: set[str], target: Path) -> Path:
    """A copy of a staged CSV without the rows whose first column (the key) is in ``keys``."""
    with open(source, newline="", encoding="utf-8") as read, open(target, "w", newline="", encoding="utf-8") as write:
        writer = csv.writer(write, lineterminator="\n")
        for index, row in enumerate(csv.reader(read)):
            if index == 0 or (row and row[0] not in keys):
                writer.writerow(row)
    return target


class SalesforceUpsertOperator(_ObjectTask):
    """Upsert an object's staged rows into Salesforce; store the rows it rejects.

    Asset event ``extra``: ``session_id``, ``session_type``, ``operation`` (``upsert``), ``upserted``,
    ``rejected``, and ``stopped: true`` (with the counts so far) when the API budget stopped it.
    """

    ui_color = "#fde8e8"

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.salesforce_loader import ApiBudgetExhausted

        plan, obj, manifest, staged, loader, store = self._setup(context)
        failed_keys: set[str] = set()
        conversion = staged.rejected_conversions()
        if conversion and not plan.dry_run:
            store.add_rejected(plan.session_id, obj.name, [
                (r.external_id, r.error_code, r.message, r.row) for r in conversion])
        failed_keys.update(r.external_id for r in conversion)
        if plan.dry_run:
            self.log.info("Dry run: %d %s rows would be upserted into %s", manifest.counts.upserts, obj.name,
                          obj.salesforce)
            no_event(self)
            return {"dry_run": True, "would_upsert": manifest.counts.upserts}
        event = {"session_id": plan.session_id, "session_type": plan.session_type, "operation": "upsert"}
        preflight = context["ti"].xcom_pull(task_ids=PREFLIGHT_TASK) or {}
        lookups = [Lookup.from_dict(v) for v in (preflight.get("lookups") or {}).get(obj.name, [])]
        upserted = failed = 0
        emptied: Counter = Counter()
        try:
            for name in manifest.upsert_files + manifest.link_files:
                with local_copy(staged.path(name)) as path, tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
                    if name in manifest.link_files and failed_keys:
                        # Second-pass links only for records the first pass wrote.
                        path = _without_keys(path, failed_keys, Path(tmp) / name)
                    outcome = upsert_keeping_records(loader, obj.salesforce, obj.key, path, lookups, Path(tmp))
                if name in manifest.upsert_files:
                    upserted += outcome.succeeded
                failed += len(outcome.rejected)
                emptied += outcome.emptied
                if outcome.rejected:
                    store.add_rejected(plan.session_id, obj.name, [
                        (r.external_id, r.error_code, r.message, r.row) for r in outcome.rejected])
                    failed_keys.update(r.external_id for r in outcome.rejected if r.external_id)
        except ApiBudgetExhausted as exc:
            self.log.warning("Stopping %s: %s; the next session resumes", obj.name, exc)
            record_event(self, context, {**event, "upserted": upserted, "rejected": failed + len(conversion),
                                         "stopped": True})
            return {"stopped": True, "reason": str(exc)}
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        store.record_counts(plan.session_id, obj.name, upserted=upserted, failed=failed + len(conversion))
        record_event(self, context, {**event, "upserted": upserted, "rejected": failed + len(conversion)})
        still_open = set(store.open_rejected_ids(plan.scope, obj.name))
        if still_open:
            fixed = [k for k in staged.keep_keys() if k in still_open and k not in failed_keys]
            if fixed:
                store.resolve_rejected(obj.name, fixed, plan.session_id)
                self.log.info("%d record(s) rejected before are now in Salesforce", len(fixed))
        for column, count in sorted(emptied.items()):
            self.log.info("%d %s record(s) written with %s empty: its target is not in Salesforce (not synced, "
                          "or rejected); it is filled in once the target is", count, obj.salesforce, column)
        self.log.info("%s → %s: %d upserted, %d rejected", obj.name, obj.salesforce, upserted,
                      failed + len(conversion))
        return {"upserted": upserted, "failed": failed + len(conversion)}


class SalesforceDeleteOperator(_ObjectTask):
    """Remove (or flag) what no longer belongs in Salesforce, then move the object's watermark.

    Asset event ``extra``: ``session_id``, ``session_type``, ``operation`` (``delete``, or ``flag``
    for objects flagged instead), ``reconciled`` (a full sync's comparison with Salesforce),
    ``removed``, ``rejected``; or ``stopped: true`` when the API budget stopped it.
    """

    ui_color = "#f3e5f5"

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.salesforce_loader import ApiBudgetExhausted

        plan, obj, manifest, staged, loader, store = self._setup(context)
        upserts = context["ti"].xcom_pull(task_ids=task_ids.load(self.object_name)) or {}
        if upserts.get("stopped"):
            no_event(self)
            return {"stopped": True, "reason": upserts.get("reason")}
        event = {"session_id": plan.session_id, "session_type": plan.session_type,
                 "operation": "flag" if obj.on_delete == "flag" else "delete", "reconciled": plan.mode == "full"}
        try:
            with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
                if plan.mode == "full":
                    doomed_keys, doomed_ids = self._reconcile(obj, staged, loader, Path(tmp))
                else:
                    doomed_keys = list(staged.delete_keys()) if obj.on_delete == "delete" else []
                    doomed_ids = self._ids_for(loader, obj, doomed_keys)
                removed, failed = self._remove(plan, obj, loader, store, doomed_ids, Path(tmp))
        except ApiBudgetExhausted as exc:
            self.log.warning("Stopping %s deletes: %s; the next session resumes", obj.name, exc)
            record_event(self, context, {**event, "stopped": True})
            return {"stopped": True, "reason": str(exc)}
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        if plan.dry_run:
            self.log.info("Dry run: %d %s records would be %s", len(doomed_ids), obj.salesforce,
                          "flagged" if obj.on_delete == "flag" else "deleted")
            no_event(self)
            return {"dry_run": True, "would_remove": len(doomed_ids)}
        store.record_counts(plan.session_id, obj.name, deleted=removed, failed=failed)
        record_event(self, context, {**event, "removed": removed, "rejected": failed})
        open_keys = set(store.open_rejected_ids(plan.scope, obj.name))
        gone = [k for k in doomed_keys if k in open_keys]
        if gone:
            store.resolve_rejected(obj.name, gone, plan.session_id)
        if plan.mode == "window":
            # Only a window that joins the watermark moves it (session.advanced_watermark).
            moved = advanced_watermark(store.get_watermark(plan.scope, obj.name), plan.window(obj.name),
                                       started=parse_instant(plan.started))
            if moved is not None:
                store.set_watermark(plan.scope, obj.name, moved)
        elif plan.mode == "full":
            store.set_watermark(plan.scope, obj.name, parse_instant(plan.started), force=True)
        self.log.info("%s: %d %s, %d rejected", obj.salesforce, removed,
                      "flagged deleted" if obj.on_delete == "flag" else "removed", failed)
        return {"removed": removed, "failed": failed}

    @staticmethod
    def _ids_for(loader: Any, obj: Any, keys: list[str]) -> dict[str, str]:
        """Salesforce Ids of the records with these external ids (those that exist), Id → key."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), _ID_CHUNK):
            for key, record_id in loader.ids_for_external_ids(obj.salesforce, obj.key, keys[start:start + _ID_CHUNK]).items():
                found[record_id] = key
        return found

    @staticmethod
    def _reconcile(obj: Any, staged: StagedObject, loader: Any, tmp: Path) -> tuple[list[str], dict[str, str]]:
        """Every Salesforce record of the object whose key is not among the kept Zuora rows (on disk, not in memory)."""
        exported = tmp / "salesforce.csv"
        where = f" WHERE {obj.flag} = false" if obj.on_delete == "flag" else ""
        loader.query_to_csv(f"SELECT Id, {obj.key} FROM {obj.salesforce}{where}", exported)
        doomed = orphans(exported, staged.keep_keys(), tmp)
        return list(doomed.values()), doomed

    def _remove(self, plan: Any, obj: Any, loader: Any, store: Any, doomed: dict[str, str], tmp: Path) -> tuple[int, int]:
        if plan.dry_run or not doomed:
            return 0, 0
        if obj.on_delete == "flag":
            path = tmp / "flags.csv"
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow([obj.key, obj.flag])
                writer.writerows([key, "true"] for key in doomed.values() if key)
            outcome = loader.upsert_csv(obj.salesforce, obj.key, path)
        else:
            outcome = loader.delete_ids(obj.salesforce, list(doomed))
        if outcome.rejected:
            store.add_rejected(plan.session_id, obj.name, [
                (r.external_id or doomed.get(r.sf_id or ""), r.error_code, r.message, r.row) for r in outcome.rejected])
        return outcome.processed - outcome.failed, outcome.failed
