"""The write tasks: ``SalesforceUpsertOperator`` (one per object) and ``SalesforceDeleteOperator``
(one for the session, children first).

Each gathers its inputs (the plan, the object, the staged files, the clients), calls one function
of :mod:`zuora_sync.writing` (the upserts; what no longer belongs, and the watermark), and records
the result: its XCom, its log lines, its asset event. The upsert task also reads the object from
Zuora: the extract task only chose the rows and submitted their Data Query job, and the load runs
the extract's row loop in a producer thread, uploading each staged chunk as soon as it is closed
(:mod:`zuora_sync.pipeline`). That loop compares each row with its stored hash
(:mod:`zuora_sync.hashes`) and stages only what changed; the pending hashes are committed once
Salesforce has answered for the object. Both stop cleanly, without failing the run,
when the Salesforce API budget runs low.

Their outlets, when the DAG gives them some, are the Salesforce objects' assets
(:mod:`zuora_sync.lineage`): the load's is its object, the delete task's every object of the scope.
Each object the task sent something for gets an asset event whose ``extra`` has the session and
the counts; a dry run, or an object whose load stopped, sends nothing and gets no event.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import BaseOperator, ObjectStoragePath

from zuora_sync import clients
from zuora_sync import task_ids
from zuora_sync.lineage import no_event, record_event, record_events, salesforce_asset, salesforce_org
from zuora_sync.links import SyncSessionLink
from zuora_sync.lock_lease import renews_session_lock
from zuora_sync.lookups import Lookup
from zuora_sync.mapping import load_mapping
from zuora_sync.operators.session import session_plan
from zuora_sync.operators.zuora_extract import PREFLIGHT_TASK
from zuora_sync.settings import load_settings
from zuora_sync.pipeline import ChunkStream
from zuora_sync.staging import CHUNK_ROWS, StagedObject, local_copy

_ID_CHUNK = 50_000


class _ObjectTask(BaseOperator):
    """An object's write task: its plan, its object, its staged files, the clients."""

    template_fields: Sequence[str] = ("object_name",)
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, object_name: str, salesforce_conn_id: str = "salesforce_default",
                 state_conn_id: str = "zuora_sync_state", zuora_conn_id: str = "zuora_default", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")  # an unselected parent (skipped) must not skip its children
        super().__init__(**kwargs)
        self.object_name = object_name
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id
        self.zuora_conn_id = zuora_conn_id

    def _setup(self, context: Any):
        from zuora_sync.state import StateStore

        plan = session_plan(context)
        if self.object_name not in plan.objects:
            raise AirflowSkipException(f"{self.object_name} is not part of this session")
        submitted = context["ti"].xcom_pull(task_ids=task_ids.extract(self.object_name)) or {}
        settings = load_settings()
        loader = clients.salesforce(self.salesforce_conn_id, settings=settings)
        store = StateStore.from_airflow(self.state_conn_id)
        staged = StagedObject(ObjectStoragePath(submitted["directory"]))
        return plan, load_mapping().get(self.object_name), submitted, staged, loader, store


class SalesforceUpsertOperator(_ObjectTask):
    """Read an object's rows from Zuora (the Data Query job its extract task submitted) and upsert
    them into Salesforce chunk by chunk as they are staged; store the rows it rejects
    (:class:`~zuora_sync.pipeline.ChunkStream`, :func:`zuora_sync.writing.upsert_object`).

    :param zuora_conn_id: the Zuora connection the rows are read through.

    Asset event ``extra``: ``session_id``, ``session_type``, ``operation`` (``upsert``), ``upserted``,
    ``rejected``, the extract's counts ``extracted``, ``to_upsert``, ``to_delete``, ``unchanged``
    (rows not sent: their hash is unchanged); and ``stopped: true`` (with the counts so far) when
    the API budget stopped it.
    """

    ui_color = "#fde8e8"

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.extract import extract_object
        from zuora_sync.writing import upsert_object

        plan, obj, submitted, staged, loader, store = self._setup(context)
        preflight = context["ti"].xcom_pull(task_ids=PREFLIGHT_TASK) or {}
        lookups = [Lookup.from_dict(v) for v in (preflight.get("lookups") or {}).get(obj.name, [])]
        field_types = (preflight.get("types") or {}).get(obj.name, {})
        selection = staged.selection()
        # The job the extract task submitted, on the first try; a retry reads Zuora afresh (the
        # job may be what failed).
        first_job = submitted.get("data_query_job") if context["ti"].try_number <= 1 else None
        tz = load_settings().tz
        hook = clients.zuora(self.zuora_conn_id)

        # What the extract task found about the stored hashes (None: an extract without them, all rows go).
        compared = submitted.get("hashes")
        if compared is not None and not compared.get("trusted") and not compared.get("salesforce_keys"):
            from zuora_sync.operators.zuora_extract import stage_salesforce_keys

            # The extract could not read them (it runs beside the preflight); the preflight has passed now.
            compared = {**compared, "salesforce_keys": stage_salesforce_keys(plan, obj, store, staged,
                                                                             self.salesforce_conn_id)}
            self.log.info("%s: its owned keys are staged for the comparison and the reconciliation", obj.salesforce)

        def extract(on_upsert_file):
            # In the producer thread: the key set's SQLite file is opened, used and closed there.
            with _hash_source(plan, obj, staged, store, compared, self.log, lookups) as source:
                manifest = extract_object(hook, obj, selection, staged.directory, field_types=field_types, tz=tz,
                                          first_job=first_job, chunk_rows=CHUNK_ROWS, on_upsert_file=on_upsert_file,
                                          hashes=source)
            if source is not None:
                # The delete task's reconciliation reads which keys describe Salesforce from the manifest.
                manifest.hashes = {**(manifest.hashes or {}), "trusted": bool(compared.get("trusted")),
                                   "salesforce_keys": compared.get("salesforce_keys")}
                staged.write_manifest(manifest)
            return manifest

        try:
            with ChunkStream(extract, name=f"extract-{obj.name}") as chunks:
                result = upsert_object(plan, obj, chunks, staged, loader, store, lookups)
        finally:
            store.add_api_calls(plan.session_id, zuora=hook.api_requests)
        if result.would_upsert is not None:
            self.log.info("Dry run: %d %s rows would be upserted into %s", result.would_upsert, obj.name,
                          obj.salesforce)
            no_event(self)
            return {"dry_run": True, "would_upsert": result.would_upsert}
        event = {"session_id": plan.session_id, "session_type": plan.session_type, "operation": "upsert",
                 "upserted": result.upserted, "rejected": result.rejected}
        if result.manifest is not None:
            counts = result.manifest.counts
            event.update(extracted=counts.extracted, to_upsert=counts.upserts, to_delete=counts.deletes,
                         unchanged=(result.manifest.hashes or {}).get("unchanged", 0))
        if result.stopped:
            self.log.warning("Stopping %s: %s; the next session resumes", obj.name, result.stopped)
            record_event(self, context, {**event, "stopped": True})
            return {"stopped": True, "reason": result.stopped}
        record_event(self, context, event)
        for column, count in sorted(result.emptied.items()):
            self.log.info("%d %s record(s) written with %s empty: its target is not in Salesforce (not synced, "
                          "or rejected); it is filled in once the target is", count, obj.salesforce, column)
        self.log.info("%s → %s: %d upserted, %d rejected", obj.name, obj.salesforce, result.upserted, result.rejected)
        return {"upserted": result.upserted, "failed": result.rejected}


@contextlib.contextmanager
def _hash_source(plan: Any, obj: Any, staged: StagedObject, store: Any, compared: dict[str, Any] | None,
                 log: Any, lookups: list[Lookup] = ()) -> Iterator[Any]:
    """What the extract's row loop compares each row with (:class:`zuora_sync.hashes.HashSource`),
    or None when the extract task said nothing about hashes (every row is staged).

    The stored hashes, read a key range at a time; when the extract task staged Salesforce's keys
    (the hashes were not trusted), those keys too: a record Salesforce lacks is created again, one
    changed there since the last session is sent again, and (not in a dry run) stored hashes of
    records Salesforce lacks are dropped first. An on-demand sync, or the full sync's ``force``,
    sends every row, compared all the same.

    Rows Salesforce refused before are not sent while it would refuse them again as they are
    (:mod:`zuora_sync.refusals`), nor rows written with an optional lookup emptied while its target
    is still not in Salesforce (it has no stored hash: the target's load, before this one, would
    have stored it). This runs after the parents' loads, so both see this session's parents.
    """
    from zuora_sync.hashes import HashSource, KeySet, StoredHashes
    from zuora_sync.refusals import Refusals

    if compared is None:
        yield None
        return
    stored = StoredHashes(lambda key, limit: store.stored_hashes(plan.scope, obj.name, from_key=key, limit=limit))
    force = plan.force or plan.mode == "accounts"
    mapping = load_mapping()
    by_salesforce = {o.salesforce.lower(): o.name for o in mapping.objects.values() if o.scope == obj.scope}
    columns = obj.upsert_header
    refused_ids: dict[str, set[str]] = {}

    def still_refused(sobject: str) -> set[str] | None:
        name = by_salesforce.get(sobject.lower())
        if name is None:
            return None
        if name not in refused_ids:
            refused_ids[name] = {k.strip().lower() for k in store.open_rejected_ids(plan.scope, name)}
        return refused_ids[name]

    refusals = Refusals(store.open_refusals(plan.scope, obj.name), columns, still_refused)
    targets = {lookup.column: by_salesforce.get(lookup.sobject.lower()) for lookup in lookups if not lookup.required}
    positions = columns + [c.salesforce for c in obj.second_pass]

    def absent(position: int, value: str) -> bool:
        # No stored hash (not even "not as staged"): the target is not in Salesforce.
        target = targets.get(positions[position]) if position < len(positions) else None
        if target is None:
            return False
        found = store.stored_hashes(plan.scope, target, from_key=value, limit=1)
        return not (found and found[0][0] == value)

    own = tuple(i for i, column in enumerate(positions) if targets.get(column) == obj.name)
    rules = {"settled": refusals.settled if len(refusals) else None, "absent": absent, "own": own,
             "retried": refusals.unchanged if len(refusals) else None}
    name = compared.get("salesforce_keys")
    if not name:
        yield HashSource(stored.get, None, force=force, **rules)
        return
    with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp, local_copy(staged.path(name)) as exported:
        recorded = store.get_fingerprint(plan.scope, obj.name)
        keys = KeySet(exported, Path(tmp), since=(recorded or {}).get("last_modified"))
        try:
            if not plan.dry_run:
                lacking = list(keys.missing(store.hashed_keys(plan.scope, obj.name)))
                if lacking:
                    store.forget_hashes(plan.scope, obj.name, lacking)
                    log.info("%d %s record(s) with a stored hash are not in Salesforce (deleted there?): "
                             "they are sent again", len(lacking), obj.salesforce)
            yield HashSource(stored.get, keys.__contains__, force=force, touched=keys.touched, **rules)
        finally:
            keys.close()


class SalesforceDeleteOperator(BaseOperator):
    """Remove (or flag) what no longer belongs in Salesforce, object by object, children before
    parents, and move each object's watermark (:func:`zuora_sync.writing.remove_object`).

    One task for the session's objects, after every load: the loads have re-parented what moved,
    and a child's records go before its parent's (a master-detail parent takes its children with
    it). Usually there is little or nothing to remove, so a task per object would mostly cost a task
    start-up each, in sequence, at the end of every session (``docs/benchmarks.md``).

    :param object_names: the objects, children before parents; templated. An object not in the
        session is passed over, as is one whose load the API budget stopped.

    Its XCom, per object of the session: ``{"removed", "failed"}``, ``{"stopped": true, "reason"}``
    or a dry run's ``{"dry_run": true, "would_remove"}``, under ``objects``.

    Asset events, one per Salesforce object it removed from (or checked), ``extra``: ``session_id``,
    ``session_type``, ``operation`` (``delete``, or ``flag`` for objects flagged instead),
    ``reconciled`` (a full sync's comparison with Salesforce), ``removed``, ``rejected``; or
    ``stopped: true`` when the API budget stopped it. A dry run, or an object whose load stopped,
    leaves none.
    """

    template_fields: Sequence[str] = ("object_names",)
    ui_color = "#f3e5f5"
    operator_extra_links = (SyncSessionLink(),)

    def __init__(self, *, object_names: Sequence[str], salesforce_conn_id: str = "salesforce_default",
                 state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")  # an unselected object's load is skipped
        super().__init__(**kwargs)
        self.object_names = list(object_names)
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id

    @renews_session_lock()
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.state import StateStore
        from zuora_sync.writing import remove_object

        plan = session_plan(context)
        ti = context["ti"]
        mapping, settings = load_mapping(), load_settings()
        store = StateStore.from_airflow(self.state_conn_id)
        results: dict[str, dict[str, Any]] = {}
        events: dict[Any, dict[str, Any]] = {}
        stopped: str | None = None
        for name in self.object_names:
            if name not in plan.objects:
                continue
            obj = mapping.get(name)
            upserts = ti.xcom_pull(task_ids=task_ids.load(name)) or {}
            if stopped or upserts.get("stopped"):
                results[name] = {"stopped": True, "reason": stopped or upserts.get("reason")}
                continue
            submitted = ti.xcom_pull(task_ids=task_ids.extract(name)) or {}
            staged = StagedObject(ObjectStoragePath(submitted["directory"]))
            # A loader per object: each counts its own API requests into the session.
            loader = clients.salesforce(self.salesforce_conn_id, settings=settings)
            result = remove_object(plan, obj, staged, loader, store)
            removal = "flagged" if obj.on_delete == "flag" else "deleted"
            if result.would_remove is not None:
                self.log.info("Dry run: %d %s records would be %s", result.would_remove, obj.salesforce, removal)
                results[name] = {"dry_run": True, "would_remove": result.would_remove}
                continue
            event = {"session_id": plan.session_id, "session_type": plan.session_type,
                     "operation": "flag" if obj.on_delete == "flag" else "delete", "reconciled": plan.mode == "full"}
            asset = salesforce_asset(obj.salesforce, salesforce_org())
            if result.stopped:
                # The budget is below its reserve: the objects after this one (its parents) wait too.
                self.log.warning("Stopping %s deletes: %s; the next session resumes", obj.name, result.stopped)
                stopped = result.stopped
                events[asset] = {**event, "stopped": True}
                results[name] = {"stopped": True, "reason": result.stopped}
                continue
            events[asset] = {**event, "removed": result.removed, "rejected": result.rejected}
            self.log.info("%s: %d %s, %d rejected", obj.salesforce, result.removed,
                          "flagged deleted" if obj.on_delete == "flag" else "removed", result.rejected)
            results[name] = {"removed": result.removed, "failed": result.rejected}
        record_events(self, context, events)
        return {"objects": results}
